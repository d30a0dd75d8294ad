#!/usr/bin/env python3
"""Runs `gpt bench` and the PyTorch reference (tools/torch_reference.py --bench)
back to back on the same presets and prints the ratios. Never run two
benchmarks at once; the machine should be otherwise idle.

    python3 tools/bench_compare.py [--presets tiny,small,medium,lecture] [--threads 2]
                                   [--build build] [--scaling] [--peak] [--precision fp32,bf16]

Each configuration runs --repeat times, interleaved, and its median run
counts. For PyTorch the best of 1 and 2 threads counts (its thread pools
contend at 2); torch_reference.py sets OMP_WAIT_POLICY=PASSIVE. --scaling also times
this program at 1 thread; --peak measures the FMA peak (tools/fma_peak) and
prints the share of it each run reaches. --precision bf16 times `gpt bench
--precision bf16` against PyTorch's bf16 autocast (tools/gpt_torch.py --bench
--precision bf16); fp32,bf16 gives a row of each per preset, labelled
"preset/bf16", and the bf16 rows' ratio to this program's fp32 step.
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = {'tiny': 200, 'small': 100, 'medium': 30, 'lecture': 3}
LINE = re.compile(r'bench: preset=(\S+) threads=(\d+) ms/step=([\d.]+) tokens/s=([\d.]+) '
                  r'peak_rss_mib=([\d.]+) gflops=([\d.]+)')


def run(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f'bench_compare: {" ".join(cmd)} failed:\n{out.stderr}')
    m = LINE.search(out.stdout)
    if not m:
        sys.exit(f'bench_compare: no bench line from {" ".join(cmd)}:\n{out.stdout}')
    print('  ' + m.group(0), flush=True)
    return dict(ms=float(m.group(3)), tps=float(m.group(4)), rss=float(m.group(5)), gflops=float(m.group(6)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--presets', default='tiny,small,medium,lecture')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--build', default=os.path.join(ROOT, 'build'))
    ap.add_argument('--steps', type=int, help='timed steps (default per preset)')
    ap.add_argument('--torch-threads', default='1,2')
    ap.add_argument('--scaling', action='store_true', help='also time this program at 1 thread')
    ap.add_argument('--peak', action='store_true', help='measure the FMA peak for the share of peak')
    ap.add_argument('--precision', default='fp32',
                    help='fp32, bf16 or fp32,bf16: the products\' precision, ours and PyTorch\'s (autocast)')
    ap.add_argument('--repeat', type=int, default=3,
                    help='runs of each configuration, interleaved; the median run counts (default 3)')
    args = ap.parse_args()
    gpt = os.path.join(args.build, 'examples', 'gpt', 'gpt')
    ref = os.path.join(ROOT, 'tools', 'torch_reference.py')
    peak = None
    if args.peak:
        out = subprocess.run([os.path.join(args.build, 'tools', 'fma_peak'), str(args.threads)],
                             capture_output=True, text=True).stdout
        print('  ' + out.strip())
        peak = {'fp32': float(re.search(r'fma_peak:.*? gflops=([\d.]+)', out).group(1))}
        m = re.search(r'bf16_peak:.*? gflops=([\d.]+)', out)
        if m:  # the bf16 rows' share is of the vdpbf16ps peak
            peak['bf16'] = float(m.group(1))
    precisions = args.precision.split(',')
    if any(x not in ('fp32', 'bf16') for x in precisions):
        sys.exit(f'bench_compare: --precision {args.precision}: give fp32, bf16 or fp32,bf16')
    torch_bf16 = os.path.join(ROOT, 'tools', 'gpt_torch.py')
    rows, fp32_ms = [], {}
    for p in args.presets.split(','):
        steps = str(args.steps or STEPS.get(p, 10))
        print(f'{p}:', flush=True)
        configs = []
        for prec in precisions:
            tag = '' if prec == 'fp32' else '/' + prec
            ours = [gpt, 'bench', '--preset', p, '--steps', steps, '--threads', str(args.threads)]
            extra = [] if prec == 'fp32' else ['--precision', prec]
            configs.append(('ours' + tag, ours + extra))
            if args.scaling:
                configs.append(('ours1' + tag, ours[:-1] + ['1'] + extra))
            for t in args.torch_threads.split(','):
                cmd = (['/usr/bin/python3', ref, '--bench'] if prec == 'fp32' else
                       ['/usr/bin/python3', torch_bf16, '--bench', '--precision', prec])
                configs.append(('torch' + t + tag, cmd + ['--preset', p, '--steps', steps, '--threads', t]))
        runs = {name: [] for name, _ in configs}
        for _ in range(args.repeat):  # interleaved, so a noisy spell hits every configuration
            for name, cmd in configs:
                runs[name].append(run(cmd))
        med = {name: sorted(r, key=lambda x: x['ms'])[len(r) // 2] for name, r in runs.items()}
        for prec in precisions:
            tag = '' if prec == 'fp32' else '/' + prec
            best_k = max((k for k in med if k.startswith('torch') and k.endswith(tag) and
                          (tag or '/' not in k)), key=lambda k: med[k]['tps'])
            best = dict(med[best_k], threads=best_k[len('torch'):len(best_k) - len(tag)])
            rows.append((p + tag, med['ours' + tag], best, med.get('ours1' + tag)))
            if prec == 'fp32':
                fp32_ms[p] = med['ours']['ms']
    print()
    print('| preset | ms/step (ours / PyTorch) | tokens/s (ours / PyTorch) | speed ratio | peak RSS MiB (ours / PyTorch) | RSS ratio | GFLOP/s ours' +
          (' | share of peak' if peak else '') + (' | 2 vs 1 thread' if args.scaling else '') + ' |')
    print('|---|---|---|---|---|---|---' + ('|---' if peak else '') + ('|---' if args.scaling else '') + '|')
    for p, o, t, o1 in rows:
        line = (f"| {p} | {o['ms']:.1f} / {t['ms']:.1f} ({t['threads']}t) | {o['tps']:.0f} / {t['tps']:.0f} | {o['tps'] / t['tps']:.2f}x | "
                f"{o['rss']:.0f} / {t['rss']:.0f} | {o['rss'] / t['rss']:.2f} | {o['gflops']:.1f}")
        if peak:
            pk = peak.get(p.split('/')[1] if '/' in p else 'fp32')
            line += f" | {100 * o['gflops'] / pk:.0f}%" if pk else ' | -'
        if args.scaling:
            line += f" | {o['tps'] / o1['tps']:.2f}x"
        print(line + ' |')
    for p, o, _, _ in rows:
        base = p.split('/')[0]
        if '/' in p and base in fp32_ms:
            print(f'{p}: this program\'s step {fp32_ms[base] / o["ms"]:.2f}x as fast as its fp32 step')


if __name__ == '__main__':
    main()
