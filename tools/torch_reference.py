#!/usr/bin/env python3
"""PyTorch reference for the GPT example: the same model (gpt_torch.py), data
split, batches and AdamW as `gpt train`, on Debian's python3-torch.

  torch_reference.py --preset tiny                  train, printing gpt.py's eval lines
  torch_reference.py --bench --preset P --steps N --threads T
      prints: bench: preset=P threads=T ms/step=X tokens/s=Y peak_rss_mib=Z gflops=G
  torch_reference.py --sample-bench --preset lecture --tokens N
      times gpt.py's generate() for N characters

OMP_WAIT_POLICY=PASSIVE is set before torch loads: without it PyTorch's and
OpenBLAS's thread pools spin against each other on two cores.
"""
import os
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_torch import GPT  # noqa: E402

PRESETS = {
    'tiny': dict(n_embd=32, n_head=4, n_layer=3, block_size=8, batch_size=32, lr=1e-3, max_iters=5000, dropout=0.0),
    'small': dict(n_embd=64, n_head=4, n_layer=4, block_size=32, batch_size=16, lr=1e-3, max_iters=5000, dropout=0.0),
    'medium': dict(n_embd=128, n_head=4, n_layer=4, block_size=64, batch_size=32, lr=1e-3, max_iters=5000, dropout=0.0),
    'lecture': dict(n_embd=384, n_head=6, n_layer=6, block_size=256, batch_size=64, lr=3e-4, max_iters=5000, dropout=0.2),
}
DEFAULTS = dict(n_embd=384, n_head=6, n_layer=6, block_size=256, batch_size=64, lr=3e-4, max_iters=5000,
                dropout=0.2, eval_interval=500, eval_iters=200)


def step_flops(c, vocab):
    C, T, L = c['n_embd'], c['block_size'], c['n_layer']
    return 3.0 * c['batch_size'] * T * (L * (24.0 * C * C + 4.0 * T * C) + 2.0 * C * vocab)


def make_model(c, vocab):
    return GPT(vocab, c['block_size'], c['n_embd'], c['n_head'], c['n_layer'], c['dropout'])


def bench(c, args):
    vocab = 65
    torch.manual_seed(args.seed)
    model = make_model(c, vocab)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=c['lr'])
    B, T = c['batch_size'], c['block_size']
    times = []
    for s in range(args.warmup + args.steps):
        x = torch.randint(vocab, (B, T))
        y = torch.randint(vocab, (B, T))
        t0 = time.perf_counter()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if s >= args.warmup:
            times.append(dt)
    med = statistics.median(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"bench: preset={args.preset or 'custom'} threads={torch.get_num_threads()} ms/step={med * 1e3:.2f} "
          f"tokens/s={B * T / med:.0f} peak_rss_mib={rss:.0f} gflops={step_flops(c, vocab) / med / 1e9:.1f}")


def sample_bench(c, args):
    torch.manual_seed(args.seed)
    model = make_model(c, 65)
    model.eval()
    idx = torch.zeros((1, 1), dtype=torch.long)
    t0 = time.perf_counter()
    model.generate(idx, args.tokens)
    dt = time.perf_counter() - t0
    print(f"sample: preset={args.preset or 'custom'} threads={torch.get_num_threads()} tokens={args.tokens} "
          f"seconds={dt:.2f} chars/s={args.tokens / dt:.1f}")


def train(c, args):
    torch.manual_seed(args.seed)
    with open(args.data, 'r', encoding='utf-8') as f:
        text = f.read()
    chars = sorted(list(set(text)))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
    n = int(0.9 * len(data))
    splits = {'train': data[:n], 'val': data[n:]}
    B, T = c['batch_size'], c['block_size']

    def get_batch(split):
        d = splits[split]
        ix = torch.randint(len(d) - T, (B,))
        return torch.stack([d[i:i + T] for i in ix]), torch.stack([d[i + 1:i + T + 1] for i in ix])

    model = make_model(c, len(chars))
    opt = torch.optim.AdamW(model.parameters(), lr=c['lr'])
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6} M parameters; {torch.get_num_threads()} threads",
          flush=True)
    t0 = time.time()
    for it in range(c['max_iters']):
        if it % c['eval_interval'] == 0 or it == c['max_iters'] - 1:
            model.eval()
            out = {}
            with torch.no_grad():
                for split in ('train', 'val'):
                    losses = torch.zeros(c['eval_iters'])
                    for k in range(c['eval_iters']):
                        X, Y = get_batch(split)
                        losses[k] = model(X, Y)[1].item()
                    out[split] = losses.mean()
            model.train()
            print(f"step {it}: train loss {out['train']:.4f}, val loss {out['val']:.4f}", flush=True)
        xb, yb = get_batch('train')
        _, loss = model(xb, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    print(f"trained {c['max_iters']} steps in {time.time() - t0:.1f} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--preset', choices=sorted(PRESETS))
    ap.add_argument('--bench', action='store_true')
    ap.add_argument('--sample-bench', action='store_true')
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--tokens', type=int, default=200)
    ap.add_argument('--threads', type=int, default=0, help='torch.set_num_threads (0: leave default)')
    ap.add_argument('--seed', type=int, default=1337)
    ap.add_argument('--data', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'data',
                                                   'tinyshakespeare.txt'))
    for k in ('n_embd', 'n_head', 'n_layer', 'block_size', 'batch_size', 'max_iters', 'eval_interval', 'eval_iters'):
        ap.add_argument('--' + k.replace('_', '-'), type=int)
    for k in ('lr', 'dropout'):
        ap.add_argument('--' + k, type=float)
    args = ap.parse_args()
    c = dict(DEFAULTS)
    if args.preset:
        c.update(PRESETS[args.preset])
    for k in list(c):
        v = getattr(args, k, None)
        if v is not None:
            c[k] = v
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.bench:
        bench(c, args)
    elif args.sample_bench:
        sample_bench(c, args)
    else:
        train(c, args)


if __name__ == '__main__':
    main()
