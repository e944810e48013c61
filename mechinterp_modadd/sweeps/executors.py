"""Running a sweep: group the missing runs into batches and execute them locally or on Ray.

- ``local``: batches run one after another in this process (no Ray needed), in ``DIR/.work``.
- ``ray``: each batch is one Ray task (``num_cpus`` = the spec's ``threads``; ``num_gpus=1`` when
  the device is CUDA). Without ``address`` a private Ray is started on this machine's CPUs (quiet,
  no dashboard; never a cluster the machine already runs) and stopped at the end; with ``address``
  the driver joins that cluster, whose workers must have this package installed. An address where
  nothing answers is refused in one line before anything is written.
- ``auto`` (the default): ``ray`` when Ray is installed, else ``local`` with a note naming the
  extra to install.

Ray workers never write the driver's folder (on a cluster without a shared disk they cannot see
it): each trains in a scratch folder on its own node and sends the finished runs back through the
object store, or, with ``storage`` (``--storage PATH_OR_URI``, see :mod:`.storage`), writes them
to a location every node reaches; the driver installs each run into ``DIR/runs/<name>``
atomically as its task ends. Ray retries a task whose worker died; the retry starts its batch
afresh (with ``storage``, it skips the runs already stored).

Only this module imports Ray, and only inside :func:`_ray_execute` and :func:`_ray_connect`. The
sweep folder::

    DIR/sweep.json        the normalised spec (a rerun with a different spec is refused)
    DIR/runs/<name>/      one ordinary run folder per finished run, with sweep_row.json
    DIR/results.csv       one row per run, in spec order (and results.parquet with pyarrow)
    DIR/results.json      the same table as JSON (schema ``sweep``)
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModAddError, ModAddWarning
from ..locks import FolderLock
from .budget import check_sweep_budget
from .runner import install_run, is_complete, read_row, resolve_device, run_batch, run_batch_remote
from .spec import RunPlan, SpecError, SweepSpec, spec_differences

__all__ = ["run_sweep", "group_batches", "collect_table", "write_results", "SPEC_FILE", "MAX_BATCH", "EXECUTORS",
           "INSTALL_HINT"]

#: ``auto``: Ray when it is installed, else local with a note
EXECUTORS = ("auto", "ray", "local")
INSTALL_HINT = "pip install 'mechinterp_modadd[sweep]'"

SPEC_FILE = "sweep.json"
#: runs per batch at most (a batch is one task: smaller batches spread over more Ray workers; the
#: batched trainer splits a batch further into chunks that fit its memory budget)
MAX_BATCH = {"ray": 16, "local": 64, "cuda": 1024}


def group_batches(runs: Sequence[RunPlan], max_batch: int = 16, workers: int = 1) -> list[list[RunPlan]]:
    """Runs of equal :attr:`RunPlan.shape` (p, d_mlp, activation, optimizer, init, steps, save_every,
    stop window) cut into batches of at most ``max_batch`` runs, as many batches as a multiple of
    ``workers`` where the runs allow it, and dealt round-robin (batch i takes runs i, i + k, ...,
    each batch in spec order): every batch then holds a like mix of the grid, so with early stops
    the workers finish together instead of one batch of slow cells running on alone at the end."""
    groups: dict[tuple, list[RunPlan]] = {}
    for r in runs:
        groups.setdefault(r.shape, []).append(r)
    out = []
    for g in groups.values():
        k = -(-len(g) // max_batch)
        k = min(len(g), -(-k // max(1, workers)) * max(1, workers))
        out += [g[i::k] for i in range(k)]
    return out


def _check_folder(spec: SweepSpec, out: Path) -> bool:
    """Check ``--out`` without writing: absent, empty (lock files aside) or a sweep of this very spec.
    Returns whether it already is that sweep."""
    from ..inputs import regular_file
    from ..locks import LOCK_FILES

    if out.exists() and not out.is_dir():
        raise SpecError(f"--out {out}: is a file; the sweep folder must be a directory (absent, empty or a sweep)")
    f = out / SPEC_FILE
    if f.exists():
        if not regular_file(f):
            raise SpecError(f"{f}: not a regular file; the stored spec of a sweep folder is a JSON file")
        try:
            old = json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise SpecError(f"{f}: unreadable stored spec ({_one_line(e)})") from None
        if not isinstance(old, dict):
            raise SpecError(f"{f}: unreadable stored spec (expected a JSON object)")
        diff = spec_differences(old, spec.to_dict())
        if diff:
            raise SpecError(f"{out}: holds a sweep with a different spec ({'; '.join(diff)}); use another --out "
                            f"or the stored spec")
        return True
    if out.exists() and any(e.name not in LOCK_FILES for e in out.iterdir()):
        raise SpecError(f"{out}: exists and is not a sweep folder (no {SPEC_FILE}); choose an empty --out")
    return False


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _prepare(spec: SweepSpec, out: Path) -> None:
    """Under the folder's lock: check ``out`` again, store the spec when new, clear old batches."""
    from ..fileio import atomic_write_text

    if not _check_folder(spec, out):
        atomic_write_text(out / SPEC_FILE, json.dumps(spec.to_dict(), indent=1))
    shutil.rmtree(out / ".work", ignore_errors=True)  # batches of a killed earlier attempt


