"""The lecture's GPT (Karpathy's ng-video-lecture gpt.py) as a configurable
PyTorch module, for fixtures, reference runs and benchmarks.

Same modules and state_dict names as gpt.py. One deliberate difference,
shared with the C model: attention scores are scaled by head_size**-0.5
(as in the video and nanoGPT) where the repository's gpt.py uses n_embd**-0.5.

Run as a program it times training steps in FP32 or under bf16 autocast, the
PyTorch side of `gpt bench --precision bf16` (run with /usr/bin/python3):

  gpt_torch.py --probe          what this PyTorch does with bf16 on this CPU: oneDNN
                                present, the kernel autocast's matmul runs on
                                (ONEDNN_VERBOSE), and a 1024^3 matmul in FP32, in
                                bf16 tensors and under autocast, in GFLOP/s
  gpt_torch.py --bench --preset P --precision fp32|bf16 [--steps N] [--threads T]
      prints: bench: preset=P threads=T ms/step=X tokens/s=Y peak_rss_mib=Z gflops=G precision=bf16
      (the same model, AdamW and random batches as tools/torch_reference.py --bench;
      bf16 is torch.autocast('cpu', dtype=torch.bfloat16) around the forward and
      loss, as PyTorch's recipe: master weights, grads and AdamW stay FP32)
"""
import os
if __name__ == '__main__':
    os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')  # before torch loads: see torch_reference.py

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402


class Head(nn.Module):
    def __init__(self, n_embd, head_size, block_size, dropout):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer('tril', torch.tril(torch.ones(block_size, block_size)))
        self.dropout = nn.Dropout(dropout)
        self.head_size = head_size

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)
        q = self.query(x)
        wei = q @ k.transpose(-2, -1) * self.head_size ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float('-inf'))
        wei = F.softmax(wei, dim=-1)
        wei = self.dropout(wei)
        v = self.value(x)
        return wei @ v


class MultiHeadAttention(nn.Module):
    def __init__(self, n_embd, num_heads, block_size, dropout):
        super().__init__()
        hs = n_embd // num_heads
        self.heads = nn.ModuleList([Head(n_embd, hs, block_size, dropout) for _ in range(num_heads)])
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        out = torch.cat([h(x) for h in self.heads], dim=-1)
        return self.dropout(self.proj(out))


class FeedFoward(nn.Module):
    def __init__(self, n_embd, dropout):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.ReLU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(dropout),
        )

    def forward(self, x):
        return self.net(x)


class Block(nn.Module):
    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        self.sa = MultiHeadAttention(n_embd, n_head, block_size, dropout)
        self.ffwd = FeedFoward(n_embd, dropout)
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)

    def forward(self, x):
        x = x + self.sa(self.ln1(x))
        x = x + self.ffwd(self.ln2(x))
        return x


class GPT(nn.Module):
    def __init__(self, vocab_size, block_size, n_embd, n_head, n_layer, dropout):
        super().__init__()
        self.block_size = block_size
        self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
        self.position_embedding_table = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, block_size, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        tok_emb = self.token_embedding_table(idx)
        pos_emb = self.position_embedding_table(torch.arange(T, device=idx.device))
        x = self.blocks(tok_emb + pos_emb)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits, None
        B, T, C = logits.shape
        return logits, F.cross_entropy(logits.view(B * T, C), targets.view(B * T))

    @torch.no_grad()
    def generate(self, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.block_size:])
            probs = F.softmax(logits[:, -1, :], dim=-1)
            idx = torch.cat((idx, torch.multinomial(probs, num_samples=1)), dim=1)
        return idx


