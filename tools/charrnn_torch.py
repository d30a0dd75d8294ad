#!/usr/bin/env python3
"""PyTorch reference for examples/charrnn: the same character-level GRU or
LSTM (embedding, stacked cells, linear head), inits, data and training loop
(tools/charlm_torch.py), with PyTorch's fused torch.nn.GRU / LSTM.

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/charrnn_torch.py --max-iters 2000

Its flags and defaults are `charrnn train`'s. The C model names the cells'
weights as a stack of torch.nn.GRUCell (cells.0.weight_ih); torch.nn.GRU names
them weight_ih_l0: c_named_parameters() maps one onto the other.
"""
import argparse
import os
import sys

import torch
import torch.nn as nn
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class CharRNN(nn.Module):
    def __init__(self, vocab_size, n_embd, hidden, n_layer, cell):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, n_embd)
        Rnn = nn.GRU if cell == 'gru' else nn.LSTM
        self.rnn = Rnn(n_embd, hidden, n_layer)  # time-major, zero initial state
        self.head = nn.Linear(hidden, vocab_size)

    def embedding_ids(self):
        return {id(self.embedding.weight)}

    def c_named_parameters(self):
        """(the C model's name, parameter): rnn.weight_ih_l0 -> cells.0.weight_ih"""
        for n, p in self.named_parameters():
            if n.startswith('rnn.'):
                base, layer = n[4:].rsplit('_l', 1)
                n = f'cells.{layer}.{base}'
            yield n, p

    def forward(self, idx, targets=None):
        x = self.embedding(idx).transpose(0, 1)      # (T, B, E)
        y, _ = self.rnn(x)                            # (T, B, H)
        logits = self.head(y).transpose(0, 1)         # (B, T, V)
        if targets is None:
            return logits, None
        B, T, V = logits.shape
        return logits, F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))


DEFAULTS = dict(batch_size=32, block_size=64, grad_accum=1, max_iters=2000, eval_interval=250,
                eval_iters=50, warmup=50, lr=3e-3, min_lr=3e-4, weight_decay=0.1, grad_clip=1.0,
                seed=1337, threads=1)

if __name__ == '__main__':
    from charlm_torch import main
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cell', default='gru', choices=['gru', 'lstm'])
    ap.add_argument('--n-embd', type=int, default=32)
    ap.add_argument('--hidden', type=int, default=128)
    ap.add_argument('--n-layer', type=int, default=1)
    main(ap, DEFAULTS, lambda a, V: CharRNN(V, a.n_embd, a.hidden, a.n_layer, a.cell))
