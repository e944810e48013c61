"""Many runs in one process: runs stacked on a leading axis, trained by batched matrix products.

:func:`train_many` trains runs that share p, d_mlp, activation, embedding and optimizer kind
together. They may differ in seed, lr, weight decay, init scale, init kind, train fraction, split
seed and warm-up. Every run gets the ordinary run folder that :func:`~.trainer.train` writes
(config.json, split.json, metrics.csv, checkpoints/, resume.safetensors), so every command reads
it unchanged and ``train(cfg, folder, resume=True)`` can continue it alone; ``out_dir/runs.csv``
lists the runs with their final metrics.

The stacked step, for runs s = 1..S (shapes [S, ...]; X is the [n, p] matrix of e_x + e_y over the
n = p(p + 1)/2 unordered pairs, shared by all runs)::

    pre    = X @ W_in[s]^T            [S, n, M]
    post   = sigma(pre)
    logits = post @ W_out[s]^T        [S, n, p]
    loss_s = (sum_i w_train[s, i] * nll[s, i]) / n_train[s]   (float64 log-softmax, as train())

and the sum of the S losses is differentiated, which gives each run its own gradient (the runs
share no parameter). AdamW / SGD are applied op for op as torch.optim's single-tensor
implementations do, with per-run lr and weight decay ([S, 1, 1] factors for AdamW; SGD's ``alpha=``
numbers, one run at a time where they differ).

Equivalence with :func:`~.trainer.train` (tested): step-0 weights are bit-identical (each run is
initialised by ``ModAddMLP(cfg.model_config(), seed)`` as alone). After that the batch repeats the
single run's arithmetic: the forward product with the one-hot X as the exact gather-add it amounts
to, the other products in an orientation that gives the same bits (:func:`transposed_products`),
the float64 loss head through the kernels autograd calls, and AdamW/SGD written as torch.optim's
single-tensor code evaluates them (e.g. ``param + (-step * exp_avg) / denom`` for ``addcdiv_``).
On the development machine (MKL, 1 or 2 threads, p = 11 and 23) every run of a batch was
bit-identical to the same run alone through 1,000 steps: weights, losses and accuracies; the
parameter norm, a metric only, agrees to 1e-15 relative (W_in is stored transposed here, so
``vector_norm`` sums its squares in another order). Where a BLAS sums a batched product in
another order than a single one the runs agree to rounding only; the tests therefore assert what
must hold anywhere: per-step losses within 1e-6 relative over the first 1,000 steps, and for the
standard p = 23 preset (5,000 steps, slow test) the same final accuracy and the same dominant
frequency for every neuron. On a GPU the kernels differ from the CPU's, so GPU runs agree with CPU
runs to rounding, not bit for bit.

Memory and speed: the batch is cut into chunks. A chunk's bytes (weights, gradients, optimizer
state, activations of the step, metric rows) must fit ``max_memory``; on a CPU it is further cut so
that its [S, n, M] hidden activations fit in :data:`CPU_CACHE_BYTES` (8 runs at p = 23, d_mlp = 512),
where the products and the element-wise kernels between them find their operands in cache.

Host synchronisation: metrics stay on the device (each step's inputs in a slot, reduced to rows of
a [steps, S, 6] buffer every :data:`METRIC_BLOCK` steps) and are copied to the host only when a
checkpoint is written or the progress bar is refreshed (about once a second), so on a GPU the hot
loop queues kernels without waiting for them.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..checkpoint import atomic_write_bytes, atomic_write_text
from ..data import random_split
from ..errors import ConfigError, RunFolderError
from ..model import ModAddMLP, get_activation
from ..runtime import auto_threads, resolve_device, step_flop, thread_scope
from .presets import TrainConfig
from .runfolder import RunFolder, RunLock, check_new_folder, open_run_folder, write_run_config
from .trainer import (
    METRIC_COLUMNS,
    FullBatchObjective,
    _lr_at,
    _make_optimizer,
    _metrics_frame,
    _prepare_resume,
    _resume_bytes,
    checkpoint_path,
    stop_rule_met,
    stopped_early,
)

__all__ = ["train_many", "ManyResult", "RUNS_CSV_COLUMNS", "run_name", "chunk_size"]

#: Columns of ``runs.csv`` (then one column per TrainConfig field, prefixed ``config.``).
RUNS_CSV_COLUMNS = ["folder", "status", "steps_done", "train_loss", "test_loss", "train_accuracy",
                    "test_accuracy", "param_norm"]

_SHARED = ("p", "activation", "embedding", "optimizer")
_VARYING_NAMES = (("seed", "seed"), ("lr", "lr"), ("weight_decay", "wd"), ("train_fraction", "frac"),
                  ("init_scale", "init"), ("init", "initkind"), ("split_seed", "split"),
                  ("warmup_steps", "warmup"), ("steps", "steps"), ("betas", "betas"),
                  ("save_every", "every"))
#: Default memory budget of one chunk (bytes) when ``max_memory`` is None.
DEFAULT_MAX_MEMORY = 2 * 1024**3
#: CPU chunks keep their [S, n, d_mlp] activations within this many bytes: 8 runs at p = 23,
#: d_mlp = 512. Measured on a shared 2-core machine (32 seeds of the standard preset through
#: train_many, wall clock, three interleaved rounds): chunks of 8 runs on 2 threads cost 0.40-0.42 ms
#: per seed-step, one chunk of 32 runs 0.44-0.73 ms; on one thread (quiet machine) the stacked step
#: cost 0.58 / 0.64 / 0.70 / 0.76 ms at 4 / 8 / 16 / 32 runs. Smaller chunks keep more of the
#: element-wise work in cache; below 8 runs the per-step interpreter overhead and the two threads'
#: barrier cost more than the cache saves. Re-measured with the metric slots (METRIC_BLOCK), 30
#: interleaved rounds in one process on 2 threads, least per seed-step: 0.30 / 0.29 / 0.30 / 0.35 /
#: 0.36 ms at 4 / 6 / 8 / 12 / 16 runs; 8 stays.
CPU_CACHE_BYTES = 9 * 1024**2 // 2

#: Steps whose metric inputs (the log-probability at the label, the arg-max, the weight norms) are
#: kept in per-step slots and reduced to the metric rows together: three small kernels per step
#: instead of about fifteen (measured at 8 runs of p = 23: 0.29-0.31 ms per seed-step against
#: 0.31-0.35), with the same bits, since every row is reduced by the same kernels either way.
METRIC_BLOCK = 32


@dataclass
class ManyResult:
    """What :func:`train_many` did.

    Attributes:
        out_dir: the parent folder (holds runs.csv).
        runs: the run folders, in the order of ``configs``.
        configs: the configs, in the same order.
        table: the content of runs.csv (one row per run).
    """

    out_dir: Path
    runs: list[Path]
    configs: list[TrainConfig]
    table: pd.DataFrame

    def __len__(self) -> int:
        return len(self.runs)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (tuple, list)):
        return "-".join(_fmt(x) for x in v)
    return str(v)


def run_name(cfg: TrainConfig, varying: Sequence[str]) -> str:
    """Folder name of a run: ``key<value>`` for each field that differs across the batch."""
    short = dict(_VARYING_NAMES)
    parts = [f"{short[k]}{_fmt(getattr(cfg, k))}" for k in varying]
    return "_".join(parts) if parts else f"seed{cfg.seed}"


def _check_configs(configs: Sequence[TrainConfig]) -> list[TrainConfig]:
    cfgs = list(configs)
    if not cfgs:
        raise ConfigError("train_many needs at least one TrainConfig")
    for i, c in enumerate(cfgs):
        if not isinstance(c, TrainConfig):
            raise ConfigError(f"configs[{i}] must be a TrainConfig, got {type(c).__name__}")
    first = cfgs[0]
    for i, c in enumerate(cfgs[1:], 1):
        for k in _SHARED:
            if getattr(c, k) != getattr(first, k):
                raise ConfigError(f"configs[{i}].{k} = {getattr(c, k)!r} differs from configs[0].{k} = "
                                  f"{getattr(first, k)!r}; a batch must share p, d_mlp, activation, "
                                  f"embedding and optimizer")
        if c.model_config().d_mlp != first.model_config().d_mlp:
            raise ConfigError(f"configs[{i}] has d_mlp {c.model_config().d_mlp}, configs[0] has "
                              f"{first.model_config().d_mlp}; a batch must share d_mlp")
    if first.embedding != "one_hot":
        raise ConfigError("train_many trains one-hot models only (embedding='one_hot'); "
                          "train learned-embedding runs one at a time with train()")
    return cfgs


def chunk_bytes(p: int, d_mlp: int, steps_buffered: int) -> int:
    """Bytes one run of a chunk holds at once (an upper estimate).

    Weight-sized float32 tensors, 15 of [d_mlp, p]: on the device W_in, W_out, their gradients and
    two Adam moments each (8), one as margin (1); the run's own copy of weights and moments for
    checkpoints (6).
    Per step: pre, post and their gradients ([n, d_mlp] float32, 4 of them); logits,
    log-probabilities, their gradients and temporaries (8 of [n, p] at 8 bytes); per-pair weights
    (4 of [n] float64); the metric slots of :data:`METRIC_BLOCK` steps (log p at the label and
    arg-max, 16 bytes per pair and step). Metric rows: 6 float64 per step on the device and 7 on
    the host.
    """
    n = p * (p + 1) // 2
    return (15 * 4 * d_mlp * p + 4 * 4 * n * d_mlp + 8 * 8 * n * p + 4 * 8 * n + 16 * METRIC_BLOCK * n
            + 13 * 8 * steps_buffered)


def chunk_size(p: int, d_mlp: int, n_runs: int, device: torch.device, max_memory: int | None,
               steps_buffered: int) -> int:
    """Runs per chunk: within ``max_memory`` (bytes), and on a CPU within the cache budget."""
    budget = DEFAULT_MAX_MEMORY if max_memory is None else int(max_memory)
    per_run = chunk_bytes(p, d_mlp, steps_buffered)
    if per_run > budget:
        raise ConfigError(f"max_memory = {budget} bytes is below what one run needs "
                          f"({per_run} bytes at p = {p}, d_mlp = {d_mlp}); raise --max-memory")
    s = budget // per_run
    if device.type == "cpu":
        n = p * (p + 1) // 2
        s = min(s, max(1, CPU_CACHE_BYTES // (4 * n * d_mlp)))
    return int(max(1, min(s, n_runs)))


# ---------------------------------------------------------------------------- run folders
@dataclass
class _Run:
    index: int
    cfg: TrainConfig
    folder: Path | None  # None: keep the run in memory (train() without out_dir)
    start: int = 0
    resuming: bool = False
    run_id: str | None = None
    model: ModAddMLP | None = None  # the weights at ``start`` (CPU)
    opt: torch.optim.Optimizer | None = None
    rows: dict[str, np.ndarray] | None = None
    status: str = "ok"
    final: dict[str, float] | None = None

    def release(self) -> None:
        """Keep the last metrics row; drop the weights, optimizer and metric arrays."""
        rows = self.rows
        if rows is not None:
            ok = np.flatnonzero(np.isfinite(rows["param_norm"]))
            done = int(ok[-1]) if len(ok) else -1
            self.final = {k: (float(rows[k][done]) if done >= 0 else float("nan"))
                          for k in ("train_loss", "test_loss", "train_accuracy", "test_accuracy",
                                    "param_norm")}
            self.final["steps_done"] = done
        self.model = self.opt = self.rows = None


def _saved_step(folder: Path) -> int:
    """The step of a run folder's resume state, read from its metadata (checked again, with every
    other file, by :func:`~.runfolder.validate_resume` when the run's chunk opens it)."""
    from safetensors import SafetensorError, safe_open

    path = folder / "resume.safetensors"
    try:
        with safe_open(str(path), framework="pt") as f:
            return int((f.metadata() or {})["step"])
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        raise RunFolderError(f"{path}: cannot read the resume step ({e})") from None


