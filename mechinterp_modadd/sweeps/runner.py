"""Training one batch of a sweep and analysing its runs: the unit of work an executor runs.

Completion is atomic per run: a batch trains into ``DIR/.work/<batch id>/``; each finished run is
analysed there, its results row written to ``sweep_row.json`` inside its folder, and only then is
the folder renamed to ``DIR/runs/<name>`` (one ``os.rename``, atomic on one file system). So
``DIR/runs/<name>`` is complete or absent, whatever kills the driver or a worker; a killed batch
leaves only its ``.work`` folder, which the next attempt deletes and retrains.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["ROW_FILE", "run_batch", "is_complete", "read_row", "analyse_run", "train_configs", "batch_id",
           "resolve_device", "TIMING_COLUMNS"]

ROW_FILE = "sweep_row.json"
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
    row: dict[str, Any] = {"name": plan.name, "preset": cfg.preset, "p": cfg.p, "d_mlp": cfg.model_config().d_mlp,
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

        if series.has_step0:
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


def run_batch(plans: Sequence[Any], out: str | os.PathLike, analyses: Sequence[str], *, device: str = "cpu",
              threads: int = 1) -> list[str]:
    """Train and analyse one batch of runs of equal shape; returns the names completed now.

    Runs already complete are skipped (a retried task after a worker died does only the rest).
    """
    from ..fileio import atomic_rename, atomic_write_text

    out = Path(out)
    todo = [p for p in plans if not is_complete(out, p.name)]
    if not todo:
        return []
    work = out / ".work" / batch_id([p.name for p in todo])
    shutil.rmtree(work, ignore_errors=True)  # a previous attempt that was killed: start this batch afresh
    work.parent.mkdir(parents=True, exist_ok=True)
    secs = train_configs([p.config for p in todo], work, [p.name for p in todo], device=device, threads=threads)
    (out / "runs").mkdir(exist_ok=True)
    done = []
    for plan, dt in zip(todo, secs, strict=True):
        t0 = time.perf_counter()
        row = analyse_run(work / plan.name, plan, analyses)
        row["train_seconds"] = dt
        row["analysis_seconds"] = time.perf_counter() - t0
        atomic_write_text(work / plan.name / ROW_FILE, json.dumps(_json_row(row), indent=1))
        dest = out / "runs" / plan.name
        if dest.exists():  # completed by a concurrent attempt: keep the first
            shutil.rmtree(work / plan.name, ignore_errors=True)
        else:
            atomic_rename(work / plan.name, dest)  # complete or absent, and on disk once renamed
        done.append(plan.name)
    shutil.rmtree(work, ignore_errors=True)
    return done
