"""The training loop: a chunk of runs stepped together, their metrics, early stops and saves.

:func:`train_chunk` runs one :class:`~.stack.Stack` from the chunk's start step to its end: each
step the family's batched step, the metric inputs into slots, the stop rule at multiples of the
stop window, a checkpoint every ``save_every`` steps (and at extra steps, the end and a stop), and
the optimizer update. Runs that meet their early stop get their last checkpoint at that step and
leave the stack, so the others train on at the cost of a smaller batch.

Host synchronisation: the metric rows stay on the device and are copied to the host only when a
checkpoint is written, a stop is checked, or the progress bar is refreshed (every
``flush_seconds``), so on a GPU the hot loop queues kernels without waiting for them.

Row t of a run's metrics describes the weights after t updates, i.e. those of checkpoint t.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from ..errors import RunFolderError
from ..layout import METRIC_COLUMNS
from .config import TrainConfig
from .family import get_train_family
from .objective import stop_rule_met
from .runfolder import RunFolder, read_resume, resume_bytes, save_step, write_run_config, write_split
from .stack import METRIC_BLOCK, METRIC_NAMES, Stack

__all__ = ["RunState", "prepare_run", "train_chunk"]


@dataclass
class RunState:
    """One run while it trains: its folder (``None``: in memory), where it starts, its parameters
    and optimizer state at ``start`` (CPU), its metric rows, and how it ended."""

    index: int
    cfg: TrainConfig
    folder: Path | None
    start: int = 0
    resuming: bool = False
    run_id: str | None = None
    params: dict[str, Tensor] | None = None
    opt_state: dict[str, dict[str, Tensor]] | None = None
    group: dict[str, Any] = field(default_factory=dict)
    rows: dict[str, np.ndarray] | None = None
    status: str = "ok"
    final: dict[str, float] | None = None

    def model(self) -> nn.Module:
        """The run's model holding its current parameters (CPU)."""
        return get_train_family(self.cfg.family).export(self.cfg, self.params)

    def release(self) -> None:
        """Keep the last metrics row; drop the parameters, optimizer state and metric arrays."""
        rows = self.rows
        if rows is not None:
            ok = np.flatnonzero(np.isfinite(rows["param_norm"]))
            done = int(ok[-1]) if len(ok) else -1
            self.final = {k: (float(rows[k][done]) if done >= 0 else float("nan")) for k in METRIC_NAMES}
            self.final["steps_done"] = done
        self.params = self.opt_state = self.rows = None


def prepare_run(run: RunState, rf: RunFolder | None) -> None:
    """Fresh parameters (and a new folder's config.json and split.json), or the validated saved
    state of a run folder when resuming (with its metric rows before the resume step)."""
    cfg = run.cfg
    family = get_train_family(cfg.family)
    n = cfg.steps + 1
    rows = {c: np.full(n, np.nan) for c in METRIC_COLUMNS}
    rows["step"] = np.arange(n, dtype=np.float64)
    params = family.init_params(cfg)
    opt_state: dict[str, dict[str, Tensor]] = {}
    start = 0
    if rf is not None and rf.resume is not None:
        plan = rf.resume
        start, params, opt_state = read_resume(plan.resume_file, list(params))
        if start != plan.start:
            raise RunFolderError(f"{plan.resume_file}: changed while the resume was being prepared "
                                 f"(step {plan.start} -> {start})")
        old = plan.metrics
        for c in METRIC_COLUMNS:
            if c in old:
                rows[c][: len(old)] = pd.to_numeric(old[c], errors="coerce").to_numpy(dtype=np.float64)
        if plan.saved.steps != cfg.steps:  # the only write, after every check passed
            write_run_config(run.folder, cfg, plan.run_id)
    elif rf is not None:
        write_run_config(run.folder, cfg, rf.run_id)
        write_split(run.folder, cfg)
    if start != run.start:
        raise RunFolderError(f"{run.folder}: resume state moved from step {run.start} to {start} while "
                             f"the batch was starting (another writer?)")
    run.run_id = rf.run_id if rf is not None else None
    run.params, run.opt_state, run.rows = params, opt_state, rows


