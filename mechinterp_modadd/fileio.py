"""Atomic, durable file writes: the one place every output of the package is written through.

:func:`atomic_write_bytes` writes the bytes to a temporary file in the target's folder, flushes
and fsyncs it, renames it over the target (``os.replace``, atomic on one file system) and then
fsyncs the folder itself (:func:`fsync_dir`), so that after a crash or a power cut the folder holds
either the old file or the complete new one, never an empty or half-written file, and the rename
itself is on disk. :func:`atomic_rename` does the same for a rename of a finished file or folder
(e.g. a sweep run folder moved into place).

Standard library only (core layer; the command line imports it before torch).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_rename", "fsync_dir"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk.

    A no-op where folders cannot be opened or fsynced (Windows, some network file systems): the
    rename is then as durable as that file system makes it.
    """
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(os.fspath(folder), flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably (temp file in the same folder, fsync,
    rename, fsync of the folder). Raises :class:`OutputError` naming the path when it cannot."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise OutputError(f"{path}: cannot write the file ({e.strerror or e}"
                          f"{'' if e.filename is None else ': ' + str(e.filename)})") from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(f"{path}: cannot write the file ({e.strerror or e})") from None
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_rename(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """``os.replace(src, dst)`` followed by an fsync of both folders (the rename is on disk when
    this returns). ``src`` is a finished file or folder on the same file system as ``dst``."""
    src, dst = Path(src), Path(dst)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    if src.parent.resolve() != dst.parent.resolve():
        fsync_dir(src.parent)
    return dst