def collect_table(spec: SweepSpec, out: Path) -> Any:
    """The :class:`~mechinterp_modadd.analysis.sweep.SweepTable` of the complete runs, in spec order."""
    from ..analysis.sweep import SweepTable

    rows = [read_row(out, r.name) for r in spec.runs if is_complete(out, r.name)]
    return SweepTable.from_rows(rows, spec=spec.to_dict(), n_planned=len(spec.runs))


def write_results(table: Any, out: Path) -> list[Path]:
    """``results.csv``, ``results.json`` (schema ``sweep``) and ``results.parquet`` (when pyarrow is
    importable), each written atomically."""
    from ..fileio import atomic_write_bytes, atomic_write_text

    written = [atomic_write_text(out / "results.csv", table.to_frame().to_csv(index=False)),
               atomic_write_text(out / "results.json", table.to_json() + "\n")]
    try:
        import io

        import pyarrow  # noqa: F401
    except ImportError:
        return written
    buf = io.BytesIO()
    table.to_frame().to_parquet(buf, index=False)
    written.append(atomic_write_bytes(out / "results.parquet", buf.getvalue()))
    return written


def _ray_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def _choose_executor(executor: str, address: str | None, storage: str | None) -> tuple[str, str | None]:
    """The executor to use, and a note to show once every check has passed (or None)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if executor == "local":
        if address is not None:
            raise ConfigError("--address joins a Ray cluster: it needs --executor ray")
        if storage is not None:
            raise ConfigError("--storage is where Ray workers put finished runs: it needs --executor ray "
                              "(--executor local writes DIR directly)")
        return "local", None
    if _ray_importable():
        return "ray", None
    if executor == "ray" or address is not None or storage is not None:
        flag = "--address" if address is not None else "--storage" if storage is not None else "--executor ray"
        raise ModAddError(f"{flag} needs Ray, which is not installed: {INSTALL_HINT} (or pass --executor local)")
    return "local", f"Ray is not installed ({INSTALL_HINT}): running the sweep in this process (--executor local)"


def run_sweep(spec: SweepSpec, out: str | os.PathLike, *, executor: str = "auto", address: str | None = None,
              device: str = "auto", workers: int | None = None, progress: bool = True,
              storage: str | None = None) -> Any:
    """Train every missing run of ``spec`` into ``out``, then write and return the results table.

    ``executor``: ``auto`` (Ray if installed, else local with a note), ``ray`` or ``local``;
    ``address``: a Ray cluster to join (default: a private Ray on this machine); ``storage``: a
    path or URI every Ray node reaches, through which finished runs travel (default: the object
    store). Bad arguments and an unreachable ``address`` are refused before anything is written.

    ``out`` is locked for the whole sweep (:class:`~mechinterp_modadd.locks.FolderLock`): a second
    sweep into the same folder is refused at once, naming the first. Memory and disk are checked
    (:func:`~mechinterp_modadd.sweeps.budget.check_sweep_budget`) before anything is written.
    """
    out = Path(out)
    executor, note = _choose_executor(executor, address, storage)
    dev = resolve_device(device)
    # everything is checked before anything is written: the folder, memory and disk, the storage, Ray
    _check_folder(spec, out)
    missing = [r for r in spec.runs if not is_complete(out, r.name)]
    check_sweep_budget(spec, missing, out, check_memory=address is None)
    store = None
    if storage is not None:
        from .storage import RunStore, spec_key

        store = RunStore(storage, spec_key(spec.to_dict()))
        store.check_writable()
    stored = store.complete_names() if store is not None else set()
    need_ray = executor == "ray" and any(r.name not in stored for r in missing)
    ray_session = _ray_connect(address, workers, dev) if need_ray else None
    try:
        for n in [*spec.notes, *([note] if note else [])]:  # e.g. a composite p: said once the sweep starts
            warnings.warn(n, ModAddWarning, stacklevel=2)
        created = not out.exists()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SpecError(f"--out {out}: cannot create the sweep folder ({e.strerror or e})") from None
        try:
            lock = FolderLock(out, purpose="modadd sweep", what="sweep folder", error=SpecError).acquire()
        except BaseException:
            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise
        try:
            return _run_locked(spec, out, executor, dev, workers, progress, store)
        finally:
            lock.release()
    finally:
        if ray_session is not None:
            ray_session.shutdown()


def _run_locked(spec: SweepSpec, out: Path, executor: str, dev: str, workers: int | None, progress: bool,
                store: Any) -> Any:
    from tqdm.auto import tqdm

    _prepare(spec, out)
    missing = [r for r in spec.runs if not is_complete(out, r.name)]
    if store is not None:  # runs already in the storage (a killed earlier driver, another one): copy them in
        stored = store.complete_names()
        for r in missing:
            if r.name in stored:
                install_run(out, r.name, store.get_run(r.name))
        missing = [r for r in missing if not is_complete(out, r.name)]
    n_workers = 1 if executor == "local" or dev == "cuda" else \
        (workers or max(1, (os.cpu_count() or 1) // spec.threads))
    batches = group_batches(missing, MAX_BATCH["cuda" if dev == "cuda" else executor], n_workers)
    bar = tqdm(total=len(spec.runs), initial=len(spec.runs) - len(missing), disable=not progress, unit="run",
               desc="sweep")
    try:
        if executor == "local":
            for b in batches:
                run_batch(b, out, spec.analyses, device=dev, threads=spec.threads)
                bar.update(len(b))
        elif batches:
            _ray_execute(batches, out, spec, dev, store, bar)
    finally:
        bar.close()
    shutil.rmtree(out / ".work", ignore_errors=True)
    table = collect_table(spec, out)
    write_results(table, out)
    return table


def _probe_address(address: str) -> None:
    """Refuse at once a ``host:port`` (or ``ray://host:port``) where nothing accepts a connection;
    Ray itself would keep retrying for a minute or more."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        if address != "auto":
            raise ConfigError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass
    except OSError as e:
        raise ModAddError(f"--address {address}: no Ray cluster answers there ({e.strerror or type(e).__name__}); "
                          f"start one with `ray start --head`, or leave --address out for a private Ray") from None


class _RaySession:
    def __init__(self, ray: Any, started: bool) -> None:
        self.ray, self.started = ray, started

    def shutdown(self) -> None:
        if self.started:
            self.ray.shutdown()


def _ray_connect(address: str | None, workers: int | None, device: str) -> _RaySession:
    """Start a private Ray (``address`` None) or join the cluster at ``address``; one clear line if
    that fails. A Ray already initialised in this process (a notebook) is used as it is."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is not None:
        _probe_address(address)
    try:
        import ray
    except ImportError:
        raise ModAddError(f"--executor ray needs Ray: {INSTALL_HINT} (or pass --executor local)") from None
    if ray.is_initialized():
        return _RaySession(ray, started=False)
    kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                              configure_logging=True)
    if address is None:
        # "local" starts a new Ray of our own even where `ray start` runs a cluster (or RAY_ADDRESS is set)
        kw["num_cpus"] = workers if workers is not None else max(1, (os.cpu_count() or 1))
        kw["num_gpus"] = 1 if device == "cuda" else 0
    try:
        ray.init(address="local" if address is None else address, **kw)
    except Exception as e:  # ray raises ConnectionError, RuntimeError, ValueError, ...
        where = "cannot start a private Ray" if address is None else f"--address {address}: cannot join Ray"
        raise ModAddError(f"{where} ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    return _RaySession(ray, started=True)


def _ray_execute(batches: list[list[RunPlan]], out: Path, spec: SweepSpec, device: str, store: Any,
                 bar: Any) -> None:
    import ray

    task = ray.remote(num_cpus=spec.threads, num_gpus=1 if device == "cuda" else 0,
                      max_retries=3)(run_batch_remote)
    import hashlib

    tag = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:8]  # this sweep folder's scratch folders
    pending = {task.remote(b, spec.analyses, device=device, threads=spec.threads, store=store, tag=tag): b
               for b in batches}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            try:
                finished = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if isinstance(cause, ModAddError):
                    raise cause from None
                raise
            for name, files in finished:
                install_run(out, name, files if files is not None else store.get_run(name))
            bar.update(len(pending.pop(ref)))
