"""How long and how much memory a training run will take, said before it starts.

The full-batch step costs about ``12 P d_mlp p`` floating-point operations (P = p(p+1)/2 unordered
pairs; two matmuls forward, four backward) and holds about ``4 P d_mlp`` activations (pre, post and
their gradients) in the model's dtype. :func:`estimate_training` first applies these formulas with
a pessimistic :data:`ASSUMED_FLOPS` and, only when the run might last longer than
:data:`REPORT_AFTER_S`, times :data:`TIMED_STEPS` real steps (after one warm-up step) on a
throwaway model of the same configuration, so small runs pay nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["TrainEstimate", "estimate_training", "step_flops", "step_bytes", "available_memory",
           "ASSUMED_FLOPS", "REPORT_AFTER_S", "TIMED_STEPS"]

#: operations per second assumed before anything is timed (a slow, shared 2-core CPU)
ASSUMED_FLOPS = 2e10
#: runs that may be longer than this (seconds) get a timed estimate printed before they start
REPORT_AFTER_S = 120.0
#: steps timed (after one warm-up step)
TIMED_STEPS = 2


def step_flops(p: int, d_mlp: int) -> float:
    """12 P d_mlp p: the matmuls of one full-batch forward and backward pass, P = p(p+1)/2."""
    P = p * (p + 1) // 2
    return 12.0 * P * d_mlp * p


def step_bytes(p: int, d_mlp: int, itemsize: int = 4) -> int:
    """Working memory of one step: pre, post and their gradients [P, d_mlp], the float64 log-softmax
    [P, p] and its gradient, and weights, gradients and the two AdamW moments (2 p d_mlp each)."""
    P = p * (p + 1) // 2
    return int(4 * P * d_mlp * itemsize + 3 * P * p * 8 + 4 * 2 * p * d_mlp * itemsize)


def available_memory() -> int | None:
    """Physical memory currently available (Linux ``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class TrainEstimate:
    """Expected cost of a run: ``seconds_per_step`` (timed when ``timed``, else from the formula),
    ``total_seconds`` for ``steps`` steps, and ``step_bytes`` of working memory."""

    steps: int
    seconds_per_step: float
    total_seconds: float
    step_bytes: int
    timed: bool

    def message(self) -> str:
        how = f"timed over {TIMED_STEPS} steps" if self.timed else "from the operation count"
        return (f"estimated {format_duration(self.seconds_per_step)} per step ({how}), about "
                f"{format_duration(self.total_seconds)} for {self.steps} steps; "
                f"about {self.step_bytes / 1e9:.2f} GB of working memory")


def format_duration(s: float) -> str:
    """``0.25 s``, ``4.2 min``, ``18.1 h``."""
    if s < 120:
        return f"{s:.3g} s"
    if s < 2 * 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def estimate_training(cfg, *, force_timing: bool = False) -> TrainEstimate:
    """Estimate the run ``cfg`` (a :class:`~mechinterp_modadd.training.TrainConfig`).

    When the formula (at :data:`ASSUMED_FLOPS`) gives less than :data:`REPORT_AFTER_S` for the whole
    run and ``force_timing`` is false, returns that formula estimate (``timed=False``) without
    running anything. Otherwise times :data:`TIMED_STEPS` steps of the real objective and optimizer
    on a fresh model (the run folder is not touched; the global RNG is not used).
    """
    import torch

    from ..data import random_split
    from ..model import ModAddMLP
    from .trainer import FullBatchObjective

    mcfg = cfg.model_config()
    p, M = mcfg.p, mcfg.d_mlp
    mem = step_bytes(p, M)
    guess = step_flops(p, M) / ASSUMED_FLOPS
    if not force_timing and guess * cfg.steps < REPORT_AFTER_S:
        return TrainEstimate(cfg.steps, guess, guess * cfg.steps, mem, timed=False)
    model = ModAddMLP(mcfg, seed=cfg.seed)
    objective = FullBatchObjective(random_split(p, cfg.train_fraction, cfg.effective_split_seed))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                            foreach=False)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss, _ = objective(model)
        loss.backward()
        opt.step()

    step()  # warm-up: allocations, thread pool
    t = time.perf_counter()
    for _ in range(TIMED_STEPS):
        step()
    per = (time.perf_counter() - t) / TIMED_STEPS
    return TrainEstimate(cfg.steps, per, per * cfg.steps, mem, timed=True)
