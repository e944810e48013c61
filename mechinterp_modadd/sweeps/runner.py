"""Training one batch of a sweep and analysing its runs: the unit of work an executor runs.

Completion is atomic per run: each finished run is analysed, its results row written to
``sweep_row.json`` inside its folder, and only then does the folder appear as ``DIR/runs/<name>``
(one ``os.rename`` of a complete folder, atomic on one file system). So ``DIR/runs/<name>`` is
complete or absent, whatever kills the driver or a worker.

Two ways to run a batch:

- :func:`run_batch` (the local executor, in the driver's process): trains into
  ``DIR/.work/<batch id>/`` and renames each finished run into ``DIR/runs/``. A killed batch leaves
  only its ``.work`` folder, which the next attempt deletes and retrains.
- :func:`run_batch_remote` (a Ray task, on any node): never touches the driver's folder, which a
  worker on another machine cannot see. It trains in a scratch folder of its own on the worker's
  disk (``$MODADD_SWEEP_SCRATCH/<batch id>``, default the system temp folder), and hands each
  finished run back: as the bytes of its files (through Ray's object store), or, with a
  :class:`~mechinterp_modadd.sweeps.storage.RunStore`, written to a storage location every node
  reaches. The driver installs the runs into ``DIR/runs/`` with :func:`install_run` (same atomic
  rename).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ROW_FILE", "SCRATCH_ENV", "run_batch", "run_batch_remote", "install_run", "run_files", "is_complete",
           "read_row", "analyse_run", "train_configs", "batch_id", "resolve_device", "scratch_root", "TIMING_COLUMNS"]

ROW_FILE = "sweep_row.json"
#: environment variable naming the folder under which Ray workers train (on their own disk)
SCRATCH_ENV = "MODADD_SWEEP_SCRATCH"
#: wall-clock columns: the only ones that differ between two executions of the same sweep
TIMING_COLUMNS = ("train_seconds", "analysis_seconds")
#: thresholds of the grokking step (first step with test accuracy at or above)
GROK_THRESHOLD, GROK_THRESHOLD_99 = 0.95, 0.99


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu`` (:func:`mechinterp_modadd.runtime.resolve_device`)."""
    from ..runtime import resolve_device as _resolve

    return _resolve(device).type


def batch_id(names: Sequence[str]) -> str:
    return "b_" + hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]


def is_complete(out: Path, name: str) -> bool:
    return (Path(out) / "runs" / name / ROW_FILE).is_file()


def read_row(out: Path, name: str) -> dict[str, Any]:
    return json.loads((Path(out) / "runs" / name / ROW_FILE).read_text())


def train_configs(configs: Sequence[Any], out_dir: Path, names: Sequence[str], *, device: str = "cpu",
                  threads: int = 1) -> list[float]:
    """Train ``configs`` (one shape) into ``out_dir/<name>``, one ordinary run folder each, with the
    batched trainer :func:`mechinterp_modadd.training.train_many`; returns seconds per run (the
    batch's wall time shared equally among its runs). ``out_dir`` must be absent or empty.
    """
    from ..training import train_many

    t0 = time.perf_counter()
    train_many(list(configs), out_dir, names=list(names), device=device, threads=threads, progress=False)
    dt = (time.perf_counter() - t0) / max(1, len(configs))
    return [dt] * len(configs)


def _first_step(steps: Any, values: Any, threshold: float) -> int | None:
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    hit = np.nonzero(v >= threshold)[0]
    return int(np.asarray(steps)[hit[0]]) if len(hit) else None


def _diagnose_rows(model: Any) -> list[tuple[str, str, float, str]]:
    """(claim, metric, key number, verdict) of every registered claim; a claim that cannot be
    measured on this model (e.g. the ghost ratio needs p >= 5) gets NaN and the verdict ``n/a``."""
    from ..analysis.claims import checks
    from ..diagnose import diagnose
    from ..errors import ModAddError

    def num(v: Any) -> float:
        return float(v) if isinstance(v, (int, float)) and v is not None else math.nan

    try:
        frame = diagnose(model).to_frame()
        return [(r.claim, r.metric, num(r.value), r.verdict) for r in frame.itertuples()]
    except ModAddError:
        pass
    out = []
    for name, check in checks("model").items():
        try:
            r = diagnose(model, claims=[name]).to_frame().iloc[0]
            out.append((name, r["metric"], num(r["value"]), r["verdict"]))
        except ModAddError:
            metric = getattr(check, "key_metric", None) or _claim_metric(name)
            out.append((name, metric, math.nan, "n/a"))
    return out


