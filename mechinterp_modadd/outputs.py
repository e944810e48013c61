"""Output paths of the command line: checked before any work, so that a command never ends with
some outputs written and others failed, and never replaces a file of its own input.

:func:`check_output_files` looks at every output path before a command computes anything. An
output file may not be:

- a folder, or a path whose nearest existing ancestor is not a writable folder (a regular file in
  the way fails, also for root), nor a pipe, device or socket;
- the same file as another output;
- a file of an input: the input file itself, any existing file inside an input folder (a run, an
  authors' folder, a sweep), and any existing file inside the run folder of an input checkpoint
  (``RUN/checkpoints/step_*.safetensors`` belongs to ``RUN``; an authors' ``N.pth`` to its folder
  when that holds their other steps);
- an existing file inside any run, batch or sweep folder (recognised by ``checkpoints/`` next to
  ``config.json`` or a metrics table, by ``runs.csv`` or by ``sweep.json``; names from
  :mod:`mechinterp_modadd.layout`), or an existing checkpoint file anywhere
  (``.safetensors``, ``.pth``, ``.pt``): replacing it would break that run for ``train --resume``,
  ``track`` or ``report``.

New files inside those folders are allowed (``modadd report RUN --out RUN/page.html`` works once;
the second time it names the old page). :func:`check_output_folders` does the same for folders a
command fills (``report --png DIR``). The writes themselves are atomic
(:func:`mechinterp_modadd.fileio.atomic_write_bytes`).

Standard library only: the command line runs these checks before torch loads.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from .errors import OutputError
from .inputs import special_kind
from .layout import CHECKPOINTS, CONFIG, METRICS_FILES, RUNS_CSV

__all__ = ["check_output_files", "check_output_folders", "input_folders", "CHECKPOINT_SUFFIXES"]

#: file suffixes of checkpoints: an existing file with one of them is never replaced by an output
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt")


def _nearest_existing(path: Path) -> Path:
    q = path.parent
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _is_run_like(folder: Path) -> str | None:
    """``"run folder"``, ``"batch folder"`` or ``"sweep folder"`` when ``folder`` is one, else None."""
    if (folder / "sweep.json").is_file():
        return "sweep folder"
    if (folder / RUNS_CSV).is_file():
        return "batch folder"
    if (folder / CHECKPOINTS).is_dir() and any((folder / f).is_file() for f in (CONFIG, *METRICS_FILES)):
        return "run folder"
    return None


_AUTHORS_STEP = re.compile(r"^(\d+|final)\.pth$")


def _is_authors_folder(folder: Path) -> bool:
    """A folder of the paper authors' checkpoints: two or more ``N.pth`` / ``final.pth`` files (a
    lone ``.pth`` in, say, a downloads folder does not make its other files an input's)."""
    try:
        return sum(1 for e in os.scandir(folder) if _AUTHORS_STEP.match(e.name)) >= 2
    except OSError:
        return False


def input_folders(inputs: Iterable[str | os.PathLike]) -> list[tuple[Path, str]]:
    """(resolved folder, description) of every folder whose files belong to an input: an input
    folder itself, and the folder of an input file (``RUN`` for ``RUN/checkpoints/x.safetensors``;
    the file's own folder for an authors' ``N.pth`` among their other steps and for any file inside
    a run-like folder)."""
    out: list[tuple[Path, str]] = []
    for raw in inputs:
        p = Path(raw)
        try:
            full = p.resolve()
        except OSError:
            continue
        if full.is_dir():
            out.append((full, f"the input folder {raw}"))
        elif full.exists():
            parent = full.parent
            if parent.name == "checkpoints":
                out.append((parent.parent, f"the run folder of the input {raw}"))
            elif _is_run_like(parent) or (full.suffix in (".pth", ".pt") and _is_authors_folder(parent)):
                out.append((parent, f"the run folder of the input {raw}"))
    return out


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _protection(full: Path, ins: set[Path], folders: list[tuple[Path, str]]) -> str | None:
    """Why the existing file ``full`` may not be replaced, or None."""
    if full in ins:
        return "is an input of this command"
    for folder, what in folders:
        if _inside(full, folder):
            return f"is a file of {what}"
    if full.suffix.lower() in CHECKPOINT_SUFFIXES:
        return "is a checkpoint file"
    for anc in full.parents:
        kind = _is_run_like(anc)
        if kind is not None:
            return f"is a file of the {kind} {anc}"
    return None


