"""Training speed: ms per full-batch step, against a baseline and the arithmetic floor, timed together.

For each size (p = 23, d_mlp = 512 and p = 97, d_mlp = 1024; AdamW, a 75 % train split, train and
test metrics every step) it prints, all measured in this run:

- ours: :func:`mechinterp_modadd.training.train` (threads chosen by ``runtime.auto_threads``);
- baseline: :class:`AuthorsStyleStep`, a plain PyTorch step doing per step what the paper
  authors' trainer does (documented op by op below), on the same thread count as ours;
- floor: the five matrix products of one of our steps (forward ``X W_in^T`` and
  ``post W_out^T``; backward ``dlogits^T post``, ``dlogits W_out`` and ``dpre^T X``) on the
  p(p + 1)/2 symmetry-reduced rows;

and the ratios ours/floor and baseline/ours. For reference, measured side by side on one quiet
2-core machine with the authors' real trainer: 262.7 ms/step at p = 97 against our 39.1 (6.7x) and
7.2 ms at p = 23 against our 0.87 (8.3x); the baseline's ratio should land near those.

    python benchmarks/bench_train.py [--steps N] [--wall]

On a shared machine use the default clock (process CPU time, which leaves out time slices given
to other processes); ``--wall`` times with the wall clock.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from mechinterp_modadd.data import all_pairs, random_split
from mechinterp_modadd.runtime import thread_scope
from mechinterp_modadd.training import preset, train

CLOCK = time.process_time


class AuthorsStyleStep:
    """One training step as the paper authors' trainer performs it, in plain PyTorch.

    Per step, in order:

    1. ``zero_grad``; forward the train pairs (ordered pairs, one-hot ``e_x + e_y`` rows times
       ``W_in^T``, ReLU, times ``W_out^T``) and take the float32 cross-entropy mean;
    2. forward the test pairs under ``no_grad`` for the test loss (float32 cross-entropy mean);
    3. forward the train pairs again under ``no_grad`` for the train accuracy (argmax == label);
    4. forward the test pairs again under ``no_grad`` for the test accuracy;
    5. ``backward`` of the train loss;
    6. the gradient norm and the parameter norm, each read to the host with ``.item()``;
    7. ``AdamW(lr, betas=(0.9, 0.98), weight_decay)`` step and a ``LambdaLR`` linear warm-up
       over 10 steps (``min(1, (t + 1) / 10)``), also read every step (``get_last_lr``);
    8. the four metrics read to the host (``.item()``), as a logger would.
    """

    def __init__(self, p: int, d_mlp: int, train_fraction: float = 0.75, lr: float = 1e-4,
                 weight_decay: float = 1.0, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.W_in = torch.nn.Parameter(0.1 * torch.randn(d_mlp, p, generator=g) / p ** 0.5)
        self.W_out = torch.nn.Parameter(0.1 * torch.randn(p, d_mlp, generator=g) / p ** 0.5)
        split = random_split(p, train_fraction, seed)
        pairs = all_pairs(p)
        onehot = (F.one_hot(pairs[:, 0], p) + F.one_hot(pairs[:, 1], p)).float()
        labels = (pairs[:, 0] + pairs[:, 1]) % p
        self.x_tr, self.y_tr = onehot[split.train_mask], labels[split.train_mask]
        self.x_te, self.y_te = onehot[~split.train_mask], labels[~split.train_mask]
        self.opt = torch.optim.AdamW([self.W_in, self.W_out], lr=lr, betas=(0.9, 0.98),
                                     weight_decay=weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda t: min(1.0, (t + 1) / 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W_in.T) @ self.W_out.T

    def __call__(self) -> dict[str, float]:
        self.opt.zero_grad()
        train_loss = F.cross_entropy(self.forward(self.x_tr), self.y_tr)          # 1
        with torch.no_grad():
            test_loss = F.cross_entropy(self.forward(self.x_te), self.y_te)       # 2
            train_acc = (self.forward(self.x_tr).argmax(-1) == self.y_tr).float().mean()  # 3
            test_acc = (self.forward(self.x_te).argmax(-1) == self.y_te).float().mean()   # 4
        train_loss.backward()                                                     # 5
        grad_norm = torch.sqrt(sum((q.grad ** 2).sum() for q in (self.W_in, self.W_out))).item()  # 6
        param_norm = torch.sqrt(sum((q.detach() ** 2).sum() for q in (self.W_in, self.W_out))).item()
        self.opt.step()                                                           # 7
        self.sched.step()
        lr = self.sched.get_last_lr()[0]
        return {"train_loss": train_loss.item(), "test_loss": test_loss.item(),   # 8
                "train_accuracy": train_acc.item(), "test_accuracy": test_acc.item(),
                "grad_norm": grad_norm, "param_norm": param_norm, "lr": lr}


def _time(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(2):
        t = CLOCK()
        for _ in range(reps):
            fn()
        best = min(best, (CLOCK() - t) / reps)
    return best * 1e3


def baseline_ms(p: int, d_mlp: int, steps: int, threads: int) -> float:
    """ms per step of :class:`AuthorsStyleStep` on ``threads`` threads (the same count as ours, so
    that CPU time, which adds up every thread's time, compares like with like)."""
    step = AuthorsStyleStep(p, d_mlp)
    with thread_scope(threads):
        return _time(step, steps)


def floor_ms(p: int, d_mlp: int, reps: int, threads: int) -> float:
    """ms of the five matrix products of one of our steps (symmetry-reduced rows)."""
    n = p * (p + 1) // 2
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(n, p, generator=g) < 2 / p).float()
    W_in = torch.randn(d_mlp, p, generator=g)
    W_out = torch.randn(p, d_mlp, generator=g)
    post = torch.rand(n, d_mlp, generator=g)
    dpre = torch.rand(n, d_mlp, generator=g)
    dlogits = torch.randn(n, p, generator=g) * 0.01

    def products():
        X @ W_in.T              # forward: hidden pre-activations
        post @ W_out.T          # forward: logits
        dlogits.T @ post        # grad of W_out
        dlogits @ W_out         # grad of the hidden layer
        dpre.T @ X              # grad of W_in

    with thread_scope(threads):
        return _time(products, reps)


