"""``modadd report CKPT_OR_RUN --out FILE.html [--json FILE] [--png DIR | --svg DIR] [--activation NAME]``:
one offline page with the whole story of a checkpoint or a run (see :mod:`mechinterp_modadd.pages.report`).

The page and the JSON (schema ``report``) render the same results, computed once. ``--png`` /
``--svg`` also write every figure as a static image (needs kaleido: the ``export`` extra).
"""

from __future__ import annotations

import argparse
import json
import time

from .registry import command


def _configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("path", metavar="CKPT_OR_RUN", help="a checkpoint file, a run folder (ours or the authors') or a "
                                                        "sweep folder (modadd sweep --out)")
    ap.add_argument("--out", required=True, metavar="FILE.html", help="where to write the page")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write every number of the page as JSON")
    ap.add_argument("--png", default=None, metavar="DIR",
                    help="also write every figure as PNG into DIR (needs the 'export' extra: kaleido)")
    ap.add_argument("--svg", default=None, metavar="DIR",
                    help="also write every figure as SVG into DIR (needs the 'export' extra: kaleido)")
    ap.add_argument("--activation", default=None,
                    help="activation (required for the authors' .pth files, which do not record it)")
    ap.add_argument("--neuron", type=int, default=None, help="neuron whose frequency race is shown (runs)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


@command("report", "write one self-contained HTML page telling the whole story of a checkpoint or run")(_configure)
def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..fileio import atomic_write_text
    from ..pages.html import check_static_export

    if args.png or args.svg:
        check_static_export()  # fail before the work, in one line naming the extra
    t0 = time.perf_counter()
    if (Path(args.path) / "sweep.json").is_file():  # a sweep folder: its research page
        from ..pages.sweep import build_sweep_page
        from ..sweeps.check import check_sweep_folder

        found = check_sweep_folder(args.path)  # results.csv agrees with sweep.json and runs/
        page = build_sweep_page(args.path, n_planned=found.n_planned)
        html_text = page.render()
        _export(page, args)  # the figures first: a failed export leaves no page claiming success
        out = atomic_write_text(args.out, html_text)
        print(f"sweep page with {page.n_figures} figures written to {out} ({time.perf_counter() - t0:.1f} s)")
        return 0
    from ..pages.report import compute_report, render_report
    from ..schemas import stamp

    results = compute_report(args.path, activation=args.activation, force=args.force, neuron=args.neuron,
                             progress=not args.quiet)
    # every output is built before any is written: a failure leaves no partial set of files
    page = render_report(results)
    html_text = page.render()
    json_text = json.dumps(stamp(results.to_dict(), "report"), indent=1, allow_nan=False) + "\n" if args.json else None
    _export(page, args)  # the figures first: a failed export leaves no page claiming success
    out = atomic_write_text(args.out, html_text)
    print(f"report with {page.n_figures} figures written to {out} ({time.perf_counter() - t0:.1f} s)")
    if json_text is not None:
        print(f"JSON written to {atomic_write_text(args.json, json_text)}")
    return 0


def _export(page, args: argparse.Namespace) -> None:
    for fmt, folder in (("png", args.png), ("svg", args.svg)):
        if folder:
            files = page.export_figures(folder, fmt)
            print(f"{len(files)} {fmt.upper()} figures written to {folder}")
