"""A fast full-batch trainer, run folders and bit-exact resume.

Why it is fast: the network is symmetric in (x, y), so (x, y) and (y, x) have the same hidden
activations and logits. One forward pass over the p(p + 1)/2 unordered pairs {x <= y} gives the
loss and accuracy on every ordered pair, train and test at once, by weighting each unordered pair
with how many of its ordered versions lie in each set. The metrics come from the same pass as the
gradient. The first layer multiplies the [n, p] matrix of e_x + e_y rows by W_in^T: on a CPU that
beats a gather, whose backward is a slow scatter-add.

Run folder layout (``out_dir``)::

    config.json                 TrainConfig and ModelConfig
    split.json                  the training pairs (and the split seed)
    metrics.csv                 step, train/test loss and accuracy, param_norm (one row per step)
    checkpoints/step_NNNNNN.safetensors   weights at step 0, every save_every steps, and the end
    resume.safetensors          weights + optimizer state at the last checkpoint (for --resume)
    .modadd.lock                the writer's pid and host while a training writes the folder

A new run needs an absent or empty folder; a resume validates every file it reads before it
writes anything; one writer at a time (see :mod:`mechinterp_modadd.training.runfolder`).

Metrics row ``t`` describes the weights after t updates, i.e. those of checkpoint ``t``.
All files are written atomically, so a killed run resumes from its last checkpoint and ends
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..checkpoint import atomic_write_bytes, atomic_write_text, checkpoint_bytes, load_checkpoint
from ..data import Split, random_split
from ..errors import CheckpointError, ConfigError
from ..forward import input_logits, pair_inputs, unordered_pairs
from ..model import ModAddMLP
from .presets import TrainConfig
from .runfolder import ResumePlan, RunFolder, open_run_folder, write_run_config

__all__ = ["train", "TrainResult", "FullBatchObjective", "METRIC_COLUMNS", "checkpoint_path"]

METRIC_COLUMNS = ["step", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "param_norm",
                  "lr"]


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}.safetensors"


class FullBatchObjective:
    """Loss and accuracy of all p^2 pairs from one pass over the p(p + 1)/2 unordered pairs."""

    def __init__(self, split: Split) -> None:
        p = split.p
        self.p = p
        pairs, _ = unordered_pairs(p)  # x <= y
        self.xs, self.ys = pairs[:, 0].contiguous(), pairs[:, 1].contiguous()
        self.labels = (self.xs + self.ys) % p
        # e_x + e_y of every unordered pair: a dense [n, p] matrix with entries 0, 1 or 2. A matmul
        # with it beats a gather on CPU because its backward is a matmul, not an index_add.
        self.inputs = pair_inputs(pairs, p)
        tr = split.train_mask.reshape(p, p)
        # how many of (x, y), (y, x) are in train / test; the diagonal counts once
        diag = self.xs == self.ys
        n_tr = tr[self.xs, self.ys].double() + torch.where(diag, 0.0, tr[self.ys, self.xs].double())
        n_all = torch.where(diag, 1.0, 2.0).double()
        self.w_train = n_tr
        self.w_test = n_all - n_tr
        self.n_train = float(self.w_train.sum())
        self.n_test = float(self.w_test.sum())

    def logits(self, model: ModAddMLP) -> Tensor:
        """Logits of the unordered pairs [p(p+1)/2, p] (same as ``model(pairs)``, no hooks):
        :func:`mechinterp_modadd.forward.input_logits`."""
        return input_logits(model, self.inputs)

    def __call__(self, model: ModAddMLP) -> tuple[Tensor, dict[str, float]]:
        """Training loss (differentiable) and the step's metrics, from one forward pass."""
        logits = self.logits(model)
        logp = torch.log_softmax(logits.double(), dim=-1)
        nll = -logp.gather(1, self.labels[:, None])[:, 0]
        correct = (logits.argmax(dim=-1) == self.labels).double()
        train_loss = (nll * self.w_train).sum() / max(self.n_train, 1.0)
        with torch.no_grad():
            nll_d = nll.detach()
            m = {
                "train_loss": float(train_loss.detach()),
                "train_accuracy": float((correct * self.w_train).sum() / max(self.n_train, 1.0)),
                "test_loss": float((nll_d * self.w_test).sum() / self.n_test) if self.n_test else float("nan"),
                "test_accuracy": float((correct * self.w_test).sum() / self.n_test) if self.n_test else float("nan"),
            }
        return train_loss, m


