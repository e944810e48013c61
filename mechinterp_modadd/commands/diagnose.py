"""``modadd diagnose [CKPT] [--activation NAME] [--family NAME] [--json FILE] [--html FILE]``.

Checks every mechanism claim on one checkpoint and prints a short table (claim, key number,
verdict). Without CKPT it diagnoses the checkpoint shipped in ``data/`` (see data/README.md), or,
outside a source checkout, the copy of it installed with the package.
JSON and HTML are written only when asked; then the ablation suite is run too, once, and both
files render that same :class:`~mechinterp_modadd.diagnose.Diagnosis` (the JSON's ``ablation``
holds the numbers of the page's ablation section).

Any registered network family loads: own checkpoints record theirs; a plain state dict (e.g. a
concatenated-input MLP saved from plain torch) is detected from its keys and shapes or named with
``--family concat_mlp`` (its activation with ``--activation``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CheckpointError
from .registry import command, write_outputs

#: The shipped default checkpoint, relative to the repository root (or the working directory).
DEFAULT_CHECKPOINT = Path("data") / "standard_p23" / "checkpoints" / "step_005000.safetensors"

#: The same checkpoint inside the installed package (package data of the wheel), relative to the
#: ``mechinterp_modadd`` package folder.
PACKAGED_CHECKPOINT = Path("_data") / "standard_p23_step_005000.safetensors"


def default_checkpoint() -> Path:
    """The shipped checkpoint: ``data/`` next to the package (a source checkout), else ``./data``,
    else the copy installed with the package (so ``modadd diagnose`` works from any directory
    after ``pip install``)."""
    import mechinterp_modadd

    package_dir = Path(mechinterp_modadd.__file__).resolve().parent
    candidates = [package_dir.parent / DEFAULT_CHECKPOINT, Path.cwd() / DEFAULT_CHECKPOINT,
                  package_dir / PACKAGED_CHECKPOINT]
    for c in candidates:
        if c.is_file():
            return c
    raise CheckpointError(
        f"no CKPT given and the default checkpoint {DEFAULT_CHECKPOINT} was not found (looked in "
        f"{', '.join(str(c) for c in candidates)}); pass a checkpoint path")


def _configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("checkpoint", nargs="?", default=None, metavar="CKPT",
                    help=f"checkpoint (.safetensors of this package, or the authors' .pth); "
                         f"default {DEFAULT_CHECKPOINT}")
    ap.add_argument("--activation", default=None,
                    help="activation to use (required for the authors' .pth files, which do not record it; "
                         "for our checkpoints it swaps the stored one)")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the full diagnosis as JSON")
    ap.add_argument("--html", default=None, metavar="FILE", help="write a self-contained HTML report with figures")
    ap.add_argument("--details", action="store_true", help="print one line of numbers under each claim")


def _diagnose_many(args: argparse.Namespace) -> int:
    """A sweep or batch folder: every claim over the seeds of its runs (last checkpoint of each)."""
    from ..analysis.sweep import claims_over_seeds
    from ..errors import InputError
    from ..sweeps.seeds import folder_kind, seed_table

    if args.json or args.html or args.activation:
        raise InputError(f"{args.checkpoint}: --json, --html and --activation apply to one checkpoint; for a "
                         f"folder of runs diagnose prints every claim over seeds")
    kind = folder_kind(args.checkpoint)
    table = seed_table(args.checkpoint, ["diagnose"])
    print(f"{args.checkpoint}: {kind} folder, {table.n_complete} runs; each claim over seeds (key number: median, "
          f"quartiles, mean with 95 % bootstrap interval; share of seeds holding with 95 % Wilson interval)")
    df = claims_over_seeds(table)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


@command("diagnose", "check every mechanism claim on one checkpoint (default: the shipped p = 23 run)")(_configure)
def _run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_checkpoint
    from ..diagnose import diagnose
    from ..sweeps.seeds import folder_kind

    if args.checkpoint and folder_kind(args.checkpoint) is not None:
        return _diagnose_many(args)
    path = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    ckpt = load_checkpoint(path, activation=args.activation, force=args.force, family=args.family,
                           config=args.config)
    model = ckpt.model  # load_checkpoint already applied --activation
    step = f" (step {ckpt.step})" if ckpt.step is not None else ""
    # the ablation suite of the page and the JSON is the paper MLP's; other families carry their
    # majority vote by ablation in the claims
    dg = diagnose(model, source=f"{path}{step}",
                  ablation=bool(args.json or args.html) and ckpt.family == "mlp")
    print(dg.to_text(details=args.details))
    # every output is built before any is written: a failure leaves no partial set of files
    page = None
    if args.html:
        from ..pages.diagnosis import render

        page = render(dg)
    text = dg.to_json() + "\n" if args.json else None
    write_outputs(args.json, text, args.html, page)
    return 0