def _claim_metric(name: str) -> str:
    """The key metric's name of a registered claim, from its result class (``value`` if unknown)."""
    from ..analysis.base import ClaimResult

    def subclasses(c: type) -> list[type]:
        return [c] + [s for d in c.__subclasses__() for s in subclasses(d)]

    for cls in subclasses(ClaimResult):
        if getattr(cls, "claim", None) == name and cls.key_metric:
            return cls.key_metric
    return "value"


def analyse_run(run_dir: Path, plan: Any, analyses: Sequence[str]) -> dict[str, Any]:
    """The results row of one finished run (column meanings: :mod:`mechinterp_modadd.analysis.sweep`)."""
    import pandas as pd

    from ..analysis.grokking import detect_stages
    from ..series import load_run

    cfg = plan.config
    row: dict[str, Any] = {"name": plan.name, "family": getattr(cfg, "family", "mlp"), "preset": cfg.preset,
                           "p": cfg.p, "d_mlp": cfg.model_config().d_mlp,
                           "activation": cfg.activation, "init": cfg.init, "optimizer": cfg.optimizer,
                           "seed": cfg.seed, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
                           "train_fraction": cfg.train_fraction, "init_scale": cfg.init_scale, "steps": cfg.steps,
                           "save_every": cfg.save_every, "stop_accuracy": cfg.stop_accuracy,
                           "stop_window": cfg.stop_window}
    m = pd.read_csv(run_dir / "metrics.csv")
    last = m.iloc[-1]
    row["steps_done"] = int(last["step"])  # < steps when the early stop ended the run
    for c in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "param_norm"):
        row[f"final_{c}"] = float(last[c])
    has_test = cfg.train_fraction < 1.0
    steps = m["step"].to_numpy()
    row["fit_step"] = _first_step(steps, m["train_accuracy"], GROK_THRESHOLD)
    row["full_step"] = _first_step(steps, m["train_accuracy"], 1.0)
    row["grok_step"] = _first_step(steps, m["test_accuracy"], GROK_THRESHOLD) if has_test else None
    row["grok_step_99"] = _first_step(steps, m["test_accuracy"], GROK_THRESHOLD_99) if has_test else None
    te = m["test_accuracy"] if has_test else [math.nan] * len(m)
    row["end_stage1"], row["end_stage2"] = detect_stages(steps, m["train_accuracy"], te)
    series = load_run(run_dir, cache_size=2)
    model = series.model(series.last_step)
    if "progress" in analyses:
        from ..analysis.grokking import measures_of_model
        from ..analysis.restricted import restricted_loss_of

        mm = measures_of_model(model, series.split if series.has_test else None)
        for c in ("restricted_loss", "restricted_loss_all", "excluded_loss", "mean_abs_sin_d", "ipr"):
            row[c] = mm[c]
        rl = restricted_loss_of(model, series.split if series.has_test else None)
        row["restricted_verdict"], row["restricted_n_keys"] = rl.verdict, len(rl.keys)
    if "diagnose" in analyses:
        for claim, metric, value, verdict in _diagnose_rows(model):
            row[f"{claim}.{metric}"] = value
            row[f"{claim}.verdict"] = verdict
    if "lottery" in analyses:
        from ..analysis.lottery import lottery_from_series

        # the lottery ticket is derived for the paper's MLP only (analysis.claims: undefined elsewhere)
        if series.has_step0 and series.family == "mlp":
            for k, v in lottery_from_series(series).rates().items():
                row[f"lottery.{k}"] = v
    return row


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and not math.isfinite(v):
            v = None
        elif hasattr(v, "item"):
            v = v.item()
        out[k] = v
    return out


def _train_and_analyse(todo: Sequence[Any], work: Path, analyses: Sequence[str], device: str,
                       threads: int) -> Iterator[tuple[Any, Path]]:
    """Train ``todo`` into ``work`` (deleted first: a killed earlier attempt starts afresh), then
    analyse each run and write its ``sweep_row.json``; yields (plan, run folder) per finished run."""
    from ..fileio import atomic_write_text

    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    secs = train_configs([p.config for p in todo], work, [p.name for p in todo], device=device, threads=threads)
    for plan, dt in zip(todo, secs, strict=True):
        t0 = time.perf_counter()
        row = analyse_run(work / plan.name, plan, analyses)
        row["train_seconds"] = dt
        row["analysis_seconds"] = time.perf_counter() - t0
        atomic_write_text(work / plan.name / ROW_FILE, json.dumps(_json_row(row), indent=1))
        yield plan, work / plan.name