def check_output_files(outputs: dict[str, str | os.PathLike | None], inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse output paths that cannot or may not be written, naming the option and why.

    Args:
        outputs: ``{option: path or None}`` (e.g. ``{"--json": "d.json"}``); ``None`` entries are skipped.
        inputs: the command's input paths (files or folders) whose files an output may not replace.

    Raises:
        OutputError: see the module docstring for the rules.
    """
    inputs = [i for i in inputs if i is not None and str(i).strip()]
    seen: dict[Path, str] = {}
    ins = {Path(i).resolve() for i in inputs}
    folders = input_folders(inputs)
    for flag, raw in outputs.items():
        if raw is None:
            continue
        if str(raw).strip() == "":
            raise OutputError(f"{flag}: empty path; expected a file name")
        path = Path(raw)
        full = path.resolve()
        if full in ins:
            raise OutputError(f"{flag} {raw}: is the input of this command; refusing to overwrite it")
        if full in seen:
            raise OutputError(f"{flag} {raw}: same file as {seen[full]}; give each output its own path")
        seen[full] = flag
        if full in {f for f, _ in folders}:
            raise OutputError(f"{flag} {raw}: is a folder of an input of this command; expected a file path")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            st = None
        except NotADirectoryError:
            st = None  # the nearest existing ancestor below is a file: named there
        except OSError as e:
            raise OutputError(f"{flag} {raw}: cannot check the path ({e.strerror or e})") from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{flag} {raw}: is a folder; expected a file path")
        if st is not None and special_kind(st.st_mode) is not None:
            raise OutputError(f"{flag} {raw}: is {special_kind(st.st_mode)}; expected a regular file path")
        if st is not None:
            why = _protection(full, ins, folders)
            if why is not None:
                raise OutputError(f"{flag} {raw}: {why}; refusing to replace it (choose a path outside it)")
        anc = _nearest_existing(path)
        if not anc.is_dir():
            raise OutputError(f"{flag} {raw}: {anc} is not a folder, so the file cannot be created there")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {raw}: folder {anc} is not writable")
        if st is not None and not os.access(path, os.W_OK) and not os.access(path.parent, os.W_OK):
            raise OutputError(f"{flag} {raw}: file is not writable")


def check_output_folders(outputs: dict[str, str | os.PathLike | None],
                         inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse output *folders* (e.g. ``--png DIR``) that cannot be created or written: a file in
    the way, an unwritable ancestor, an input folder, or a non-empty folder inside an input's or
    another run's folder (its files could be replaced). Raises :class:`OutputError` naming the option."""
    inputs = [i for i in inputs if i is not None and str(i).strip()]
    ins = {Path(i).resolve() for i in inputs}
    folders = input_folders(inputs)
    for flag, raw in outputs.items():
        if raw is None:
            continue
        if str(raw).strip() == "":
            raise OutputError(f"{flag}: empty path; expected a folder")
        path = Path(raw)
        full = path.resolve()
        if full in ins or full in {f for f, _ in folders}:
            raise OutputError(f"{flag} {raw}: is an input folder of this command; choose another folder")
        if path.exists() and not path.is_dir():
            raise OutputError(f"{flag} {raw}: is a file; expected a folder (created when absent)")
        if path.is_dir():
            if any(path.iterdir()):
                why = None
                for folder, what in folders:
                    if _inside(full, folder):
                        why = f"is inside {what}"
                for anc in (full, *full.parents):
                    kind = _is_run_like(anc)
                    if why is None and kind is not None:
                        why = f"is inside the {kind} {anc}"
                if why is not None:
                    raise OutputError(f"{flag} {raw}: {why} and not empty; refusing to write figures there")
            if not os.access(path, os.W_OK | os.X_OK):
                raise OutputError(f"{flag} {raw}: folder is not writable")
            continue
        anc = path.parent
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir():
            raise OutputError(f"{flag} {raw}: {anc} is not a folder, so the folder cannot be created there")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {raw}: folder {anc} is not writable")