@dataclass
class TrainResult:
    model: ModAddMLP
    metrics: pd.DataFrame
    config: TrainConfig
    split: Split
    run_dir: Path | None = None


def stop_rule_met(cfg: TrainConfig, train_accuracy: np.ndarray, test_accuracy: np.ndarray, t: int) -> bool:
    """Whether ``cfg``'s early stop ends the run at step ``t`` (see :class:`TrainConfig`).

    ``train_accuracy``/``test_accuracy`` are the per-step rows (index = step; a run without a test
    set has NaN test accuracy and is judged on train accuracy alone).
    """
    w = cfg.stop_window
    if cfg.stop_accuracy is None or t <= 0 or t % w or t < w or t >= len(train_accuracy):
        return False
    thr = cfg.stop_accuracy
    tr = np.asarray(train_accuracy[t - w: t + 1], dtype=np.float64)
    te = np.asarray(test_accuracy[t - w: t + 1], dtype=np.float64)
    if not np.all(tr >= thr):
        return False
    return bool(np.all(np.isnan(te)) or np.all(te >= thr))


def stopped_early(cfg: TrainConfig, metrics: pd.DataFrame) -> bool:
    """Whether a run folder's ``metrics.csv`` ends where ``cfg``'s early stop ended the run."""
    if cfg.stop_accuracy is None or metrics.empty:
        return False
    t = int(metrics["step"].iloc[-1])
    return t < cfg.steps and stop_rule_met(cfg, metrics["train_accuracy"].to_numpy(np.float64),
                                           metrics["test_accuracy"].to_numpy(np.float64), t)


def param_norm(params) -> Tensor:
    """float64 L2 norm of all parameters: ``torch.linalg.vector_norm`` accumulates float32 weights
    in float64 without materialising a float64 copy (the batched trainer uses the same formula)."""
    sq = [torch.linalg.vector_norm(q, dtype=torch.float64) ** 2 for q in params]
    return torch.stack(sq).sum().sqrt()


def _make_optimizer(cfg: TrainConfig, model: ModAddMLP) -> torch.optim.Optimizer:
    params = [p for _, p in model.named_parameters()]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                 foreach=False)
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)


def _lr_at(cfg: TrainConfig, t: int) -> float:
    if cfg.warmup_steps <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (t + 1) / cfg.warmup_steps)


# ------------------------------------------------------------------------- resume state I/O
def _resume_bytes(model: ModAddMLP, opt: torch.optim.Optimizer, step: int) -> bytes:
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    sd = opt.state_dict()
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"optim.{idx}.{name}"] = v.detach().clone().contiguous()
            else:
                scalars[f"{idx}.{name}"] = v
    meta = {"format": "mechinterp_modadd.resume/1", "step": str(step),
            "param_groups": json.dumps(sd["param_groups"]), "scalars": json.dumps(scalars)}
    return save(tensors, metadata=meta)


