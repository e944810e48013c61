"""``modadd report CKPT_OR_RUN --out FILE.html [--activation NAME]``: one offline page with the whole
story of a checkpoint or a run (see :mod:`mechinterp_modadd.story`)."""

from __future__ import annotations

import argparse
import time

from ..cli import command


def _configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("path", metavar="CKPT_OR_RUN", help="a checkpoint file, a run folder (ours or the authors') or a "
                                                        "sweep folder (modadd sweep --out)")
    ap.add_argument("--out", required=True, metavar="FILE.html", help="where to write the page")
    ap.add_argument("--activation", default=None,
                    help="activation (required for the authors' .pth files, which do not record it)")
    ap.add_argument("--neuron", type=int, default=None, help="neuron whose frequency race is shown (runs)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


@command("report", "write one self-contained HTML page telling the whole story of a checkpoint or run")(_configure)
def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    t0 = time.perf_counter()
    if (Path(args.path) / "sweep.json").is_file():  # a sweep folder: its research page
        from ..pages.sweep import build_sweep_page

        page = build_sweep_page(args.path)
        out = page.save(args.out)
        print(f"sweep page with {page.n_figures} figures written to {out} ({time.perf_counter() - t0:.1f} s)")
        return 0
    from ..story import build_report

    page = build_report(args.path, activation=args.activation, force=args.force, neuron=args.neuron,
                        progress=not args.quiet)
    out = page.save(args.out)
    print(f"report with {page.n_figures} figures written to {out} ({time.perf_counter() - t0:.1f} s)")
    return 0
