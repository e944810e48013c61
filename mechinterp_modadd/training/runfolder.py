"""Run folders: every file format of a run folder, when a folder may be written, who may write it,
and what a resume will read. The file names are :mod:`mechinterp_modadd.layout`'s.

Formats written and read here: ``config.json`` (:func:`write_run_config`, :func:`read_run_config`),
``split.json`` (:func:`write_split`), ``metrics.csv`` (:func:`metrics_frame`), the checkpoint, the
metrics and ``resume.safetensors`` of a step (:func:`save_step`; the checkpoint's bytes come from the
run's family, :meth:`~.family.TrainFamily.checkpoint_bytes`), the resume state
(:func:`resume_bytes`, :func:`read_resume`: format ``mechinterp_modadd.resume/1``, the weights as
``model.<name>`` and the optimizer state as torch.optim's ``state_dict`` held it, ``optim.<index>.<name>``
with the parameter's index in the module's parameter order), a batch folder's ``runs.csv``
(:func:`runs_table`, :func:`write_runs_csv`) and the lock (:class:`RunLock`).

Three rules protect a run folder (``modadd train --out DIR``):

1. **New runs only in absent or empty folders.** :func:`check_new_folder` refuses a folder that
   holds anything (a foreign ``checkpoints/`` folder, a stray file, an earlier run) and names what
   is there. An existing run is continued only with ``resume=True`` (``--resume``).
2. **One writer at a time.** :class:`RunLock` takes an OS lock on ``DIR/.modadd.lock`` (through
   ``filelock``; :mod:`mechinterp_modadd.locks`) and then writes the holder's pid, host and start
   time to ``DIR/.modadd.lock.json``, atomically. A second writer is refused at once, naming the
   holder. The lock dies with its holder, however it dies: nothing stale is left to break, and two
   writers racing for a folder cannot both win.
3. **Resume checks before it writes.** :func:`validate_resume` reads and checks everything a
   resume will use (``config.json``, ``split.json``, ``metrics.csv``, ``resume.safetensors`` and the
   metadata of every checkpoint) and changes nothing, once before the lock is taken (a refused
   resume leaves the folder as it was, not even a lock file added) and again under the lock; only
   then does the trainer write. A batch (``train_many(resume=True)``) checks its folder and every
   member this way before any member trains (:func:`check_batch_resume`).

Every new run gets a run id (:func:`new_run_id`) stored in ``config.json`` (key ``run_id``) and in
the metadata of each checkpoint, so that :func:`~mechinterp_modadd.series.load_run` can tell a
checkpoint copied in from another run. Folders written before run ids existed have none and
still load and resume.

Use from a trainer::

    with open_run_folder(run_dir, cfg, resume=resume, break_lock=break_lock) as rf:
        if rf.resume is None:            # new run: folder checked empty, lock held
            write_run_config(run_dir, cfg, rf.run_id)
            ...                          # write split.json, train from step 0
        else:                            # resume: every file validated, nothing written yet
            start = rf.resume.start      # rows < start of rf.resume.metrics are kept
            ...
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from ..checkpoint import atomic_write_bytes, atomic_write_text
from ..data import random_split
from ..errors import CheckpointError, ConfigError, RunFolderError
from ..layout import CONFIG, LOCK, LOCK_FILES, METRIC_COLUMNS, METRICS, RESUME, RUNS_CSV, SPLIT, checkpoint_path
from ..locks import FolderLock
from .config import TrainConfig
from .family import get_train_family
from .objective import stopped_early

__all__ = ["LOCK_NAME", "RunLock", "ResumePlan", "RunFolder", "check_new_folder", "validate_resume",
           "new_run_id", "write_run_config", "read_run_config", "open_run_folder", "write_split",
           "metrics_frame", "save_step", "resume_bytes", "read_resume", "saved_step", "final_row",
           "stopped_on_disk", "runs_table", "write_runs_csv", "check_batch_resume", "merge_runs_table",
           "RUNS_CSV_COLUMNS", "RESUME_FORMAT"]

#: name of the lock file inside a run folder
LOCK_NAME = LOCK
#: columns metrics.csv must have for a resume (``lr`` is optional: older folders lack it)
REQUIRED_METRICS = METRIC_COLUMNS[:6]
#: Columns of ``runs.csv`` (then one column per TrainConfig field, prefixed ``config.``).
RUNS_CSV_COLUMNS = ["folder", "status", "steps_done", "train_loss", "test_loss", "train_accuracy",
                    "test_accuracy", "param_norm"]
#: the ``format`` metadata of resume.safetensors
RESUME_FORMAT = "mechinterp_modadd.resume/1"


def new_run_id() -> str:
    """A fresh run id: 32 hex digits (uuid4)."""
    return uuid.uuid4().hex


def _describe_entries(run_dir: Path, limit: int = 4) -> str:
    names = sorted(e.name + ("/" if e.is_dir() else "") for e in run_dir.iterdir() if e.name not in LOCK_FILES)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_new_folder(run_dir: str | os.PathLike) -> None:
    """Refuse to start a new run in ``run_dir`` unless it is absent or an empty folder.

    Raises:
        RunFolderError: ``run_dir`` is a file, or a folder holding anything (the message lists
            up to four entries and says to pass ``--resume`` when it holds a run).
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: exists and is not a folder; choose another --out")
    try:
        entries = [e for e in run_dir.iterdir() if e.name not in LOCK_FILES]
    except OSError as e:
        raise RunFolderError(f"{run_dir}: cannot list the folder ({e.strerror or e})") from None
    if not entries:
        return  # empty, or only a lock: RunLock refuses a live holder
    hint = ("it already holds a run (config.json): pass --resume to continue it, or choose another --out"
            if (run_dir / "config.json").exists() else "a new run needs an absent or empty folder; "
            "choose another --out")
    raise RunFolderError(f"{run_dir}: folder is not empty (holds {_describe_entries(run_dir)}); {hint}")