def _finished_row(run: _Run) -> None:
    """A finished run met on resume: its last metrics row becomes its runs.csv entry."""
    path = run.folder / "metrics.csv"
    try:
        last = pd.read_csv(path).iloc[-1]
    except (OSError, ValueError, IndexError, pd.errors.ParserError) as e:
        raise RunFolderError(f"{path}: unreadable metrics of a finished run ({e})") from None
    run.final = {k: float(last[k]) for k in ("train_loss", "test_loss", "train_accuracy", "test_accuracy",
                                              "param_norm")}
    run.final["steps_done"] = int(last["step"])


def _stopped(run: _Run) -> bool:
    """A run folder met on resume that its early stop already ended (its metrics say so)."""
    if run.cfg.stop_accuracy is None:
        return False
    path = run.folder / "metrics.csv"
    try:
        return stopped_early(run.cfg, pd.read_csv(path).iloc[: run.start + 1])
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as e:
        raise RunFolderError(f"{path}: unreadable metrics ({e})") from None


def _prepare(run: _Run, rf: RunFolder | None) -> None:
    """Fresh weights (and a new folder's config.json and split.json), or the validated saved state
    of a run folder when resuming, exactly as :func:`~.trainer.train` does."""
    cfg = run.cfg
    model = ModAddMLP(cfg.model_config(), seed=cfg.seed)
    opt = _make_optimizer(cfg, model)
    n = cfg.steps + 1
    rows = {c: np.full(n, np.nan) for c in METRIC_COLUMNS}
    rows["step"] = np.arange(n, dtype=np.float64)
    if rf is None:
        start = 0
    elif rf.resume is not None:
        start = _prepare_resume(run.folder, cfg, rf.resume, model, opt, rows)
    else:
        start = 0
        write_run_config(run.folder, cfg, rf.run_id)
        split = random_split(cfg.p, cfg.train_fraction, cfg.effective_split_seed)
        atomic_write_text(run.folder / "split.json", json.dumps(
            {"p": cfg.p, "seed": split.seed, "train_fraction": cfg.train_fraction,
             "train_pairs": split.train_pairs.tolist()}))
    if start != run.start:
        raise RunFolderError(f"{run.folder}: resume state moved from step {run.start} to {start} while "
                             f"the batch was starting (another writer?)")
    run.run_id = rf.run_id if rf is not None else None
    run.model, run.opt, run.rows = model, opt, rows