def save_safetensors(path, tensors, metadata=None):
    """Writes float32 tensors in the safetensors format (written here by hand:
    Debian has no safetensors package). tensors: dict name -> torch tensor."""
    import json
    import struct
    header, blobs, off = {}, [], 0
    if metadata:
        header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().astype('<f4').tobytes()
        header[name] = {'dtype': 'F32', 'shape': list(t.shape), 'data_offsets': [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    """Reads a safetensors file of F32 tensors: (dict name -> tensor, metadata)."""
    import json
    import struct
    import numpy as np
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop('__metadata__', {})
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        b, end = e['data_offsets']
        assert e['dtype'] == 'F32', name
        out[name] = torch.from_numpy(np.frombuffer(data[b:end], dtype='<f4').copy()).reshape(e['shape'])
    return out, meta


def _probe():
    """What Debian's PyTorch does with bf16 here (see the module's docstring)."""
    import subprocess
    import sys
    import time
    print(f'torch {torch.__version__}; mkldnn (oneDNN) available: {torch.backends.mkldnn.is_available()}; '
          f'threads {torch.get_num_threads()}')
    code = ('import torch; torch.set_num_threads(1); a = torch.randn(256, 256)\n'
            'with torch.autocast("cpu", dtype=torch.bfloat16):\n    c = a @ a\n')
    env = dict(os.environ, ONEDNN_VERBOSE='1', DNNL_VERBOSE='1')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env).stdout
    kernels = sorted({line.split(',')[4] for line in out.splitlines()
                      if line.startswith(('onednn_verbose,exec', 'dnnl_verbose,exec'))})
    isa = [line.split(',', 3)[3] for line in out.splitlines() if ',isa:' in line]
    print(f'autocast matmul: oneDNN {", ".join(kernels) or "not used (no verbose lines)"}'
          f'{"; ISA " + isa[0].replace("isa:", "") if isa else ""}')
    n = 1024
    a, b = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a.bfloat16(), b.bfloat16()

    def best(f, reps=5):
        f()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return 2.0 * n ** 3 / min(ts) / 1e9

    def auto():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            return a @ b
    print(f'matmul {n}^3 at {torch.get_num_threads()} threads: fp32 {best(lambda: a @ b):.1f} GFLOP/s, '
          f'bf16 tensors {best(lambda: a16 @ b16):.1f}, autocast {best(auto):.1f}')


def _bench(args):
    import contextlib
    import resource
    import statistics
    import sys
    import time
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_reference import DEFAULTS, PRESETS, step_flops
    c = dict(DEFAULTS, **PRESETS[args.preset]) if args.preset else dict(DEFAULTS)
    vocab = 65
    torch.manual_seed(args.seed)
    model = GPT(vocab, c['block_size'], c['n_embd'], c['n_head'], c['n_layer'], c['dropout'])
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=c['lr'])
    B, T = c['batch_size'], c['block_size']

    def autocast():
        if args.precision == 'bf16':
            return torch.autocast('cpu', dtype=torch.bfloat16)
        return contextlib.nullcontext()
    times = []
    for s in range(args.warmup + args.steps):
        x = torch.randint(vocab, (B, T))
        y = torch.randint(vocab, (B, T))
        t0 = time.perf_counter()
        with autocast():
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
          f"tokens/s={B * T / med:.0f} peak_rss_mib={rss:.0f} gflops={step_flops(c, vocab) / med / 1e9:.1f} "
          f"precision={args.precision}", flush=True)
    print(f'bench: last loss {loss.item():.4f}', file=sys.stderr)


if __name__ == '__main__':
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--probe', action='store_true', help="what this PyTorch does with bf16 on this CPU")
    ap.add_argument('--bench', action='store_true', help='time training steps')
    ap.add_argument('--preset', choices=['tiny', 'small', 'medium', 'lecture'])
    ap.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32')
    ap.add_argument('--steps', type=int, default=10)
    ap.add_argument('--warmup', type=int, default=2)
    ap.add_argument('--threads', type=int, default=0, help='torch threads, 0 for its default')
    ap.add_argument('--seed', type=int, default=1337)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.probe:
        _probe()
    if a.bench:
        _bench(a)
    if not a.probe and not a.bench:
        ap.error('give --probe or --bench')
