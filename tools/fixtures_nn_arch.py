#!/usr/bin/env python3
"""Writes the PyTorch fixtures of the nn layers for modern architectures
(tests/test_nn_arch*.c). Run once; commit the outputs:

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/fixtures_nn_arch.py tests/fixtures

nn_arch_layers.safetensors, for each layer L (rmsnorm, swiglu, rope, rope_pos,
gru_cell, gru_seq, lstm_cell, lstm_seq):
    L.<input or parameter>   the inputs and parameters (PyTorch's names)
    L.out                    the forward's output (lstm_cell: L.h_next, L.c_next;
                             lstm_seq also L.c_last)
    L.gout                   the gradient seeded at each output (L.g<output>)
    L.grad.<name>            every input's and parameter's gradient
Computed in float64 from float32-representable values, stored as float32.

nn_arch_models.safetensors: the two examples' models (tools/llama_torch.py,
tools/charrnn_torch.py) at tiny sizes: parameters, a batch, logits, loss and
every parameter's grad (prefixes llama. and gru. / lstm.).
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_torch import save_safetensors  # noqa: E402


def f32(t):
    """float32-representable float64 leaf"""
    return t.float().double().requires_grad_(True)


def rand(*shape, scale=1.0):
    return f32(torch.randn(*shape, dtype=torch.float64) * scale)


def record(out, prefix, inputs, outputs):
    """Seeds each output with a random gradient and stores inputs, outputs,
    seeds and the inputs' grads under prefix."""
    seeds = {k: torch.randn_like(v).float().double() for k, v in outputs.items()}
    torch.autograd.backward([outputs[k] for k in outputs], [seeds[k] for k in outputs])
    for k, v in inputs.items():
        out[f'{prefix}.{k}'] = v.detach()
        out[f'{prefix}.grad.{k}'] = v.grad.clone()
    for k, v in outputs.items():
        out[f'{prefix}.{k}'] = v.detach()
        out[f'{prefix}.g{k}'] = seeds[k]


def rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(T, hs, theta=10000.0, pos0=0):
    # as Hugging Face's LlamaRotaryEmbedding: frequencies in float32
    inv = 1.0 / (theta ** (torch.arange(0, hs, 2).float() / hs))
    t = torch.arange(pos0, pos0 + T).double()
    freqs = torch.outer(t, inv.double())
    emb = torch.cat([freqs, freqs], -1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def apply_rope(x, cos, sin):
    return x * cos + rotate_half(x) * sin


def layers(path):
    torch.manual_seed(2024)
    out = {}
    # RMSNorm: (2, 3, 8), weight away from ones, eps 1e-5
    x, w = rand(2, 3, 8), f32(1 + 0.3 * torch.randn(8, dtype=torch.float64))
    record(out, 'rmsnorm', {'x': x, 'weight': w}, {'out': rmsnorm(x, w, 1e-5)})
    # SwiGLU: dim 8, hidden 12
    x = rand(2, 3, 8)
    w1, w2, w3 = rand(12, 8, scale=0.4), rand(8, 12, scale=0.3), rand(12, 8, scale=0.4)
    y = F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)
    record(out, 'swiglu', {'x': x, 'w1.weight': w1, 'w2.weight': w2, 'w3.weight': w3}, {'out': y})
    # RoPE on (B, H, T, hs) = (2, 2, 5, 8), positions 0.. and 3..
    for name, pos0 in (('rope', 0), ('rope_pos', 3)):
        q = rand(2, 2, 5, 8)
        cos, sin = rope_tables(5, 8, pos0=pos0)
        record(out, name, {'x': q}, {'out': apply_rope(q, cos, sin)})
    # GRUCell / LSTMCell: in 5, hidden 6, batch 3
    for kind, G in (('gru', 3), ('lstm', 4)):
        Cell = torch.nn.GRUCell if kind == 'gru' else torch.nn.LSTMCell
        cell = Cell(5, 6).double()
        with torch.no_grad():
            for p in cell.parameters():
                p.copy_(p.float().double())
        params = dict(cell.named_parameters())
        x, h = rand(3, 5), rand(3, 6, scale=0.5)
        if kind == 'gru':
            record(out, 'gru_cell', {'x': x, 'h': h, **params}, {'out': cell(x, h)})
        else:
            c = rand(3, 6, scale=0.5)
            h2, c2 = cell(x, (h, c))
            record(out, 'lstm_cell', {'x': x, 'h': h, 'c': c, **params}, {'h_next': h2, 'c_next': c2})
        # the same weights as a one-layer torch.nn.GRU / LSTM over (T, B, in) = (4, 3, 5)
        cell.zero_grad()
        Seq = torch.nn.GRU if kind == 'gru' else torch.nn.LSTM
        seq = Seq(5, 6).double()
        with torch.no_grad():
            for n, p in cell.named_parameters():
                getattr(seq, n + '_l0').copy_(p)
        sp = {n[:-3]: p for n, p in seq.named_parameters()}  # weight_ih_l0 -> weight_ih
        xs, h0 = rand(4, 3, 5), rand(3, 6, scale=0.5)
        if kind == 'gru':
            ys, hn = seq(xs, h0.unsqueeze(0))
            record(out, 'gru_seq', {'x': xs, 'h': h0, **sp}, {'out': ys})
        else:
            c0 = rand(3, 6, scale=0.5)
            ys, (hn, cn) = seq(xs, (h0.unsqueeze(0), c0.unsqueeze(0)))
            record(out, 'lstm_seq', {'x': xs, 'h': h0, 'c': c0, **sp}, {'out': ys, 'c_last': cn[0]})
    adamw_groups(out)
    save_safetensors(path, out, {'note': 'made by tools/fixtures_nn_arch.py with PyTorch '
                                 + torch.__version__})


