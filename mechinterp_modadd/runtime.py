"""Where and how wide the arithmetic runs: devices and CPU thread counts.

Devices: every entry point takes ``device="auto" | "cpu" | "cuda" | "cuda:N" | torch.device``;
``"auto"`` means CUDA when ``torch.cuda.is_available()``, otherwise the CPU. Asking for CUDA on a
machine without it is a :class:`~mechinterp_modadd.errors.ConfigError`, not a crash later.

Analyses keep their float64 and their small arithmetic (spectra, phase statistics, verdicts) on
the CPU; the ``device`` of an analysis entry point (decorated with :func:`takes_device`) is where
its heavy passes run: the float64 forward passes over all pairs
(:func:`mechinterp_modadd.forward.hidden` / :func:`~mechinterp_modadd.forward.logits`), the
batched ablation matmuls and their scoring
(:class:`~mechinterp_modadd.analysis.ablation.ActivationTable`), and the Fourier transform of the
weights. Those kernels read :func:`compute_device`, copy their inputs there and hand their results
back on the CPU, so everything downstream stays on the CPU. ``device=None`` (the default) keeps the
device of an enclosing call or ``--device`` (the CPU otherwise). On the CPU the results are the
same bits as ever; on a GPU the same float64 sums in another order, so numbers agree to about
1e-12 relative and the verdicts are the same.

Threads: torch's default is one intra-op thread per core. For the small matrices of this model
(p = 23: 276 x 512 hidden activations) the threads spend more time waiting for each other than
multiplying, and when another process is busy on the same cores a thread that was descheduled
stalls the others at every barrier (measured: 45.9 ms instead of 0.86 ms per step at p = 23 on a
2-core machine with one other busy process). :func:`auto_threads` therefore picks the count from
the work per step and the cores left idle by other processes, and :func:`thread_scope` applies it
for the duration of a call and restores the previous value afterwards.

A user's own choice wins: an explicit ``threads=`` argument (``--threads`` on the command line),
the environment variables ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, or an earlier
``torch.set_num_threads`` call (detected as a count different from torch's start-up default).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import os
from collections.abc import Callable, Iterator

import torch

from .errors import ConfigError

__all__ = ["resolve_device", "auto_threads", "thread_scope", "user_threads", "busy_cores",
           "SMALL_WORK_FLOP", "requested_threads", "analysis_scope", "cpu_model", "step_flop",
           "compute_device", "analysis_device", "takes_device"]

#: Work per step (floating-point operations) below which one thread is used: at 2 threads the
#: fork/join barriers of ~20 small kernels per step cost more than the halved arithmetic.
#: Measured on a 2-core machine: p = 23, d_mlp = 512 (3.3e7 flop per step) runs as fast on one
#: thread as on two; p = 97, d_mlp = 1024 (4.6e9 flop) is 1.8x faster on two.
SMALL_WORK_FLOP = 2.0e8

#: a thread count asked for explicitly (``--threads``) for the code inside :func:`requested_threads`
_REQUESTED: contextvars.ContextVar[int | None] = contextvars.ContextVar("modadd_threads", default=None)

#: where the heavy passes of an analysis run (None: the CPU); set by :func:`analysis_device`
_ANALYSIS_DEVICE: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar(
    "modadd_analysis_device", default=None)

#: torch's intra-op thread count when this module was first imported; a different count later
#: means somebody called torch.set_num_threads.
_STARTUP_THREADS = torch.get_num_threads()


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The :class:`torch.device` that ``device`` names (``"auto"``/``None``: CUDA if available)."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch {torch.__version__} sees no CUDA GPU "
                          f"here; use --device cpu (or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return dev


def _natural_threads() -> int:
    """The count torch picks by itself: the physical cores (logical CPUs if unknown)."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    except ImportError:  # pragma: no cover - psutil is a dependency
        n = os.cpu_count() or 1
    return max(1, int(n))


