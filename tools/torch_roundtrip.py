#!/usr/bin/env python3
"""The full PyTorch round trip of the GPT example's weights, both ways, with PyTorch
present (the meson tests do the part that needs no PyTorch, with a committed fixture):

  PyTorch -> ours: gpt.py's model (tools/gpt_torch.py, with gpt.py's n_embd**-0.5
      attention, and again with nanoGPT's head_size**-0.5) trained briefly here, its
      state_dict exported by tools/export_gpt.py (as safetensors.torch.save_file would
      write it, no metadata) and also through a torch.save'd .pt file; `gpt` computes the
      same logits (build/tools/gpt_logits), samples the same greedy text, and
      `gpt train --init-from` starts from its loss.
  ours -> PyTorch: a checkpoint of `gpt train`, loaded into PyTorch
      (export_gpt.load_agrad, as gpt_torch's model and as gpt.py's), gives the same
      logits and greedy text as `gpt`.

    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/torch_roundtrip.py [BUILD_DIR]

Prints each comparison and exits 1 if any differs by more than 1e-4 (relative to the
logits' scale) or any greedy text differs.
"""
import math
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_gpt  # noqa: E402
from export_gpt import greedy, load_agrad, set_scale, top2_gap, vocabulary  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = os.path.join(ROOT, 'tests', 'fixtures', 'tiny_text.txt')
TOL = 1e-4
failures = []


def run(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f'torch_roundtrip: {" ".join(map(str, args))} failed ({r.returncode}):\n{r.stderr}')
    return r.stdout


def our_logits(build, ckpt, prompt, *flags):
    out = run(os.path.join(build, 'tools', 'gpt_logits'), ckpt, prompt, *flags)
    return torch.tensor([[float(x) for x in line.split(':')[1].split()] for line in out.splitlines()])


def check(what, ours, theirs):
    err = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    ok = err <= TOL
    print(f'{"ok  " if ok else "FAIL"} {what}: max relative difference {err:.2e}')
    if not ok:
        failures.append(what)


def check_text(what, ours, theirs):
    ok = ours == theirs
    print(f'{"ok  " if ok else "FAIL"} {what}: {ours[:60]!r}{"..." if len(ours) > 60 else ""}')
    if not ok:
        print(f'     PyTorch: {theirs[:60]!r}')
        failures.append(what)


def torch_logits(model, chars, prompt):
    stoi = {c: i for i, c in enumerate(chars)}
    with torch.no_grad():
        logits, _ = model(torch.tensor([[stoi[c] for c in prompt]]))
    return logits[0]


def torch_greedy(model, chars, prompt, n):
    stoi = {c: i for i, c in enumerate(chars)}
    idx = torch.tensor([[stoi[c] for c in prompt]])
    gap = top2_gap(model, idx, n)
    out = greedy(model, idx, n)[0].tolist()
    return ''.join(chars[i] for i in out[len(prompt):]), gap


def our_greedy(build, ckpt, prompt, n, *flags):
    out = run(os.path.join(build, 'examples', 'gpt', 'gpt'), 'sample', '--checkpoint', ckpt,
              '--prompt', prompt, '--tokens', n, '--temperature', '0', '--threads', '1', *flags)
    return out[len(prompt):-1]


class Args:
    n_embd, n_head, n_layer, block_size, batch_size, steps, seed, lr = 32, 4, 2, 16, 32, 300, 7, 1e-2


