#!/usr/bin/env python3
"""The small CNN of tools/bench_conv.c timed in PyTorch, and that program run
beside it: ms per forward + backward, printed side by side. Run it on an
otherwise idle machine, after `meson compile -C build`:

    OMP_WAIT_POLICY=PASSIVE python3 tools/bench_conv.py [--threads 1] [--steps 50]
                                                        [--batch 32] [--build build]

Model: x (B, 1, 28, 28) -> conv 3x3 8 ch, pad 1 -> relu -> max_pool 2
  -> conv 3x3 16 ch, pad 1 -> relu -> max_pool 2 -> linear 784 -> 10 -> cross-entropy.
Each side reports the median over the timed steps of wall ms and process CPU ms
per step (CPU time counts every thread, so at 1 thread the two agree).
--torch-only skips the C program.
"""
import argparse
import os
import re
import subprocess
import sys
import time

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r'bench_conv: impl=(\S+) threads=(\d+) batch=(\d+) ms/step=([\d.]+) '
                  r'cpu_ms/step=([\d.]+) fwd_ms=([\d.]+) bwd_ms=([\d.]+)')


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def torch_bench(threads, steps, B):
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    conv1, conv2 = torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Conv2d(8, 16, 3, padding=1)
    fc = torch.nn.Linear(16 * 7 * 7, 10)
    params = list(conv1.parameters()) + list(conv2.parameters()) + list(fc.parameters())
    x = torch.randn(B, 1, 28, 28)
    targets = torch.randint(0, 10, (B,))
    wall, cpu, fwd, bwd = [], [], [], []
    for s in range(-(steps // 5 + 2), steps):
        for p in params:
            p.grad = None
        t0, c0 = time.perf_counter(), time.process_time()
        h = F.max_pool2d(F.relu(conv1(x)), 2)
        h = F.max_pool2d(F.relu(conv2(h)), 2)
        loss = F.cross_entropy(fc(h.reshape(B, -1)), targets)
        t1 = time.perf_counter()
        loss.backward()
        t2, c2 = time.perf_counter(), time.process_time()
        if s >= 0:
            wall.append((t2 - t0) * 1e3)
            cpu.append((c2 - c0) * 1e3)
            fwd.append((t1 - t0) * 1e3)
            bwd.append((t2 - t1) * 1e3)
    print(f'bench_conv: impl=pytorch-{torch.__version__} threads={threads} batch={B} '
          f'ms/step={median(wall):.3f} cpu_ms/step={median(cpu):.3f} fwd_ms={median(fwd):.3f} '
          f'bwd_ms={median(bwd):.3f} loss={loss.item():.4f}', flush=True)
    return median(wall), median(cpu), median(fwd), median(bwd)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--steps', type=int, default=50)
    ap.add_argument('--batch', type=int, default=32)
    ap.add_argument('--build', default=os.path.join(ROOT, 'build'))
    ap.add_argument('--torch-only', action='store_true')
    args = ap.parse_args()
    ours = None
    if not args.torch_only:
        exe = os.path.join(args.build, 'tools', 'bench_conv')
        out = subprocess.run([exe, str(args.threads), str(args.steps), str(args.batch)],
                             capture_output=True, text=True)
        m = LINE.search(out.stdout)
        if out.returncode != 0 or not m:
            sys.exit(f'bench_conv.py: {exe} failed:\n{out.stdout}{out.stderr}')
        print(m.group(0), flush=True)
        ours = [float(m.group(i)) for i in (4, 5, 6, 7)]
    ref = torch_bench(args.threads, args.steps, args.batch)
    if ours:
        print(f'bench_conv: threads={args.threads} batch={args.batch} ms/step agrad {ours[0]:.3f} '
              f'pytorch {ref[0]:.3f} ratio {ours[0] / ref[0]:.2f} | cpu ms agrad {ours[1]:.3f} '
              f'pytorch {ref[1]:.3f} | fwd {ours[2]:.3f} vs {ref[2]:.3f} | bwd {ours[3]:.3f} vs '
              f'{ref[3]:.3f}')


if __name__ == '__main__':
    main()
