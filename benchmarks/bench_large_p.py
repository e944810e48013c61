"""Peak memory and wall time of ``modadd diagnose`` and ``modadd ablate`` at large p.

Builds a p = 199 network at the default width (d_mlp = max(512, ceil(512 p^2 / 529)) = 38,329)
without training: every neuron gets one frequency k (spread evenly over 1..K), a seeded random
input phase phi and the aligned output phase psi = 2 phi, i.e. the structure a trained ReLU network
reaches (``--untrained`` uses the random initialisation instead). It saves the checkpoint, runs both
commands as subprocesses with ``--max-memory`` and reports, for each, the peak resident memory of
the child (``ru_maxrss`` of the waited-for process, as GNU ``time -v`` reports it) and the wall
time, next to the targets (peak <= 4 GB each, <= 10 minutes together) and the machine load
(``os.getloadavg``), since wall times on a shared machine are noisy.

    python benchmarks/bench_large_p.py [--p 199] [--d-mlp N] [--max-memory 3GiB] [--untrained] [--device cpu|cuda]

``--device`` (default ``cpu``, the figures the targets were set on) is passed to both commands: it
is where their heavy float64 passes run (all-pairs forward passes, batched ablations, Fourier
transform); ``--device cuda`` on a GPU machine times the GPU path against the same targets.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEAK_LIMIT_BYTES = 4e9
TIME_LIMIT_S = 600.0


def structured_model(p: int, d_mlp: int, seed: int = 0, activation: str = "relu"):
    """A float32 one-hot ``ModAddMLP`` whose neuron m has theta = cos(w_k j + phi) and
    xi = cos(w_k j + 2 phi), k = 1 + (m mod K), phi uniform (seeded): phase-aligned,
    single-frequency, diversified and phase-symmetric in distribution."""
    import torch

    from mechinterp_modadd.model import ModAddMLP, ModelConfig

    g = torch.Generator().manual_seed(seed)
    K = (p - 1) // 2
    k = (torch.arange(d_mlp) % K + 1).double()[:, None]
    phi = 2 * math.pi * torch.rand(d_mlp, 1, generator=g, dtype=torch.float64)
    w = 2 * math.pi * k * torch.arange(p, dtype=torch.float64)[None, :] / p
    model = ModAddMLP(ModelConfig(p=p, d_mlp=d_mlp, activation=activation), seed=None)
    with torch.no_grad():
        model.mlp.W_in.copy_(torch.cos(w + phi).float())
        model.mlp.W_out.copy_(torch.cos(w + 2 * phi).float().T / math.sqrt(d_mlp))
    return model


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[int, float, float, float, str]:
    """Run ``cmd``; return (exit code, wall seconds, peak RSS bytes of the child, its CPU seconds
    (user + system), its output)."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate()
    wall = time.perf_counter() - t
    # ru_maxrss of RUSAGE_CHILDREN is the largest peak among waited-for children: run one command
    # per measurement process so that it is this child's peak (see main)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc.returncode, wall, ru.ru_maxrss * 1024.0, ru.ru_utime + ru.ru_stime, out