# ------------------------------------------------------------------------------ the engine
class _Stack:
    """The stacked parameters, optimizer state and per-run constants of one chunk on a device."""

    def __init__(self, runs: list[_Run], device: torch.device) -> None:
        cfg0 = runs[0].cfg
        self.runs = runs
        self.device = device
        self.S = S = len(runs)
        self.p = cfg0.p
        self.optimizer = cfg0.optimizer
        self.betas = cfg0.betas
        split0 = random_split(cfg0.p, 1.0, 0)
        obj = FullBatchObjective(split0)
        self.X = obj.inputs.to(device)  # [n, p]
        self.labels = obj.labels.to(device)
        self.pairs = torch.stack([obj.xs, obj.ys], 1).to(device)  # [n, 2]: x <= y of each row of X
        n = len(obj.labels)
        self.n = n
        w_tr = torch.empty(S, n, dtype=torch.float64)
        w_te = torch.empty(S, n, dtype=torch.float64)
        for i, r in enumerate(runs):
            o = FullBatchObjective(random_split(r.cfg.p, r.cfg.train_fraction, r.cfg.effective_split_seed))
            w_tr[i], w_te[i] = o.w_train, o.w_test
        n_tr, n_te = w_tr.sum(1), w_te.sum(1)
        # the same weights and divisors as FullBatchObjective, so each run's loss is the same sum
        self.w_train, self.w_test = w_tr.to(device), w_te.to(device)
        self.n_train = n_tr.clamp(min=1.0).to(device)
        self.n_test = n_te.clamp(min=1.0).to(device)
        self.has_test = (n_te > 0).to(device)
        # One [2, S, p, M] buffer holds both weights: [0] is W_in stored transposed (the code sees
        # the [S, M, p] view W_in), [1] is W_out. Gradients and Adam moments share that layout, so
        # the products below run in their fast orientation and the optimizer's element-wise passes
        # run once over both weights.
        self.P = torch.stack([torch.stack([r.model.mlp.W_in.detach().t() for r in runs]),
                              torch.stack([r.model.mlp.W_out.detach() for r in runs])]).to(device)
        self.G = torch.empty_like(self.P)
        self._buf: dict[str, Tensor] | None = None
        self.pending = 0  # steps whose metrics wait in the slots of _buffers (take_metrics)
        self._fast = (False, False)  # orientation of the two narrow products (transposed_products)
        self.act = get_activation(cfg0.activation)
        col = (S, 1, 1)
        self.wd = torch.tensor([r.cfg.weight_decay for r in runs], dtype=torch.float64).reshape(col).to(device)
        # optimizer state from each run's torch optimizer (zeros when fresh, loaded when resuming)
        self.step_count = 0
        self.EA = self.ES = torch.empty(0)
        if self.optimizer == "adamw":
            moments: list[list[Tensor]] = [[], []]
            for j in range(2):
                for key, dst in (("exp_avg", moments[0]), ("exp_avg_sq", moments[1])):
                    per_run = []
                    for r in runs:
                        st = r.opt.state.get(list(r.model.parameters())[j], {})
                        if key in st:
                            per_run.append(st[key].t() if j == 0 else st[key])
                            self.step_count = int(float(st["step"]))
                        else:
                            per_run.append(torch.zeros_like(self.P[j, 0], device="cpu"))
                    dst.append(torch.stack(per_run))
            self.EA, self.ES = (torch.stack(m).to(device) for m in moments)
        self._views()

    def _views(self) -> None:
        """The per-weight views of the merged buffers ([S, M, p] for W_in, [S, p, M] for W_out)."""
        self.W_in, self.W_out = self.P[0].transpose(1, 2), self.P[1]
        self.exp_avg: list[Tensor] = []  # (none for SGD)
        self.exp_avg_sq: list[Tensor] = []
        if self.EA.numel():
            self.exp_avg = [self.EA[0].transpose(1, 2), self.EA[1]]
            self.exp_avg_sq = [self.ES[0].transpose(1, 2), self.ES[1]]

    def keep(self, idx: list[int]) -> None:
        """Keep only the runs at positions ``idx`` (the others stopped); buffers are rebuilt, so
        the pending metrics must have been taken (:meth:`take_metrics`)."""
        if self.pending:
            raise RuntimeError("internal: the batch shrinks with metrics still pending")
        ix = torch.tensor(idx, dtype=torch.long, device=self.device)
        self.runs = [self.runs[i] for i in idx]
        self.S = len(idx)
        # weights, this step's gradients (the update comes next) and moments: the run axis is dim 1
        self.P, self.G = self.P.index_select(1, ix), self.G.index_select(1, ix)
        if self.EA.numel():
            self.EA, self.ES = self.EA.index_select(1, ix), self.ES.index_select(1, ix)
        self.w_train, self.w_test = self.w_train.index_select(0, ix), self.w_test.index_select(0, ix)
        self.n_train, self.n_test = self.n_train.index_select(0, ix), self.n_test.index_select(0, ix)
        self.has_test, self.wd = self.has_test.index_select(0, ix), self.wd.index_select(0, ix)
        for name in ("_neg_step", "_decay"):  # the schedule: [T, S, 1, 1]
            if hasattr(self, name):
                setattr(self, name, getattr(self, name).index_select(1, ix))
        if hasattr(self, "_lr_rows"):
            self._lr_rows = [[row[i] for i in idx] for row in self._lr_rows]
            self._wd_list = [self._wd_list[i] for i in idx]
        self._buf = None
        self._views()

    # -------------------------------------------------------------------------------- step
    def lr_table(self, start: int, stop: int) -> Tensor:
        """[stop - start, S] learning rates of steps start..stop-1, computed on the host exactly as
        :func:`~.trainer._lr_at` does (lr * min(1, (t + 1) / warmup)) and uploaded once."""
        tab = [[_lr_at(r.cfg, t) for r in self.runs] for t in range(start, stop)]
        return torch.tensor(tab, dtype=torch.float64).reshape(stop - start, self.S).to(self.device)

    def _buffers(self) -> dict[str, Tensor]:
        """Buffers reused every step (no large allocation, and no page faults, per step) and the
        chunk's constants; rebuilt when the batch shrinks."""
        if self._buf is None:
            S, n, M, p = self.S, self.n, self.P.shape[-1], self.p
            fast_fwd, fast_bwd = transposed_products(S, n, M, p, self.device.type)
            new = self.P.new_empty
            # rows of the [S * p, M] table of every run's W_in^T that sum to each run's pre-activations:
            # bag i (run s, pair (x, y)) is rows s p + x and s p + y of the table
            rows = (self.pairs[None] + p * torch.arange(S, device=self.device)[:, None, None]).reshape(-1)
            # d(sum_s train_loss_s)/d log p at the labels, as autograd forms it: -(1/n_train) w_train,
            # scattered (scatter_add into zeros) to the label column; the same every step
            inv = torch.ones_like(self.n_train) / self.n_train
            dlogp = torch.zeros(S, n, p, dtype=torch.float64, device=self.device)
            dlogp.scatter_add_(2, self.labels.expand(S, n)[..., None], (-(inv[:, None] * self.w_train))[..., None])
            self._buf = {"dhidden": new(S, n, M), "dlogits": new(S, n, p), "dlogp": dlogp,
                         "rows": rows, "bags": torch.arange(0, 2 * S * n, 2, device=self.device),
                         "table": self.P[0].view(S * p, M),
                         "denom": torch.empty_like(self.P), "step": torch.empty_like(self.P),
                         # the loss head's float64 tensors: reused, since a fresh one can cost a page
                         # fault per 4 KiB each step, depending on the allocator's history
                         "z": dlogp.new_empty(S, n, p), "logp": dlogp.new_empty(S, n, p),
                         "dz": dlogp.new_empty(S, n, p),
                         "logits": new(S, p, n) if fast_fwd else new(S, n, p),
                         "g_in": self.G[0] if fast_bwd else new(S, M, p),
                         "X": self.X.expand(S, n, p), "X_t": self.X.t().expand(S, p, n),
                         "label_index": self.labels.expand(S, n)[..., None],
                         # per-step slots of the metric inputs, reduced by take_metrics
                         "nll_slots": dlogp.new_empty(METRIC_BLOCK, S, n, 1),
                         "argmax_slots": self.labels.new_empty(METRIC_BLOCK, S, n),
                         "norm_slots": dlogp.new_empty(METRIC_BLOCK, 2, S),
                         # per-pair weights and counts of the metrics, [S, 1, 2 (train, test), ...]
                         "weights": torch.stack([self.w_train, self.w_test], 1)[:, None],
                         "counts": torch.stack([self.n_train, self.n_test], 1)[:, None],
                         "has_split": torch.stack([torch.ones_like(self.has_test), self.has_test], 1)[:, None]}
            self._fast = (fast_fwd, fast_bwd)
        return self._buf

    @torch.no_grad()
    def step_grads(self) -> None:
        """Gradients of every run's training loss (into the buffer ``G``); the inputs of this
        step's metrics go to the next slot (:meth:`take_metrics` turns them into rows).

        The arithmetic is the single-run trainer's, so each run's bits are the same as alone:

        * pre-activations: row (x, y) of X @ W_in^T is W_in[:, x] + W_in[:, y] (2 W_in[:, x] when
          x = y). A product with the one-hot X sums exactly these terms and zeros, so the gather-add
          ``embedding_bag(mode="sum")`` gives the same bits at a fraction of the cost.
        * the backward pass is written out with the products autograd performs in ``train()``
          (dW_out = dlogits^T @ post, d post = dlogits @ W_out, dW_in = dpre^T @ X), each in
          whichever orientation the CPU BLAS runs fastest: products with a narrow p-column output
          are computed transposed (logits^T = W_out @ post^T, dW_in^T = X^T @ dpre), which is
          about twice as fast at p = 23 and, where :func:`transposed_products` finds it so, the
          same bits.
        * the loss head calls the kernels autograd calls for ``FullBatchObjective`` (float64
          log-softmax, its backward with the constant gradient of the weighted mean at the labels,
          the cast of the gradient to float32), without building a graph; ReLU's derivative is
          autograd's ``threshold_backward``, other activations go through autograd.
        """
        relu = self.act is torch.relu  # the registry entry of "relu"
        S, n, M = self.S, self.n, self.P.shape[-1]
        buf = self._buffers()
        fast_fwd, fast_bwd = self._fast
        # torch.nn.functional.embedding_bag(mode="sum") without its argument checks (its out= variant
        # computes a fresh tensor and copies it, so the output here is fresh)
        pre = torch.embedding_bag(buf["table"], buf["rows"], buf["bags"], False, 0, False, None, False)[0]
        pre = pre.view(S, n, M)
        if relu:
            post = pre.relu_()  # in place: relu's backward needs only post > 0
        else:
            pre = pre.detach().requires_grad_(True)
            with torch.enable_grad():
                post = self.act(pre)
        hidden = post.detach()
        if fast_fwd:
            logits = torch.bmm(self.W_out, hidden.transpose(1, 2), out=buf["logits"]).transpose(1, 2)
        else:
            logits = torch.bmm(hidden, self.W_out.transpose(1, 2), out=buf["logits"])  # [S, n, p]
        # float64 copy in [S, n, p] layout (float32 -> float64 is exact), then what autograd runs
        z = buf["z"].copy_(logits)
        logp = torch._log_softmax(z, 2, False, out=buf["logp"])
        dz = torch._log_softmax_backward_data(buf["dlogp"], logp, 2, torch.float64, out=buf["dz"])
        dlogits = buf["dlogits"].copy_(dz)
        torch.bmm(dlogits.transpose(1, 2), hidden, out=self.G[1])  # dW_out [S, p, M]
        dpost = torch.bmm(dlogits, self.W_out, out=buf["dhidden"])  # [S, n, M]
        if relu:  # autograd's threshold_backward: the gradient where the output is > 0, else 0
            dpre = torch.ops.aten.threshold_backward.grad_input(dpost, hidden, 0, grad_input=dpost)
        else:
            with torch.enable_grad():
                (dpre,) = torch.autograd.grad(post, pre, dpost)
        if fast_bwd:
            torch.bmm(buf["X_t"], dpre, out=self.G[0])  # dW_in^T [S, p, M]
        else:
            self.G[0].transpose(1, 2).copy_(torch.bmm(dpre.transpose(1, 2), buf["X"], out=buf["g_in"]))
        # the metrics' inputs, into this step's slot: log p at the label, the arg-max, and the
        # norms of W_in and W_out (vector_norm accumulates the float32 weights in float64 without
        # a float64 copy, as the single-run trainer's param_norm does)
        k = self.pending
        torch.gather(logp, 2, buf["label_index"], out=buf["nll_slots"][k])
        torch.argmax(z, dim=-1, out=buf["argmax_slots"][k])
        torch.linalg.vector_norm(self.P, dim=(2, 3), dtype=torch.float64, out=buf["norm_slots"][k])
        self.pending = k + 1

    @torch.no_grad()
    def take_metrics(self) -> Tensor:
        """The [k, S, 5] metric rows of the k pending steps (train and test loss and accuracy,
        parameter norm), and no step pending after. FullBatchObjective's weighted means, all
        steps, train and test in one reduction; the same bits as step by step."""
        k, S, buf = self.pending, self.S, self._buffers()
        self.pending = 0
        nll = -buf["nll_slots"][:k, ..., 0]  # [k, S, n]
        correct = (buf["argmax_slots"][:k] == self.labels).double()
        per_pair = torch.stack([nll, correct], 2)  # [k, S, 2 (loss, accuracy), n]
        sums = (per_pair[:, :, :, None, :] * buf["weights"]).sum(-1)  # [k, S, 2, 2 (train, test)]
        means = torch.where(buf["has_split"], sums / buf["counts"], float("nan"))
        norms = buf["norm_slots"][:k]  # [k, 2, S]
        return torch.cat([means.reshape(k, S, 4), (norms * norms).sum(1).sqrt()[..., None]], 2)

    def schedule(self, start: int, lr: Tensor) -> None:
        """Per-step factors of the optimizer for the steps start, start + 1, ... from their [T, S]
        learning rates, computed once as the single-run optimizer computes them each step:
        AdamW's ``-(lr / (1 - beta1^k))`` (k = t + 1, the count of updates) and ``1 - lr * wd``,
        each cast to float32; SGD's lr and weight decay as Python numbers."""
        self._start = start
        k = range(self.step_count + 1, self.step_count + 1 + lr.shape[0])
        if self.optimizer == "adamw":
            b1 = self.betas[0]
            bc1 = torch.tensor([1 - b1 ** i for i in k], dtype=torch.float64, device=lr.device)[:, None]
            self._neg_step = (-(lr / bc1)).float()[..., None, None]  # [T, S, 1, 1]
            self._decay = (1 - lr * self.wd.reshape(1, -1)).float()[..., None, None]
            # runs that share lr, schedule and weight decay (e.g. a batch of seeds) take each factor
            # as one Python number (a float32 value), so the last two passes fuse into addcdiv_
            same = bool((lr == lr[:, :1]).all()) and bool((self.wd == self.wd[0]).all())
            self._scalars = (self._decay[:, 0, 0, 0].tolist(), self._neg_step[:, 0, 0, 0].tolist()) if same else None
            # steps whose decay factor is exactly 1 for every run (no weight decay): x * 1 = x, skipped
            self._no_decay = (self._decay == 1).flatten(1).all(1).tolist()
        else:  # SGD takes lr and weight decay as Python numbers (alpha=), one run at a time if they differ
            self._lr_rows = lr.tolist()  # [T][S]
            self._wd_list = self.wd.flatten().tolist()

    @torch.no_grad()
    def update(self, t: int) -> None:
        """The optimizer step after step t, with this step's gradients (``G``) and the factors of
        :meth:`schedule`, over both weights at once ([2, S, p, M]; per-run factors [S, 1, 1])."""
        P, G, i = self.P, self.G, t - self._start
        if self.optimizer == "adamw":
            b1, b2 = self.betas
            self.step_count += 1
            bc2_sqrt = (1 - b2 ** self.step_count) ** 0.5
            buf = self._buffers()
            denom, step = buf["denom"], buf["step"]
            if not self._no_decay[i]:
                P.mul_(self._scalars[0][i] if self._scalars else self._decay[i])
            self.EA.lerp_(G, 1 - b1)
            self.ES.mul_(b2).addcmul_(G, G, value=1 - b2)
            torch.sqrt(self.ES, out=denom).div_(bc2_sqrt).add_(1e-8)
            # param.addcdiv_(ea, denom, value=-step) evaluates param + (value * ea) / denom
            if self._scalars:
                P.addcdiv_(self.EA, denom, value=self._scalars[1][i])
            else:
                P.add_(torch.mul(self.EA, self._neg_step[i], out=step).div_(denom))
        else:  # torch's single-tensor SGD: grad.add(param, alpha=wd) if wd != 0; param.add_(grad, alpha=-lr)
            lrs, wds = self._lr_rows[i], self._wd_list
            if len(set(lrs)) == 1 and len(set(wds)) == 1:
                g = G if wds[0] == 0 else G.add(P, alpha=wds[0])
                P.add_(g, alpha=-lrs[0])
            else:
                for s_ in range(self.S):
                    g = G[:, s_] if wds[s_] == 0 else G[:, s_].add(P[:, s_], alpha=wds[s_])
                    P[:, s_].add_(g, alpha=-lrs[s_])

    # ------------------------------------------------------------------------------ export
    def to_runs(self, t: int) -> None:
        """Copy the stacked weights and optimizer state of step t back into each run's objects."""
        W_in, W_out = self.W_in.detach().cpu(), self.W_out.detach().cpu()
        ea = [e.cpu() for e in self.exp_avg]
        es = [e.cpu() for e in self.exp_avg_sq]
        for i, r in enumerate(self.runs):
            with torch.no_grad():
                r.model.mlp.W_in.copy_(W_in[i])
                r.model.mlp.W_out.copy_(W_out[i])
            params = list(r.model.parameters())
            if self.optimizer == "adamw" and self.step_count > 0:
                for j, q in enumerate(params):
                    r.opt.state[q] = {"step": torch.tensor(float(self.step_count)),
                                      "exp_avg": ea[j][i].clone(memory_format=torch.contiguous_format),
                                      "exp_avg_sq": es[j][i].clone(memory_format=torch.contiguous_format)}
            for g in r.opt.param_groups:
                g["lr"] = _lr_at(r.cfg, max(t - 1, 0))


