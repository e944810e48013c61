"""Projected wall time of the three research sweep presets (``modadd sweep --preset NAME``).

For every distinct run shape of a preset it times a short single run (one thread, the way a sweep
batch trains) and one run's analyses, then projects: (sum over runs of steps x ms/step + analysis
seconds) / workers. All times come from this run; on a busy machine they overestimate. Runs with
an early stop (the grokking preset) are projected at their whole step budget: an upper bound, since
the runs that grok end soon after; measure the preset itself (``/usr/bin/time modadd sweep``) for
its real wall time.

    python benchmarks/bench_sweep_presets.py [--workers 2] [--preset lottery grokking primes]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from mechinterp_modadd.sweeps import preset_spec
from mechinterp_modadd.sweeps.runner import analyse_run
from mechinterp_modadd.training import train


def _ms_per_step(cfg, steps: int) -> float:
    train(cfg.replace(steps=3, save_every=3), progress=False)  # warm-up
    t = time.perf_counter()
    train(cfg.replace(steps=steps, save_every=steps), progress=False)
    return (time.perf_counter() - t) / steps * 1e3


def _analysis_s(plan, analyses) -> float:
    with tempfile.TemporaryDirectory() as d:
        run = Path(d) / "r"
        cfg = plan.config.replace(steps=20, save_every=20)
        train(cfg, run, progress=False)
        t = time.perf_counter()
        analyse_run(run, type(plan)(name="r", config=cfg, values={}), analyses)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--preset", nargs="+", default=["lottery", "grokking", "primes"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread per batch, {args.workers} workers")
    for name in args.preset:
        spec = preset_spec(name)
        shapes = defaultdict(list)
        for r in spec.runs:
            shapes[r.shape].append(r)
        total = 0.0
        print(f"\n{name}: {len(spec.runs)} runs, analyses {list(spec.analyses)}")
        head = ("p", 4), ("d_mlp", 6), ("act", 5), ("runs", 5), ("steps", 7), ("ms/step", 8), ("analysis s", 10), \
            ("run-s", 8)
        print(" ".join(f"{h:>{w}}" for h, w in head))
        for shape, runs in shapes.items():
            p, d = shape[0], shape[1]
            steps = max(20, min(1000, int(8e7 / (p * p * d))))  # ~300 timed steps at p = 23
            ms = _ms_per_step(runs[0].config, steps)
            an = _analysis_s(runs[0], spec.analyses)
            secs = len(runs) * (runs[0].config.steps * ms / 1e3 + an)
            total += secs
            print(f"{p:>4} {d:>6} {shape[2]:>5} {len(runs):>5} {runs[0].config.steps:>7} {ms:>8.3f} {an:>10.2f} "
                  f"{secs:>8.0f}")
        print(f"{name}: {total / 60:.1f} core-minutes -> about {total / 60 / args.workers:.1f} minutes on "
              f"{args.workers} workers")


if __name__ == "__main__":
    main()