def cosine_lr(step, lr, min_lr, warmup, decay_steps):
    """nn_lr_cosine, as nanoGPT's get_lr"""
    import math
    if step < warmup:
        return lr * (step + 1) / warmup
    if step > decay_steps:
        return min_lr
    r = (step - warmup) / (decay_steps - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * r)) * (lr - min_lr)


def adamw_groups(out):
    """AdamW with two param groups (weight decayed by 0.1, bias and an
    embedding-like table not), the lr from cosine_lr at every step (a
    LambdaLR), on a least-squares problem: the parameters after each of 6 steps."""
    torch.manual_seed(5)
    x, y = torch.randn(8, 5), torch.randn(8, 3)
    w0, b0, e0 = torch.randn(3, 5) * 0.5, torch.randn(3) * 0.5, torch.randn(4, 3) * 0.5
    out.update({'adamw_groups.x': x, 'adamw_groups.y': y, 'adamw_groups.weight': w0,
                'adamw_groups.bias': b0, 'adamw_groups.emb': e0})
    w, b, e = (t.clone().requires_grad_(True) for t in (w0, b0, e0))
    opt = torch.optim.AdamW([{'params': [w], 'weight_decay': 0.1},
                             {'params': [b, e], 'weight_decay': 0.0}], lr=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, 0.05, 0.005, 2, 5) / 0.05)
    for step in range(1, 7):
        opt.zero_grad()
        # the table's rows 0 and 2 shift the targets: every parameter gets a grad
        loss = ((x @ w.t() + b - y - e[0] + e[2]) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        for n, t in (('weight', w), ('bias', b), ('emb', e)):
            out[f'adamw_groups.{step}.{n}'] = t.detach().clone()


def models(path):
    from llama_torch import Llama
    from charrnn_torch import CharRNN
    out = {}
    meta = {'note': 'made by tools/fixtures_nn_arch.py with PyTorch ' + torch.__version__}

    def one(prefix, model, vocab, B, T, seed):
        torch.manual_seed(seed)
        model = model.double()
        with torch.no_grad():
            for n, p in model.named_parameters():
                if 'norm' in n:  # RMSNorm weights start at ones: move them
                    p.add_(0.1 * torch.randn_like(p))
                p.copy_(p.float().double())
        idx = torch.randint(vocab, (B, T))
        targets = torch.randint(vocab, (B, T))
        logits, loss = model(idx, targets)
        loss.backward()
        for n, p in model.c_named_parameters():  # a tied tensor once, under its first name
            out[f'{prefix}.{n}'] = p.detach()
        out[f'{prefix}.input.idx'] = idx.double()
        out[f'{prefix}.input.targets'] = targets.double()
        out[f'{prefix}.expected.logits'] = logits.detach()
        out[f'{prefix}.expected.loss'] = loss.detach()
        for n, p in model.c_named_parameters():
            out[f'{prefix}.grad.{n}'] = p.grad

    torch.manual_seed(7)
    cfg = dict(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=2, ffn_hidden=24)
    one('llama', Llama(**cfg), 11, 3, 7, 8)
    meta.update({'llama.' + k: v for k, v in cfg.items()})
    for cell in ('gru', 'lstm'):
        torch.manual_seed(9)
        rc = dict(vocab_size=11, n_embd=6, hidden=10, n_layer=2, cell=cell)
        one(cell, CharRNN(**rc), 11, 3, 5, 10)
        meta.update({f'{cell}.{k}': v for k, v in rc.items()})
    save_safetensors(path, out, meta)


if __name__ == '__main__':
    outdir = sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures'
    torch.set_num_threads(1)
    layers(os.path.join(outdir, 'nn_arch_layers.safetensors'))
    if len(sys.argv) <= 2 or sys.argv[2] != '--layers-only':
        models(os.path.join(outdir, 'nn_arch_models.safetensors'))