@functools.lru_cache(maxsize=64)
def transposed_products(S: int, n: int, M: int, p: int, device: str) -> tuple[bool, bool]:
    """Whether to run the two narrow-output products transposed (logits^T = W_out @ post^T and
    dW_in^T = X^T @ dpre): on a CPU only, and only where a probe on random data of this shape gives
    bit for bit what the single-run trainer's products give (``post @ W_out^T``, ``dpre^T @ X``).
    A BLAS sums in an order fixed by shape, not data, so one probe decides; MKL agrees at the
    sizes that matter (p = 23, d_mlp = 512 and up) but not at toy sizes (p = 11, d_mlp = 32)."""
    if device != "cpu":
        return False, False
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(n, p, generator=g) < 2 / p).float()
    W_out = torch.randn(S, p, M, generator=g)
    post = torch.rand(S, n, M, generator=g)
    dpre = torch.randn(S, n, M, generator=g)
    fwd = torch.equal(torch.bmm(W_out, post.transpose(1, 2)).transpose(1, 2),
                      torch.stack([post[s] @ W_out[s].t() for s in range(S)]))
    bwd = torch.equal(torch.bmm(X.t().expand(S, p, n), dpre).transpose(1, 2),
                      torch.stack([dpre[s].t() @ X for s in range(S)]))
    return fwd, bwd