# ------------------------------------------------------------------------------------ lock
class RunLock(FolderLock):
    """Exclusive writer lock on a run or batch folder (:class:`~mechinterp_modadd.locks.FolderLock`):
    an OS lock on ``DIR/.modadd.lock`` through ``filelock``, the holder's pid, host and start time in
    ``DIR/.modadd.lock.json`` for the message another writer sees.

    The OS releases the lock when its holder dies, so there is no stale lock to take over:
    ``break_lock`` (``--break-lock``) is accepted for scripts written for earlier versions and
    changes nothing, and a live holder is never broken. A holder JSON left by a killed process is
    replaced by the next writer.
    """

    def __init__(self, run_dir: str | os.PathLike, break_lock: bool = False) -> None:
        super().__init__(run_dir, purpose="modadd train", what="run", error=RunFolderError)
        self.run_dir = self.folder
        self.break_lock = break_lock

def write_run_config(run_dir: str | os.PathLike, cfg: TrainConfig, run_id: str | None) -> Path:
    """Write ``config.json`` (``train``, ``model`` and ``run_id``) atomically."""
    doc: dict[str, Any] = {"train": cfg.to_dict(), "model": cfg.model_config().to_dict()}
    if run_id is not None:
        doc["run_id"] = run_id
    return atomic_write_text(Path(run_dir) / CONFIG, json.dumps(doc, indent=2))


