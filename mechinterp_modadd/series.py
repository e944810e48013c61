"""A training run as an ordered series of checkpoints, loaded lazily.

Two folder formats are understood:

- **our run folders** (written by ``modadd train``): ``config.json``, ``split.json``,
  ``metrics.csv`` or ``metrics.csv.gz`` and ``checkpoints/step_NNNNNN.safetensors``. The step is
  read from the file name. ``metrics.csv`` (one row per step, row t = the weights of checkpoint t)
  is exposed as :attr:`RunSeries.metrics`.
- **the paper authors' folders**: ``N.pth`` files (N = epoch), an optional ``final.pth`` and, for
  the grokking run, ``train_data.pth`` / ``test_data.pth`` (lists of (x, y) tuples: the split).
  A full-data run (training fraction 1) may list all p^2 pairs in both files, as the authors'
  trainer writes them; that is read as a split with every pair in train and no test set.
  Every file is read with ``torch.load(..., weights_only=True)``. The files do not record the
  activation, so ``activation=`` is required. ``final.pth`` is placed *after* the last numbered
  checkpoint, at the step stored in its ``epoch`` field (the number of epochs trained: 50,000 for
  ``grokking_relu_p23``, 10,000 for ``quad_random_p23``); if that field is missing or not larger
  than the last numbered step it gets ``last + 1``. :attr:`RunSeries.final_step` says which step
  came from ``final.pth`` (``None`` when there is none).

  The scalars stored in the authors' ``N.pth`` files are measured *before* that epoch's update
  while the weights are *after* it, so they describe a slightly different model. The analyses in
  this package therefore never use the stored metrics: they recompute loss, accuracy and norms
  from the weights (:mod:`mechinterp_modadd.analysis.grokking`). The per-epoch lists in
  ``final.pth`` (``train_losses``, ``test_losses``, ``param_norms``) are exposed as
  :attr:`RunSeries.metrics` for reference only, with that caveat.

One folder is one run: :func:`load_run` checks that every checkpoint shares p, d_mlp and (own
format) the activation and run id recorded at creation, and names the first file that does not.
The authors' folders as they named them (``p_23_dmlp_512_ReLU_random_scale_0.1_...``) give the
activation, p and d_mlp in the name: the activation is read from it when none is given, and a given
activation that contradicts the name (or, in our folders, the recorded one) is refused unless
``force=True`` (``--force``).

Models are loaded on first use and kept in a small LRU cache (``cache_size`` models; spectra are
cached alongside), so iterating over a long run holds only a few models in memory.

Example:
    >>> series = load_run("runs/grokking_p23_seed0")            # doctest: +SKIP
    >>> df = track(series, {"norm": lambda m: float(m.mlp.W_in.norm())})  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .analysis.per_family import family_spectrum
from .checkpoint import Checkpoint, authors_activation, authors_folder_name, check_run_checkpoints, load_checkpoint
from .data import Split, split_from_pairs
from .errors import CheckpointError, ConfigError, InputError
from .families import family_of
from .fourier import NeuronSpectrum
from .layout import CHECKPOINTS, CONFIG, METRICS_FILES, SPLIT, checkpoint_step
from .model import ModAddMLP, canonical_activation

__all__ = ["RunSeries", "load_run", "track"]

_AUTHOR_STEP = re.compile(r"^(\d+)\.pth$")


@dataclass
class RunSeries:
    """Checkpoints of one run, ordered by step, with the run's split and recorded metrics.

    Attributes:
        path: the run folder.
        steps: checkpoint steps in increasing order.
        files: the checkpoint file of each step (same order).
        source_format: ``"modadd"`` (our folders) or ``"authors_pth"``.
        activation: activation the models are built with (``None``: as stored, own format only).
        split: the train/test split (``None`` when the folder has none: the authors' full-data
            runs). Our full-data runs get a split whose test set is empty (see :attr:`has_test`).
        metrics: metrics recorded by the trainer (our ``metrics.csv``; the authors' ``final.pth``
            lists, measured before each epoch's update), or ``None``. Never used by the analyses.
        config: the run's ``config.json`` for our folders, else ``None``.
        final_step: the step assigned to the authors' ``final.pth`` (``None`` otherwise).
        cache_size: how many models (and spectra) the LRU cache keeps.
    """

    path: Path
    steps: list[int]
    files: list[Path]
    source_format: str
    activation: str | None = None
    split: Split | None = None
    metrics: pd.DataFrame | None = None
    config: dict[str, Any] | None = None
    final_step: int | None = None
    cache_size: int = 8
    force: bool = False
    _models: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _spectra: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _p: int | None = field(default=None, repr=False)

    # ---------------------------------------------------------------------------- basic access
    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[int, ModAddMLP]]:
        """Yield ``(step, model)`` in step order (models loaded lazily, cached)."""
        for s in self.steps:
            yield s, self.model(s)

    def __contains__(self, step: int) -> bool:
        return step in self._index

    @property
    def _index(self) -> dict[int, int]:
        return {s: i for i, s in enumerate(self.steps)}

    @property
    def first_step(self) -> int:
        return self.steps[0]

    @property
    def last_step(self) -> int:
        return self.steps[-1]

    @property
    def has_step0(self) -> bool:
        return bool(self.steps) and self.steps[0] == 0

    @property
    def p(self) -> int:
        if self._p is None:
            self._p = self.model(self.steps[0]).cfg.p
        return self._p

    @property
    def has_test(self) -> bool:
        """True when the run holds out test pairs (a split with a non-empty test set)."""
        return self.split is not None and bool(self.split.test_mask.any())

    def file(self, step: int) -> Path:
        try:
            return self.files[self._index[step]]
        except KeyError:
            raise InputError(f"{self.path}: no checkpoint at step {step}; steps are "
                             f"{_describe_steps(self.steps)}") from None

    def nearest_step(self, step: int) -> int:
        """The checkpoint step closest to ``step`` (ties go to the earlier one)."""
        return min(self.steps, key=lambda s: (abs(s - step), s))

    # ------------------------------------------------------------------------------ loading
    def checkpoint(self, step: int) -> Checkpoint:
        """Load the checkpoint of ``step`` from disk (uncached; see :meth:`model`)."""
        path = self.file(step)
        ck = load_checkpoint(path, activation=self.activation, force=self.force)
        if self._p is not None and ck.model.cfg.p != self._p:
            raise CheckpointError(f"{path}: p = {ck.model.cfg.p}, but the run's other checkpoints have "
                                  f"p = {self._p}")
        return ck

    def model(self, step: int) -> ModAddMLP:
        """The model at ``step`` (cached, least recently used evicted). Do not modify it in place."""
        if step in self._models:
            self._models.move_to_end(step)
            return self._models[step]
        m = self.checkpoint(step).model
        m.eval()
        m.requires_grad_(False)  # analysis only: no autograd graph on cached models
        self._models[step] = m
        while len(self._models) > max(1, self.cache_size):
            self._models.popitem(last=False)
        return m

    def spectrum(self, step: int) -> NeuronSpectrum:
        """The closed-form spectrum of the model at ``step`` (cached):
        :func:`~mechinterp_modadd.fourier.neuron_spectrum` for the paper's MLP, the family's
        registered one otherwise (:mod:`mechinterp_modadd.analysis.per_family`)."""
        if step in self._spectra:
            self._spectra.move_to_end(step)
            return self._spectra[step]
        s = family_spectrum(self.model(step))
        self._spectra[step] = s
        while len(self._spectra) > max(1, self.cache_size):
            self._spectra.popitem(last=False)
        return s

    @property
    def family(self) -> str:
        """The network family of the run's models (read from its last checkpoint)."""
        return family_of(self.model(self.last_step)).name

    def clear_cache(self) -> None:
        self._models.clear()
        self._spectra.clear()

    def describe(self) -> str:
        """One line: folder, format, number of checkpoints and step range."""
        sp = "no split" if self.split is None else (
            f"split {int(self.split.train_mask.sum())}/{int(self.split.test_mask.sum())} train/test")
        return (f"{self.path} ({self.source_format}): {len(self.steps)} checkpoints, steps "
                f"{_describe_steps(self.steps)}, {sp}")


def _describe_steps(steps: list[int]) -> str:
    if not steps:
        return "(none)"
    if len(steps) <= 6:
        return ", ".join(map(str, steps))
    return f"{steps[0]}, {steps[1]}, ..., {steps[-2]}, {steps[-1]}"


# ------------------------------------------------------------------------------- our folders
def _read_metrics(path: Path) -> pd.DataFrame | None:
    for name in METRICS_FILES:
        f = path / name
        if f.exists():
            try:
                return pd.read_csv(f)
            except Exception as e:  # pandas raises several types for bad files
                raise CheckpointError(f"{f}: unreadable metrics table ({type(e).__name__}: {e})") from None
    return None


def _load_own(path: Path, activation: str | None, cache_size: int, force: bool) -> RunSeries:
    ck_dir = path / CHECKPOINTS
    found: list[tuple[int, Path]] = []
    if ck_dir.is_dir():
        for f in ck_dir.iterdir():
            step = checkpoint_step(f.name)
            if step is not None:
                found.append((step, f))
    if not found:
        raise CheckpointError(f"{path}: no checkpoints/step_NNNNNN.safetensors files")
    found.sort()
    config = None
    cfg_path = path / CONFIG
    if cfg_path.exists():
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from None
    split = None
    split_path = path / SPLIT
    if split_path.exists():
        try:
            sj = json.loads(split_path.read_text())
            split = split_from_pairs(int(sj["p"]), sj["train_pairs"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, InputError) as e:
            raise CheckpointError(f"{split_path}: unreadable split (need keys 'p' and 'train_pairs'): "
                                  f"{e}") from None
        split = Split(p=split.p, train_mask=split.train_mask, seed=sj.get("seed"))
    want: dict[str, Any] = {}
    if isinstance(config, dict) and isinstance(config.get("model"), dict):
        mc = config["model"]
        want = {"p": mc.get("p"), "d_mlp": mc.get("d_mlp"), "activation": mc.get("activation"),
                "run_id": config.get("run_id")}
    shared = check_run_checkpoints([f for _, f in found], where="config.json", **want)
    if activation is not None and shared["activation"] is not None and activation != shared["activation"] \
            and not force:
        raise CheckpointError(f"{path}: the run records activation {shared['activation']!r}; the given "
                              f"activation {activation!r} contradicts it (pass force=True / --force to swap it "
                              f"on purpose)")
    series = RunSeries(path=path, steps=[s for s, _ in found], files=[f for _, f in found],
                       source_format="modadd", activation=activation, split=split,
                       metrics=_read_metrics(path), config=config, cache_size=cache_size, force=force)
    try:
        series._p = int(config["model"]["p"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        pass  # learned from the first checkpoint on demand
    return series


# --------------------------------------------------------------------------- authors' folders
def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad zips / unsafe pickles
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): "
                              f"{type(e).__name__}: {str(e)[:200]}") from None


def _pair_list(path: Path) -> torch.Tensor:
    obj = _torch_load(path)
    try:
        t = torch.as_tensor(obj, dtype=torch.long).reshape(-1, 2)
        if isinstance(obj, (list, tuple)) and len(t) != len(obj):
            raise ValueError("not a list of pairs")
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: expected a list of (x, y) tuples, found "
                              f"{type(obj).__name__} ({e})") from None
    return t


def _authors_split(path: Path, p: int) -> Split | None:
    tr, te = path / "train_data.pth", path / "test_data.pth"
    if not tr.exists():
        if te.exists():
            raise CheckpointError(f"{path}: test_data.pth without train_data.pth; cannot build the split")
        return None
    try:
        split = split_from_pairs(p, _pair_list(tr))
    except InputError as e:
        raise CheckpointError(f"{tr}: {e}") from None
    if te.exists():
        test = _pair_list(te)
        try:
            test_split = split_from_pairs(p, test)
        except InputError as e:
            raise CheckpointError(f"{te}: {e}") from None
        overlap = int((split.train_mask & test_split.train_mask).sum())
        if overlap and bool(split.train_mask.all()) and torch.equal(split.train_mask, test_split.train_mask):
            # the authors' trainer with training fraction 1 writes every pair to both files:
            # a full-data run, with no held-out test set
            return split
        if overlap:
            raise CheckpointError(f"{te}: {overlap} test pairs are also in train_data.pth (only a full-data "
                                  f"run, with all {p * p} pairs in both files, may repeat them)")
        missing = int((~split.train_mask & ~test_split.train_mask).sum())
        if missing:
            raise CheckpointError(f"{path}: train_data.pth and test_data.pth together miss {missing} of the "
                                  f"{p * p} pairs")
    return split


def _final_metrics(obj: dict[str, Any]) -> pd.DataFrame | None:
    cols = {}
    for src, dst in (("train_losses", "train_loss"), ("test_losses", "test_loss"),
                     ("param_norms", "param_norm"), ("grad_norms", "grad_norm")):
        v = obj.get(src)
        if isinstance(v, (list, tuple)) and v:
            cols[dst] = [float(x) for x in v]
    if not cols:
        return None
    n = min(len(v) for v in cols.values())
    df = pd.DataFrame({k: v[:n] for k, v in cols.items()})
    df.insert(0, "step", range(n))
    return df


def _authors_shape(path: Path) -> tuple[int, int]:
    """(p, d_mlp) of an authors' ``.pth`` from its W_out / W_in shapes (tensors memory-mapped)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises many types for bad zips / unsafe pickles
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): "
                              f"{type(e).__name__}: {str(e)[:200]}") from None
    sd = obj.get("model") if isinstance(obj, dict) else None
    w_in = sd.get("mlp.W_in") if isinstance(sd, dict) else None
    w_out = sd.get("mlp.W_out") if isinstance(sd, dict) else None
    if not (isinstance(w_in, torch.Tensor) and isinstance(w_out, torch.Tensor) and w_in.ndim == 2
            and w_out.ndim == 2):
        raise CheckpointError(f"{path}: expected a dict with key 'model' holding 2-d 'mlp.W_in' and "
                              f"'mlp.W_out' tensors")
    return int(w_out.shape[0]), int(w_in.shape[0])


def _load_authors(path: Path, activation: str | None, cache_size: int, force: bool) -> RunSeries:
    named = authors_folder_name(path.resolve())
    activation = authors_activation(path, activation, force)
    if activation is None:
        raise CheckpointError(f"{path}: the authors' .pth files do not record the activation; pass "
                              f"activation= (--activation), e.g. 'relu' or 'quad' for the reference runs")
    found: list[tuple[int, Path]] = []
    for f in path.iterdir():
        m = _AUTHOR_STEP.match(f.name)
        if m:
            found.append((int(m.group(1)), f))
    found.sort()
    final_step = None
    metrics = None
    final = path / "final.pth"
    if final.exists():
        obj = _torch_load(final)
        if not isinstance(obj, dict) or "model" not in obj:
            raise CheckpointError(f"{final}: expected a dict with key 'model'")
        last = found[-1][0] if found else -1
        ep = obj.get("epoch")
        final_step = int(ep) if isinstance(ep, int) and ep > last else last + 1
        metrics = _final_metrics(obj)
        found.append((final_step, final))
    if not found:
        raise CheckpointError(f"{path}: no N.pth or final.pth checkpoint files")
    want = {"p": named["p"], "d_mlp": named["d_mlp"]} if named is not None else {}
    first = "the folder name"
    for _, f in found:
        p, d_mlp = _authors_shape(f)
        for key, v in (("p", p), ("d_mlp", d_mlp)):
            if key not in want:
                want[key] = v
            elif want[key] != v:
                raise CheckpointError(f"{f}: {key} = {v}, but {first} has {key} = {want[key]}; a folder must "
                                      f"hold one run (move the odd file away)")
        if named is None:
            first = f.name
    series = RunSeries(path=path, steps=[s for s, _ in found], files=[f for _, f in found],
                       source_format="authors_pth", activation=activation, metrics=metrics,
                       final_step=final_step, cache_size=cache_size, force=force)
    series._p = want["p"]
    series.split = _authors_split(path, series.p)
    return series


def load_run(path: str | os.PathLike, activation: str | None = None, *, cache_size: int = 8,
             force: bool = False) -> RunSeries:
    """Open a run folder (ours or the authors') as a :class:`RunSeries` ordered by step.

    Args:
        path: the folder. Ours is recognised by ``checkpoints/step_*.safetensors``; the authors'
            by ``N.pth`` / ``final.pth`` files.
        activation: required for the authors' folders unless their original name (``p_23_dmlp_512_ReLU_...``)
            gives it; for ours it must equal the recorded one.
        cache_size: number of models kept in memory (the rest are reloaded on demand).
        force: accept an ``activation`` that contradicts the recorded one or the folder name
            (swaps the activation of every model).

    Raises:
        CheckpointError: missing folder, no checkpoints, unreadable split or metrics, an
            authors' folder without ``activation``, a contradicting activation, or checkpoints
            of different runs (p, d_mlp, activation or run id; the first odd file is named).
    """
    from .inputs import check_folder_entries, check_input_path

    # stat only: a missing path, a file, or a pipe/device among the run's files is refused unread
    path = check_input_path(path, what="run folder", kind="dir")
    check_folder_entries(path)
    if activation is not None:
        try:
            activation = canonical_activation(activation)
        except ConfigError as e:
            raise CheckpointError(f"{path}: {e}") from None
    if (path / CHECKPOINTS).is_dir():
        series = _load_own(path, activation, cache_size, force)
    elif any(_AUTHOR_STEP.match(f.name) for f in path.iterdir()) or (path / "final.pth").exists():
        series = _load_authors(path, activation, cache_size, force)
    else:
        raise CheckpointError(f"{path}: not a run folder (expected checkpoints/step_NNNNNN.safetensors "
                              f"or the authors' N.pth files)")
    if series.split is not None and series.split.p != series.p:
        raise CheckpointError(f"{path}: the split is for p = {series.split.p} but the checkpoints have "
                              f"p = {series.p}")
    return series


# ------------------------------------------------------------------------------------- track
def _n_params(fn: Callable[..., Any]) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 1
    ps = [q for q in sig.parameters.values()
          if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD) and q.default is q.empty]
    return len(ps)


def track(
    series: RunSeries,
    fns: dict[str, Callable[..., Any]],
    progress: bool = True,
    steps: list[int] | None = None,
) -> pd.DataFrame:
    """Evaluate functions of the model at every checkpoint: a DataFrame indexed by step.

    Each ``fn`` is called as ``fn(model)``, or ``fn(model, step)`` when it takes two positional
    parameters. It returns a number (one column ``name``) or a dict of numbers (one column
    ``name.key`` each). Models come from the series' cache; do not modify them in place.

    Args:
        series: from :func:`load_run`.
        fns: ``{column name: function}``.
        progress: show a tqdm bar over checkpoints.
        steps: a subset of the series' steps (default: all).
    """
    from tqdm.auto import tqdm

    if not fns:
        raise InputError("track needs at least one function ({name: fn})")
    steps = list(series.steps if steps is None else steps)
    for s in steps:
        series.file(s)  # raises InputError for unknown steps
    arity = {k: _n_params(f) for k, f in fns.items()}
    rows: list[dict[str, Any]] = []
    for s in tqdm(steps, disable=not progress, desc="track", unit="ckpt"):
        model = series.model(s)
        row: dict[str, Any] = {}
        for name, fn in fns.items():
            v = fn(model, s) if arity[name] >= 2 else fn(model)
            if isinstance(v, dict):
                for k, x in v.items():
                    row[f"{name}.{k}"] = _scalar(x, f"{name}.{k}")
            else:
                row[name] = _scalar(v, name)
        rows.append(row)
    df = pd.DataFrame(rows, index=pd.Index(steps, name="step"))
    return df


def _scalar(v: Any, name: str) -> float:
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise InputError(f"track function {name!r} returned a tensor of shape {tuple(v.shape)}; "
                             f"return a number or a dict of numbers")
        v = v.item()
    try:
        return float(v)
    except (TypeError, ValueError):
        raise InputError(f"track function {name!r} returned {type(v).__name__}; return a number or a dict "
                         f"of numbers") from None

