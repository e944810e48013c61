"""Training speed: ms per full-batch step (AdamW, train and test metrics every step).

For each size it prints the step time of our trainer, the time of the unavoidable matrix products
of that size (the "floor": the forward product hidden @ W_out^T and the two backward products, on
the p(p+1)/2 symmetry-reduced rows), their ratio, and the speed-up over the paper authors'
trainer measured on this kind of machine (737 ms at p = 97, d_mlp = 1024; 8.1 ms at p = 23,
d_mlp = 512). All times come from this run.

    python benchmarks/bench_train.py [--steps N]
"""

from __future__ import annotations

import argparse
import time

import torch

from mechinterp_modadd.training import preset, train

AUTHORS_MS = {(97, 1024): 737.0, (23, 512): 8.1}


def _time(fn, reps: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e3


def floor_ms(p: int, d_mlp: int, reps: int) -> float:
    n = p * (p + 1) // 2
    g = torch.Generator().manual_seed(0)
    post = torch.rand(n, d_mlp, generator=g)
    W_out = torch.randn(p, d_mlp, generator=g) * 0.1
    dlogits = torch.randn(n, p, generator=g) * 0.01

    def products():
        post @ W_out.T          # forward logits
        dlogits.T @ post        # grad of W_out
        dlogits @ W_out         # grad of the hidden layer

    return _time(products, reps)


def step_ms(p: int, d_mlp: int, steps: int) -> float:
    cfg = preset("grokking", p=p, d_mlp=d_mlp, steps=steps, weight_decay=1.0)  # AdamW, train+test split
    train(cfg.replace(steps=5), progress=False)  # warm-up (lazy imports, allocator)
    t = time.perf_counter()
    train(cfg, progress=False)
    return (time.perf_counter() - t) / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="steps to time (default 2000 at p=23, 60 at p=97)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'p':>4} {'d_mlp':>6} {'ms/step':>9} {'floor ms':>9} {'step/floor':>10} {'authors ms':>10} {'speed-up':>9}")
    for (p, d_mlp) in [(23, 512), (97, 1024)]:
        steps = args.steps or (2000 if p == 23 else 60)
        ms = step_ms(p, d_mlp, steps)
        fl = floor_ms(p, d_mlp, reps=max(steps, 20))
        a = AUTHORS_MS[(p, d_mlp)]
        print(f"{p:>4} {d_mlp:>6} {ms:>9.3f} {fl:>9.3f} {ms / fl:>10.2f} {a:>10.1f} {a / ms:>8.1f}x")


if __name__ == "__main__":
    main()