def read_run_config(run_dir: str | os.PathLike) -> tuple[TrainConfig, str | None, dict[str, Any]]:
    """``(TrainConfig, run_id or None, raw dict)`` of ``run_dir/config.json``, checked."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise RunFolderError(f"{run_dir}: nothing to resume (no config.json)")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFolderError(f"{path}: unreadable run config ({e})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("train"), dict):
        raise RunFolderError(f"{path}: expected a JSON object with key 'train' (the TrainConfig)")
    try:
        cfg = TrainConfig.from_dict(dict(raw["train"]))
    except (ConfigError, TypeError, ValueError, KeyError) as e:
        raise RunFolderError(f"{path}: key 'train' is not a valid TrainConfig ({e})") from None
    run_id = raw.get("run_id")
    if run_id is not None and not isinstance(run_id, str):
        raise RunFolderError(f"{path}: key 'run_id' should be a string, found {type(run_id).__name__}")
    return cfg, run_id, raw


@dataclass
class ResumePlan:
    """What a validated resume will continue from (nothing on disk changed yet).

    Attributes:
        start: step of the resume state; training continues with update ``start``.
        run_id: the run's id (``None`` for folders written before run ids).
        metrics: rows of metrics.csv with step < start (checked: steps 0..start-1 in order).
        resume_file: ``resume.safetensors``.
        saved: the TrainConfig on disk (may differ from the requested one in ``steps`` only).
    """

    start: int
    run_id: str | None
    metrics: pd.DataFrame
    resume_file: Path
    saved: TrainConfig


def _check_metrics(run_dir: Path, start: int) -> pd.DataFrame:
    path = run_dir / METRICS
    if not path.exists():
        raise RunFolderError(f"{path}: missing; a resume needs the metrics of steps 0..{start} "
                             f"(the folder is damaged)")
    try:
        df = pd.read_csv(path)
    except Exception as e:  # pandas raises several types for damaged files
        raise RunFolderError(f"{path}: unreadable metrics table ({type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''})") from None
    missing = [c for c in REQUIRED_METRICS if c not in df.columns]
    if missing:
        raise RunFolderError(f"{path}: missing column(s) {missing}; expected {REQUIRED_METRICS}")
    steps = pd.to_numeric(df["step"], errors="coerce")
    if steps.isna().any() or len(df) < start or not (steps.iloc[:start].to_numpy() == range(start)).all():
        raise RunFolderError(f"{path}: column 'step' should count 0, 1, 2, ... up to at least {start - 1} "
                             f"(the resume state is at step {start}); found {len(df)} rows")
    head = df.iloc[:start]
    for c in REQUIRED_METRICS[1:]:
        vals = pd.to_numeric(head[c], errors="coerce")
        if c.startswith("test_"):
            bad = vals.isna() & head[c].notna()
        else:
            bad = ~vals.map(lambda v: isinstance(v, float) and math.isfinite(v))
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise RunFolderError(f"{path}: column {c!r} at step {row} is {head[c].iloc[row]!r}; expected a "
                                 f"finite number")
    return head.reset_index(drop=True)


def _check_resume_state(path: Path, cfg: TrainConfig) -> int:
    from safetensors import SafetensorError, safe_open

    if not path.exists():
        raise RunFolderError(f"{path}: missing; nothing to continue from (the run has no resume state)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise RunFolderError(f"{path}: unreadable resume state ({e})") from None
    if meta.get("format") != RESUME_FORMAT:
        raise RunFolderError(f"{path}: metadata key 'format' is {meta.get('format')!r}, expected "
                             f"{RESUME_FORMAT!r}")
    try:
        step = int(meta["step"])
        json.loads(meta["param_groups"])
        json.loads(meta.get("scalars", "{}"))
    except (KeyError, ValueError, TypeError) as e:
        raise RunFolderError(f"{path}: metadata keys 'step' (an integer), 'param_groups' and 'scalars' "
                             f"(JSON) expected; {type(e).__name__}: {e}") from None
    if step < 0:
        raise RunFolderError(f"{path}: metadata key 'step' is {step}; expected a step >= 0")
    want = {f"model.{k}": v for k, v in get_train_family(cfg.family).param_shapes(cfg).items()}
    for k, shape in want.items():
        if shapes.get(k) != shape:
            raise RunFolderError(f"{path}: tensor {k!r} has shape {shapes.get(k)}, expected {shape} from "
                                 f"config.json")
    return step


def validate_resume(run_dir: str | os.PathLike, cfg: TrainConfig) -> ResumePlan:
    """Check everything a resume of ``run_dir`` with ``cfg`` reads, without changing anything.

    Checks, in order: config.json (readable; equal to ``cfg`` except ``steps``), split.json
    (present, same p), resume.safetensors (format, step <= cfg.steps, weight shapes),
    metrics.csv (columns, steps 0..start-1, finite train values) and the metadata of every
    checkpoint (one run: p, d_mlp, activation and run id of config.json; the checkpoint of the
    resume step present).

    Raises:
        RunFolderError / CheckpointError / ConfigError naming the file, key and expectation.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: no such run folder to resume")
    saved, run_id, _ = read_run_config(run_dir)
    if saved.replace(steps=cfg.steps) != cfg:
        sd, cd = saved.to_dict(), cfg.to_dict()
        diff = {k: (sd.get(k), cd.get(k)) for k in {**sd, **cd} if k != "steps" and sd.get(k) != cd.get(k)}
        raise ConfigError(f"{run_dir}: config differs from the saved run in {diff} (saved, given)")
    split_path = run_dir / SPLIT
    try:
        sj = json.loads(split_path.read_text())
        if int(sj["p"]) != cfg.p or not isinstance(sj["train_pairs"], list):
            raise ValueError(f"p = {sj['p']} (expected {cfg.p}) or 'train_pairs' not a list")
    except FileNotFoundError:
        raise RunFolderError(f"{split_path}: missing (the folder is damaged)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise RunFolderError(f"{split_path}: unreadable split (need keys 'p' and 'train_pairs'): {e}") from None
    state = run_dir / RESUME
    start = _check_resume_state(state, cfg)
    if start > cfg.steps:
        raise ConfigError(f"{run_dir}: run is already at step {start} > steps = {cfg.steps}")
    metrics = _check_metrics(run_dir, start)
    files = sorted(checkpoint_path(run_dir, 0).parent.glob("step_*.safetensors"))
    if checkpoint_path(run_dir, start) not in files:
        raise RunFolderError(f"{checkpoint_path(run_dir, start)}: missing; resume.safetensors is at step "
                             f"{start} but its checkpoint is gone (the folder is damaged)")
    get_train_family(cfg.family).check_checkpoints(files, cfg, run_id)
    return ResumePlan(start=start, run_id=run_id, metrics=metrics, resume_file=state, saved=saved)


@dataclass
class RunFolder:
    """An opened run folder: the lock is held; ``resume`` is ``None`` for a new run."""

    path: Path
    run_id: str | None
    lock: RunLock
    resume: ResumePlan | None = None


@contextlib.contextmanager
def open_run_folder(run_dir: str | os.PathLike, cfg: TrainConfig, *, resume: bool = False,
                    break_lock: bool = False) -> Iterator[RunFolder]:
    """Check ``run_dir`` for a new run or a resume, hold its lock while the block runs.

    New run (``resume=False``): the folder must be absent or empty (:func:`check_new_folder`); it
    is created, locked and re-checked (nothing but the lock inside), and a fresh run id issued.
    Resume: the folder is locked, then :func:`validate_resume` checks every file it will read.
    Nothing but the lock file is written here; the lock is removed when the block ends.
    """
    run_dir = Path(run_dir)
    if not resume:
        check_new_folder(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"{run_dir}: cannot create the run folder ({e.strerror or e})") from None
    elif not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: no such run folder to resume")
    else:
        validate_resume(run_dir, cfg)  # a damaged folder is refused before the lock adds its file
    lock = RunLock(run_dir, break_lock=break_lock).acquire()
    try:
        if not resume:
            others = [e.name for e in run_dir.iterdir() if e.name not in LOCK_FILES]
            if others:
                raise RunFolderError(f"{run_dir}: another process wrote {sorted(others)[:4]} while this run "
                                     f"was starting; choose another --out")
            rf = RunFolder(path=run_dir, run_id=new_run_id(), lock=lock)
        else:
            plan = validate_resume(run_dir, cfg)
            rf = RunFolder(path=run_dir, run_id=plan.run_id, lock=lock, resume=plan)
        yield rf
    finally:
        lock.release()


# ------------------------------------------------------------------------- files of a run
def write_split(run_dir: str | os.PathLike, cfg: TrainConfig) -> Path:
    """Write ``split.json``: p, the split seed, the train fraction and the training pairs."""
    split = random_split(cfg.p, cfg.train_fraction, cfg.effective_split_seed)
    return atomic_write_text(Path(run_dir) / SPLIT, json.dumps(
        {"p": cfg.p, "seed": split.seed, "train_fraction": cfg.train_fraction,
         "train_pairs": split.train_pairs.tolist()}))


def metrics_frame(rows: dict[str, np.ndarray], upto: int) -> pd.DataFrame:
    """The metrics table of steps 0..upto from per-column arrays (columns :data:`METRIC_COLUMNS`)."""
    df = pd.DataFrame({k: rows[k][: upto + 1] for k in METRIC_COLUMNS})
    df["step"] = df["step"].astype(int)
    return df


def save_step(run_dir: str | os.PathLike, step: int, checkpoint: bytes, rows: dict[str, np.ndarray],
              resume: bytes) -> None:
    """Write step ``step``'s checkpoint, the metrics up to it, and the resume state, in this
    order, each atomically (a run killed in between resumes from the previous complete step)."""
    run_dir = Path(run_dir)
    atomic_write_bytes(checkpoint_path(run_dir, step), checkpoint)
    atomic_write_text(run_dir / METRICS, metrics_frame(rows, step).to_csv(index=False))
    atomic_write_bytes(run_dir / RESUME, resume)


def resume_bytes(params: dict[str, Tensor], opt_state: dict[str, dict[str, Any]], group: dict[str, Any],
                 step: int) -> bytes:
    """``resume.safetensors`` of one run at ``step``: its parameters (name -> tensor, in the
    module's parameter order), its optimizer state (parameter name -> {state name: tensor or
    number}, as :meth:`~.optim.StackedOptimizer.run_state` gives it) and its param group."""
    from safetensors.torch import save

    names = list(params)
    tensors = {f"model.{k}": v.detach().to("cpu").contiguous() for k, v in params.items()}
    scalars: dict[str, Any] = {}
    for idx, k in enumerate(names):
        for name, v in opt_state.get(k, {}).items():
            if isinstance(v, Tensor):
                tensors[f"optim.{idx}.{name}"] = v.detach().to("cpu").contiguous()
            else:
                scalars[f"{idx}.{name}"] = v
    meta = {"format": RESUME_FORMAT, "step": str(step),
            "param_groups": json.dumps([{**group, "params": list(range(len(names)))}]),
            "scalars": json.dumps(scalars)}
    return save(tensors, metadata=meta)


def read_resume(path: str | os.PathLike, names: list[str]
                ) -> tuple[int, dict[str, Tensor], dict[str, dict[str, Tensor]]]:
    """``(step, parameters, optimizer state)`` of a ``resume.safetensors`` (the inverse of
    :func:`resume_bytes`; ``names``: the parameter names in the module's order). Optimizer
    entries that are not tensors (torch.optim's ``None`` momentum buffer) are left out."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable resume state ({e})") from None
    if meta.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{path}: not a resume file (format {meta.get('format')!r})")
    params = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    if sorted(params) != sorted(names):
        raise CheckpointError(f"{path}: holds parameters {sorted(params)}, the run's model has {names}")
    params = {k: params[k] for k in names}
    state: dict[str, dict[str, Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            if not idx.isdigit() or int(idx) >= len(names):
                raise CheckpointError(f"{path}: tensor {k!r} names parameter {idx}; the model has {len(names)}")
            state.setdefault(names[int(idx)], {})[name] = v
    return int(meta["step"]), params, state


def saved_step(folder: Path) -> int:
    """The step of a run folder's resume state, read from its metadata (checked again, with every
    other file, by :func:`validate_resume` when the run's chunk opens it)."""
    from safetensors import SafetensorError, safe_open

    path = folder / RESUME
    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {})["step"])
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise RunFolderError(f"{path}: cannot read the resume step ({e})") from None


