#!/usr/bin/env python3
"""Thread scaling and the load check, with `gpt bench`, as README tables.

    python3 tools/bench_threads.py [--presets tiny,small,medium] [--threads 1,2,4,8]
                                   [--load-presets tiny,small,medium] [--spinners 0,2]
                                   [--repeat 5] [--build build] [--base OTHER_BUILD [--base-load]]

Scaling: each preset at each --threads count. Load check: each preset with
its default thread count, --threads 1, 2 and 8, beside 0 and 2 busy shells
(tools/load.sh N: `sh -c 'while :; do :; done'`), and the two ratios the
README quotes: default against the better of 1 and 2 threads, and 8 threads
(oversubscribed on 2 cores) against 2. --base times another build's gpt
(say, main before a change) the same way on the idle machine, beside this
one, for an idle before/after row; with --base-load also its default under
each load (slow where it collapses: budget minutes for medium).

Every configuration runs --repeat times; the repeats are interleaved (each
round runs every configuration once, each load level in turn), and the
median of each configuration counts, so a busy or quiet spell of the host
hits all of them alike. Run it on an otherwise idle machine.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = {'tiny': 200, 'small': 100, 'medium': 20, 'lecture': 3}
LINE = re.compile(r'bench: preset=(\S+) threads=(\d+) ms/step=([\d.]+)')
IN_USE = re.compile(r'threads in use (\d+)')


def bench(gpt, preset, threads, steps):
    cmd = [gpt, 'bench', '--preset', preset, '--steps', str(steps)]
    if threads:
        cmd += ['--threads', str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    m = LINE.search(out.stdout)
    if out.returncode != 0 or not m:
        sys.exit(f'bench_threads: {" ".join(cmd)} failed:\n{out.stdout}{out.stderr}')
    u = IN_USE.search(out.stderr)
    return float(m.group(3)), int(m.group(2)), int(u.group(1)) if u else None


class Load:
    """n busy shells for the duration of a with block (tools/load.sh n)."""

    def __init__(self, n):
        self.n = n
        self.proc = None

    def __enter__(self):
        if self.n:
            self.proc = subprocess.Popen([os.path.join(ROOT, 'tools', 'load.sh'), str(self.n)])
            time.sleep(0.5)  # the shells are running before the first step
        return self

    def __exit__(self, *exc):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait()


def ints(s):
    return [int(x) for x in s.split(',') if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--presets', default='tiny,small,medium', help='presets for the scaling table')
    ap.add_argument('--threads', default=None,
                    help='thread counts for the scaling table (default 1,2,4,... up to the CPUs)')
    ap.add_argument('--load-presets', default='tiny,small,medium',
                    help='presets for the load check ("" to skip it)')
    ap.add_argument('--spinners', default='0,2', help='busy shells beside the load check')
    ap.add_argument('--repeat', type=int, default=5, help='interleaved rounds; medians count')
    ap.add_argument('--steps', type=int, help='timed steps per run (default per preset)')
    ap.add_argument('--build', default=os.path.join(ROOT, 'build'))
    ap.add_argument('--base', help='another build directory to time beside this one (idle)')
    ap.add_argument('--base-load', action='store_true',
                    help='also time the --base build\'s default threads in the load check')
    args = ap.parse_args()

    gpt = os.path.join(args.build, 'examples', 'gpt', 'gpt')
    cpus = os.cpu_count() or 1
    if args.threads:
        counts = ints(args.threads)
    else:
        counts, n = [], 1
        while n < cpus:
            counts.append(n)
            n *= 2
        counts.append(cpus)
    presets = [p for p in args.presets.split(',') if p]
    load_presets = [p for p in args.load_presets.split(',') if p]
    spinners = ints(args.spinners)
    load_cfgs = [('default', 0), ('1', 1), ('2', 2), ('8', 8)]

    # (table, preset, load, config) -> [ms, ...]; in_use likewise
    runs, in_use = {}, {}

    def record(key, r):
        runs.setdefault(key, []).append(r[0])
        if r[2] is not None:
            in_use.setdefault(key, []).append(r[2])

    print(f'bench_threads: {cpus} CPUs, {args.repeat} interleaved rounds, {gpt}', flush=True)
    for rnd in range(args.repeat):
        print(f'round {rnd + 1}/{args.repeat}', flush=True)
        for p in presets:
            steps = args.steps or STEPS.get(p, 10)
            for t in counts:
                record(('scale', p, 0, t), bench(gpt, p, t, steps))
            if args.base:
                base = os.path.join(args.base, 'examples', 'gpt', 'gpt')
                record(('base', p, 0, 'before'), bench(base, p, 0, steps))
                record(('base', p, 0, 'now'), bench(gpt, p, 0, steps))
        for n in spinners:
            with Load(n):
                for p in load_presets:
                    steps = args.steps or STEPS.get(p, 10)
                    for name, t in load_cfgs:
                        record(('load', p, n, name), bench(gpt, p, t, steps))
                    if args.base and args.base_load:
                        base = os.path.join(args.base, 'examples', 'gpt', 'gpt')
                        record(('load', p, n, 'before'), bench(base, p, 0, steps))

    med = {k: statistics.median(v) for k, v in runs.items()}

    if presets:
        print('\nThread scaling (ms/step, median; speed-up against 1 thread):\n')
        print('| preset | ' + ' | '.join(f'{t} thread' + ('s' if t > 1 else '') for t in counts) + ' |')
        print('|---' * (len(counts) + 1) + '|')
        for p in presets:
            one = med.get(('scale', p, 0, counts[0]))
            cells = []
            for t in counts:
                v = med[('scale', p, 0, t)]
                cells.append(f'{v:.2f}' + (f' ({one / v:.2f}x)' if t != counts[0] and counts[0] == 1 else ''))
            print(f'| {p} | ' + ' | '.join(cells) + ' |')

    if load_presets:
        print('\nUnder load (ms/step, median; N busy shells beside it; "in use": the '
              'threads the pool used at the end, median):\n')
        before = args.base and args.base_load
        print('| preset | busy shells | default | --threads 1 | --threads 2 | --threads 8 | '
              'default / best of 1, 2 | 8 / 2 |' + (' before: default |' if before else ''))
        print('|---|---|---|---|---|---|---|---|' + ('---|' if before else ''))
        for p in load_presets:
            for n in spinners:
                v = {name: med[('load', p, n, name)] for name, _ in load_cfgs}
                u = {name: in_use.get(('load', p, n, name)) for name, _ in load_cfgs}

                def cell(name):
                    s = f'{v[name]:.2f}'
                    if u[name]:
                        s += f' (in use {statistics.median(u[name]):g})'
                    return s
                best = min(v['1'], v['2'])
                print(f'| {p} | {n} | ' + ' | '.join(cell(name) for name, _ in load_cfgs) +
                      f' | {v["default"] / best:.2f}x | {v["8"] / v["2"]:.2f}x |' +
                      (f' {med[("load", p, n, "before")]:.2f} |' if before else ''))

    if args.base:
        print(f'\nIdle, default threads, {args.base} (before) against {args.build} (now):\n')
        print('| preset | before ms/step | now ms/step | now / before |')
        print('|---|---|---|---|')
        for p in presets:
            b, n = med[('base', p, 0, 'before')], med[('base', p, 0, 'now')]
            print(f'| {p} | {b:.2f} | {n:.2f} | {n / b:.3f} |')


if __name__ == '__main__':
    main()
