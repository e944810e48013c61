"""Diagnosis speed: ``diagnose(model)`` without plots on a p = 97, d_mlp = 1024 model (target < 1 s).

Timed after imports and one warm-up call, as the median of several runs, with torch's default
thread count and with one thread (on a shared, oversubscribed machine extra threads can make the
small float64 reductions slower, not faster); also the parts (spectrum,
all-pairs logits, each claim check) so a regression points at its cause. The model is an
idealised ReLU network with random phases (a realistic Fourier solution; the timing does not
depend on the weights' values), plus the random-init model of the same shape for comparison.

    python benchmarks/bench_diagnose.py [--reps N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mechinterp_modadd import ModAddMLP, ModelConfig
from mechinterp_modadd.analysis import claims
from mechinterp_modadd.analysis.idealised import idealised_network
from mechinterp_modadd.diagnose import build_context, diagnose


def _median_s(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    p, d_mlp = 97, 1024
    K = (p - 1) // 2
    ideal = idealised_network(p, d_mlp // K + 1, phases="random", activation="relu")
    keep = torch.randperm(ideal.cfg.d_mlp, generator=torch.Generator().manual_seed(0))[:d_mlp]
    with torch.no_grad():  # a random subset of exactly d_mlp neurons, float32 like a trained checkpoint
        m = ModAddMLP(ModelConfig(p=p, d_mlp=d_mlp, activation="relu"), seed=None)
        m.mlp.W_in.copy_(ideal.mlp.W_in[keep].float())
        m.mlp.W_out.copy_(ideal.mlp.W_out[:, keep].float())
    models = {"idealised relu (random phases)": m,
              "random init": ModAddMLP(ModelConfig(p=p, d_mlp=d_mlp, activation="relu"), seed=0)}
    print(f"diagnose without plots, p = {p}, d_mlp = {d_mlp}, median of {args.reps} after a warm-up")
    default_threads = torch.get_num_threads()
    model_checks = claims.checks("model")
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        for name, model in models.items():
            total = _median_s(lambda model=model: diagnose(model), args.reps)
            verdict = "OK (< 1 s)" if total < 1 else "TOO SLOW (>= 1 s)"
            print(f"  {threads} thread(s)  {name:<32} {total * 1e3:8.1f} ms   {verdict}")
        own = [c for c in model_checks if c != "majority_vote"]
        if len(own) < len(model_checks):
            t = _median_s(lambda own=own: diagnose(models["idealised relu (random phases)"], claims=own), args.reps)
            print(f"  {threads} thread(s)  {'  without majority_vote':<32} {t * 1e3:8.1f} ms")
    torch.set_num_threads(default_threads)
    model = models["idealised relu (random phases)"]
    ctx = build_context(model)
    print(f"  parts (idealised model, {default_threads} thread(s)): context (spectrum + logits) "
          f"{_median_s(lambda: build_context(model), args.reps) * 1e3:.1f} ms")
    for name, check in model_checks.items():
        print(f"    {name:<28} {_median_s(lambda check=check: check(model, ctx), args.reps) * 1e3:8.1f} ms")
    dg = diagnose(model)
    print("  verdicts on the idealised model: "
          + ", ".join(f"{k} {'holds' if v else 'fails'}" for k, v in dg.verdicts.items()))


if __name__ == "__main__":
    main()