def _save(run: _Run, t: int) -> None:
    from ..checkpoint import checkpoint_bytes

    rows = run.rows
    m = {k: float(rows[k][t]) for k in ("train_loss", "test_loss", "train_accuracy", "test_accuracy")}
    m["param_norm"] = float(rows["param_norm"][t])
    atomic_write_bytes(checkpoint_path(run.folder, t), checkpoint_bytes(run.model, step=t, metrics=m,
                                                                        run_id=run.run_id))
    atomic_write_text(run.folder / "metrics.csv", _metrics_frame(rows, t).to_csv(index=False))
    atomic_write_bytes(run.folder / "resume.safetensors", _resume_bytes(run.model, run.opt, t))


def _train_chunk(runs: list[_Run], device: torch.device, bar: Any, flush_seconds: float = 1.0,
                 extra: frozenset[int] = frozenset()) -> None:
    """Train one chunk (runs sharing steps, save_every, betas, start step and stop window).

    Runs that meet their early stop (:func:`~.trainer.stop_rule_met`, checked at multiples of the
    shared ``stop_window``) get their last checkpoint at that step and leave the stack, so the
    remaining runs train at the cost of a smaller batch.
    """
    cfg0 = runs[0].cfg
    steps, save_every, start = cfg0.steps, cfg0.save_every, runs[0].start
    window = cfg0.stop_window if any(r.cfg.stop_accuracy is not None for r in runs) else 0
    st = _Stack(runs, device)
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
        for i, r in enumerate(st.runs):
            for c, col in enumerate(("train_loss", "test_loss", "train_accuracy", "test_accuracy",
                                     "param_norm", "lr")):
                r.rows[col][flushed: upto + 1] = host[:, i, c]
            if alive[i] and not np.all(np.isfinite(host[:, i, 0])):
                bad = flushed + int(np.argmin(np.isfinite(host[:, i, 0])))
                alive[i] = False
                r.status = f"diverged at step {bad}"
        bar.update(st.S * (upto + 1 - flushed) - (st.S if flushed == start else 0))
        flushed = upto + 1
        last_flush = time.perf_counter()

    for t in range(start, n_rows):
        st.step_grads()
        stepped = t
        if st.pending == METRIC_BLOCK:
            settle()
        check = bool(window) and t > 0 and t % window == 0
        if check:
            flush(t)
        stopping = [i for i, r in enumerate(st.runs) if alive[i] and stop_rule_met(
            r.cfg, r.rows["train_accuracy"], r.rows["test_accuracy"], t)] if check else []
        if t % save_every == 0 or t == steps or t in extra or stopping:
            flush(t)
            st.to_runs(t)
            for i, r in enumerate(st.runs):
                if alive[i] and r.folder is not None and (i in stopping or t % save_every == 0 or t == steps
                                                          or t in extra):
                    _save(r, t)
        elif time.perf_counter() - last_flush > flush_seconds:
            flush(t)
        if stopping:
            for i in stopping:
                st.runs[i].start = t
                bar.update(steps - t)
            keep = [i for i in range(st.S) if i not in stopping]
            if not keep:
                return
            st.keep(keep)
            buf = buf[:, keep].contiguous()
            alive = alive[keep]
        if t == steps:
            break
        st.update(t)
    flush(steps)
    for r in st.runs:
        r.start = steps