def torch_to_ours(build, tmp, text, chars, prompt):
    for scale in ['n_embd', 'head_size']:
        args = Args()
        args.scale = scale
        print(f'-- PyTorch -> ours: gpt_torch model, {scale}**-0.5 attention, trained {args.steps} steps')
        model = export_gpt.train(text, args)
        path = os.path.join(tmp, f'torch_{scale}.safetensors')
        vocab = os.path.join(tmp, 'vocab.txt')
        export_gpt.write_state_dict(path, model)
        with open(vocab, 'w', encoding='utf-8', newline='') as f:
            f.write(''.join(chars))
        flags = ['--vocab', vocab] + ([] if scale == 'n_embd' else ['--attention-scale', 'head_size'])
        check(f'logits of the exported state_dict ({scale})', our_logits(build, path, prompt, *flags),
              torch_logits(model, chars, prompt))
        want, gap = torch_greedy(model, chars, prompt, 120)
        got = our_greedy(build, path, prompt, 120, *flags)
        check_text(f'greedy text, 120 characters (smallest top-2 gap {gap:.3g})', got, want)
        # through a .pt file and the export script's command line, as a gpt.py user would
        pt = os.path.join(tmp, f'gpt_{scale}.pt')
        torch.save(model.state_dict(), pt)
        out2 = os.path.join(tmp, f'cli_{scale}.safetensors')
        run(sys.executable, os.path.join(ROOT, 'tools', 'export_gpt.py'), '--state-dict', pt, '--text',
            TEXT, '--out', out2, '--vocab-out', vocab, '--scale', scale)
        check(f'logits via torch.save and export_gpt.py --state-dict ({scale})',
              our_logits(build, out2, prompt, *flags), torch_logits(model, chars, prompt))
        # fine-tuning here starts from PyTorch's loss
        run_dir = os.path.join(tmp, f'init_{scale}')
        out = run(os.path.join(build, 'examples', 'gpt', 'gpt'), 'train', '--init-from', path, '--data',
                  TEXT, '--max-iters', '20', '--eval-interval', '20', '--eval-iters', '20', '--batch-size',
                  '16', '--dropout', '0', '--lr', '1e-3', '--threads', '1', '--sample-tokens', '0',
                  '--out', run_dir, *(['--attention-scale', 'head_size'] if scale == 'head_size' else []))
        first = [line for line in out.splitlines() if line.startswith('step 0:')][0]
        val = float(first.split('val loss ')[1])
        ok = val < math.log(len(chars)) - 0.5
        print(f'{"ok  " if ok else "FAIL"} gpt train --init-from: "{first}" (a new model: ~{math.log(len(chars)):.2f})')
        if not ok:
            failures.append('init-from ' + scale)


def ours_to_torch(build, tmp, chars, prompt):
    print('-- ours -> PyTorch: a checkpoint of gpt train')
    run_dir = os.path.join(tmp, 'ours')
    run(os.path.join(build, 'examples', 'gpt', 'gpt'), 'train', '--data', TEXT, '--n-embd', '32', '--n-head',
        '4', '--n-layer', '2', '--block-size', '16', '--batch-size', '32', '--lr', '1e-2', '--dropout',
        '0.1', '--max-iters', '300', '--eval-interval', '300', '--eval-iters', '2', '--threads', '1',
        '--sample-tokens', '0', '--out', run_dir)
    ckpt = os.path.join(run_dir, 'ckpt.safetensors')
    ours = our_logits(build, ckpt, prompt)
    got = our_greedy(build, ckpt, prompt, 120)
    for scale in ['head_size', 'n_embd']:
        model, vocab = load_agrad(ckpt, scale)
        if vocab != chars:
            failures.append('vocabulary')
            print('FAIL vocabulary in the checkpoint differs from the text\'s')
        check(f'logits in PyTorch ({"gpt_torch" if scale == "head_size" else "gpt.py"}\'s {scale}**-0.5)',
              ours, torch_logits(model, vocab, prompt))
        want, gap = torch_greedy(model, vocab, prompt, 120)
        check_text(f'greedy text in PyTorch ({scale}, smallest top-2 gap {gap:.3g})', got, want)
    # and through export_gpt.py --from-agrad: a .pt gpt.py loads with load_state_dict
    pt = os.path.join(tmp, 'from_agrad.pt')
    run(sys.executable, os.path.join(ROOT, 'tools', 'export_gpt.py'), '--from-agrad', ckpt, '--torch-out', pt)
    sd = torch.load(pt)
    model = export_gpt.GPT(dropout=0.0, **export_gpt.config_from_state_dict(sd))
    model.load_state_dict(sd)  # strict, as gpt.py would
    set_scale(model, 'n_embd')
    check('logits of export_gpt.py --from-agrad\'s .pt in gpt.py\'s model', ours,
          torch_logits(model.eval(), chars, prompt))


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, 'build')
    for prog in ['tools/gpt_logits', 'examples/gpt/gpt']:
        if not os.path.exists(os.path.join(build, prog)):
            sys.exit(f'torch_roundtrip: {build}/{prog} is missing: meson compile -C {build}')
    torch.set_num_threads(1)
    text = open(TEXT, encoding='utf-8').read()
    chars = vocabulary(text)
    prompt = 'First Citizen:\n'  # 15 characters, within the block of 16
    with tempfile.TemporaryDirectory() as tmp:
        torch_to_ours(build, tmp, text, chars, prompt)
        ours_to_torch(build, tmp, chars, prompt)
    print(f'torch_roundtrip: {"all agree" if not failures else "FAILED: " + ", ".join(failures)} '
          f'(PyTorch {torch.__version__})')
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
