"""How long and how much memory training will take, said before it starts: every cost formula.

- Operations: one full-batch step of the MLP costs the five matrix products of
  :func:`mechinterp_modadd.runtime.step_flop` (10 n p d_mlp, n = p(p + 1)/2 unordered pairs; the
  one FLOP formula, kept in the core layer because analysis passes size their threads with it too).
- Memory: :func:`run_bytes`, what one run of a stack holds (weights, gradients, optimizer state,
  the step's activations, metric slots and rows); the CLI's ``--max-memory`` check, the chunking
  of :func:`~.api.train_many` (:func:`chunk_size`) and ``train(max_memory=)`` all use it.

:func:`estimate_training` first applies these with a pessimistic :data:`ASSUMED_FLOPS` and, only
when the run might last longer than :data:`REPORT_AFTER_S`, times :data:`TIMED_STEPS` steps of the
real engine (after one warm-up step) on a throwaway copy of the run, so small runs pay nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["TrainEstimate", "estimate_training", "run_bytes", "chunk_size", "available_memory",
           "ASSUMED_FLOPS", "REPORT_AFTER_S", "TIMED_STEPS", "DEFAULT_MAX_MEMORY", "CPU_CACHE_BYTES"]

#: operations per second assumed before anything is timed (a slow, shared 2-core CPU)
ASSUMED_FLOPS = 2e10
#: runs that may be longer than this (seconds) get a timed estimate printed before they start
REPORT_AFTER_S = 120.0
#: steps timed (after one warm-up step)
TIMED_STEPS = 2


#: Default memory budget of one chunk of a batch (bytes) when ``max_memory`` is None.
DEFAULT_MAX_MEMORY = 2 * 1024**3
#: CPU chunks keep their [S, n, d_mlp] activations within this many bytes: 8 runs at p = 23,
#: d_mlp = 512. Measured on a shared 2-core machine (32 seeds of the standard preset through
#: train_many, wall clock, three interleaved rounds): chunks of 8 runs on 2 threads cost 0.40-0.42 ms
#: per seed-step, one chunk of 32 runs 0.44-0.73 ms; on one thread (quiet machine) the stacked step
#: cost 0.58 / 0.64 / 0.70 / 0.76 ms at 4 / 8 / 16 / 32 runs. Smaller chunks keep more of the
#: element-wise work in cache; below 8 runs the per-step interpreter overhead and the two threads'
#: barrier cost more than the cache saves. Re-measured with the metric slots, 30 interleaved rounds
#: in one process on 2 threads, least per seed-step: 0.30 / 0.29 / 0.30 / 0.35 / 0.36 ms at
#: 4 / 6 / 8 / 12 / 16 runs; 8 stays.
CPU_CACHE_BYTES = 9 * 1024**2 // 2
#: steps whose metric inputs wait in slots (:data:`~.stack.METRIC_BLOCK`; repeated here, the
#: formula's constant)
_METRIC_BLOCK = 32


def run_bytes(p: int, d_mlp: int, steps_buffered: int = 0) -> int:
    """Bytes one MLP run of a stack holds at once (an upper estimate).

    Weight-sized float32 tensors, 15 of [d_mlp, p]: on the device W_in, W_out, their gradients and
    two Adam moments each (8), the optimizer's two work buffers (2 of 2), one as margin (1); the
    run's exported copy of weights and moments for checkpoints (2). Per step: pre, post and their
    gradients ([n, d_mlp] float32, 4 of them); logits, log-probabilities, their gradients and
    temporaries (8 of [n, p] at 8 bytes); per-pair weights (4 of [n] float64); the metric slots
    (log p at the label and arg-max, 16 bytes per pair and step). Metric rows: 6 float64 per
    buffered step on the device and 7 on the host.
    """
    n = p * (p + 1) // 2
    return (15 * 4 * d_mlp * p + 4 * 4 * n * d_mlp + 8 * 8 * n * p + 4 * 8 * n + 16 * _METRIC_BLOCK * n
            + 13 * 8 * steps_buffered)


def chunk_size(per_run: int, n_runs: int, device, max_memory: int | None, cache_runs: int | None = None) -> int:
    """Runs per chunk: ``per_run`` bytes each (:meth:`~.family.TrainFamily.run_bytes`) within
    ``max_memory`` (default :data:`DEFAULT_MAX_MEMORY`), and on a CPU at most ``cache_runs``
    (the family's cache budget; ``None``: none)."""
    from ..errors import ConfigError

    budget = DEFAULT_MAX_MEMORY if max_memory is None else int(max_memory)
    if per_run > budget:
        raise ConfigError(f"max_memory = {budget} bytes is below what one run needs "
                          f"({per_run} bytes); raise --max-memory")
    s = budget // per_run
    if device.type == "cpu" and cache_runs is not None:
        s = min(s, max(1, cache_runs))
    return int(max(1, min(s, n_runs)))


def cache_runs(p: int, d_mlp: int) -> int:
    """MLP runs whose [S, n, d_mlp] float32 activations fit :data:`CPU_CACHE_BYTES`."""
    n = p * (p + 1) // 2
    return max(1, CPU_CACHE_BYTES // (4 * n * d_mlp))


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
    running anything. Otherwise times :data:`TIMED_STEPS` steps of the engine (:class:`~.stack.Stack`
    with this one run) on fresh weights (the run folder is not touched; the global RNG is not used).
    """
    import torch

    from .family import get_train_family
    from .stack import Stack

    family = get_train_family(cfg.family)
    mem = family.run_bytes(cfg, 0)
    guess = family.step_flop(cfg) / ASSUMED_FLOPS
    if not force_timing and guess * cfg.steps < REPORT_AFTER_S:
        return TrainEstimate(cfg.steps, guess, guess * cfg.steps, mem, timed=False)
    n = TIMED_STEPS + 1
    st = Stack([cfg], [family.init_params(cfg)], [None], 0, torch.device("cpu"))
    st.schedule(0, st.lr_table(0, n))

    def step(t: int) -> None:
        st.step_grads()
        st.update(t)
        st.take_metrics()

    step(0)  # warm-up: allocations, thread pool
    t0 = time.perf_counter()
    for t in range(1, n):
        step(t)
    per = (time.perf_counter() - t0) / TIMED_STEPS
    return TrainEstimate(cfg.steps, per, per * cfg.steps, mem, timed=True)
