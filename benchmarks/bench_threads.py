"""Training beside other work: step times with a concurrent CPU-bound process, and two trainings at once.

Wall-clock times (the point is how much other processes slow a training down), all in this run:

1. p = 23 (d_mlp = 512): our step quiet, then with one CPU-bound process the benchmark starts
   itself (a Python busy loop). Target: loaded <= 2 x quiet. Printed beside it: the same with
   torch's default thread count forced (``--threads`` = all cores), the setting that collapsed.
2. p = 97 (d_mlp = 1024): our step and the authors'-style baseline (``bench_train.AuthorsStyleStep``,
   torch's default threads), quiet and loaded. Target: the loaded speed-up ours/baseline is at least
   the quiet one.
3. Two ``modadd train`` processes at once (p = 23) against one alone. Target: each <= 2 x alone.

    python benchmarks/bench_threads.py [--steps N]

The "quiet" figures are only as quiet as the machine: on a machine shared with other jobs, say so
when quoting the numbers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import AuthorsStyleStep  # noqa: E402

from mechinterp_modadd.training import preset, train  # noqa: E402


@contextmanager
def busy_process():
    """One CPU-bound process for the duration of the block (started and stopped here)."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    time.sleep(0.5)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def our_ms(p: int, d_mlp: int, steps: int, threads: int | None = None) -> float:
    cfg = preset("grokking", p=p, d_mlp=d_mlp, steps=steps, weight_decay=1.0)
    train(cfg.replace(steps=3), progress=False, device="cpu", threads=threads)
    t = time.perf_counter()
    train(cfg, progress=False, device="cpu", threads=threads)
    return (time.perf_counter() - t) / steps * 1e3


def baseline_ms(p: int, d_mlp: int, steps: int) -> float:
    step = AuthorsStyleStep(p, d_mlp)
    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps * 1e3


def cli_seconds(steps: int, out: Path, n: int) -> list[float]:
    """Wall seconds of ``n`` concurrent ``modadd train`` processes (p = 23, grokking)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "mechinterp_modadd", "train", "--preset", "grokking", "--p", "23",
           "--steps", str(steps), "--quiet", "--device", "cpu", "--save-every", str(10 * steps)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*cmd, "--out", str(out / f"run{i}"), "--seed", str(i)], env=env,
                              stdout=subprocess.DEVNULL) for i in range(n)]
    ends = []
    for pr in procs:
        if pr.wait() != 0:
            raise SystemExit("modadd train failed")
        ends.append(time.perf_counter() - t0)
    return ends


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500, help="steps at p = 23 (p = 97 uses steps / 50)")
    args = ap.parse_args()
    cores = torch.get_num_threads()
    s23, s97 = args.steps, max(args.steps // 50, 5)
    print(f"torch {torch.__version__}; default threads {cores}; load average {os.getloadavg()[0]:.1f}")

    quiet = our_ms(23, 512, s23)
    quiet_forced = our_ms(23, 512, s23, threads=cores)
    with busy_process():
        loaded = our_ms(23, 512, s23)
        loaded_forced = our_ms(23, 512, s23, threads=cores)
    print(f"p=23 ours (auto threads): quiet {quiet:.3f} ms, with a busy process {loaded:.3f} ms "
          f"= {loaded / quiet:.2f} x (target <= 2)")
    print(f"p=23 forced to {cores} threads: quiet {quiet_forced:.3f} ms, loaded {loaded_forced:.3f} ms "
          f"= {loaded_forced / quiet_forced:.2f} x")

    q_ours, q_base = our_ms(97, 1024, s97), baseline_ms(97, 1024, max(s97 // 4, 3))
    with busy_process():
        l_ours, l_base = our_ms(97, 1024, s97), baseline_ms(97, 1024, max(s97 // 4, 3))
    print(f"p=97 quiet: ours {q_ours:.1f} ms, baseline {q_base:.1f} ms, speed-up {q_base / q_ours:.2f} x")
    print(f"p=97 with a busy process: ours {l_ours:.1f} ms, baseline {l_base:.1f} ms, speed-up "
          f"{l_base / l_ours:.2f} x (target >= the quiet speed-up)")

    with tempfile.TemporaryDirectory() as d:
        alone = cli_seconds(s23, Path(d) / "alone", 1)[0]
        both = cli_seconds(s23, Path(d) / "both", 2)
    print(f"modadd train p=23 {s23} steps: alone {alone:.1f} s; two at once {both[0]:.1f} s and "
          f"{both[1]:.1f} s = {max(both) / alone:.2f} x alone (target <= 2)")


if __name__ == "__main__":
    main()