def train_on_device(cfg: TrainConfig, out_dir: str | os.PathLike | None, *, device: torch.device,
                    resume: bool = False, progress: bool = True, checkpoint_steps: list[int] | None = None,
                    break_lock: bool = False, threads: int | None = None) -> Any:
    """One run through the stacked engine (what ``train(cfg, device="cuda")`` calls).

    Writes the same run folder as the CPU loop, with the same locking and resume checks
    (:func:`~.runfolder.open_run_folder`); returns a :class:`~.trainer.TrainResult` whose model
    lives on ``device``. Raises :class:`ConfigError` if the loss became NaN/inf.
    """
    from tqdm import tqdm

    from .trainer import TrainResult

    folder = Path(out_dir) if out_dir is not None else None
    if folder is None and resume:
        raise ConfigError("resume=True needs out_dir (the run folder to continue)")
    run = _Run(0, cfg, folder)
    n_threads = auto_threads(step_flop(cfg.p, cfg.model_config().d_mlp), threads, device=device)
    with contextlib.ExitStack() as stack:
        rf = None
        if folder is not None:
            rf = stack.enter_context(open_run_folder(folder, cfg, resume=resume, break_lock=break_lock))
            run.start = rf.resume.start if rf.resume is not None else 0
        _prepare(run, rf)
        bar = stack.enter_context(tqdm(total=cfg.steps, initial=run.start, disable=not progress,
                                       desc=f"train p={cfg.p} ({device})", unit="step", mininterval=0.5))
        with thread_scope(n_threads):
            if run.start < cfg.steps:
                _train_chunk([run], device, bar, extra=frozenset(checkpoint_steps or ()))
    if run.status != "ok":
        raise ConfigError(f"training {run.status}: the train loss is not finite; lower the learning rate")
    metrics = _metrics_frame(run.rows, run.start)  # run.start: the last step (the stop step if it stopped)
    model = run.model.to(device).eval()
    split = random_split(cfg.p, cfg.train_fraction, cfg.effective_split_seed)
    return TrainResult(model=model, metrics=metrics, config=cfg, split=split, run_dir=folder)


