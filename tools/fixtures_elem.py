#!/usr/bin/env python3
"""Writes tests/fixtures/elem_ops.safetensors, PyTorch's values for the
elementwise ops that tests/test_elem_parity.c compares against:

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/fixtures_elem.py tests/fixtures

For each case <name>: its float32 inputs (<name>.x, or .a/.b, .cond), an
upstream gradient <name>.g, and what PyTorch computes from those same float32
values in float64: the output <name>.y and the gradient of sum(y * g) with
respect to each input (<name>.dx, or .da/.db). clamp's bounds are
<name>.bounds = (min, max), either of which may be +-inf.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_torch import save_safetensors  # noqa: E402


def grid(lo, hi, n):
    return torch.linspace(lo, hi, n, dtype=torch.float32)


def unary_inputs():
    """42 values: a grid over [-6, 6] without exact kinks, a few far ones"""
    x = torch.cat([grid(-6.0, 6.0, 30) + 0.01,
                   torch.tensor([-30.0, -15.0, -9.5, -0.3, -1e-3, 1e-3, 0.25, 9.5, 15.0, 19.9, 20.5,
                                 30.0])])
    return x.float()


def main(outdir):
    gen = torch.Generator().manual_seed(2024)
    out = {}

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float32)

    def unary(name, fn, x):
        x = x.float()
        g = randn(*x.shape)
        xd = x.double().requires_grad_(True)
        y = fn(xd)
        (y * g.double()).sum().backward()
        out[name + '.x'] = x
        out[name + '.g'] = g
        out[name + '.y'] = y.detach()
        out[name + '.dx'] = xd.grad

    xs = unary_inputs()
    unary('exp', torch.exp, grid(-20.0, 20.0, 41) + 0.05)
    unary('log', torch.log, torch.cat([grid(0.001, 1.0, 20), grid(1.5, 100.0, 20)]))
    unary('tanh', torch.tanh, xs)
    unary('sigmoid', torch.sigmoid, xs)
    unary('gelu', lambda t: F.gelu(t, approximate='tanh'), xs)
    unary('gelu_erf', lambda t: F.gelu(t, approximate='none'), xs)
    unary('silu', F.silu, xs)
    unary('softplus', lambda t: F.softplus(t, beta=1, threshold=20), xs)
    unary('abs', torch.abs, xs)
    trig = torch.cat([xs, torch.tensor([-1000.5, 355.0, 12000.0, 13000.0, -20000.0, 1e6, -3.5e7])])
    unary('sin', torch.sin, trig)
    unary('cos', torch.cos, trig)
    inf = math.inf
    for i, (lo, hi) in enumerate([(-1.0, 1.0), (-inf, 0.5), (0.2, inf), (1.0, -1.0)]):
        name = 'clamp%d' % i
        unary(name, lambda t: torch.clamp(t, lo, hi), grid(-3.0, 3.0, 25) + 0.013)
        out[name + '.bounds'] = torch.tensor([lo, hi], dtype=torch.float32)

    def binary(name, fn, a, b, cond=None):
        a, b = a.float(), b.float()
        ad = a.double().requires_grad_(True)
        bd = b.double().requires_grad_(True)
        y = fn(ad, bd) if cond is None else fn(cond.bool(), ad, bd)
        g = randn(*y.shape)
        (y * g.double()).sum().backward()
        if cond is not None:
            out[name + '.cond'] = cond.float()
        out[name + '.a'] = a
        out[name + '.b'] = b
        out[name + '.g'] = g
        out[name + '.y'] = y.detach()
        out[name + '.da'] = ad.grad
        out[name + '.db'] = bd.grad

    # ties: equal values in a and b at some places, so each gets half the grad
    a = torch.round(randn(3, 1, 4) * 2) / 2
    b = torch.round(randn(5, 4) * 2) / 2
    binary('maximum', torch.maximum, a, b)
    binary('minimum', torch.minimum, a, b)
    a = torch.round(randn(4, 6) * 2) / 2
    b = torch.round(randn(4, 6) * 2) / 2
    binary('maximum_same', torch.maximum, a, b)
    binary('minimum_same', torch.minimum, a, b)
    cond = (randn(3, 1) > 0).float()
    cond[0, 0], cond[1, 0] = 1.0, 0.0
    binary('where', torch.where, randn(3, 4), randn(4), cond)
    cond = (randn(2, 3, 5) > 0).float()
    binary('where_same', torch.where, randn(2, 3, 5), randn(2, 3, 5), cond)

    meta = {'note': 'made by tools/fixtures_elem.py with PyTorch ' + torch.__version__}
    save_safetensors(os.path.join(outdir, 'elem_ops.safetensors'), out, meta)


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'tests/fixtures')
