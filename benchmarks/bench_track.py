"""`modadd track` speed on the reference grokking folder (51 checkpoints); target < 30 s.

Times the whole command (load the series, progress measures at every checkpoint, stage detection,
the lottery predictors with the integrated flow, JSON and the HTML report with all figures) in a
fresh process, as a user runs it, and then the pieces in-process.

    python benchmarks/bench_track.py [--run PATH] [--activation relu]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RUN = REPO.parent / "shared" / "reference" / "grokking_relu_p23"
TARGET_S = 30.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default=str(DEFAULT_RUN))
    ap.add_argument("--activation", default="relu")
    args = ap.parse_args()
    run = Path(args.run)
    if not run.exists():
        print(f"run folder {run} not found; nothing to benchmark")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        entry = "import sys; from mechinterp_modadd.cli import main; sys.exit(main())"
        cmd = [sys.executable, "-c", entry, "track", str(run), "--activation", args.activation,
               "--json", f"{tmp}/t.json", "--html", f"{tmp}/t.html", "--quiet"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        total = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr)
            return proc.returncode
        html_mb = Path(f"{tmp}/t.html").stat().st_size / 1e6

    from mechinterp_modadd.analysis.grokking import grokking_stages, progress_measures
    from mechinterp_modadd.analysis.lottery import lottery_from_series
    from mechinterp_modadd.series import load_run

    t = time.perf_counter()
    series = load_run(run, activation=args.activation)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    m = progress_measures(series, progress=False)
    t_meas = time.perf_counter() - t
    stages = grokking_stages(m)
    t = time.perf_counter()
    lot = lottery_from_series(series) if series.has_step0 else None
    t_lot = time.perf_counter() - t
    print(f"run: {run} ({len(series)} checkpoints)")
    print(f"modadd track (fresh process, JSON + HTML {html_mb:.1f} MB): {total:.1f} s  "
          f"[target < {TARGET_S:.0f} s: {'ok' if total < TARGET_S else 'SLOW'}]")
    print(f"  load_run {t_load:.2f} s | progress measures {t_meas:.2f} s ({t_meas / len(series) * 1e3:.0f} ms/ckpt)"
          f" | lottery (flow over {series.spectrum(0).d_mlp} x {series.spectrum(0).K} states) "
          f"{t_lot:.2f} s" if lot is not None else "")
    print(f"  stages {stages.boundaries}; lottery flow {lot.flow:.3f}" if lot is not None else
          f"  stages {stages.boundaries}")
    return 0 if total < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
