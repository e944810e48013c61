"""``modadd``: the command line, thin over the library.

Sub-commands register themselves in :data:`COMMANDS` through :func:`command`; each gets an
``argparse`` sub-parser and a function taking the parsed arguments and returning an exit code.

Light-import rule: building the parser must import neither torch nor transformer-lens, so that
``modadd --help``, ``modadd CMD --help``, ``modadd --version`` and argument errors answer at once.
A command module (``mechinterp_modadd/commands/NAME.py``, listed in :data:`COMMAND_MODULES`) may
import at module level only the standard library, :mod:`mechinterp_modadd.commands.registry`,
:mod:`mechinterp_modadd.errors` and :mod:`mechinterp_modadd.constants`; its ``configure(parser)``
takes choices from :mod:`mechinterp_modadd.constants`; everything heavy is imported inside its
``run(args)``. ``tests/commands/test_cli.py`` checks ``sys.modules`` in a fresh interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from .commands import COMMAND_MODULES
from .commands.registry import COMMANDS, command
from .constants import version
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
            if name in FAMILY_COMMANDS and not any("--family" in a.option_strings for a in sp._actions):
                sp.add_argument("--family", default=None, metavar="NAME",
                                help="network family of a plain state dict (mlp, concat_mlp, transformer, ...; "
                                     "default: detected from its keys and shapes; own checkpoints record it)")
                sp.add_argument("--config", default=None, metavar="FILE",
                                help="family transformer: a JSON config of a foreign checkpoint (ours or "
                                     "TransformerLens's; default: a cfg stored in the file, else the shapes)")
        if name in BUDGETED_COMMANDS and not any("--max-memory" in a.option_strings for a in sp._actions):
            add_max_memory_argument(sp, training=name == "train")
        if not any("--device" in a.option_strings for a in sp._actions):
            add_runtime_flags(sp)
    return ap


#: Sub-commands that read one checkpoint file and take ``--family`` (plain state dicts of any family).
FAMILY_COMMANDS: tuple[str, ...] = ("diagnose", "ablate")

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
#: Inputs that may also be a sweep or batch folder (the claims over its seeds), and how the error
#: names what was expected when the path is neither
SEED_FOLDER_INPUTS: dict[tuple[str, str], str] = {
    ("diagnose", "checkpoint"): "checkpoint file (or a sweep or batch folder of runs)",
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
        from .commands.train import train_grid

        train_grid(args)  # the number of runs, before torch loads
        if args.resume and args.out and Path(args.out).is_dir():
            from .errors import RunFolderError

            check_folder_entries(args.out, error=RunFolderError)  # no pipe among the files --resume reads
    inputs = []
    for name in INPUT_OPTIONS:
        value = getattr(args, name, None)
        if value is None:
            continue
        kind, what = INPUT_KINDS.get((args.command, name), ("any", "input"))
        if (args.command, name) in SEED_FOLDER_INPUTS:
            from .sweeps.seeds import folder_kind

            if folder_kind(value) is not None:  # a sweep or batch folder: the claims over its seeds
                kind = "dir"
            else:
                what = SEED_FOLDER_INPUTS[(args.command, name)]
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