def run_batch(plans: Sequence[Any], out: str | os.PathLike, analyses: Sequence[str], *, device: str = "cpu",
              threads: int = 1) -> list[str]:
    """Train and analyse one batch of runs of equal shape in ``out/.work``; returns the names
    completed now. Runs already complete are skipped."""
    from ..fileio import atomic_rename

    out = Path(out)
    todo = [p for p in plans if not is_complete(out, p.name)]
    if not todo:
        return []
    work = out / ".work" / batch_id([p.name for p in todo])
    (out / "runs").mkdir(parents=True, exist_ok=True)
    done = []
    for plan, run_dir in _train_and_analyse(todo, work, analyses, device, threads):
        dest = out / "runs" / plan.name
        if dest.exists():  # completed by a concurrent attempt: keep the first
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            atomic_rename(run_dir, dest)  # complete or absent, and on disk once renamed
        done.append(plan.name)
    shutil.rmtree(work, ignore_errors=True)
    return done


def scratch_root() -> Path:
    """Where this process trains remote batches: ``$MODADD_SWEEP_SCRATCH``, else
    ``<system temp folder>/modadd-sweep-scratch``."""
    import tempfile

    return Path(os.environ.get(SCRATCH_ENV) or Path(tempfile.gettempdir()) / "modadd-sweep-scratch")


def run_files(run_dir: Path) -> dict[str, bytes]:
    """The files of a finished run folder as {relative POSIX path: bytes}, hidden files (locks,
    temporary files of atomic writes) left out."""
    run_dir = Path(run_dir)
    files = {}
    for f in sorted(run_dir.rglob("*")):
        rel = f.relative_to(run_dir)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts):
            files[rel.as_posix()] = f.read_bytes()
    return files


def run_batch_remote(plans: Sequence[Any], analyses: Sequence[str], *, device: str = "cpu", threads: int = 1,
                     store: Any = None, tag: str = "") -> list[tuple[str, dict[str, bytes] | None]]:
    """A Ray task's batch: train and analyse in this node's scratch folder, never in the driver's.

    The scratch folder is ``scratch_root()/<batch id>_<tag>``: the same for a retry of the task on
    this node (which deletes what a killed attempt left), distinct for another sweep of the same runs
    (the driver's ``tag`` names its folder).

    Returns (name, files) per run finished now, files being :func:`run_files` of the run folder
    (the object store carries them to the driver); with ``store`` (a
    :class:`~mechinterp_modadd.sweeps.storage.RunStore`) each run is written there instead, runs
    already complete there are skipped (a retried task does only the rest), and files is None.
    """
    todo = [p for p in plans if store is None or not store.is_complete(p.name)]
    if not todo:
        return []
    # named by the whole batch (not by what is left of it): a retry finds and deletes a killed attempt's folder
    work = scratch_root() / (batch_id([p.name for p in plans]) + (f"_{tag}" if tag else ""))
    out: list[tuple[str, dict[str, bytes] | None]] = []
    try:
        for plan, run_dir in _train_and_analyse(todo, work, analyses, device, threads):
            files = run_files(run_dir)
            if store is not None:
                store.put_run(plan.name, files)
                out.append((plan.name, None))
            else:
                out.append((plan.name, files))
            shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def install_run(out: str | os.PathLike, name: str, files: dict[str, bytes]) -> bool:
    """Write a finished run's files into ``out/runs/<name>`` atomically (into ``out/.work`` first,
    then one rename); False when the run is already there (the first copy is kept).

    The files must hold the run's ``sweep_row.json``; paths must stay inside the folder.
    """
    from ..errors import ModAddError
    from ..fileio import atomic_rename, atomic_write_bytes

    out = Path(out)
    dest = out / "runs" / name
    if ROW_FILE not in files:
        raise ModAddError(f"run {name!r} came back without its {ROW_FILE}: an incomplete run is not installed")
    if is_complete(out, name):
        return False
    tmp = out / ".work" / f"install_{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in files.items():
        target = (tmp / rel).resolve()
        if tmp.resolve() not in target.parents:
            raise ModAddError(f"run {name!r}: file path {rel!r} leaves the run folder")
        atomic_write_bytes(target, data)  # each file on disk before the folder appears
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if dest.exists():  # a partial folder of another kind (not complete, see above): replace it
        shutil.rmtree(dest)
    atomic_rename(tmp, dest)
    return True
