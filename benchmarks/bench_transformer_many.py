"""Batched seeds of the transformer family: S seeds in one stack against one run, side by side.

Trains ``nanda_small`` (or ``--preset``) for ``--steps`` steps as one run (``train``) and as
``--seeds`` runs stacked in one process (``train_many``, the family's step), each
``--repeats`` times interleaved, and prints the throughput in run-steps per second of both and
their ratio (target on a CPU: >= 2x for 8 seeds of nanda_small). Both choose their threads as users
get them unless ``--threads`` is given: one run on one intra-op thread, the stack's runs computed
side by side on the free cores (one intra-op thread each; the runs' bits are the same either way).

    python benchmarks/bench_transformer_many.py [--preset nanda_small] [--seeds 8] [--steps 200]
        [--device cpu] [--threads N]

Timings depend on the machine and its load; compare the ratio of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mechinterp_modadd.training import preset, train, train_many  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="nanda_small")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for both (default: what train and train_many choose: one intra-op thread "
                         "for the run, the free cores as runs side by side for the stack)")
    args = ap.parse_args()
    cfgs = [preset(args.preset, seed=s, steps=args.steps, save_every=args.steps) for s in range(args.seeds)]
    one, many = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            train(cfgs[0], Path(tmp) / "one", progress=False, device=args.device, threads=args.threads)
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            train_many(cfgs, Path(tmp) / "many", progress=False, device=args.device, threads=args.threads)
            many.append(time.perf_counter() - t)
    t1, tm = statistics.median(one), statistics.median(many)
    r1, rm = args.steps / t1, args.seeds * args.steps / tm
    from mechinterp_modadd.training.api import _threads
    dev = torch.device(args.device)
    print(f"{args.preset}, {args.steps} steps, device {args.device}, median of {args.repeats}; "
          f"(intra-op threads, runs side by side): one run {_threads(cfgs[0], 1, args.threads, dev)}, "
          f"stack {_threads(cfgs[0], args.seeds, args.threads, dev)} at the start; {os.cpu_count()} CPUs")
    print(f"  one run            {t1:8.2f} s   {r1:8.1f} run-steps/s")
    print(f"  {args.seeds} seeds stacked   {tm:8.2f} s   {rm:8.1f} run-steps/s")
    print(f"  throughput ratio   {rm / r1:.2f}x (target >= 2x on a CPU for 8 seeds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