# ------------------------------------------------------------------------------ runs.csv
def _table(runs: list[_Run], out_dir: Path) -> pd.DataFrame:
    recs = []
    for r in runs:
        fin = dict(r.final or {})
        rec: dict[str, Any] = {"folder": os.path.relpath(r.folder, out_dir), "status": r.status,
                               "steps_done": int(fin.pop("steps_done", -1)), **fin}
        for k, v in r.cfg.to_dict().items():
            rec[f"config.{k}"] = json.dumps(v) if isinstance(v, (list, tuple)) else v
        recs.append(rec)
    return pd.DataFrame(recs)


def _write_runs_csv(table: pd.DataFrame, out_dir: Path) -> None:
    buf = io.StringIO()
    table.to_csv(buf, index=False, quoting=csv.QUOTE_MINIMAL)
    atomic_write_text(out_dir / "runs.csv", buf.getvalue())


# ------------------------------------------------------------------------------- public
def train_many(
    configs: Sequence[TrainConfig],
    out_dir: str | os.PathLike,
    *,
    names: Sequence[str] | None = None,
    device: str | torch.device = "auto",
    max_memory: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    resume: bool = False,
    break_lock: bool = False,
) -> ManyResult:
    """Train many runs in one process, stacked on a leading run axis.

    Args:
        configs: the runs. They must share p, d_mlp, activation, embedding (one-hot) and
            optimizer; anything else may differ. Runs with different ``steps``, ``save_every`` or
            ``betas`` are trained in separate chunks.
        out_dir: parent folder; run i goes to ``out_dir/names[i]`` and the summary to
            ``out_dir/runs.csv``.
        names: folder names (default: the fields that vary across the batch, e.g. ``seed3_wd1``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
        max_memory: bytes one chunk may allocate (default 2 GiB); the batch is split into chunks
            trained one after another, so 4,096 runs never hold more than this at once.
        threads: CPU intra-op threads (default: chosen from the chunk's work and the idle cores;
            see :func:`mechinterp_modadd.runtime.auto_threads`).
        progress: show a tqdm bar counting run-steps.
        resume: continue every run folder that exists from its last checkpoint (runs not yet
            started are started; finished runs are left alone).
        break_lock: take over stale locks of ``out_dir`` and of the run folders.

    Files: without ``resume`` ``out_dir`` must be absent or empty. ``out_dir`` is locked for the
    whole batch, and each run folder while its chunk trains (:mod:`~.runfolder`); every run
    gets its own run id; a resumed run is validated before anything is written.

    Returns:
        :class:`ManyResult` with the run folders and the runs.csv table.
    """

    cfgs = _check_configs(configs)
    out = Path(out_dir)
    if names is None:
        varying = [k for k, _ in _VARYING_NAMES if len({json.dumps(getattr(c, k)) for c in cfgs}) > 1]
        names = [run_name(c, varying) for c in cfgs]
    names = [str(n) for n in names]
    if len(names) != len(cfgs):
        raise ConfigError(f"names has {len(names)} entries for {len(cfgs)} configs")
    seen: dict[str, int] = {}
    for i, nm in enumerate(names):
        if not nm or nm in (".", "..") or "/" in nm or os.sep in nm:
            raise ConfigError(f"names[{i}] = {nm!r} is not a plain folder name")
        if nm in seen:
            raise ConfigError(f"runs {seen[nm]} and {i} would share the folder {nm!r} "
                              f"(duplicate configs or names)")
        seen[nm] = i
    dev = resolve_device(device)
    runs = [_Run(i, c, out / nm) for i, (c, nm) in enumerate(zip(cfgs, names, strict=True))]
    if not resume:
        check_new_folder(out)
    elif not out.is_dir():
        raise RunFolderError(f"{out}: no such batch folder to resume")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"{out}: cannot create the batch folder ({e.strerror or e})") from None
    with RunLock(out, break_lock=break_lock):
        for r in runs:
            r.resuming = resume and (r.folder / "config.json").exists()
            r.start = _saved_step(r.folder) if r.resuming else 0
        _train_groups(runs, dev, max_memory, threads, progress, break_lock)
        table = _table(runs, out)
        _write_runs_csv(table, out)
    return ManyResult(out_dir=out, runs=[r.folder for r in runs], configs=cfgs, table=table)