_FINAL = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "param_norm")


def final_row(folder: Path) -> dict[str, float]:
    """A finished run's last metrics row (its runs.csv entry), with ``steps_done``."""
    path = folder / METRICS
    try:
        last = pd.read_csv(path).iloc[-1]
    except (OSError, ValueError, IndexError, pd.errors.ParserError) as e:
        raise RunFolderError(f"{path}: unreadable metrics of a finished run ({e})") from None
    out = {k: float(last[k]) for k in _FINAL}
    out["steps_done"] = int(last["step"])
    return out


def stopped_on_disk(folder: Path, cfg: TrainConfig, start: int) -> bool:
    """Whether the early stop of ``cfg`` already ended the run in ``folder`` (its metrics say so)."""
    if cfg.stop_accuracy is None:
        return False
    path = folder / METRICS
    try:
        return stopped_early(cfg, pd.read_csv(path).iloc[: start + 1])
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as e:
        raise RunFolderError(f"{path}: unreadable metrics ({e})") from None


def runs_table(entries: list[tuple[Path, str, dict[str, float] | None, TrainConfig]], out_dir: Path) -> pd.DataFrame:
    """The runs.csv table: one row per ``(folder, status, final metrics with steps_done, config)``."""
    recs = []
    for folder, status, final, cfg in entries:
        fin = dict(final or {})
        rec: dict[str, Any] = {"folder": os.path.relpath(folder, out_dir), "status": status,
                               "steps_done": int(fin.pop("steps_done", -1)), **fin}
        for k, v in cfg.to_dict().items():
            rec[f"config.{k}"] = json.dumps(v) if isinstance(v, (list, tuple)) else v
        recs.append(rec)
    return pd.DataFrame(recs)