def _load_resume(path: Path, model: ModAddMLP, opt: torch.optim.Optimizer) -> int:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: unreadable resume state ({e})") from None
    if meta.get("format") != "mechinterp_modadd.resume/1":
        raise CheckpointError(f"{path}: not a resume file (format {meta.get('format')!r})")
    msd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(msd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: model weights do not match the run's config: {e}") from None
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for k, v in json.loads(meta.get("scalars", "{}")).items():
        idx, name = k.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return int(meta["step"])


# ------------------------------------------------------------------------------------ train
def train(
    cfg: TrainConfig,
    out_dir: str | os.PathLike | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    checkpoint_steps: list[int] | None = None,
    break_lock: bool = False,
    device: str | torch.device = "auto",
    threads: int | None = None,
    max_memory: int | None = None,
) -> TrainResult:
    """Train a :class:`ModAddMLP` full batch as ``cfg`` says.

    Args:
        cfg: the training configuration (see :func:`~mechinterp_modadd.training.preset`).
        out_dir: run folder to write (config, split, metrics, checkpoints); ``None`` keeps it all
            in memory.
        resume: continue the run in ``out_dir`` from its last checkpoint. The config on disk must
            equal ``cfg`` except for ``steps`` (which may be extended).
        progress: show a tqdm progress bar.
        checkpoint_steps: extra steps at which to save a checkpoint (besides every ``save_every``).
        break_lock: take over a stale lock of ``out_dir`` (see :class:`~.runfolder.RunLock`).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``. On the CPU this loop runs
            (bit-reproducible; the shipped runs in data/ come from it). On a GPU the run is trained
            by the stacked engine of :func:`~.many.train_many` with one run, which keeps the metrics
            on the device and reads them only at checkpoints and progress refreshes (no host sync
            per step); it agrees with the CPU run to rounding, not bit for bit.
        threads: CPU intra-op threads; default chosen from the step's work and the idle cores
            (:func:`mechinterp_modadd.runtime.auto_threads`: 1 thread at p = 23), or the user's
            own ``torch.set_num_threads``/``OMP_NUM_THREADS``. The previous count is restored on
            return. (The thread count does not change the bits here: checked at p = 23.)
        max_memory: if given (bytes), refuse to start when one step needs more than this.

    Metrics are recorded at every step; row t describes the weights after t updates.

    Raises:
        RunFolderError: ``out_dir`` is not empty (new run), is locked by another writer, or holds
            a damaged run (resume); nothing is written then.
    """
    from ..runtime import auto_threads, resolve_device, step_flop, thread_scope

    dev = resolve_device(device)
    mcfg = cfg.model_config()
    if max_memory is not None:
        from .many import chunk_bytes

        need = chunk_bytes(cfg.p, mcfg.d_mlp, cfg.steps + 1)
        if need > max_memory:
            raise ConfigError(f"max_memory = {max_memory} bytes is below what this run needs "
                              f"(about {need} bytes at p = {cfg.p}, d_mlp = {mcfg.d_mlp}); raise --max-memory")
    if dev.type != "cpu":
        from .many import train_on_device

        return train_on_device(cfg, out_dir, device=dev, resume=resume, progress=progress,
                               checkpoint_steps=checkpoint_steps, break_lock=break_lock, threads=threads)
    with thread_scope(auto_threads(step_flop(cfg.p, mcfg.d_mlp), threads, device=dev)):
        if out_dir is None:
            if resume:
                raise ConfigError("resume=True needs out_dir (the run folder to continue)")
            return _train(cfg, None, None, progress, checkpoint_steps)
        with open_run_folder(out_dir, cfg, resume=resume, break_lock=break_lock) as folder:
            return _train(cfg, Path(out_dir), folder, progress, checkpoint_steps)


def _train(cfg: TrainConfig, run_dir: Path | None, folder: RunFolder | None, progress: bool,
           checkpoint_steps: list[int] | None) -> TrainResult:
    """The single-run CPU loop (its numerics define the shipped runs; keep them unchanged)."""
    from tqdm import tqdm

    mcfg = cfg.model_config()
    model = ModAddMLP(mcfg, seed=cfg.seed)
    split = random_split(cfg.p, cfg.train_fraction, cfg.effective_split_seed)
    objective = FullBatchObjective(split)
    opt = _make_optimizer(cfg, model)
    extra = set(checkpoint_steps or [])

    n = cfg.steps + 1
    rows = {c: np.full(n, np.nan) for c in METRIC_COLUMNS}
    rows["step"] = np.arange(n, dtype=np.float64)
    start = 0

    run_id = None
    if run_dir is not None and folder is not None:
        run_id = folder.run_id
        if folder.resume is not None:
            start = _prepare_resume(run_dir, cfg, folder.resume, model, opt, rows)
        else:
            write_run_config(run_dir, cfg, run_id)
            atomic_write_text(run_dir / "split.json", json.dumps(
                {"p": cfg.p, "seed": split.seed, "train_fraction": cfg.train_fraction,
                 "train_pairs": split.train_pairs.tolist()}))

    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc=f"train p={cfg.p}",
               unit="step", mininterval=0.5)
    for t in range(start, n):
        opt.zero_grad(set_to_none=True)
        loss, m = objective(model)
        with torch.no_grad():
            norm = param_norm(model.parameters())
        for k, v in m.items():
            rows[k][t] = v
        rows["param_norm"][t] = float(norm)
        rows["lr"][t] = _lr_at(cfg, t)
        if not np.isfinite(m["train_loss"]):
            raise ConfigError(f"training diverged at step {t}: train loss is {m['train_loss']}; "
                              f"lower the learning rate")
        stop = stop_rule_met(cfg, rows["train_accuracy"], rows["test_accuracy"], t)
        if run_dir is not None and (t % cfg.save_every == 0 or t == cfg.steps or t in extra or stop):
            _save_step(run_dir, model, opt, t, rows, m, norm, run_id)
        if t == cfg.steps or stop:
            n = t + 1
            break
        loss.backward()
        lr = _lr_at(cfg, t)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
        bar.update(1)
        if t % 200 == 0:
            bar.set_postfix(loss=f"{m['train_loss']:.3g}", acc=f"{m['train_accuracy']:.3f}",
                            test=f"{m['test_accuracy']:.3f}", refresh=False)
    bar.close()
    model.eval()
    metrics = _metrics_frame(rows, n - 1)
    return TrainResult(model=model, metrics=metrics, config=cfg, split=split, run_dir=run_dir)


