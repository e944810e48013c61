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
    ap.add_argument("--checkpoint-steps", default=None, type=_step_list,
                    help="extra checkpoint steps, comma separated (e.g. 100,200,500)")
    ap.add_argument("--out", default=None, help="run folder (default runs/<preset>_p<p>_seed<seed>)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    ap.add_argument("--break-lock", action="store_true",
                    help="take over a stale lock of --out (left by a training that no longer runs)")
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
    extra = args.checkpoint_steps
    _announce_training(cfg, getattr(args, "max_memory", None))
    t0 = time.perf_counter()
    res = train(cfg, out, resume=args.resume, progress=not args.quiet, checkpoint_steps=extra,
                break_lock=args.break_lock)
    dt = time.perf_counter() - t0
    print(f"run folder: {out}")
    print(f"{summary_line(res.metrics.iloc[-1])}  ({dt:.1f} s)")
    return 0


def summary_line(last) -> str:
    """One line of a metrics row; the test columns are left out when the run has no test pairs
    (full-data runs record NaN there)."""
    import math

    test = "" if math.isnan(float(last["test_accuracy"])) else \
        f"test loss {last['test_loss']:.4g}  test acc {last['test_accuracy']:.4f}  "
    return (f"steps {int(last['step'])}  train loss {last['train_loss']:.4g}  "
            f"train acc {last['train_accuracy']:.4f}  {test}param norm {last['param_norm']:.3f}"
            + ("" if test else "  (no test pairs: trained on all pairs)"))


def _step_list(text: str) -> list[int]:
    """``--checkpoint-steps``: comma-separated integers >= 0."""
    try:
        steps = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 100,200,500, got {text!r}") \
            from None
    if any(t < 0 for t in steps):
        raise argparse.ArgumentTypeError(f"steps must be >= 0, got {text!r}")
    return steps


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
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit code 2), naming the flag."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="modadd", description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (configure, _, help) in COMMANDS.items():
        sp = sub.add_parser(name, help=help, description=help)
        configure(sp)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of an error")
        if any("--activation" in a.option_strings for a in sp._actions) and name != "train":
            sp.add_argument("--force", action="store_true",
                            help="use --activation even where it contradicts the activation recorded in the "
                                 "checkpoint or given by the authors' folder name")
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


#: Options naming an output *file* of each sub-command: checked before any work starts (parent a
#: folder, the path not a folder, not an input, no two alike), written only after all succeeded.
OUTPUT_FILE_OPTIONS: dict[str, tuple[str, ...]] = {
    "diagnose": ("json", "html"), "ablate": ("json", "html"), "track": ("json", "html"),
    "report": ("out",), "explore": ("out",),
}
#: Positional arguments naming the input of each sub-command (an output may not overwrite it).
INPUT_OPTIONS: tuple[str, ...] = ("checkpoint", "run", "path")


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _os_error_line(e: OSError) -> str:
    what = e.strerror or type(e).__name__
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    return f"{' -> '.join(names)}: {what}" if names else _one_line(str(e)) or what


def main(argv: list[str] | None = None) -> int:
    """Run ``modadd``. Errors a user can cause (bad flags, files, metadata, runs, OSError) print one
    line ``modadd CMD: error: ...`` on stderr and return 2; ``--debug`` re-raises with the traceback.
    Anything else is a bug: one line saying so, return 1 (``--debug`` shows the traceback)."""
    import warnings

    _load_plugins()
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    prog = f"modadd {args.command}"
    shown = warnings.showwarning

    def one_line_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
        if category.__name__ == "ModAddWarning":
            print(f"{prog}: warning: {_one_line(message)}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = one_line_warning
    try:
        from .outputs import check_output_files

        check_output_files({f"--{o}": getattr(args, o, None) for o in OUTPUT_FILE_OPTIONS.get(args.command, ())},
                           inputs=[getattr(args, o) for o in INPUT_OPTIONS if getattr(args, o, None)])
        with memory_budget(getattr(args, "max_memory", None)):
            return COMMANDS[args.command][1](args)
    except ModAddError as e:
        if debug:
            raise
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:
        if debug:
            raise
        print(f"{prog}: error: {_os_error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        print(f"{prog}: internal error (a bug, please report it): {type(e).__name__}: {_one_line(e)} "
              f"(rerun with --debug for the traceback)", file=sys.stderr)
        return 1
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":
    # run as a script, this module is "__main__"; the command modules register into the
    # importable mechinterp_modadd.cli, so dispatch through that one
    from mechinterp_modadd.cli import main as _main

    sys.exit(_main())