def check_batch_resume(out_dir: str | os.PathLike, members: list[tuple[Path, TrainConfig]]) -> dict[Path, ResumePlan]:
    """Check a batch folder and every member a resume of it will touch, before anything is written.

    ``out_dir`` must be a batch folder: not a run folder (``config.json``) nor a sweep
    (``sweep.json``), and every entry one of: ``runs.csv``, the lock files, or a folder holding a
    run (``config.json``) or nothing yet (a member whose first chunk was killed before it wrote).
    Every asked member that holds a run is checked as :func:`validate_resume` checks a single run
    (same config apart from ``steps``, every file readable, its checkpoints its own). Members of the
    batch that are not asked for are left alone (their rows stay in ``runs.csv``, see
    :func:`merge_runs_table`).

    Returns:
        ``{member folder: ResumePlan}`` of the asked members that hold a run.

    Raises:
        RunFolderError / CheckpointError / ConfigError naming the folder or file, before any write.
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise RunFolderError(f"{out}: no such batch folder to resume")
    if (out / CONFIG).exists():
        raise RunFolderError(f"{out}: is a single run (config.json), not a batch of runs; resume it with one "
                             f"value per flag, or choose another --out")
    if (out / "sweep.json").exists():
        raise RunFolderError(f"{out}: is a sweep folder (sweep.json); continue it with modadd sweep")
    asked = {m.name for m, _ in members}
    strays = []
    for e in sorted(out.iterdir()):
        if e.name == RUNS_CSV or e.name in LOCK_FILES:
            continue
        if e.is_dir() and ((e / CONFIG).is_file() or all(x.name in LOCK_FILES for x in e.iterdir())):
            continue
        strays.append(e.name + ("/" if e.is_dir() else ""))
    if strays:
        more = f" and {len(strays) - 3} more" if len(strays) > 3 else ""
        raise RunFolderError(f"{out}: holds {', '.join(strays[:3])}{more}, which is not a run of a batch; --resume "
                             f"continues a batch folder (runs.csv and one run folder per run), nothing else is "
                             f"written into it")
    if not (out / RUNS_CSV).is_file() and not any((out / n / CONFIG).is_file() for n in asked):
        raise RunFolderError(f"{out}: not a batch folder (no runs.csv and none of the {len(members)} runs asked for); "
                             f"choose the folder of the batch, or start it without --resume")
    plans = {}
    for folder, cfg in members:
        if (folder / CONFIG).is_file():
            plans[folder] = validate_resume(folder, cfg)
    return plans


def merge_runs_table(new: pd.DataFrame, out_dir: Path) -> pd.DataFrame:
    """``new`` rows (the runs of this call) over the rows an earlier ``runs.csv`` of ``out_dir`` has
    for other folders: a batch resumed for some of its runs keeps every run in its table, old
    rows first in their order, then the new folders."""
    path = Path(out_dir) / RUNS_CSV
    if not path.is_file():
        return new
    try:
        old = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError):
        return new  # an unreadable table is rebuilt from this call's runs
    if "folder" not in old.columns:
        return new
    by_folder = {str(f): i for i, f in enumerate(new["folder"])}
    rows = []
    for _, r in old.iterrows():
        f = str(r["folder"])
        rows.append(new.iloc[by_folder.pop(f)] if f in by_folder else r)
    rows += [new.iloc[i] for i in by_folder.values()]
    return pd.DataFrame(rows).reset_index(drop=True)[list(dict.fromkeys([*new.columns, *old.columns]))]


def write_runs_csv(table: pd.DataFrame, out_dir: Path) -> Path:
    """Write ``out_dir/runs.csv`` atomically."""
    buf = io.StringIO()
    table.to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL)
    return atomic_write_text(out_dir / RUNS_CSV, buf.getvalue())
