"""``modadd``: the command line, thin over the library.

Sub-commands register themselves in :data:`COMMANDS` through :func:`command`; each gets an
``argparse`` sub-parser and a function taking the parsed arguments and returning an exit code.

Light-import rule: building the parser must import neither torch nor transformer-lens, so that
``modadd --help``, ``modadd CMD --help``, ``modadd --version`` and argument errors answer at once.
A command module (``mechinterp_modadd/commands/NAME.py``, listed in :data:`COMMAND_MODULES`) may
import at module level only the standard library, :mod:`mechinterp_modadd.commands.registry`,
:mod:`mechinterp_modadd.errors` and :mod:`mechinterp_modadd.constants`; its ``configure(parser)``
takes choices from :mod:`mechinterp_modadd.constants`; everything heavy is imported inside its
``run(args)``. ``tests/test_cli.py`` checks ``sys.modules`` in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from .commands import COMMAND_MODULES
from .commands.registry import COMMANDS, command
from .constants import MAX_RUNS, PRESET_NAMES, version
from .errors import ModAddError
from .memory import add_max_memory_argument, memory_budget

__all__ = ["main", "build_parser", "command", "COMMANDS", "COMMAND_MODULES"]

# ------------------------------------------------------------------------------ shared flags
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def _device_arg(text: str) -> str:
    t = text.strip().lower()
    if t in DEVICE_CHOICES or (t.startswith("cuda:") and t[5:].isdigit()):
        return t
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def add_runtime_flags(ap: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``, offered by every command (added by :func:`build_parser`)."""
    ap.add_argument("--device", type=_device_arg, default="auto", metavar="{auto,cpu,cuda}",
                    help="where to train and where the analyses run their heavy float64 passes (all-pairs "
                         "forward passes, batched ablations, Fourier transforms): auto (CUDA when available, "
                         "the default), cpu or cuda; the rest of an analysis stays on the CPU, and numbers "
                         "agree across devices to about 1e-12 with the same verdicts")
    ap.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                    help="CPU threads for torch (default: chosen from the problem size and the idle "
                         "cores; an OMP_NUM_THREADS setting or an earlier torch.set_num_threads is respected)")


