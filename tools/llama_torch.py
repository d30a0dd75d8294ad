#!/usr/bin/env python3
"""PyTorch reference for examples/llama: the same Llama-style character model
(rotary position embeddings in the rotate-half form, RMSNorm, SwiGLU, output
head tied to the token embedding; Meta's parameter names), the same init
(nanoGPT's: N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 n_layer))),
data and training loop (tools/charlm_torch.py).

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/llama_torch.py --max-iters 2000

Its flags and defaults are `llama train`'s.
"""
import argparse
import math
import os
import sys

import torch
import torch.nn as nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(T, hs, theta=10000.0):
    inv = 1.0 / (theta ** (torch.arange(0, hs, 2).float() / hs))
    freqs = torch.outer(torch.arange(T).double(), inv.double())
    emb = torch.cat([freqs, freqs], -1)
    return emb.cos().float(), emb.sin().float()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


class Attention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        self.wq = nn.Linear(n_embd, n_embd, bias=False)
        self.wk = nn.Linear(n_embd, n_embd, bias=False)
        self.wv = nn.Linear(n_embd, n_embd, bias=False)
        self.wo = nn.Linear(n_embd, n_embd, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        H, hs = self.n_head, C // self.n_head
        q, k, v = (w(x).view(B, T, H, hs).transpose(1, 2) for w in (self.wq, self.wk, self.wv))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = (q @ k.transpose(-2, -1)) * hs ** -0.5
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        att = F.softmax(att.masked_fill(~mask, float('-inf')), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        return self.wo(y)


class FeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, ffn_hidden, eps):
        super().__init__()
        self.attention = Attention(n_embd, n_head)
        self.feed_forward = FeedForward(n_embd, ffn_hidden)
        self.attention_norm = RMSNorm(n_embd, eps)
        self.ffn_norm = RMSNorm(n_embd, eps)

    def forward(self, x, cos, sin):
        x = x + self.attention(self.attention_norm(x), cos, sin)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self, vocab_size, block_size, n_embd, n_head, n_layer, ffn_hidden, eps=1e-5,
                 rope_theta=10000.0):
        super().__init__()
        self.block_size = block_size
        self.tok_embeddings = nn.Embedding(vocab_size, n_embd)
        self.layers = nn.ModuleList([Block(n_embd, n_head, ffn_hidden, eps) for _ in range(n_layer)])
        self.norm = RMSNorm(n_embd, eps)
        self.output = nn.Linear(n_embd, vocab_size, bias=False)
        self.output.weight = self.tok_embeddings.weight  # tied
        cos, sin = rope_tables(block_size, n_embd // n_head, rope_theta)
        self.register_buffer('rope_cos', cos, persistent=False)
        self.register_buffer('rope_sin', sin, persistent=False)
        std, resid = 0.02, 0.02 / math.sqrt(2 * n_layer)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, resid if n.endswith(('wo.weight', 'w2.weight')) else std)

    def embedding_ids(self):
        return {id(self.tok_embeddings.weight)}

    def c_named_parameters(self):
        return self.named_parameters()

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.tok_embeddings(idx)
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        for layer in self.layers:
            x = layer(x, cos.to(x.dtype), sin.to(x.dtype))
        logits = self.output(self.norm(x))
        if targets is None:
            return logits, None
        V = logits.shape[-1]
        return logits, F.cross_entropy(logits.view(B * T, V), targets.view(B * T))


DEFAULTS = dict(batch_size=32, block_size=64, grad_accum=1, max_iters=2000, eval_interval=250,
                eval_iters=50, warmup=100, lr=2e-3, min_lr=2e-4, weight_decay=0.1, grad_clip=1.0,
                seed=1337, threads=1)

if __name__ == '__main__':
    from charlm_torch import main
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--n-embd', type=int, default=64)
    ap.add_argument('--n-head', type=int, default=4)
    ap.add_argument('--n-layer', type=int, default=4)
    ap.add_argument('--ffn-hidden', type=int, default=176)
    main(ap, DEFAULTS, lambda a, V: Llama(V, a.block_size, a.n_embd, a.n_head, a.n_layer,
                                          a.ffn_hidden))