def _metrics_frame(rows: dict[str, np.ndarray], upto: int) -> pd.DataFrame:
    df = pd.DataFrame({k: v[: upto + 1] for k, v in rows.items()})
    df["step"] = df["step"].astype(int)
    return df


def _save_step(run_dir: Path, model: ModAddMLP, opt: torch.optim.Optimizer, t: int,
               rows: dict[str, np.ndarray], m: dict[str, float], norm: Tensor, run_id: str | None = None) -> None:
    metrics = {**m, "param_norm": float(norm)}
    atomic_write_bytes(checkpoint_path(run_dir, t), checkpoint_bytes(model, step=t, metrics=metrics,
                                                                     run_id=run_id))
    atomic_write_text(run_dir / "metrics.csv", _metrics_frame(rows, t).to_csv(index=False))
    atomic_write_bytes(run_dir / "resume.safetensors", _resume_bytes(model, opt, t))


def _prepare_resume(run_dir: Path, cfg: TrainConfig, plan: ResumePlan, model: ModAddMLP,
                    opt: torch.optim.Optimizer, rows: dict[str, np.ndarray]) -> int:
    """Load a validated resume (:func:`~.runfolder.validate_resume`) into model, optimizer, rows."""
    start = _load_resume(plan.resume_file, model, opt)
    if start != plan.start:
        raise CheckpointError(f"{plan.resume_file}: changed while the resume was being prepared "
                              f"(step {plan.start} -> {start})")
    old = plan.metrics
    for c in METRIC_COLUMNS:
        if c in old:
            rows[c][: len(old)] = pd.to_numeric(old[c], errors="coerce").to_numpy(dtype=np.float64)
    if plan.saved.steps != cfg.steps:  # the only write, after every check passed
        write_run_config(run_dir, cfg, plan.run_id)
    return start


def load_run_model(run_dir: str | os.PathLike, step: int | None = None) -> ModAddMLP:
    """The model of a run folder at ``step`` (default: the last checkpoint)."""
    run_dir = Path(run_dir)
    files = sorted((run_dir / "checkpoints").glob("step_*.safetensors"))
    if not files:
        raise CheckpointError(f"{run_dir}: no checkpoints/step_*.safetensors")
    path = files[-1] if step is None else checkpoint_path(run_dir, step)
    return load_checkpoint(path).model