def user_threads() -> int | None:
    """The thread count a user chose outside this package, or ``None`` if they chose none.

    A choice is an environment variable ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, or a current
    ``torch.get_num_threads()`` that differs from both torch's start-up value and the physical
    core count (i.e. somebody called ``torch.set_num_threads``).
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) > 0:
            return torch.get_num_threads()
    now = torch.get_num_threads()
    if now != _STARTUP_THREADS or now != _natural_threads():
        return now
    return None


def busy_cores(interval: float = 0.05) -> float:
    """Cores kept busy by other processes, sampled over ``interval`` seconds (0 if unknown).

    Sampled while this process is idle, so it measures the others: sum over CPUs of their
    utilisation, e.g. 1.0 when one other CPU-bound process runs.
    """
    try:
        import psutil

        return sum(psutil.cpu_percent(interval=interval, percpu=True)) / 100.0
    except Exception:  # pragma: no cover - psutil missing or /proc unreadable
        return 0.0


def auto_threads(work_flop: float, threads: int | None = None, *, device: torch.device | None = None,
                 sample_load: bool = True, cap: int | None = None) -> int:
    """Intra-op threads for a job doing ``work_flop`` floating-point operations per step.

    Rule: an explicit ``threads`` wins; then a user's own setting (:func:`user_threads`); on a
    GPU the CPU threads do not matter and the current count is kept. Otherwise 1 thread when
    ``work_flop < SMALL_WORK_FLOP``, else the physical cores minus those busy with other
    processes (rounded, at least 1), so that no thread waits at a barrier for a core it cannot get;
    ``cap`` bounds that automatic choice (a caller whose bits change with the thread count passes 1).
    """
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ConfigError(f"threads must be a positive integer, got {threads!r}")
        return threads
    asked = _REQUESTED.get()
    if asked is not None:
        return asked
    mine = user_threads()
    if mine is not None:
        return mine
    if device is not None and device.type != "cpu":
        return torch.get_num_threads()
    if work_flop < SMALL_WORK_FLOP:
        return 1
    cores = _natural_threads()
    if cap is not None:
        cores = min(cores, cap)
        if cores <= 1:
            return 1
    busy = busy_cores() if sample_load else 0.0
    return max(1, min(cores, round(cores - busy)))


@contextlib.contextmanager
def thread_scope(n: int) -> Iterator[int]:
    """Run the body with ``torch.set_num_threads(n)``; restore the previous count on exit."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@contextlib.contextmanager
def requested_threads(n: int | None) -> Iterator[int | None]:
    """Inside the block, :func:`auto_threads` returns ``n`` (what ``--threads N`` sets); ``None``
    leaves the automatic choice in place."""
    if n is None:
        yield None
        return
    token = _REQUESTED.set(auto_threads(0.0, n))  # validates n
    try:
        with thread_scope(n):
            yield n
    finally:
        _REQUESTED.reset(token)


def analysis_scope(model) -> contextlib.AbstractContextManager[int]:
    """Threads for an analysis of ``model``: :func:`auto_threads` of a forward and backward over
    all pairs (:func:`step_flop`), applied by :func:`thread_scope` (restored on exit)."""
    cfg = model.cfg
    return thread_scope(auto_threads(step_flop(cfg.p, cfg.d_mlp)))


def cpu_model(model):
    """``model`` itself when its weights are on the CPU, else a CPU copy.

    The analyses read a CPU copy of the weights wherever the model was trained or loaded (their
    numbers are then identical on every device of the model); entry points call this first. Where
    their heavy passes run is a separate choice, :func:`analysis_device`.
    """
    w = next(iter(model.parameters()), None)
    if w is None or w.device.type == "cpu":
        return model
    import copy

    return copy.deepcopy(model).to("cpu")


def step_flop(p: int, d_mlp: int, runs: int = 1) -> float:
    """Floating-point operations of the five matrix products of one full-batch step.

    Forward: [n, p] @ [p, M] and [n, M] @ [M, p]; backward: the two weight gradients and the
    hidden-layer gradient, each 2 n p M flop, with n = p(p + 1)/2 unordered pairs.
    """
    n = p * (p + 1) // 2
    return 5 * 2.0 * n * p * d_mlp * runs


# ----------------------------------------------------------------------------- analysis device
_CPU = torch.device("cpu")


def compute_device() -> torch.device:
    """Where the heavy passes of the current analysis run (see the module docstring; the CPU
    unless an :func:`analysis_device` block or a ``device=`` argument says otherwise)."""
    dev = _ANALYSIS_DEVICE.get()
    return _CPU if dev is None else dev


@contextlib.contextmanager
def analysis_device(device: str | torch.device | None) -> Iterator[torch.device]:
    """Inside the block the heavy analysis passes run on ``device`` (validated by
    :func:`resolve_device`); ``None`` keeps the current choice. Restored on exit."""
    if device is None:
        yield compute_device()
        return
    token = _ANALYSIS_DEVICE.set(resolve_device(device))
    try:
        yield compute_device()
    finally:
        _ANALYSIS_DEVICE.reset(token)


def takes_device(fn: Callable) -> Callable:
    """Give an analysis entry point a keyword-only ``device`` argument (see the module docstring):
    the call runs inside :func:`analysis_device`; its result is on the CPU whatever the device."""
    sig = inspect.signature(fn)
    if "device" in sig.parameters:
        raise TypeError(f"{fn.__qualname__} already has a device argument")

    @functools.wraps(fn)
    def wrapper(*args, device: str | torch.device | None = None, **kwargs):
        with analysis_device(device):
            return fn(*args, **kwargs)

    params = list(sig.parameters.values())
    at = next((i for i, q in enumerate(params) if q.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    params.insert(at, inspect.Parameter("device", inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation="str | torch.device | None"))
    wrapper.__signature__ = sig.replace(parameters=params)
    return wrapper

