#!/usr/bin/env python3
"""Writes the small safetensors fixtures the C tests compare against, from
PyTorch (Debian's python3-torch). Run once; commit the outputs:

    /usr/bin/python3 tools/make_fixtures.py tests/fixtures

gpt_tiny.safetensors: a tiny lecture GPT's weights, a batch, and the logits,
    loss and every parameter's grad PyTorch computes for it (dropout off).
optim.safetensors: a Linear 5->3 on a fixed least-squares problem and its
    parameters after each of 5 AdamW and 5 SGD-with-momentum steps.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_torch import GPT, save_safetensors  # noqa: E402


def gpt_fixture(path):
    torch.manual_seed(1234)
    cfg = dict(vocab_size=13, block_size=8, n_embd=16, n_head=4, n_layer=2, dropout=0.0)
    model = GPT(**cfg).double()  # float64 reference, stored as float32
    # LayerNorms start at ones/zeros; move them so the test covers their grads in general
    with torch.no_grad():
        for name, p in model.named_parameters():
            if '.ln' in name or name.startswith('ln_f'):
                p.add_(0.1 * torch.randn_like(p))
        for p in model.parameters():  # weights exactly representable in float32
            p.copy_(p.float().double())
    B, T = 3, 7  # T < block_size: the position table is sliced
    idx = torch.randint(cfg['vocab_size'], (B, T))
    targets = torch.randint(cfg['vocab_size'], (B, T))
    logits, loss = model(idx, targets)
    loss.backward()
    out = {}
    for name, p in model.named_parameters():
        out[name] = p
    out['input.idx'] = idx.double()
    out['input.targets'] = targets.double()
    out['expected.logits'] = logits
    out['expected.loss'] = loss
    for name, p in model.named_parameters():
        out['grad.' + name] = p.grad
    meta = {k: v for k, v in cfg.items()}
    meta['note'] = 'made by tools/make_fixtures.py with PyTorch ' + torch.__version__
    save_safetensors(path, out, meta)


def optim_fixture(path):
    torch.manual_seed(99)
    x = torch.randn(8, 5)
    y = torch.randn(8, 3)
    w0 = torch.randn(3, 5) * 0.5
    b0 = torch.randn(3) * 0.5
    out = {'x': x, 'y': y, 'weight': w0, 'bias': b0}

    def run(make_opt, tag):
        w = w0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        opt = make_opt([w, b])
        for step in range(1, 6):
            opt.zero_grad()
            loss = ((x @ w.t() + b - y) ** 2).mean()
            loss.backward()
            opt.step()
            out[f'{tag}.{step}.weight'] = w.detach().clone()
            out[f'{tag}.{step}.bias'] = b.detach().clone()
            out[f'{tag}.{step}.loss'] = loss.detach().clone()

    run(lambda ps: torch.optim.AdamW(ps, lr=0.05), 'adamw')  # PyTorch defaults otherwise
    run(lambda ps: torch.optim.AdamW(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
        'adamw2')
    run(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01), 'sgd')
    save_safetensors(path, out, {'note': 'made by tools/make_fixtures.py with PyTorch ' + torch.__version__})


if __name__ == '__main__':
    outdir = sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures'
    os.makedirs(outdir, exist_ok=True)
    gpt_fixture(os.path.join(outdir, 'gpt_tiny.safetensors'))
    optim_fixture(os.path.join(outdir, 'optim.safetensors'))
    print('wrote fixtures to', outdir)
