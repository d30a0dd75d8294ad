#!/usr/bin/env python3
"""Trains a character-level example and its PyTorch twin one after the other
(single-threaded, the same flags) and prints their losses side by side as a
README table row, with each one's time per step.

    /usr/bin/python3 tools/charlm_compare.py llama            # examples/llama vs tools/llama_torch.py
    /usr/bin/python3 tools/charlm_compare.py charrnn --cell lstm
    /usr/bin/python3 tools/charlm_compare.py llama --max-iters 500 --build build

Extra flags go to both programs. Prints one line per program as it finishes
(`c:` / `torch:`), then the row:
    | model | steps | this program: train / val, ms/step | PyTorch: ... | val difference |
ms/step is the training steps' CPU time (one thread, evaluations excluded).
"""
import os
import re
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd):
    env = dict(os.environ, OMP_WAIT_POLICY='PASSIVE', OMP_NUM_THREADS='1')
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f'{" ".join(cmd)} failed ({out.returncode}):\n{out.stderr}')
    steps = re.findall(r'^step (\d+): train loss ([\d.]+), val loss ([\d.]+)$', out.stdout, re.M)
    trained = re.search(r'^trained (\d+) steps: ([\d.]+) ms/step \(wall\), ([\d.]+) ms/step \(CPU',
                        out.stdout, re.M)
    if not steps or not trained:
        sys.exit(f'no loss or timing lines from {" ".join(cmd)}:\n{out.stdout}')
    step, tr, va = steps[-1]
    return int(step), float(tr), float(va), float(trained.group(3)), float(trained.group(2))


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in ('llama', 'charrnn'):
        sys.exit(__doc__)
    model, extra = sys.argv[1], sys.argv[2:]
    build = 'build'
    if '--build' in extra:
        i = extra.index('--build')
        build = extra[i + 1]
        del extra[i:i + 2]
    flags = ['--threads', '1'] + extra
    c_cmd = [os.path.join(build, 'examples', model, model), 'train', '--sample-tokens', '0',
             '--log-interval', '0', '--out', os.path.join('runs', model, 'compare.safetensors')] + flags
    t_cmd = [sys.executable, os.path.join('tools', model + '_torch.py')] + flags
    c = run(c_cmd)
    print(f'c:     step {c[0]}: train {c[1]:.4f} val {c[2]:.4f}, {c[3]:.1f} ms/step CPU '
          f'({c[4]:.1f} wall)', flush=True)
    t = run(t_cmd)
    print(f'torch: step {t[0]}: train {t[1]:.4f} val {t[2]:.4f}, {t[3]:.1f} ms/step CPU '
          f'({t[4]:.1f} wall)', flush=True)
    name = model + (' ' + ' '.join(extra) if extra else '')
    print(f'| {name} | {c[0]} | {c[1]:.4f} / {c[2]:.4f}, {c[3]:.1f} ms | {t[1]:.4f} / {t[2]:.4f}, '
          f'{t[3]:.1f} ms | {abs(c[2] - t[2]):.3f} |')


if __name__ == '__main__':
    main()
