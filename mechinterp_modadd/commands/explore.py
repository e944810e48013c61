"""``modadd explore CKPT_OR_RUN --out FILE.html``: one offline, interactive page to explore a
checkpoint or a run (neuron, pair, training-step and ablation pickers; see
:mod:`mechinterp_modadd.analysis.explorer` for what is computed and
:mod:`mechinterp_modadd.pages.explorer` for the page)."""

from __future__ import annotations

import argparse
import time

from .registry import command


def _configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("path", metavar="CKPT_OR_RUN", help="a checkpoint file or a run folder (ours or the authors')")
    ap.add_argument("--out", required=True, metavar="FILE.html", help="where to write the page")
    ap.add_argument("--activation", default=None,
                    help="activation (required for the authors' .pth files, which do not record it)")
    ap.add_argument("--draws", type=int, default=3, help="seeded random orders averaged in the ablation panel")
    ap.add_argument("--max-steps", type=int, default=120,
                    help="most checkpoints of a run shown on the page (evenly spread; default 120)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the ablation orders and of any sampling")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


@command("explore", "write one offline interactive page: pick neurons, pairs, training steps and ablations")(_configure)
def _run(args: argparse.Namespace) -> int:
    import os

    from ..analysis.explorer import explorer_data
    from ..errors import ConfigError
    from ..pages.explorer import save_explorer

    if args.max_steps < 2:
        raise ConfigError(f"--max-steps must be >= 2, got {args.max_steps}")
    if args.draws < 1:
        raise ConfigError(f"--draws must be >= 1, got {args.draws}")
    if not str(args.out).endswith((".html", ".htm")):
        raise ConfigError(f"--out must name an .html file, got {args.out!r}")
    t0 = time.perf_counter()
    data = explorer_data(args.path, activation=args.activation, force=args.force, progress=not args.quiet,
                         max_steps=args.max_steps, ablation_draws=args.draws, seed=args.seed)
    out = save_explorer(data, args.out)
    size = os.path.getsize(out) / 2**20
    print(f"explorer page for {data.name} ({len(data.steps)} checkpoint{'s' if len(data.steps) > 1 else ''}) "
          f"written to {out} ({size:.1f} MiB, {time.perf_counter() - t0:.1f} s)")
    return 0
