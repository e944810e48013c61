"""A storage location every node of a Ray cluster reaches (``modadd sweep --storage PATH_OR_URI``).

On a cluster of several machines without a shared disk, Ray workers cannot write the driver's
sweep folder. By default they send finished runs back through Ray's object store; with
``--storage`` they write them to a location every node reaches instead (a folder on a shared file
system, or a URI of any file system fsspec knows: ``s3://bucket/sweeps``, ``gs://...``,
``file:///nfs/...``; cloud schemes need their fsspec package, e.g. ``s3fs``), and the driver copies
them from there into its own ``DIR/runs/``.

Layout: ``<storage>/<spec key>/runs/<name>/...``, the spec key being a hash of the normalised spec
(so two sweeps sharing a storage location never mix their runs). A run there is complete when its
``sweep_row.json`` is, which each worker writes last; object stores have no atomic folder rename,
so "complete" means that file is present. A rerun of the driver first copies in every run already
complete in the storage, and trains only the rest.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..errors import ConfigError, ModAddError
from .runner import ROW_FILE

__all__ = ["RunStore", "spec_key"]


def spec_key(spec_dict: dict[str, Any]) -> str:
    """``sweep_`` + 16 hex digits of the SHA-256 of the normalised spec (sorted JSON)."""
    text = json.dumps(spec_dict, sort_keys=True, separators=(",", ":"))
    return "sweep_" + hashlib.sha256(text.encode()).hexdigest()[:16]


class RunStore:
    """Finished runs of one sweep in a storage location reached through fsspec.

    Picklable: it holds the URI, and each process opens the file system itself.
    """

    def __init__(self, uri: str, key: str) -> None:
        self.uri = str(uri).rstrip("/") or "/"
        self.key = key
        self._fs: Any = None
        self._root: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["uri"], state["key"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"RunStore({self.uri!r}, {self.key!r})"

    # ------------------------------------------------------------------ file system
    @property
    def fs(self) -> Any:
        if self._fs is None:
            try:
                from fsspec.core import url_to_fs
            except ImportError:
                raise ModAddError("--storage needs fsspec: pip install 'mechinterp_modadd[sweep]'") from None
            try:
                fs, root = url_to_fs(self.uri)
            except (ImportError, ValueError) as e:  # unknown scheme, or its package missing
                raise ConfigError(f"--storage {self.uri}: no file system for it ({type(e).__name__}: "
                                  f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
            self._fs, self._root = fs, f"{root.rstrip('/')}/{self.key}/runs"
        return self._fs

    @property
    def root(self) -> str:
        self.fs  # noqa: B018 (opens the file system, sets the root)
        assert self._root is not None
        return self._root

    def check_writable(self) -> None:
        """Create the sweep's folder and write and delete a probe file; one clear line if that fails."""
        probe = f"{self.root}/.probe"
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except Exception as e:  # fsspec back ends raise OSError, PermissionError, botocore errors, ...
            raise ModAddError(f"--storage {self.uri}: cannot write there ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None

    # ------------------------------------------------------------------------- runs
    def _run(self, name: str) -> str:
        return f"{self.root}/{name}"

    def is_complete(self, name: str) -> bool:
        return bool(self.fs.exists(f"{self._run(name)}/{ROW_FILE}"))

    def complete_names(self) -> set[str]:
        """Names of the runs complete in the storage (one listing, not one request per run)."""
        if not self.fs.exists(self.root):
            return set()
        rows = self.fs.glob(f"{self.root}/*/{ROW_FILE}")
        return {r.rstrip("/").split("/")[-2] for r in rows}

    def put_run(self, name: str, files: dict[str, bytes]) -> None:
        """Write a finished run, its ``sweep_row.json`` last (the completion mark)."""
        base = self._run(name)
        if self.fs.exists(base):
            self.fs.rm(base, recursive=True)  # a partial copy of a killed attempt
        for rel in sorted(files, key=lambda r: r == ROW_FILE):
            path = f"{base}/{rel}"
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(path, files[rel])

    def get_run(self, name: str) -> dict[str, bytes]:
        """The files of a complete run, {relative POSIX path: bytes}."""
        base = self._run(name)
        out = {}
        for path in sorted(self.fs.find(base)):
            rel = path[len(base.rstrip("/")) + 1:] if path.startswith(base) else path.split(f"/{name}/", 1)[-1]
            out[rel] = self.fs.cat_file(path)
        return out