def _int_values(text: str) -> list[int]:
    """``"3"`` -> [3]; ``"0-31"`` -> [0, ..., 31] (inclusive range)."""
    t = text.strip()
    lo, sep, hi = t.partition("-") if not t.startswith("-") else ("", "", "")
    try:
        if sep:
            a, b = int(lo), int(hi)
            if b < a:
                raise ValueError
            if b - a + 1 > MAX_RUNS:
                raise argparse.ArgumentTypeError(f"{text!r} names {b - a + 1:,} values; one command trains at most "
                                                 f"{MAX_RUNS:,} runs (split it into several)")
            return list(range(a, b + 1))
        return [int(t)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or a range such as 0-31, got {text!r}") from None


def _float_value(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


# ----------------------------------------------------------------------------------- train
def _configure_train(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--preset", required=True, choices=sorted(PRESET_NAMES), help="one of the paper's configurations")
    ap.add_argument("--p", type=int, default=23, help="modulus (default 23)")
    ap.add_argument("--d-mlp", type=int, default=None, help="hidden width (default max(512, ceil(512 p^2/529)))")
    ap.add_argument("--steps", type=int, default=None, help="full-batch steps (default: the preset's)")
    many = " (several values train the Cartesian product of all multi-valued flags, batched)"
    ap.add_argument("--lr", type=_float_value, nargs="+", default=None, help="learning rate" + many)
    ap.add_argument("--weight-decay", type=_float_value, nargs="+", default=None, help="weight decay" + many)
    ap.add_argument("--train-fraction", type=_float_value, nargs="+", default=None,
                    help="fraction of pairs in train" + many)
    ap.add_argument("--init-scale", type=_float_value, nargs="+", default=None, help="init scale" + many)
    ap.add_argument("--activation", default=None)
    ap.add_argument("--seed", type=_int_values, nargs="+", default=None,
                    help="seed(s): 0, or 0 1 2, or a range 0-31" + many)
    ap.add_argument("--save-every", type=int, default=1000, help="checkpoint interval in steps")
    ap.add_argument("--stop-accuracy", type=_float_value, default=None,
                    help="early stop: end a run once train and test accuracy held >= this for --stop-window "
                    "steps (checked at multiples of the window; default: train every step)")
    ap.add_argument("--stop-window", type=int, default=None, help="early-stop window in steps (default 1000)")
    ap.add_argument("--checkpoint-steps", default=None, type=_step_list,
                    help="extra checkpoint steps, comma separated (e.g. 100,200,500)")
    ap.add_argument("--out", default=None, help="run folder (default runs/<preset>_p<p>_seed<seed>); with "
                    "several runs, the parent folder of one folder per run plus runs.csv "
                    "(default runs/<preset>_p<p>_many)")
    ap.add_argument("--resume", action="store_true", help="continue the run(s) in --out from the last checkpoint")
    ap.add_argument("--break-lock", action="store_true",
                    help="take over a stale lock of --out (left by a training that no longer runs)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


@command("train", "train a model with one of the paper's presets (several seeds/lrs/... batched)")(_configure_train)
def _run_train(args: argparse.Namespace) -> int:
    import itertools
    import time

    from .errors import ConfigError
    from .training import preset, train, train_many

    grid = _train_grid(args)
    cfgs = [preset(args.preset, p=args.p, d_mlp=args.d_mlp, steps=args.steps, activation=args.activation,
                   save_every=args.save_every, stop_accuracy=args.stop_accuracy, stop_window=args.stop_window,
                   **dict(zip(grid, values, strict=True)))
            for values in itertools.product(*grid.values())]
    max_memory = getattr(args, "max_memory", None)
    _announce_training(cfgs[0], max_memory)
    t0 = time.perf_counter()
    if len(cfgs) > 1:
        if args.checkpoint_steps:
            raise ConfigError("--checkpoint-steps: not supported with several runs (use --save-every)")
        out = Path(args.out) if args.out else Path("runs") / f"{args.preset}_p{cfgs[0].p}_many"
        res = train_many(cfgs, out, device=args.device, max_memory=max_memory, threads=args.threads,
                         progress=not args.quiet, resume=args.resume, break_lock=args.break_lock)
        dt = time.perf_counter() - t0
        tab = res.table
        steps, done = int(tab["steps_done"].max()), int(tab["steps_done"].sum())
        stopped = int((tab["steps_done"] < cfgs[0].steps).sum())
        print(f"{len(cfgs)} runs in {out} (summary: {out / 'runs.csv'})")
        print(f"train acc: min {tab['train_accuracy'].min():.4f} mean {tab['train_accuracy'].mean():.4f}; "
              + (f"up to {steps} steps, {stopped} runs stopped early" if stopped else f"{steps} steps each")
              + f" ({dt:.1f} s, {done / max(dt, 1e-9):,.0f} run-steps/s)")
        for _, row in tab[tab["status"] != "ok"].iterrows():
            print(f"  {row['folder']}: {row['status']}")
        return 0
    cfg = cfgs[0]
    out = Path(args.out) if args.out else Path("runs") / f"{args.preset}_p{cfg.p}_seed{cfg.seed}"
    res = train(cfg, out, resume=args.resume, progress=not args.quiet, checkpoint_steps=args.checkpoint_steps,
                break_lock=args.break_lock, device=args.device, threads=args.threads)
    dt = time.perf_counter() - t0
    print(f"run folder: {out}")
    print(f"{summary_line(res.metrics.iloc[-1])}  ({dt:.1f} s)")
    return 0


def _train_grid(args: argparse.Namespace) -> dict[str, list]:
    """The values of the multi-valued flags of ``train`` (their product is the runs). A product above
    :data:`~mechinterp_modadd.constants.MAX_RUNS` runs is refused with its count (standard library
    only: the CLI checks it before torch loads and before anything is written)."""
    import itertools
    import math

    from .errors import ConfigError

    grid = {
        "seed": sorted(set(itertools.chain.from_iterable(args.seed))) if args.seed else [0],
        "lr": args.lr or [None],
        "weight_decay": args.weight_decay or [None],
        "train_fraction": args.train_fraction or [None],
        "init_scale": args.init_scale or [None],
    }
    n = math.prod(len(v) for v in grid.values())
    if n > MAX_RUNS:
        sizes = " x ".join(f"{len(v)} --{k.replace('_', '-')}" for k, v in grid.items() if len(v) > 1)
        raise ConfigError(f"{sizes} = {n:,} runs; one command trains at most {MAX_RUNS:,} runs (split the grid "
                          f"into several commands or use modadd sweep)")
    return grid


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
        if not any("--device" in a.option_strings for a in sp._actions):
            add_runtime_flags(sp)
    return ap


#: Sub-commands that take ``--max-memory`` (the analyses stream within it; train checks its step).
BUDGETED_COMMANDS: tuple[str, ...] = ("diagnose", "ablate", "track", "report", "train")


def _load_plugins() -> None:
    """Register the sub-commands of :mod:`mechinterp_modadd.commands` (:func:`~mechinterp_modadd.commands.load`)."""
    from . import commands

    commands.load()


#: Options naming an output *file* of each sub-command: checked before any work starts (parent a
#: folder, the path not a folder, not an input, no two alike), written only after all succeeded.
OUTPUT_FILE_OPTIONS: dict[str, tuple[str, ...]] = {
    "diagnose": ("json", "html"), "ablate": ("json", "html"), "track": ("json", "html"),
    "report": ("out", "json"), "explore": ("out",),
}
#: options that name an output file in every sub-command that has them
COMMON_OUTPUT_FILES: tuple[str, ...] = ("json", "html")
#: Positional arguments naming the input of each sub-command (an output may not overwrite it).
INPUT_OPTIONS: tuple[str, ...] = ("checkpoint", "run", "path", "spec")
#: (command, argument) -> (kind, what) of each input path, checked by ``stat`` before torch loads
#: (:func:`mechinterp_modadd.inputs.check_input_path`): kind "file", "dir" or "any"
INPUT_KINDS: dict[tuple[str, str], tuple[str, str]] = {
    ("diagnose", "checkpoint"): ("file", "checkpoint file"),
    ("ablate", "checkpoint"): ("file", "checkpoint file"),
    ("track", "run"): ("dir", "run folder"),
    ("report", "path"): ("any", "checkpoint file, run folder or sweep folder"),
    ("explore", "path"): ("any", "checkpoint file or run folder"),
    ("sweep", "spec"): ("file", "sweep spec"),
}
#: Options naming an output *folder* a sub-command fills (checked like the output files)
OUTPUT_FOLDER_OPTIONS: dict[str, tuple[str, ...]] = {"report": ("png", "svg")}


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _os_error_line(e: OSError) -> str:
    what = e.strerror or type(e).__name__
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    return f"{' -> '.join(names)}: {what}" if names else _one_line(str(e)) or what


def _check_paths(args: argparse.Namespace) -> None:
    """Inputs and outputs of the command, by ``stat`` alone and before torch loads: every input
    exists, has the right kind and is no pipe or device (:mod:`mechinterp_modadd.inputs`); no
    output lands on an input's files or can fail to be written (:mod:`mechinterp_modadd.outputs`)."""
    from .errors import CheckpointError
    from .inputs import check_folder_entries, check_input_path
    from .outputs import check_output_files, check_output_folders

    if args.command == "train":
        _train_grid(args)  # the number of runs, before torch loads
        if args.resume and args.out and Path(args.out).is_dir():
            from .errors import RunFolderError

            check_folder_entries(args.out, error=RunFolderError)  # no pipe among the files --resume reads
    inputs = []
    for name in INPUT_OPTIONS:
        value = getattr(args, name, None)
        if value is None:
            continue
        kind, what = INPUT_KINDS.get((args.command, name), ("any", "input"))
        error = CheckpointError
        if args.command == "sweep":
            from .errors import ConfigError as error  # noqa: N813
        path = check_input_path(value, what=what, kind=kind, error=error)
        if path.is_dir():
            check_folder_entries(path)
        inputs.append(value)
    if args.command == "diagnose" and getattr(args, "checkpoint", None) is None:
        from .commands.diagnose import default_checkpoint

        inputs.append(default_checkpoint())
    outs = dict.fromkeys((*OUTPUT_FILE_OPTIONS.get(args.command, ()), *COMMON_OUTPUT_FILES))
    check_output_files({f"--{o}": getattr(args, o, None) for o in outs}, inputs=inputs)
    check_output_folders({f"--{o}": getattr(args, o, None) for o in OUTPUT_FOLDER_OPTIONS.get(args.command, ())},
                         inputs=inputs)


@contextlib.contextmanager
def _runtime(args: argparse.Namespace) -> Iterator[None]:
    """Check ``--device`` (CUDA asked for but absent: one-line error) and apply it to the analyses
    (:func:`~mechinterp_modadd.runtime.analysis_device`) and ``--threads`` for the whole command
    (both are restored afterwards)."""
    if getattr(args, "device", None) is None and getattr(args, "threads", None) is None:
        yield
        return
    from .runtime import analysis_device, requested_threads

    with analysis_device(getattr(args, "device", None) or "auto"), \
            requested_threads(getattr(args, "threads", None)):
        yield


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
        _check_paths(args)
        with memory_budget(getattr(args, "max_memory", None)), _runtime(args):
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