def _save(run: RunState, t: int) -> None:
    family = get_train_family(run.cfg.family)
    rows = run.rows
    m = {k: float(rows[k][t]) for k in METRIC_NAMES}
    ck = family.checkpoint_bytes(run.model(), t, m, run.run_id)
    save_step(run.folder, t, ck, rows, resume_bytes(run.params, run.opt_state, run.group, t))


def train_chunk(runs: list[RunState], device: torch.device, bar: Any, flush_seconds: float = 1.0,
                extra: frozenset[int] = frozenset(), workers: int = 1) -> None:
    """Train one chunk: runs sharing family, shapes, optimizer, steps, save_every, start step and
    stop window (see the module docstring). Leaves each run's parameters, optimizer state and
    metric rows at its last step (``run.start``) and its status (``diverged at step t`` when the
    train loss stopped being finite)."""
    cfg0 = runs[0].cfg
    steps, save_every, start = cfg0.steps, cfg0.save_every, runs[0].start
    window = cfg0.stop_window if any(r.cfg.stop_accuracy is not None for r in runs) else 0
    st = Stack([r.cfg for r in runs], [r.params for r in runs], [r.opt_state for r in runs], start, device)
    st.workers = workers
    live = list(runs)  # the runs still in the stack, in its order
    n_rows = steps + 1
    buf = torch.empty(n_rows - start, st.S, 6, dtype=torch.float64, device=device)
    buf[:, :, 5] = st.lr_table(start, n_rows)
    st.schedule(start, buf[:, :, 5])
    flushed = start  # rows < flushed are on the host
    stepped = start - 1  # the last step whose gradients (and metric inputs) were computed
    alive = np.ones(st.S, dtype=bool)
    last_flush = time.perf_counter()

    def settle() -> None:
        """The pending metric rows (up to ``stepped``) into ``buf``, on the device."""
        k = st.pending
        if k:
            buf[stepped + 1 - k - start: stepped + 1 - start, :, :5] = st.take_metrics()

    def flush(upto: int) -> None:
        nonlocal flushed, last_flush
        settle()
        if upto < flushed:
            return
        host = buf[flushed - start: upto + 1 - start].cpu().numpy()  # [k, S, 6]
        for i, r in enumerate(live):
            for c, col in enumerate((*METRIC_NAMES, "lr")):
                r.rows[col][flushed: upto + 1] = host[:, i, c]
            if alive[i] and not np.all(np.isfinite(host[:, i, 0])):
                bad = flushed + int(np.argmin(np.isfinite(host[:, i, 0])))
                alive[i] = False
                r.status = f"diverged at step {bad}"
        bar.update(st.S * (upto + 1 - flushed) - (st.S if flushed == start else 0))
        flushed = upto + 1
        last_flush = time.perf_counter()

    def export(t: int) -> None:
        for i, r in enumerate(live):
            r.params, r.opt_state, r.group = st.export(i)
            r.start = t

    for t in range(start, n_rows):
        st.step_grads()
        stepped = t
        if st.pending == METRIC_BLOCK:
            settle()
        check = bool(window) and t > 0 and t % window == 0
        if check:
            flush(t)
        stopping = [i for i, r in enumerate(live) if alive[i] and stop_rule_met(
            r.cfg, r.rows["train_accuracy"], r.rows["test_accuracy"], t)] if check else []
        if t % save_every == 0 or t == steps or t in extra or stopping:
            flush(t)
            export(t)
            for i, r in enumerate(live):
                if alive[i] and r.folder is not None and (i in stopping or t % save_every == 0 or t == steps
                                                          or t in extra):
                    _save(r, t)
        elif time.perf_counter() - last_flush > flush_seconds:
            flush(t)
        if stopping:
            bar.update(sum(steps - t for _ in stopping))
            keep = [i for i in range(st.S) if i not in stopping]
            if not keep:
                return
            st.keep(keep)
            live = [live[i] for i in keep]
            buf = buf[:, keep].contiguous()
            alive = alive[keep]
        if t == steps:
            break
        st.update(t)
    flush(steps)
    for r in live:
        r.start = steps
