#!/usr/bin/env python3
"""Exports the lecture's GPT from PyTorch for `gpt sample` and `gpt train --init-from`:
its state_dict as safetensors (what safetensors.torch.save_file(model.state_dict(), path)
writes: every tensor under gpt.py's name, float32, the tril buffers too, no metadata) and
its vocabulary (the text's distinct characters, sorted, as gpt.py builds it) as a file.

After training with the lecture's gpt.py, save its weights there with
    torch.save(model.state_dict(), 'gpt.pt')
then
    /usr/bin/python3 tools/export_gpt.py --state-dict gpt.pt --text input.txt \\
        --out gpt.safetensors --vocab-out gpt.vocab
    build/examples/gpt/gpt sample --checkpoint gpt.safetensors --vocab gpt.vocab
    build/examples/gpt/gpt train --init-from gpt.safetensors --data input.txt ...

Or train a small one here (tools/gpt_torch.py's model) and export it:
    /usr/bin/python3 tools/export_gpt.py --train input.txt --n-embd 32 --n-head 4 \\
        --n-layer 2 --block-size 16 --steps 500 --out gpt.safetensors --vocab-out gpt.vocab

Attention scale: the repository's gpt.py scales attention scores by n_embd**-0.5 (C**-0.5),
nanoGPT and tools/gpt_torch.py by head_size**-0.5. A state_dict cannot say which; `gpt`
assumes gpt.py's unless given --attention-scale head_size. --train here trains with
--scale (default n_embd, as gpt.py) and prints the flag to use.

--expect FILE (for test fixtures) also writes a prompt's tokens, PyTorch's logits for them
and its greedy continuation, to compare `gpt` against.

The other way, a checkpoint of `gpt train` as a state_dict for gpt.py (torch.save; load it
with model.load_state_dict(torch.load('gpt.pt'))), its query weights rescaled for gpt.py's
n_embd**-0.5 unless --scale head_size:
    /usr/bin/python3 tools/export_gpt.py --from-agrad runs/tiny/ckpt.safetensors --torch-out gpt.pt

Needs PyTorch (Debian: python3-torch, for /usr/bin/python3); no safetensors package:
the format is written by hand (8-byte header length, JSON header, raw little-endian data).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_torch import GPT, load_safetensors, save_safetensors  # noqa: E402


def vocabulary(text):
    return sorted(set(text))


def config_from_state_dict(sd):
    """vocab_size, block_size, n_embd, n_head, n_layer from the shapes, as `gpt` reads them."""
    V, C = sd['token_embedding_table.weight'].shape
    T = sd['position_embedding_table.weight'].shape[0]
    n_layer = 0
    while f'blocks.{n_layer}.ln1.weight' in sd:
        n_layer += 1
    n_head = 0
    while f'blocks.0.sa.heads.{n_head}.key.weight' in sd:
        n_head += 1
    return dict(vocab_size=V, block_size=T, n_embd=C, n_head=n_head, n_layer=n_layer)


def set_scale(model, scale):
    """gpt_torch's heads scale by head_size**-0.5; gpt.py's by n_embd**-0.5."""
    for block in model.blocks:
        for h in block.sa.heads:
            h.head_size = block.sa.proj.in_features if scale == 'n_embd' else h.key.out_features


def model_from_state_dict(sd, scale):
    model = GPT(dropout=0.0, **config_from_state_dict(sd))
    model.load_state_dict(sd)
    set_scale(model, scale)
    return model.eval()


def train(text, args):
    torch.manual_seed(args.seed)
    chars = vocabulary(text)
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    model = GPT(len(chars), args.block_size, args.n_embd, args.n_head, args.n_layer, 0.0)
    set_scale(model, args.scale)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    T = args.block_size
    for step in range(args.steps):
        ix = torch.randint(len(data) - T, (args.batch_size,))
        x = torch.stack([data[i:i + T] for i in ix])
        y = torch.stack([data[i + 1:i + T + 1] for i in ix])
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f'step {step}: loss {loss.item():.4f}')
    return model.eval()


@torch.no_grad()
def greedy(model, idx, n):
    """n tokens after idx (1, t), each the most likely, the context cropped to the block."""
    for _ in range(n):
        logits, _ = model(idx[:, -model.block_size:])
        idx = torch.cat((idx, logits[:, -1, :].argmax(-1, keepdim=True)), dim=1)
    return idx


@torch.no_grad()
def top2_gap(model, idx, n):
    """The smallest gap between the two most likely tokens along the greedy path: a greedy
    continuation compared across programs is only stable when no step is a near tie."""
    gap = float('inf')
    for _ in range(n):
        logits, _ = model(idx[:, -model.block_size:])
        top = logits[0, -1].topk(2).values
        gap = min(gap, (top[0] - top[1]).item())
        idx = torch.cat((idx, logits[:, -1, :].argmax(-1, keepdim=True)), dim=1)
    return gap


def load_agrad(path, scale='head_size'):
    """A checkpoint of `gpt train` as tools/gpt_torch.py's model (eval mode) and its
    vocabulary: the parameters by name (the optimizer state left out), the tril buffers
    made, the attention scale `scale` (head_size: as `gpt` computes; n_embd: as gpt.py,
    the query weights multiplied by sqrt(n_head) so the function stays the same)."""
    tensors, meta = load_safetensors(path)
    sd = {k: v for k, v in tensors.items() if not k.startswith('optimizer.')}
    cfg = config_from_state_dict(sd)
    model = GPT(dropout=0.0, **cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if unexpected or any(not k.endswith('.tril') for k in missing):
        sys.exit(f'export_gpt: {path}: unexpected {unexpected}, missing {missing}')
    if scale == 'n_embd':
        with torch.no_grad():
            for block in model.blocks:
                for h in block.sa.heads:
                    h.query.weight.mul_(cfg['n_head'] ** 0.5)
    set_scale(model, scale)
    return model.eval(), list(meta.get('vocab', ''))


def write_state_dict(path, model):
    sd = model.state_dict()
    save_safetensors(path, {k: v.to(torch.float32) for k, v in sd.items()})


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument('--state-dict', metavar='FILE', help="gpt.py's model.state_dict(), saved by torch.save")
    src.add_argument('--train', metavar='TEXT', help='train tools/gpt_torch.py\'s model on this text first')
    src.add_argument('--from-agrad', metavar='FILE', help='the other way: a checkpoint of gpt train')
    ap.add_argument('--torch-out', metavar='FILE', help='with --from-agrad: the state_dict (torch.save)')
    ap.add_argument('--text', metavar='FILE', help='the training text (for the vocabulary; --train\'s by default)')
    ap.add_argument('--out', metavar='FILE', help='the state_dict as safetensors')
    ap.add_argument('--vocab-out', metavar='FILE', help='the vocabulary: the sorted distinct characters')
    ap.add_argument('--scale', choices=['n_embd', 'head_size'], default='n_embd',
                    help="the attention scale the model uses (gpt.py: n_embd)")
    ap.add_argument('--expect', metavar='FILE', help='also write a prompt, its logits and greedy text')
    ap.add_argument('--greedy-tokens', type=int, default=40, metavar='N')
    for flag, default in [('n-embd', 32), ('n-head', 4), ('n-layer', 2), ('block-size', 16),
                          ('batch-size', 32), ('steps', 500), ('seed', 1337)]:
        ap.add_argument('--' + flag, type=int, default=default, metavar='N', help='with --train')
    ap.add_argument('--lr', type=float, default=1e-2, help='with --train')
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.from_agrad:
        if not args.torch_out:
            sys.exit('export_gpt: --from-agrad needs --torch-out FILE')
        model, chars = load_agrad(args.from_agrad, args.scale)
        torch.save(model.state_dict(), args.torch_out)
        print(f'export_gpt: wrote {args.torch_out} ({config_from_state_dict(model.state_dict())}, '
              f'attention scale {args.scale}); vocabulary {"".join(chars)!r}')
        return
    if not args.out:
        sys.exit('export_gpt: --out FILE is required')

    text_path = args.text or args.train
    text = open(text_path, encoding='utf-8').read() if text_path else None
    if args.train:
        model = train(text, args)
    else:
        sd = torch.load(args.state_dict, map_location='cpu')
        if not isinstance(sd, dict):  # a whole model saved with torch.save(model)
            sd = sd.state_dict()
        model = model_from_state_dict(sd, args.scale)
    cfg = config_from_state_dict(model.state_dict())
    if text is not None and len(vocabulary(text)) != cfg['vocab_size']:
        sys.exit(f'export_gpt: {text_path} has {len(vocabulary(text))} distinct characters, '
                 f'the model {cfg["vocab_size"]}: not its training text')
    write_state_dict(args.out, model)
    print(f'export_gpt: wrote {args.out} ({cfg})')
    if args.vocab_out:
        if text is None:
            sys.exit('export_gpt: --vocab-out needs the training text (--text)')
        with open(args.vocab_out, 'w', encoding='utf-8', newline='') as f:
            f.write(''.join(vocabulary(text)))
        print(f'export_gpt: wrote {args.vocab_out}')
    if args.expect:
        chars = vocabulary(text)
        stoi = {c: i for i, c in enumerate(chars)}
        prompt = text[:cfg['block_size']]
        idx = torch.tensor([[stoi[c] for c in prompt]])
        with torch.no_grad():
            logits, _ = model(idx)
        gap = top2_gap(model, idx, args.greedy_tokens)
        out = greedy(model, idx, args.greedy_tokens)[0].tolist()
        cont = ''.join(chars[i] for i in out[len(prompt):])
        save_safetensors(args.expect, {'input.idx': idx.double(), 'expected.logits': logits},
                         {'prompt': prompt, 'greedy': cont, 'top2_gap': f'{gap:.6g}',
                          'note': 'made by tools/export_gpt.py with PyTorch ' + torch.__version__})
        print(f'export_gpt: wrote {args.expect}; greedy {cont!r}, smallest top-2 gap {gap:.4g}')
    flag = '' if args.scale == 'n_embd' else ' --attention-scale head_size'
    vocab = f' --vocab {args.vocab_out}' if args.vocab_out else f' --data {text_path}' if text_path else ''
    print(f'sample it: build/examples/gpt/gpt sample --checkpoint {args.out}{vocab}{flag}')


if __name__ == '__main__':
    main()
