"""``modadd``: the command line, thin over the library.

Sub-commands register themselves in :data:`COMMANDS` through :func:`command`; each gets an
``argparse`` sub-parser and a function taking the parsed arguments and returning an exit code.

Light-import rule: building the parser must import neither torch nor transformer-lens, so that
``modadd --help``, ``modadd CMD --help``, ``modadd --version`` and argument errors answer at once.
A command module (``mechinterp_modadd/commands/NAME.py``, listed in :data:`COMMAND_MODULES`) may
import at module level only the standard library, :mod:`mechinterp_modadd.cli`,
:mod:`mechinterp_modadd.errors` and :mod:`mechinterp_modadd.constants`; its ``configure(parser)``
takes choices from :mod:`mechinterp_modadd.constants`; everything heavy is imported inside its
``run(args)``. ``tests/test_cli.py`` checks ``sys.modules`` in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .constants import PRESET_NAMES, version
from .errors import ModAddError
from .memory import add_max_memory_argument, memory_budget

__all__ = ["main", "build_parser", "command", "COMMANDS"]

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str]] = {}


def command(name: str, help: str):
    """Register ``configure(parser)`` / ``run(args)`` for the sub-command ``name``."""

    def deco(configure: Callable[[argparse.ArgumentParser], None]):
        def with_run(run: Callable[[argparse.Namespace], int]):
            COMMANDS[name] = (configure, run, help)
            return run

        return with_run

    return deco


# ----------------------------------------------------------------------------------- train
def _configure_train(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--preset", required=True, choices=sorted(PRESET_NAMES), help="one of the paper's configurations")
    ap.add_argument("--p", type=int, default=23, help="modulus (default 23)")
    ap.add_argument("--d-mlp", type=int, default=None, help="hidden width (default max(512, ceil(512 p^2/529)))")
    ap.add_argument("--steps", type=int, default=None, help="full-batch steps (default: the preset's)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--weight-decay", type=float, default=None)
    ap.add_argument("--train-fraction", type=float, default=None)
    ap.add_argument("--init-scale", type=float, default=None)
    ap.add_argument("--activation", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=1000, help="checkpoint interval in steps")
    ap.add_argument("--checkpoint-steps", default=None,
                    help="extra checkpoint steps, comma separated (e.g. 100,200,500)")
    ap.add_argument("--out", default=None, help="run folder (default runs/<preset>_p<p>_seed<seed>)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


@command("train", "train a model with one of the paper's presets")(_configure_train)
def _run_train(args: argparse.Namespace) -> int:
    import time

    from .training import preset, train

    cfg = preset(args.preset, p=args.p, d_mlp=args.d_mlp, steps=args.steps, lr=args.lr,
                 weight_decay=args.weight_decay, train_fraction=args.train_fraction,
                 init_scale=args.init_scale, activation=args.activation, seed=args.seed,
                 save_every=args.save_every)
    out = Path(args.out) if args.out else Path("runs") / f"{args.preset}_p{cfg.p}_seed{cfg.seed}"
    extra = [int(s) for s in args.checkpoint_steps.split(",")] if args.checkpoint_steps else None
    _announce_training(cfg, getattr(args, "max_memory", None))
    t0 = time.perf_counter()
    res = train(cfg, out, resume=args.resume, progress=not args.quiet, checkpoint_steps=extra)
    dt = time.perf_counter() - t0
    last = res.metrics.iloc[-1]
    print(f"run folder: {out}")
    print(f"steps {int(last['step'])}  train loss {last['train_loss']:.4g}  "
          f"train acc {last['train_accuracy']:.4f}  test acc {last['test_accuracy']:.4f}  "
          f"param norm {last['param_norm']:.3f}  ({dt:.1f} s)")
    return 0


def _announce_training(cfg, max_memory: int | None) -> None:
    """Refuse a run whose full-batch step cannot fit in memory, and print the expected time per
    step and for the run when it may last longer than a few minutes (see training.estimate)."""
    from .errors import ConfigError
    from .memory import format_bytes
    from .training.estimate import REPORT_AFTER_S, available_memory, estimate_training, step_bytes

    mcfg = cfg.model_config()
    need = step_bytes(mcfg.p, mcfg.d_mlp)
    what = f"a full-batch training step at p = {mcfg.p}, d_mlp = {mcfg.d_mlp} needs about {format_bytes(need)}"
    if max_memory is not None and need > max_memory:
        raise ConfigError(f"--max-memory {format_bytes(max_memory)}: {what}; raise the budget or lower --d-mlp")
    avail = available_memory()
    if avail is not None and need > avail:
        raise ConfigError(f"{what} but only {format_bytes(avail)} of memory is available; lower --d-mlp or --p")
    est = estimate_training(cfg)
    if est.total_seconds >= REPORT_AFTER_S:
        print(est.message(), flush=True)


# ------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="modadd", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (configure, _, help) in COMMANDS.items():
        sp = sub.add_parser(name, help=help, description=help)
        configure(sp)
        if name in BUDGETED_COMMANDS and not any("--max-memory" in a.option_strings for a in sp._actions):
            add_max_memory_argument(sp, training=name == "train")
    return ap


#: Modules of ``mechinterp_modadd.commands`` whose sub-commands register on import (one a file,
#: so that each command's options live beside its code).
COMMAND_MODULES: list[str] = ["diagnose", "ablate", "track", "report", "explore", "sweep"]


#: Sub-commands that take ``--max-memory`` (the analyses stream within it; train checks its step).
BUDGETED_COMMANDS: tuple[str, ...] = ("diagnose", "ablate", "track", "report", "train")


def _load_plugins() -> None:
    import importlib

    for mod in COMMAND_MODULES:
        importlib.import_module(f"mechinterp_modadd.commands.{mod}")


def main(argv: list[str] | None = None) -> int:
    _load_plugins()
    args = build_parser().parse_args(argv)
    try:
        with memory_budget(getattr(args, "max_memory", None)):
            return COMMANDS[args.command][1](args)
    except ModAddError as e:
        print(f"modadd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # run as a script, this module is "__main__"; the command modules register into the
    # importable mechinterp_modadd.cli, so dispatch through that one
    from mechinterp_modadd.cli import main as _main

    sys.exit(_main())
