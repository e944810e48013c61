"""The public entry points: :func:`train` (one run) and :func:`train_many` (many runs in one process).

Both run the one engine (:mod:`.loop`, :mod:`.stack`): ``train(cfg)`` is a stack of one run.
:func:`train_many` trains runs that share family, p, the family's shapes (for the MLP: d_mlp,
activation, embedding) and optimizer together; they may differ in seed, lr, weight decay, init
scale, init kind, train fraction, split seed, warm-up, steps and the optimizer's hyper-parameters
(runs differing in steps, save_every, stop window or those hyper-parameters train in separate
chunks). Every run gets the ordinary run folder (:mod:`mechinterp_modadd.layout`), so every command
reads it unchanged and ``train(cfg, folder, resume=True)`` can continue it alone; ``out_dir/runs.csv``
lists the runs with their final metrics.

Equivalence: a run's step-0 weights are those of its model initialised alone, bit for bit; after
that, a run in a batch follows the arithmetic it follows alone (for the MLP's hand-written step,
bit for bit on the development machine; see :mod:`.family_mlp`). The shipped runs in data/ are
reproduced by ``train`` (tests/core/test_data_regeneration.py).

Memory and speed: a batch is cut into chunks whose bytes (:meth:`~.family.TrainFamily.run_bytes`)
fit ``max_memory``; on a CPU MLP chunks are further cut so that their hidden activations stay in
cache (:data:`~.estimate.CPU_CACHE_BYTES`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..data import Split, random_split
from ..errors import CheckpointError, ConfigError, RunFolderError
from ..hyperparams import HYPER
from ..layout import CHECKPOINTS, checkpoint_path
from ..runtime import auto_threads, resolve_device, thread_scope
from .config import TrainConfig
from .estimate import chunk_size
from .family import get_train_family
from .loop import RunState, prepare_run, train_chunk
from .optim import OPTIMIZERS
from .runfolder import (
    RunLock,
    check_batch_resume,
    check_new_folder,
    final_row,
    merge_runs_table,
    metrics_frame,
    open_run_folder,
    runs_table,
    saved_step,
    stopped_on_disk,
    write_runs_csv,
)

__all__ = ["train", "train_many", "TrainResult", "ManyResult", "run_name", "load_run_model", "checkpoint_path"]

#: (TrainConfig field, its tag in folder names); the optimizer hyper-parameters' tags are declared
#: with them (mechinterp_modadd.hyperparams: betas -> "betas", momentum -> "mom")
_VARYING_NAMES = (("seed", "seed"), ("lr", "lr"), ("weight_decay", "wd"), ("train_fraction", "frac"),
                  ("init_scale", "init"), ("init", "initkind"), ("split_seed", "split"),
                  ("warmup_steps", "warmup"), ("steps", "steps"),
                  *((name, hp.short) for name, hp in HYPER.items()), ("save_every", "every"))


@dataclass
class TrainResult:
    """What :func:`train` did: the trained model (on the training device), the metrics (row t:
    the weights after t updates), the config, the split and the run folder (``None``: in memory)."""

    model: nn.Module
    metrics: pd.DataFrame
    config: TrainConfig
    split: Split
    run_dir: Path | None = None


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


def _stack_key(cfg: TrainConfig) -> tuple:
    """What runs of one chunk must share: family, p, the family's shapes, optimizer."""
    return (cfg.family, cfg.p, get_train_family(cfg.family).batch_key(cfg), cfg.optimizer)


def _check_configs(configs: Sequence[TrainConfig]) -> list[TrainConfig]:
    cfgs = list(configs)
    if not cfgs:
        raise ConfigError("train_many needs at least one TrainConfig")
    for i, c in enumerate(cfgs):
        if not isinstance(c, TrainConfig):
            raise ConfigError(f"configs[{i}] must be a TrainConfig, got {type(c).__name__}")
    first = cfgs[0]
    get_train_family(first.family)
    for i, c in enumerate(cfgs[1:], 1):
        for k in ("family", "p", "optimizer", "activation", "embedding", "bias"):
            if getattr(c, k) != getattr(first, k):
                raise ConfigError(f"configs[{i}].{k} = {getattr(c, k)!r} differs from configs[0].{k} = "
                                  f"{getattr(first, k)!r}; a batch must share family, p, d_mlp, activation, "
                                  f"embedding, bias and optimizer")
        if _stack_key(c) != _stack_key(first):
            raise ConfigError(f"configs[{i}] has the shapes {_stack_key(c)[2]} (d_mlp, activation, embedding, "
                              f"d_model), configs[0] has {_stack_key(first)[2]}; a batch must share d_mlp")
    return cfgs


