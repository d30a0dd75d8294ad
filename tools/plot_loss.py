#!/usr/bin/env python3
"""Turns a `gpt train` loss log (CSV: step,batch_loss,train_loss,val_loss,elapsed_s,rss_mib)
into a PNG of the per-step training loss and the periodic train/val estimates.

    python3 tools/plot_loss.py runs/tiny/loss.csv [out.png]

Needs matplotlib in the Python that runs it (Debian's python3-matplotlib is for
/usr/bin/python3; another python3 first on PATH, a pyenv or a venv, needs its own:
`python3 -m pip install matplotlib`, or run /usr/bin/python3 tools/plot_loss.py ...).
"""
import csv
import os
import sys

SYSTEM_PYTHON = '/usr/bin/python3'


def no_matplotlib():
    """What to do when this interpreter cannot import matplotlib, naming it."""
    exe = sys.executable or 'this python'
    system = os.path.exists(SYSTEM_PYTHON) and os.path.realpath(exe) == os.path.realpath(SYSTEM_PYTHON)
    if system:
        return (f'plot_loss: {exe} has no matplotlib: apt-get install python3-matplotlib')
    return (f'plot_loss: {exe} (Python {sys.version.split()[0]}) has no matplotlib. Install it for '
            f'this interpreter ({exe} -m pip install matplotlib), or run the system one, '
            f'whose package is python3-matplotlib: {SYSTEM_PYTHON} {" ".join(sys.argv)}')


def read(path):
    steps, batch, ev_steps, train, val = [], [], [], [], []
    with open(path, newline='') as f:
        for row in csv.DictReader(f):
            s = int(row['step'])
            if row['batch_loss']:
                steps.append(s)
                batch.append(float(row['batch_loss']))
            if row['train_loss'] and row['val_loss']:
                ev_steps.append(s)
                train.append(float(row['train_loss']))
                val.append(float(row['val_loss']))
    return steps, batch, ev_steps, train, val


def smooth(xs, k=50):
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= k:
            acc -= xs[i - k]
        out.append(acc / min(i + 1, k))
    return out


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ('-h', '--help'):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 else 2)
    src = sys.argv[1]
    dst = sys.argv[2] if len(sys.argv) > 2 else src.rsplit('.', 1)[0] + '.png'
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit(no_matplotlib())
    steps, batch, ev_steps, train, val = read(src)
    if not steps and not ev_steps:
        sys.exit(f'plot_loss: no loss rows in {src}')
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if batch:
        ax.plot(steps, batch, color='0.8', lw=0.5, label='batch loss')
        ax.plot(steps, smooth(batch), color='0.4', lw=1, label='batch loss (mean of 50)')
    if ev_steps:
        ax.plot(ev_steps, train, 'o-', color='tab:blue', label='train loss (estimate)')
        ax.plot(ev_steps, val, 'o-', color='tab:orange', label='val loss (estimate)')
    ax.set_xlabel('step')
    ax.set_ylabel('cross-entropy loss')
    ax.set_title(src)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(dst, dpi=120)
    print(f'plot_loss: wrote {dst}')


if __name__ == '__main__':
    main()
