"""Output files of the command line: checked before any work, so that a run never ends with some
outputs written and others failed.

:func:`check_output_files` looks at every output path before a command computes anything: the
path must not be a folder, nor equal an input or another output, and its nearest existing
ancestor must be a writable folder (a regular file in the way fails, also for root). The writes
themselves are atomic (:func:`mechinterp_modadd.checkpoint.atomic_write_bytes`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .errors import OutputError

__all__ = ["check_output_files"]


def _nearest_existing(path: Path) -> Path:
    q = path.parent
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def check_output_files(outputs: dict[str, str | os.PathLike | None], inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse output paths that cannot be written, naming the option (e.g. ``--json``) and why.

    Args:
        outputs: ``{option: path or None}``; ``None`` entries are skipped.
        inputs: input paths an output may not overwrite.

    Raises:
        OutputError: the path is a folder, an input, another option's path, or its nearest
            existing ancestor is not a folder or not writable.
    """
    seen: dict[Path, str] = {}
    ins = {Path(i).resolve() for i in inputs}
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
        if path.is_dir():
            raise OutputError(f"{flag} {raw}: is a folder; expected a file path")
        anc = _nearest_existing(path)
        if not anc.is_dir():
            raise OutputError(f"{flag} {raw}: {anc} is not a folder, so the file cannot be created there")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {raw}: folder {anc} is not writable")
        if path.exists() and not os.access(path, os.W_OK) and not os.access(path.parent, os.W_OK):
            raise OutputError(f"{flag} {raw}: file is not writable")