def _chunk_key(r: RunState) -> tuple:
    c = r.cfg
    hyper = tuple(getattr(c, h) for h in OPTIMIZERS[c.optimizer].hyper)
    return (c.steps, c.save_every, hyper, r.start, c.stop_window)


def _chunks(group: list[RunState], dev: torch.device, max_memory: int | None) -> list[list[RunState]]:
    cfg = group[0].cfg
    family = get_train_family(cfg.family)
    per_run = family.run_bytes(cfg, cfg.steps + 1 - group[0].start)
    size = chunk_size(per_run, len(group), dev, max_memory, family.cache_runs(cfg))
    size = -(-len(group) // -(-len(group) // size))  # equal chunks: 32 runs at most 21 -> 16 + 16
    return [group[a: a + size] for a in range(0, len(group), size)]


def _threads(cfg: TrainConfig, runs: int, threads: int | None, dev: torch.device) -> tuple[int, int]:
    """(intra-op threads, workers) for a chunk of ``runs`` runs of ``cfg``'s shape: a family with
    ``parallel_runs`` computes a CPU chunk of several runs on one intra-op thread and gives the
    thread count the automatic rule (or ``threads``) chooses to its runs, at most one each."""
    family = get_train_family(cfg.family)
    if family.parallel_runs and runs > 1 and dev.type == "cpu":
        return 1, min(runs, auto_threads(family.step_flop(cfg) * runs, threads, device=dev))
    return auto_threads(family.step_flop(cfg) * runs, threads, device=dev, cap=family.max_threads), 1


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
    """Train one run full batch as ``cfg`` says (the engine with a stack of one run).

    Args:
        cfg: the training configuration (see :func:`~mechinterp_modadd.training.preset`).
        out_dir: run folder to write (config, split, metrics, checkpoints); ``None`` keeps it all
            in memory.
        resume: continue the run in ``out_dir`` from its last checkpoint. The config on disk must
            equal ``cfg`` except for ``steps`` (which may be extended).
        progress: show a tqdm progress bar.
        checkpoint_steps: extra steps at which to save a checkpoint (besides every ``save_every``).
        break_lock: take over a stale lock of ``out_dir`` (see :class:`~.runfolder.RunLock`).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``. Metrics stay on the
            device and are read at checkpoints and progress refreshes (no host sync per step). On
            the CPU runs are bit-reproducible (the shipped runs in data/ come from this engine's
            arithmetic); a GPU agrees with the CPU to rounding, not bit for bit.
        threads: CPU intra-op threads; default chosen from the step's work and the idle cores
            (:func:`mechinterp_modadd.runtime.auto_threads`: 1 thread at p = 23), or the user's
            own ``torch.set_num_threads``/``OMP_NUM_THREADS``. The previous count is restored on
            return.
        max_memory: if given (bytes), refuse to start when the run needs more than this.

    Raises:
        RunFolderError: ``out_dir`` is not empty (new run), is locked by another writer, or holds
            a damaged run (resume); nothing is written then.
        ConfigError: the loss became NaN or infinite (lower the learning rate).
    """
    from tqdm.auto import tqdm

    if not isinstance(cfg, TrainConfig):
        raise ConfigError(f"train needs a TrainConfig, got {type(cfg).__name__}")
    dev = resolve_device(device)
    family = get_train_family(cfg.family)
    if max_memory is not None:
        need = family.run_bytes(cfg, cfg.steps + 1)
        if need > max_memory:
            raise ConfigError(f"max_memory = {max_memory} bytes is below what this run needs "
                              f"(about {need} bytes); raise --max-memory")
    folder = Path(out_dir) if out_dir is not None else None
    if folder is None and resume:
        raise ConfigError("resume=True needs out_dir (the run folder to continue)")
    run = RunState(0, cfg, folder)
    with contextlib.ExitStack() as stack:
        rf = None
        if folder is not None:
            rf = stack.enter_context(open_run_folder(folder, cfg, resume=resume, break_lock=break_lock))
            run.start = rf.resume.start if rf.resume is not None else 0
        prepare_run(run, rf)
        where = "" if dev.type == "cpu" else f" ({dev})"
        bar = stack.enter_context(tqdm(total=cfg.steps, initial=run.start, disable=not progress,
                                       desc=f"train p={cfg.p}{where}", unit="step", mininterval=0.5))
        intra, workers = _threads(cfg, 1, threads, dev)
        with thread_scope(intra):  # step `start` runs even when it is the last
            train_chunk([run], dev, bar, extra=frozenset(checkpoint_steps or ()), workers=workers)
    if run.status != "ok":
        raise ConfigError(f"training {run.status}: the train loss is not finite; lower the learning rate")
    metrics = metrics_frame(run.rows, run.start)  # run.start: the last step (the stop step if it stopped)
    model = run.model().to(dev).eval()
    split = random_split(cfg.p, cfg.train_fraction, cfg.effective_split_seed)
    return TrainResult(model=model, metrics=metrics, config=cfg, split=split, run_dir=folder)


# ------------------------------------------------------------------------------- train_many
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
        configs: the runs. They must share family, p, the family's shapes (d_mlp, activation,
            embedding) and optimizer; anything else may differ.
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
    runs = [RunState(i, c, out / nm) for i, (c, nm) in enumerate(zip(cfgs, names, strict=True))]
    for r in runs[:1]:  # the memory check before any folder is made
        _chunks([r], dev, max_memory)
    if not resume:
        check_new_folder(out)
    else:  # the batch and every member checked before anything is written (not even a lock file)
        check_batch_resume(out, [(r.folder, r.cfg) for r in runs])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"{out}: cannot create the batch folder ({e.strerror or e})") from None
    with RunLock(out, break_lock=break_lock):
        if resume:  # again under the lock: what another writer may have changed meanwhile
            check_batch_resume(out, [(r.folder, r.cfg) for r in runs])
        for r in runs:
            r.resuming = resume and (r.folder / "config.json").exists()
            r.start = saved_step(r.folder) if r.resuming else 0
        _train_groups(runs, dev, max_memory, threads, progress, break_lock)
        table = runs_table([(r.folder, r.status, r.final, r.cfg) for r in runs], out)
        table = merge_runs_table(table, out) if resume else table  # the batch's other runs keep their rows
        write_runs_csv(table, out)
    return ManyResult(out_dir=out, runs=[r.folder for r in runs], configs=cfgs, table=table)


