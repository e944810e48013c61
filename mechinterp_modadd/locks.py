"""One writer per folder: an exclusive lock through :mod:`filelock`, with the holder named for messages.

:class:`FolderLock` takes an OS-level exclusive lock (``flock`` on Unix, through ``filelock``) on
``FOLDER/.modadd.lock`` and then writes who holds it (pid, host, start time, what it does) to
``FOLDER/.modadd.lock.json``, atomically (:func:`mechinterp_modadd.fileio.atomic_write_text`), so
that file is never seen empty or half-written. Exclusion comes from the OS lock alone, never from
reading the JSON:

- a second process asking for the lock is refused at once, in one line naming the holder from the
  JSON (or "unknown" while the holder is between taking the lock and writing the JSON);
- when the holder dies, however it dies, the OS releases its lock: there is no stale lock to break,
  and two processes racing to take a lock over cannot both win (only one ``flock`` succeeds);
- a holder JSON left behind by a killed process is simply replaced by the next holder.

The lock file itself stays in the folder after release (removing it would let a waiter lock an
unlinked file); folder-emptiness checks ignore :data:`LOCK_FILES`.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .errors import ModAddError, RunFolderError
from .layout import LOCK, LOCK_OWNER

__all__ = ["FolderLock", "LOCK_NAME", "OWNER_NAME", "LOCK_FILES", "lock_holder"]

#: the file the OS lock is taken on
LOCK_NAME = LOCK
#: the holder's pid, host, start time and purpose (JSON), written after the lock is taken
OWNER_NAME = LOCK_OWNER
#: names a folder may hold and still count as empty
LOCK_FILES = (LOCK_NAME, OWNER_NAME)

#: resolved lock paths held by this process (filelock locks are re-entrant within a process;
#: a second FolderLock on the same folder in one process is refused as well)
_HELD: set[Path] = set()


def lock_holder(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The holder JSON of ``folder`` (pid, host, started, purpose), or None when absent or unreadable."""
    try:
        info = json.loads((Path(folder) / OWNER_NAME).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "holder unknown: it is just starting"
    what = f", {info.get('purpose')}" if info.get("purpose") else ""
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {info.get('started', '?')}{what}"


class FolderLock:
    """Exclusive writer lock on a folder (a run, a batch of runs, a sweep).

    Use as a context manager or with :meth:`acquire` / :meth:`release`, keeping a reference for as
    long as the lock must be held (like any ``filelock`` lock, a collected one is released). The
    folder must exist.

    Args:
        folder: the folder to lock.
        purpose: what the holder does, for the message another process sees (e.g. ``"modadd sweep"``).
        what: the folder's name in messages (``"run folder"``, ``"sweep folder"``).
        error: the exception class raised when the lock is held (a :class:`ModAddError`).
    """

    def __init__(self, folder: str | os.PathLike, *, purpose: str = "", what: str = "folder",
                 error: type[ModAddError] = RunFolderError) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.owner_path = self.folder / OWNER_NAME
        self.purpose = purpose
        self.what = what
        self.error = error
        self.held = False
        self._lock: Any = None
        self._key: Path | None = None

    def acquire(self) -> FolderLock:
        """Take the lock at once or raise ``error`` naming the holder."""
        import filelock

        from .fileio import atomic_write_text

        key = self.path.resolve()
        if key in _HELD:
            raise self.error(f"{self.folder}: this process already holds the lock of this {self.what} ({self.path})")
        lock = filelock.FileLock(str(self.path), timeout=0)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise self.error(f"{self.folder}: another process is writing this {self.what} "
                             f"({_describe(lock_holder(self.folder))}; lock {self.path}); wait for it to "
                             f"finish") from None
        except OSError as e:
            raise self.error(f"{self.path}: cannot create the lock file ({e.strerror or e})") from None
        self._lock, self._key, self.held = lock, key, True
        _HELD.add(key)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "purpose": self.purpose}
        try:
            atomic_write_text(self.owner_path, json.dumps(info) + "\n")
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        """Remove the holder JSON and release the lock (no-op when not held)."""
        if not self.held:
            return
        self.held = False
        try:
            info = lock_holder(self.folder)
            if info is not None and info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
                self.owner_path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            _HELD.discard(self._key)
            self._lock.release()

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
