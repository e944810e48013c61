"""The names inside a run folder: the one place that spells them.

A run folder (``modadd train --out DIR``; one per run of ``modadd train --many`` and of a sweep)::

    config.json                            TrainConfig, ModelConfig and the run id
    split.json                             the training pairs (and the split seed)
    metrics.csv                            one row per step (columns METRIC_COLUMNS); the shipped
                                           runs in data/ hold it gzipped, metrics.csv.gz
    checkpoints/step_NNNNNN.safetensors    weights at step 0, every save_every steps, and the end
    resume.safetensors                     weights + optimizer state at the last checkpoint
    .modadd.lock                           the writer's OS lock (mechinterp_modadd.locks; empty, kept)
    .modadd.lock.json                      the writer's pid, host and start time while it writes

and a batch folder holds ``runs.csv`` (one row per run) next to its run folders. What the files
hold is written and read by :mod:`mechinterp_modadd.training.runfolder` (writers, resume checks)
and :mod:`mechinterp_modadd.series` (readers); both take the names from here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["CONFIG", "SPLIT", "METRICS", "METRICS_FILES", "CHECKPOINTS", "RESUME", "LOCK", "LOCK_OWNER", "LOCK_FILES",
           "RUNS_CSV", "METRIC_COLUMNS", "CHECKPOINT_NAME", "checkpoint_path", "checkpoint_step"]

CONFIG = "config.json"
SPLIT = "split.json"
METRICS = "metrics.csv"
#: where a metrics table may be, in the order a reader looks
METRICS_FILES = ("metrics.csv", "metrics.csv.gz")
CHECKPOINTS = "checkpoints"
RESUME = "resume.safetensors"
LOCK = ".modadd.lock"
LOCK_OWNER = ".modadd.lock.json"
#: names a folder may hold and still count as empty (the lock of a writer, or the one it left)
LOCK_FILES = (LOCK, LOCK_OWNER)
RUNS_CSV = "runs.csv"
#: columns of metrics.csv; row t describes the weights after t updates (those of checkpoint t)
METRIC_COLUMNS = ["step", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "param_norm", "lr"]
#: file name of a checkpoint inside ``checkpoints/``
CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.safetensors$")


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    """``run_dir/checkpoints/step_NNNNNN.safetensors`` (six digits, more when the step needs them)."""
    return Path(run_dir) / CHECKPOINTS / f"step_{step:06d}.safetensors"


def checkpoint_step(name: str) -> int | None:
    """The step of a checkpoint file name, or ``None`` when ``name`` is not one."""
    m = CHECKPOINT_NAME.match(name)
    return int(m.group(1)) if m else None