def step_ms(p: int, d_mlp: int, steps: int) -> tuple[float, int]:
    """Our ms per step (in-memory run, so no file I/O) and the thread count the trainer chose."""
    from mechinterp_modadd.runtime import auto_threads, step_flop

    cfg = preset("grokking", p=p, d_mlp=d_mlp, steps=steps, weight_decay=1.0)  # AdamW, train+test split
    train(cfg.replace(steps=5), progress=False, device="cpu")  # warm-up (lazy imports, allocator)
    threads = auto_threads(step_flop(p, d_mlp))
    t = CLOCK()
    train(cfg, progress=False, device="cpu")
    return (CLOCK() - t) / steps * 1e3, threads


def main() -> None:
    global CLOCK
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="steps to time (default 1000 at p=23, 40 at p=97)")
    ap.add_argument("--wall", action="store_true", help="wall clock instead of process CPU time")
    args = ap.parse_args()
    if args.wall:
        CLOCK = time.perf_counter
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads by default; clock: "
          f"{'wall' if args.wall else 'process CPU time'}")
    print(f"{'p':>4} {'d_mlp':>6} {'thr':>4} {'ms/step':>9} {'floor ms':>9} {'step/floor':>10} "
          f"{'baseline ms':>11} {'speed-up':>9}")
    for (p, d_mlp) in [(23, 512), (97, 1024)]:
        steps = args.steps or (1000 if p == 23 else 40)
        ms, threads = step_ms(p, d_mlp, steps)
        fl = floor_ms(p, d_mlp, reps=max(steps, 20), threads=threads)
        base = baseline_ms(p, d_mlp, max(steps // 4, 10), threads)
        print(f"{p:>4} {d_mlp:>6} {threads:>4} {ms:>9.3f} {fl:>9.3f} {ms / fl:>10.2f} {base:>11.2f} "
              f"{base / ms:>8.1f}x")


if __name__ == "__main__":
    main()
