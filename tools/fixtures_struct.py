#!/usr/bin/env python3
"""Writes tests/fixtures/struct_ops.safetensors, PyTorch's values and grads for
the structural ops of issue 12 (var, cumsum, argmax, gather, index_select,
stack, chunk, expand, detach, rms_norm, attention over separate q, k, v), which
tests/test_ops_struct_parity.c compares against. Run once; commit the output:

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/fixtures_struct.py tests/fixtures

Each case NAME stores its inputs as NAME.in.<k>, its output(s) as NAME.out
(NAME.out.<i> for several), fixed upstream grads NAME.w (NAME.w.<i>) and the
grads of sum(out * w) as NAME.grad.<k>. Computed in float64 from inputs that
are exact in float32; integer indices are stored as floats. The op's other
arguments (axes, flags) are in the C test, case by case, as here.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_torch import save_safetensors  # noqa: E402

out = {}


def f32(t):
    """float64 values that are exact in float32"""
    return t.float().double()


def case(name, inputs, fn, grads=True):
    """inputs: name -> tensor (float ones get grads); fn(**inputs) -> tensor or list"""
    ins = {}
    for k, v in inputs.items():
        if v.dtype == torch.float64 and grads and k != 'mask':  # masks get no grad
            v = v.clone().requires_grad_(True)
        ins[k] = v
        out[f'{name}.in.{k}'] = v.detach().double()
    ys = fn(**ins)
    many = isinstance(ys, (list, tuple))
    ys = list(ys) if many else [ys]
    loss = 0
    for i, y in enumerate(ys):
        tag = f'.{i}' if many else ''
        out[f'{name}.out{tag}'] = y.detach().double()
        if grads and y.dtype == torch.float64:
            w = f32(torch.randn(y.shape, dtype=torch.float64))
            out[f'{name}.w{tag}'] = w
            loss = loss + (y * w).sum()
    if grads and torch.is_tensor(loss):
        loss.backward()
        for k, v in ins.items():
            if v.requires_grad:
                out[f'{name}.grad.{k}'] = v.grad if v.grad is not None else torch.zeros_like(v)


def randn(*shape):
    return f32(torch.randn(*shape, dtype=torch.float64))


def main(outdir):
    torch.manual_seed(12)
    # var: (3, 4, 5) over axis 1 unbiased, over -1 biased with keepdim; rows far from 0
    case('var.a', {'x': randn(3, 4, 5)}, lambda x: torch.var(x, 1, unbiased=True))
    case('var.b', {'x': randn(3, 4, 5)}, lambda x: torch.var(x, -1, unbiased=False, keepdim=True))
    case('var.c', {'x': f32(1000 + 0.01 * torch.randn(6, 2, dtype=torch.float64))},
         lambda x: torch.var(x, 0, unbiased=True))
    # cumsum over axis 1 and the last
    case('cumsum.a', {'x': randn(3, 4, 5)}, lambda x: torch.cumsum(x, 1))
    case('cumsum.b', {'x': randn(2, 7)}, lambda x: torch.cumsum(x, -1))
    # argmax: ties go to the first
    xa = randn(4, 6)
    xa[1, 2] = xa[1, 4] = xa[1].max() + 1
    case('argmax.a', {'x': xa}, lambda x: torch.argmax(x, 1).double(), grads=False)
    case('argmax.b', {'x': randn(3, 4, 5)}, lambda x: torch.argmax(x, 0, keepdim=True).double(),
         grads=False)
    # gather (take_along_dim): same dims, repeated indices; idx broadcast; a broadcast
    case('gather.a', {'a': randn(3, 5, 4), 'idx': torch.randint(5, (3, 6, 4))},
         lambda a, idx: torch.take_along_dim(a, idx, 1))
    case('gather.b', {'a': randn(3, 5, 4), 'idx': torch.randint(4, (1, 5, 2))},
         lambda a, idx: torch.take_along_dim(a, idx, -1))
    case('gather.c', {'a': randn(1, 5, 4), 'idx': torch.randint(5, (3, 2, 4))},
         lambda a, idx: torch.take_along_dim(a, idx, 1))
    # index_select along a middle, the first and the last axis
    case('index_select.a', {'a': randn(3, 5, 4), 'idx': torch.tensor([4, 0, 4, 2])},
         lambda a, idx: torch.index_select(a, 1, idx))
    case('index_select.b', {'a': randn(3, 5, 4), 'idx': torch.tensor([2, 2, 1, 0, 1])},
         lambda a, idx: torch.index_select(a, 0, idx))
    case('index_select.c', {'a': randn(3, 5, 4), 'idx': torch.tensor([3, 1])},
         lambda a, idx: torch.index_select(a, -1, idx))
    # stack of three (2, 3) at axis 0, 1 and -1
    for tag, axis in (('a', 0), ('b', 1), ('c', -1)):
        case(f'stack.{tag}', {'x0': randn(2, 3), 'x1': randn(2, 3), 'x2': randn(2, 3)},
             lambda x0, x1, x2, axis=axis: torch.stack([x0, x1, x2], axis))
    # chunk: 7 rows into 3 (3, 3, 1), 5 columns into 2 (3, 2)
    case('chunk.a', {'x': randn(7, 3)}, lambda x: torch.chunk(x, 3, 0))
    case('chunk.b', {'x': randn(2, 5)}, lambda x: torch.chunk(x, 2, 1))
    # expand: (3, 1) -> (2, 3, 4); (4) -> (1, 4) (a view); (2, 1, 3) -> (2, 5, 3) via -1
    case('expand.a', {'x': randn(3, 1)}, lambda x: x.expand(2, 3, 4))
    case('expand.b', {'x': randn(4)}, lambda x: x.expand(1, 4))
    case('expand.c', {'x': randn(2, 1, 3)}, lambda x: x.expand(-1, 5, -1))
    # detach: d/dx (x * detach(x)) = detach(x)
    case('detach.a', {'x': randn(2, 3)}, lambda x: x * x.detach())

    # rms_norm over the last axis, with and without a weight
    def rms(x, w=None, eps=1e-5):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return y * w if w is not None else y
    case('rms_norm.a', {'x': randn(2, 3, 8), 'w': f32(1 + 0.3 * torch.randn(8, dtype=torch.float64))},
         lambda x, w: rms(x, w))
    case('rms_norm.b', {'x': randn(4, 5)}, lambda x: rms(x, None, 1e-6))

    # attention over separate q, k, v: the math PyTorch's scaled_dot_product_attention does
    def attn(q, k, v, mask=None, causal=False, scale=None):
        T, S = q.shape[-2], k.shape[-2]
        s = q @ k.transpose(-2, -1) * scale
        if mask is not None:
            s = s + mask
        if causal:  # top-left aligned: column s > row t dropped
            s = s.masked_fill(torch.ones(T, S, dtype=torch.bool).triu(1), float('-inf'))
        return torch.softmax(s, -1) @ v

    B, H, T, S, hs, hv = 2, 2, 5, 7, 4, 3
    sc = hs ** -0.5
    qkv = lambda: {'q': randn(B, H, T, hs), 'k': randn(B, H, S, hs), 'v': randn(B, H, S, hv)}  # noqa
    case('attn.none', qkv(), lambda q, k, v: attn(q, k, v, scale=sc))
    case('attn.causal', qkv(), lambda q, k, v: attn(q, k, v, causal=True, scale=sc))
    m = randn(T, S)
    m[1, 3] = m[4, 0] = float('-inf')
    case('attn.mask', dict(qkv(), mask=m), lambda q, k, v, mask: attn(q, k, v, mask, scale=sc))
    pad = torch.zeros(B, 1, 1, S, dtype=torch.float64)
    pad[0, 0, 0, 5:] = pad[1, 0, 0, 6:] = float('-inf')  # padding mask: keys past each length
    case('attn.pad_causal', dict(qkv(), mask=pad),
         lambda q, k, v, mask: attn(q, k, v, mask, causal=True, scale=sc))
    # the row-block kernel (T hs > 128), crossing a 64-row block, S > T and S < T, causal
    case('attn.big_s', {'q': randn(1, 1, 66, 2), 'k': randn(1, 1, 70, 2), 'v': randn(1, 1, 70, 2)},
         lambda q, k, v: attn(q, k, v, causal=True, scale=0.7))
    case('attn.big_t', {'q': randn(1, 1, 70, 2), 'k': randn(1, 1, 66, 2), 'v': randn(1, 1, 66, 3),
                        'mask': randn(70, 1)},
         lambda q, k, v, mask: attn(q, k, v, mask, causal=True, scale=0.7))

    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, 'struct_ops.safetensors')
    save_safetensors(path, out, {'note': 'made by tools/fixtures_struct.py with PyTorch ' +
                                 torch.__version__})
    print('wrote', path, os.path.getsize(path), 'bytes')


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures')
