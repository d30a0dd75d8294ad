"""The training loop of the character-level examples (examples/charlm) in
PyTorch, for tools/llama_torch.py and tools/charrnn_torch.py: the same data
split, batches of random windows, AdamW with two parameter groups, linear
warmup then cosine decay, gradient accumulation, gradient clipping, and
train/val estimates at the same steps, printed in the same lines.

Random streams differ from the C program's (torch's generator against
agrad's): runs agree in distribution, not digit for digit.
"""
import math
import os
import time

os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import torch  # noqa: E402


def add_train_args(ap, d):
    """The flags of `<prog> train`, with the model's defaults d."""
    ap.add_argument('--data', default='data/tinyshakespeare.txt')
    for name, typ in (('batch_size', int), ('block_size', int), ('grad_accum', int),
                      ('max_iters', int), ('eval_interval', int), ('eval_iters', int),
                      ('warmup', int), ('lr', float), ('min_lr', float), ('weight_decay', float),
                      ('grad_clip', float), ('seed', int), ('threads', int)):
        ap.add_argument('--' + name.replace('_', '-'), dest=name, type=typ, default=d[name])


def cosine_lr(step, lr, min_lr, warmup, decay_steps):
    """nn_lr_cosine: nanoGPT's get_lr"""
    if step < warmup:
        return lr * (step + 1) / warmup
    if step > decay_steps:
        return min_lr
    r = (step - warmup) / (decay_steps - warmup) if decay_steps > warmup else 0.0
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * r)) * (lr - min_lr)


def load_data(path):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
    n = int(0.9 * len(data))
    return chars, data[:n], data[n:]


def get_batch(split, B, T, gen):
    ix = torch.randint(len(split) - T, (B,), generator=gen)
    x = torch.stack([split[i:i + T] for i in ix])
    y = torch.stack([split[i + 1:i + T + 1] for i in ix])
    return x, y


def param_groups(model, weight_decay):
    """nn_adamw_decay_groups: decay matrices, not 1-D parameters or embeddings
    (model.embedding_ids: the ids of its embedding tables; a tied head is the
    same tensor, listed once by named_parameters)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (decay if p.dim() >= 2 and id(p) not in model.embedding_ids() else no_decay).append(p)
    return [{'params': decay, 'weight_decay': weight_decay},
            {'params': no_decay, 'weight_decay': 0.0}]


@torch.no_grad()
def estimate(model, split, a, gen):
    model.eval()
    losses = [model(*get_batch(split, a.batch_size, a.block_size, gen))[1].item()
              for _ in range(a.eval_iters)]
    model.train()
    return sum(losses) / len(losses)


def train(model, a, vocab_chars, train_data, val_data):
    n_params = sum(p.numel() for p in model.parameters())
    groups = param_groups(model, a.weight_decay)
    opt = torch.optim.AdamW(groups, lr=a.lr)
    print(f'{n_params / 1e6:.6f} M parameters ({len(list(model.parameters()))} tensors, '
          f'{len(groups[0]["params"])} decayed); vocabulary {len(vocab_chars)}; '
          f'{len(train_data)} train / {len(val_data)} val tokens; {torch.get_num_threads()} threads',
          flush=True)
    gen = torch.Generator().manual_seed(a.seed * 3 + 1)
    wall = cpu = 0.0
    val = float('nan')
    for it in range(a.max_iters + 1):
        if it % a.eval_interval == 0 or it == a.max_iters:
            eg = torch.Generator().manual_seed(a.seed * 1000003 + it * 2)
            tr = estimate(model, train_data, a, eg)
            val = estimate(model, val_data, a, eg)
            print(f'step {it}: train loss {tr:.4f}, val loss {val:.4f}', flush=True)
        if it == a.max_iters:
            break
        w0, c0 = time.perf_counter(), time.process_time()
        lr = cosine_lr(it, a.lr, a.min_lr, a.warmup, a.max_iters)
        for g in opt.param_groups:
            g['lr'] = lr
        opt.zero_grad(set_to_none=True)
        for _ in range(a.grad_accum):
            x, y = get_batch(train_data, a.batch_size, a.block_size, gen)
            _, loss = model(x, y)
            (loss / a.grad_accum).backward()
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.grad_clip)
        opt.step()
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    print(f'trained {a.max_iters} steps: {1e3 * wall / a.max_iters:.2f} ms/step (wall), '
          f'{1e3 * cpu / a.max_iters:.2f} ms/step (CPU, all threads); '
          f'{a.batch_size * a.block_size * a.grad_accum} tokens/step', flush=True)
    return val


def main(ap, defaults, make_model):
    """Parses the flags, seeds, loads the data, builds make_model(args, vocab) and trains it."""
    add_train_args(ap, defaults)
    a = ap.parse_args()
    torch.set_num_threads(a.threads if a.threads > 0 else 1)
    torch.manual_seed(a.seed)
    chars, tr, va = load_data(a.data)
    model = make_model(a, len(chars))
    train(model, a, chars, tr, va)
