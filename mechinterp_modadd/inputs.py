"""Input paths checked by ``stat`` alone, before anything is opened or any heavy module is imported.

:func:`check_input_path` refuses, in one line naming the path: a path that does not exist, a file
where a folder is expected (or the reverse), and anything that is not a regular file or a folder (a
named pipe, a character or block device, a socket). Those are never opened: reading a pipe as a
checkpoint would block forever, reading a device could read without end. :func:`check_folder_entries`
applies the same test to the entries of a run or sweep folder (the folder itself, its
sub-folders a few levels down), so a pipe planted inside a run, a batch or a sweep is refused too.

Standard library only (core layer): the command line runs these checks before torch loads, so an
argument or path error answers in well under a second.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import CheckpointError, ModAddError

__all__ = ["check_input_path", "check_folder_entries", "special_kind", "regular_file"]

_SPECIAL = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_kind(mode: int) -> str | None:
    """``"a named pipe"``, ``"a character device"``, ... for a non-regular, non-folder ``st_mode``;
    None for a regular file or a folder."""
    for test, name in _SPECIAL:
        if test(mode):
            return name
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return "not a regular file"


def check_input_path(path: str | os.PathLike, *, what: str = "checkpoint file", kind: str = "file",
                     error: type[ModAddError] = CheckpointError) -> Path:
    """Check ``path`` with ``os.stat`` only (nothing is opened) and return it as a :class:`Path`.

    Args:
        path: the input.
        what: its name in messages (``"checkpoint file"``, ``"run folder"``, ``"sweep spec"``).
        kind: ``"file"``, ``"dir"`` or ``"any"`` (a regular file or a folder).
        error: the exception class raised.

    Raises:
        ``error``: the path is missing, of the wrong kind, a pipe/device/socket, or not readable.
    """
    p = Path(path)
    if str(path).strip() == "":
        raise error(f"empty path; expected a {what}")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{p}: no such {what}") from None
    except NotADirectoryError:
        raise error(f"{p}: no such {what} (a part of the path is a file, not a folder)") from None
    except OSError as e:
        raise error(f"{p}: cannot read the {what} ({e.strerror or e})") from None
    special = special_kind(st.st_mode)
    if special is not None:
        raise error(f"{p}: is {special}, not a {what}; refusing to read it")
    if kind == "file" and stat.S_ISDIR(st.st_mode):
        raise error(f"{p}: is a folder; expected a {what}")
    if kind == "dir" and not stat.S_ISDIR(st.st_mode):
        raise error(f"{p}: is a file; expected a {what}")
    if not os.access(p, os.R_OK | (os.X_OK if stat.S_ISDIR(st.st_mode) else 0)):
        raise error(f"{p}: permission denied (cannot read the {what})")
    return p


def regular_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a regular file (``lstat`` after following links; False for pipes,
    devices, sockets, folders and missing paths)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def check_folder_entries(folder: str | os.PathLike, *, error: type[ModAddError] = CheckpointError,
                         depth: int = 3, limit: int = 200_000) -> None:
    """Refuse a folder holding a pipe, device or socket anywhere a command may read: among its
    entries and those of its sub-folders down to ``depth`` levels (a run's ``checkpoints/``, a
    batch's ``seed0/checkpoints/``, a sweep's ``runs/NAME/``). Judged by ``stat`` (a link by what it
    points to); at most ``limit`` entries are looked at."""
    folder = Path(folder)
    seen = 0
    todo = [(folder, 0)]
    while todo:
        d, level = todo.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for entry in it:
                seen += 1
                if seen > limit:
                    return
                try:
                    mode = entry.stat(follow_symlinks=True).st_mode
                except OSError:
                    continue  # a dangling link: the reader names it if it needs it
                special = special_kind(mode)
                if special is not None:
                    raise error(f"{Path(entry.path)}: is {special} inside {folder}; refusing to read it")
                if stat.S_ISDIR(mode) and level + 1 < depth and not entry.is_symlink():
                    todo.append((Path(entry.path), level + 1))
