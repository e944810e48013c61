"""What a sweep will need, checked before anything is written: memory of one run, disk of all runs.

- Memory: one run of the largest shape holds about
  :func:`~mechinterp_modadd.training.estimate.run_bytes` (p, d_mlp) bytes; a sweep whose largest
  run needs more than the memory available on this machine (``MemAvailable``; skipped when joining
  a Ray cluster with ``--address``, whose workers' memory is not known here) is refused, naming
  ``grid.p`` / ``grid.d_mlp`` and the two sizes.
- Disk: each missing run writes ``steps // save_every + 1`` checkpoints (and the final step), the
  resume state (weights and the two AdamW moments) and one metrics row per step; a sweep whose
  missing runs need more than the free space under ``--out`` is refused with both sizes.

Both are estimates (the trainer's own memory check still applies per chunk); they exist so that an
impossible sweep fails in one line before ``sweep.json`` ties the folder to it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .spec import SpecError

__all__ = ["run_disk_bytes", "check_sweep_budget", "METRICS_ROW_BYTES"]

#: bytes of one row of a run's metrics.csv (step, losses, accuracies, norms as text), generous
METRICS_ROW_BYTES = 160
#: bytes of a safetensors header with the checkpoint's JSON metadata, generous
HEADER_BYTES = 4096


def _params(mcfg: Any) -> int:
    if hasattr(mcfg, "n_params"):  # a family's model config that counts its own (e.g. concat_mlp)
        return int(mcfg.n_params)
    n = mcfg.d_mlp * mcfg.d_model + mcfg.p * mcfg.d_mlp
    if getattr(mcfg, "embedding", "one_hot") == "learned":
        n += mcfg.d_model * mcfg.p
    return int(n)


def run_disk_bytes(cfg: Any) -> int:
    """Bytes one run folder of ``cfg`` (a TrainConfig) holds when finished: float32 checkpoints every
    ``save_every`` steps plus step 0 and the last step, the resume state (3 x the weights) and the
    per-step metrics table."""
    params = _params(cfg.model_config())
    n_ckpt = cfg.steps // cfg.save_every + 2
    ckpt = 4 * params + HEADER_BYTES
    return int(n_ckpt * ckpt + 3 * ckpt + (cfg.steps + 1) * METRICS_ROW_BYTES)


def _free_bytes(out: Path) -> int | None:
    q = out
    while not q.exists() and q != q.parent:
        q = q.parent
    try:
        return shutil.disk_usage(q).free
    except OSError:
        return None


def check_sweep_budget(spec: Any, runs: Sequence[Any], out: str | os.PathLike, *, check_memory: bool = True) -> None:
    """Refuse (:class:`SpecError`, one line) a sweep whose largest run cannot fit this machine's memory
    or whose ``runs`` (the missing ones) cannot fit the free disk under ``out``."""
    from ..memory import format_bytes
    from ..training.estimate import available_memory, run_bytes

    if not runs:
        return
    if check_memory:
        big = max(runs, key=lambda r: run_bytes(r.config.p, r.config.model_config().d_mlp))
        mcfg = big.config.model_config()
        need = run_bytes(mcfg.p, mcfg.d_mlp)
        avail = available_memory()
        if avail is not None and need > avail:
            raise SpecError(f"{spec.source}: grid.p / grid.d_mlp: a run at p = {mcfg.p}, d_mlp = {mcfg.d_mlp:,} needs "
                            f"about {format_bytes(need)} of memory to train, but this machine has "
                            f"{format_bytes(avail)} available; lower p or d_mlp")
    need_disk = sum(run_disk_bytes(r.config) for r in runs)
    free = _free_bytes(Path(out))
    if free is not None and need_disk > free:
        raise SpecError(f"{spec.source}: grid: the {len(runs):,} runs to train need about {format_bytes(need_disk)} "
                        f"of disk (checkpoints every save_every steps), but only {format_bytes(free)} is free "
                        f"under {out}; raise save_every, shrink the grid or choose another --out")