def _train_groups(runs: list[_Run], dev: torch.device, max_memory: int | None, threads: int | None,
                  progress: bool, break_lock: bool) -> None:
    """Group the runs by what a chunk must share, cut groups into chunks, train chunk by chunk."""
    from tqdm import tqdm

    p, d_mlp = runs[0].cfg.p, runs[0].cfg.model_config().d_mlp
    groups: dict[tuple, list[_Run]] = {}
    for r in runs:
        if r.resuming and (r.start >= r.cfg.steps or _stopped(r)):
            _finished_row(r)
            continue
        groups.setdefault((r.cfg.steps, r.cfg.save_every, r.cfg.betas, r.start, r.cfg.stop_window), []).append(r)
    todo = sum(r.cfg.steps - r.start for g in groups.values() for r in g)
    with tqdm(total=todo, disable=not progress, desc=f"train {len(runs)} runs p={p}", unit="run-step",
              unit_scale=True, mininterval=0.5) as bar:
        for (steps, _, _, start, _), group in groups.items():
            size = chunk_size(p, d_mlp, len(group), dev, max_memory, steps + 1 - start)
            size = -(-len(group) // -(-len(group) // size))  # equal chunks: 32 runs at most 21 -> 16 + 16
            n_threads = auto_threads(step_flop(p, d_mlp, size), threads, device=dev)
            for a in range(0, len(group), size):
                chunk = group[a: a + size]
                with contextlib.ExitStack() as stack:
                    for r in chunk:
                        rf = stack.enter_context(open_run_folder(r.folder, r.cfg, resume=r.resuming,
                                                                 break_lock=break_lock))
                        _prepare(r, rf)
                    with thread_scope(n_threads):
                        _train_chunk(chunk, dev, bar)
                for r in chunk:
                    r.release()


