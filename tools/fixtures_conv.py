#!/usr/bin/env python3
"""Writes tests/fixtures/conv_ops.safetensors, PyTorch's conv1d/conv2d and
max/avg pooling on small odd shapes, for tests/test_conv_parity.c. Run once;
commit the output:

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/fixtures_conv.py tests/fixtures

For case i of op (conv1d, conv2d, max_pool1d, max_pool2d, avg_pool1d,
avg_pool2d), tensors named '<op>.<i>.<what>':
  x, w, b (conv; b only when the case has a bias): the inputs
  opts: conv [stride h, stride w, pad h, pad w, dil h, dil w, groups],
        pool [kernel h, kernel w, stride h, stride w, pad h, pad w]
        (the 1-d ops use the first of each pair; stride 0 means the kernel)
  gy: the output grad backward is seeded with
  y, gx, gw, gb: PyTorch's output and grads
Computed in float64 from float32 inputs, stored as float32.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_torch import save_safetensors  # noqa: E402

# (N, C_in, spatial, C_out, kernel, stride, padding, dilation, groups, bias)
CONV2D = [
    (2, 3, (5, 4), 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    (1, 4, (8, 7), 6, (3, 2), (2, 1), (1, 0), (2, 1), 2, True),    # groups and dilation
    (1, 4, (7, 7), 8, (3, 3), (2, 2), (2, 2), (1, 1), 4, False),   # depthwise, wide padding
    (2, 5, (3, 3), 3, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),    # 1x1: no im2col
    (1, 6, (8, 7), 4, (2, 3), (3, 2), (1, 1), (3, 2), 2, True),   # everything at once
    (2, 3, (4, 5), 2, (4, 5), (1, 1), (0, 0), (1, 1), 1, True),    # kernel = input: 1x1 output
]
CONV1D = [
    (2, 4, 11, 6, 3, 2, 1, 2, 2, True),
    (2, 3, 8, 5, 5, 1, 0, 1, 1, False),
    (1, 6, 13, 6, 3, 1, 3, 3, 3, True),
    (1, 2, 6, 4, 1, 2, 0, 1, 1, True),
]
# (N, C, spatial, kernel, stride (None: kernel), padding, integer data: ties)
POOL2D = [
    ((1, 3, 7, 9), (3, 2), (2, 1), (1, 0), False),
    ((2, 2, 6, 6), (2, 2), None, (0, 0), False),
    ((1, 3, 6, 7), (3, 3), (2, 2), (1, 1), True),
    ((2, 2, 5, 5), (4, 3), (1, 2), (2, 1), False),
]
POOL1D = [
    ((1, 3, 11), 3, 2, 1, False),
    ((2, 2, 8), 2, None, 0, True),
    ((1, 4, 9), 5, 1, 2, False),
]


def f32(t):
    """t rounded to float32, as float64: exactly what the C test reads"""
    return t.float().double()


def conv_case(out, name, nd, case):
    n, cin, sp, cout, k, s, p, d, groups, bias = case
    sp = sp if nd == 2 else (sp,)
    k = k if nd == 2 else (k,)
    x = f32(torch.randn(n, cin, *sp)).requires_grad_(True)
    w = f32(torch.randn(cout, cin // groups, *k) * 0.5).requires_grad_(True)
    b = f32(torch.randn(cout)).requires_grad_(True) if bias else None
    conv = F.conv2d if nd == 2 else F.conv1d
    y = conv(x, w, b, stride=s, padding=p, dilation=d, groups=groups)
    gy = f32(torch.randn_like(y))
    y.backward(gy)
    pair = (lambda v: list(v)) if nd == 2 else (lambda v: [v, 0])
    out[name + '.x'] = x
    out[name + '.w'] = w
    if bias:
        out[name + '.b'] = b
        out[name + '.gb'] = b.grad
    out[name + '.opts'] = torch.tensor(pair(s) + pair(p) + pair(d) + [groups], dtype=torch.float64)
    out[name + '.gy'] = gy
    out[name + '.y'] = y
    out[name + '.gx'] = x.grad
    out[name + '.gw'] = w.grad


def pool_case(out, name, nd, kind, case):
    shape, k, s, p, ties = case
    x = torch.randint(0, 3, shape).double() if ties else f32(torch.randn(*shape))
    x.requires_grad_(True)
    if kind == 'max':
        fn = F.max_pool2d if nd == 2 else F.max_pool1d
    else:
        fn = F.avg_pool2d if nd == 2 else F.avg_pool1d
    y = fn(x, k, s, p)
    gy = f32(torch.randn_like(y))
    y.backward(gy)
    pair = (lambda v: list(v)) if nd == 2 else (lambda v: [v, 0])
    zero = (0, 0) if nd == 2 else 0
    out[name + '.x'] = x
    out[name + '.opts'] = torch.tensor(pair(k) + pair(s if s is not None else zero) + pair(p),
                                       dtype=torch.float64)
    out[name + '.gy'] = gy
    out[name + '.y'] = y
    out[name + '.gx'] = x.grad


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures'
    torch.manual_seed(2024)
    out = {}
    for i, c in enumerate(CONV2D):
        conv_case(out, f'conv2d.{i}', 2, c)
    for i, c in enumerate(CONV1D):
        conv_case(out, f'conv1d.{i}', 1, c)
    for kind in ('max', 'avg'):
        for i, c in enumerate(POOL2D):
            pool_case(out, f'{kind}_pool2d.{i}', 2, kind, c)
        for i, c in enumerate(POOL1D):
            pool_case(out, f'{kind}_pool1d.{i}', 1, kind, c)
    meta = {'note': 'made by tools/fixtures_conv.py with PyTorch ' + torch.__version__}
    save_safetensors(os.path.join(outdir, 'conv_ops.safetensors'), out, meta)


if __name__ == '__main__':
    main()