def _train_groups(runs: list[RunState], dev: torch.device, max_memory: int | None, threads: int | None,
                  progress: bool, break_lock: bool) -> None:
    """Group the runs by what a chunk must share, cut groups into chunks, train chunk by chunk."""
    from tqdm.auto import tqdm

    groups: dict[tuple, list[RunState]] = {}
    for r in runs:
        if r.resuming and (r.start >= r.cfg.steps or stopped_on_disk(r.folder, r.cfg, r.start)):
            r.final = final_row(r.folder)
            continue
        groups.setdefault(_chunk_key(r), []).append(r)
    todo = sum(r.cfg.steps - r.start for g in groups.values() for r in g)
    with tqdm(total=todo, disable=not progress, desc=f"train {len(runs)} runs p={runs[0].cfg.p}",
              unit="run-step", unit_scale=True, mininterval=0.5) as bar:
        for group in groups.values():
            for chunk in _chunks(group, dev, max_memory):
                with contextlib.ExitStack() as stack:
                    for r in chunk:
                        rf = stack.enter_context(open_run_folder(r.folder, r.cfg, resume=r.resuming,
                                                                 break_lock=break_lock))
                        prepare_run(r, rf)
                    intra, workers = _threads(chunk[0].cfg, len(chunk), threads, dev)
                    with thread_scope(intra):
                        train_chunk(chunk, dev, bar, workers=workers)
                for r in chunk:
                    r.release()


def load_run_model(run_dir: str | os.PathLike, step: int | None = None) -> nn.Module:
    """The model of a run folder at ``step`` (default: the last checkpoint)."""
    run_dir = Path(run_dir)
    files = sorted((run_dir / CHECKPOINTS).glob("step_*.safetensors"))
    if not files:
        raise CheckpointError(f"{run_dir}: no checkpoints/step_*.safetensors")
    path = files[-1] if step is None else checkpoint_path(run_dir, step)
    return load_checkpoint(path).model
