"""Speed of ``modadd ablate`` on a p = 23, d_mlp = 512 checkpoint (target: under 10 s in all).

Prints (1) the wall time of the whole command in a fresh process (Python start-up, imports,
loading, every experiment, the JSON file), (2) the same work in this process after the imports,
and (3) the time of each experiment. Default checkpoint: the shipped ``data/standard_p23`` run.

    python benchmarks/bench_ablate.py [CKPT] [--activation NAME]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "data" / "standard_p23" / "checkpoints" / "step_005000.safetensors"
LIMIT_S = 10.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", nargs="?", default=str(DEFAULT))
    ap.add_argument("--activation", default=None)
    args = ap.parse_args()
    extra = ["--activation", args.activation] if args.activation else []

    with tempfile.TemporaryDirectory() as tmp:
        # the console script `modadd` is exactly this call
        cmd = [sys.executable, "-c", "import sys; from mechinterp_modadd.cli import main; sys.exit(main())",
               "ablate", args.checkpoint, *extra,
               "--json", str(Path(tmp) / "ablate.json")]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        whole = time.perf_counter() - t


    import torch

    from mechinterp_modadd.analysis import majority as mj
    from mechinterp_modadd.analysis.ablation import activation_table
    from mechinterp_modadd.checkpoint import load_checkpoint
    from mechinterp_modadd.commands.ablate import SINGLE_THREAD_MAX_P
    from mechinterp_modadd.fourier import neuron_spectrum

    model = load_checkpoint(args.checkpoint, activation=args.activation).model
    if model.cfg.p <= SINGLE_THREAD_MAX_P:  # what `modadd ablate` does
        torch.set_num_threads(1)
    t = time.perf_counter()
    model = load_checkpoint(args.checkpoint, activation=args.activation).model
    suite = mj.run_ablation_suite(model)
    suite.to_json()
    inproc = time.perf_counter() - t

    sp, tab = neuron_spectrum(model), activation_table(model)
    parts = {
        "random ablation (6 fractions x 10 draws)": lambda: mj.random_ablation(model, table=tab),
        "frequency groups (drop / keep each)": lambda: mj.frequency_group_ablation(model, spectrum=sp, table=tab),
        "phase-biased (4 orders x (1 + 20 draws))": lambda: mj.phase_biased_ablation(model, spectrum=sp, table=tab),
        "activation swap (8 activations)": lambda: mj.activation_swap(model),
        "noise scaling (10 sizes x 10 draws per group)": lambda: mj.noise_scaling(model, spectrum=sp),
        "majority_vote quick check (as in diagnose)": lambda: mj.majority_vote(model, spectrum=sp, **mj.QUICK_CHECK),
    }
    cfg = model.cfg
    print(f"checkpoint {args.checkpoint} (p = {cfg.p}, d_mlp = {cfg.d_mlp})")
    print(f"whole `modadd ablate` in a fresh process: {whole:6.2f} s  (limit {LIMIT_S:.0f} s: "
          f"{'ok' if whole < LIMIT_S else 'TOO SLOW'})")
    print(f"load + all experiments + JSON, after imports: {inproc:6.3f} s ({torch.get_num_threads()} torch thread(s))")
    for name, fn in parts.items():
        t = time.perf_counter()
        fn()
        print(f"  {name:<48} {time.perf_counter() - t:7.3f} s")
    return 0 if whole < LIMIT_S else 1


if __name__ == "__main__":
    sys.exit(main())