def _measure_one(argv: list[str]) -> int:
    """Child mode: run one command and print 'rc wall peak' on the last line (own RUSAGE_CHILDREN)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    rc, wall, peak, cpu, out = run_measured(argv, env)
    sys.stdout.write(out)
    print(f"@@measured {rc} {wall:.3f} {peak:.0f} {cpu:.3f}")
    return 0


def measure(cmd: list[str]) -> tuple[int, float, float, float, str]:
    """Measure ``cmd`` in a fresh helper process, so ru_maxrss covers that one command only."""
    res = subprocess.run([sys.executable, __file__, "--measure-one", "--", *cmd], capture_output=True, text=True)
    lines = res.stdout.rstrip().splitlines()
    if not lines or not lines[-1].startswith("@@measured "):
        return 1, float("nan"), float("nan"), float("nan"), res.stdout + res.stderr
    _, rc, wall, peak, cpu = lines[-1].split()
    return int(rc), float(wall), float(peak), float(cpu), "\n".join(lines[:-1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure-one":
        return _measure_one(sys.argv[3:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=199)
    ap.add_argument("--d-mlp", type=int, default=None, help="default: the width rule max(512, ceil(512 p^2/529))")
    ap.add_argument("--max-memory", default="3GiB", help="passed to both commands (default 3GiB)")
    ap.add_argument("--untrained", action="store_true", help="random initialisation instead of the structured model")
    ap.add_argument("--only", choices=["diagnose", "ablate"], default=None)
    ap.add_argument("--keep", default=None, metavar="DIR", help="keep checkpoint and outputs in DIR")
    ap.add_argument("--device", default="cpu", help="passed to both commands (default cpu)")
    args = ap.parse_args()

    import torch

    from mechinterp_modadd.checkpoint import save_checkpoint
    from mechinterp_modadd.model import ModAddMLP, ModelConfig, default_d_mlp

    p = args.p
    d_mlp = args.d_mlp or default_d_mlp(p)
    tmp_ctx = tempfile.TemporaryDirectory() if args.keep is None else None
    out = Path(args.keep) if args.keep else Path(tmp_ctx.name)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / f"p{p}_dmlp{d_mlp}.safetensors"
    t = time.perf_counter()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.untrained:
        model = ModAddMLP(ModelConfig(p=p, d_mlp=d_mlp, activation="relu"), seed=0)
    else:
        model = structured_model(p, d_mlp)
    save_checkpoint(model, ckpt, step=0)
    del model
    print(f"p = {p}, d_mlp = {d_mlp}, {'untrained' if args.untrained else 'structured'} model saved to {ckpt} "
          f"({time.perf_counter() - t:.1f} s); --max-memory {args.max_memory}, --device {args.device}")
    cli = [sys.executable, "-c", "import sys; from mechinterp_modadd.cli import main; sys.exit(main())"]
    commands = {name: [*cli, name, str(ckpt), "--max-memory", args.max_memory, "--device", args.device,
                       "--json", str(out / f"{name}.json")]
                for name in ("diagnose", "ablate")}
    results = {}
    for name, cmd in commands.items():
        if args.only and name != args.only:
            continue
        load0 = os.getloadavg()
        rc, wall, peak, cpu, text = measure(cmd)
        load1 = os.getloadavg()
        results[name] = (rc, wall, peak, cpu)
        print(f"\n===== modadd {name} (exit {rc}) =====")
        print(text.rstrip())
        print(f"----- {name}: wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {peak / 1e9:.2f} GB "
              f"(load average before {load0[0]:.2f}, after {load1[0]:.2f}, 1-min)")
    print("\nsummary (targets: peak <= 4 GB each, <= 600 s together; CPU s / 2 cores is the wall time an "
          "otherwise idle 2-core machine would need, roughly)")
    total = 0.0
    ok = True
    cpu_total = 0.0
    for name, (rc, wall, peak, cpu) in results.items():
        fine = rc == 0 and peak <= PEAK_LIMIT_BYTES
        ok &= fine
        total += wall
        cpu_total += cpu
        verdict = "FAILED (see its output above)" if rc != 0 else \
            f"{'within' if peak <= PEAK_LIMIT_BYTES else 'OVER'} the memory target"
        print(f"  {name:<8}  exit {rc}  wall {wall:7.1f} s  CPU {cpu:7.1f} s  peak {peak / 1e9:5.2f} GB  {verdict}")
    print(f"  together  wall {total:.1f} s ({'within' if total <= TIME_LIMIT_S else 'OVER'} the 10-minute target), "
          f"CPU {cpu_total:.1f} s "
          f"(1-min load average now {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
    if tmp_ctx is not None:
        tmp_ctx.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
