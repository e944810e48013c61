"""Grokking: progress measures over a run and the three stages (docs/science.md section 5).

Progress measures, one row per checkpoint, all recomputed from the weights in float64 (the
authors' stored metrics are measured before each epoch's update, so they describe a slightly
different model; we never read them):

- ``train_loss``, ``test_loss``, ``train_accuracy``, ``test_accuracy`` (mean cross-entropy and
  accuracy over the split's pairs; test columns are NaN for full-data runs);
- ``mean_abs_sin_d``: mean over neurons of |sin(psi - 2 phi)| at each neuron's k*;
- ``ipr``: mean over neurons of the frequency IPR of W_in and W_out averaged
  (``NeuronSpectrum.ipr.mean()``);
- ``param_norm``: L2 norm of all parameters together (W_in, W_out and W_E if learned);
- ``restricted_loss`` (test pairs; all pairs for a full-data run), ``restricted_loss_all`` (all
  pairs) and ``excluded_loss`` (training pairs): Nanda et al.'s progress measures, the logits kept
  on / stripped of the key-frequency directions cos / sin (w_k (x + y))
  (:mod:`mechinterp_modadd.analysis.restricted`); over a run the key frequencies are those of the
  last checkpoint (top-k by the norm of theta's Fourier components unless ``keys`` says otherwise).
  When they cover more than half of the K frequencies the measure cannot tell a lookup table from
  the algorithm (its verdict is "undetermined"; :func:`restricted_verdict`);
- accuracy on the four mirror partitions (:func:`~mechinterp_modadd.data.mirror_partitions`):
  ``test_mirrored_accuracy``, ``test_unseen_accuracy``, ``train_both_orders_accuracy``,
  ``train_one_order_accuracy`` (NaN when the run holds out no test pairs).

Stage rule (:func:`detect_stages`, ours; the paper draws the stages by eye):

- **end of stage I** (memorisation) = the first checkpoint at which the training accuracy is at
  least ``train_threshold`` = 0.95;
- **end of stage II** (fast generalisation) = the first later checkpoint at which the test
  accuracy is at least ``test_threshold`` = 0.95 (docs/science.md section 5: stage II takes test accuracy to
  about 95 %; what follows is the slow clean-up of stage III).

A boundary not reached is ``None``. On a checkpoint grid the boundary is the first *checkpoint*
past the threshold, so it can lag the true crossing by up to one checkpoint interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data import Split, mirror_partitions
from ..errors import InputError
from ..runtime import takes_device
from .base import ClaimResult, Thresholds, accuracy_and_loss
from .per_family import family_logits, family_spectrum
from .restricted import KeyChoice, RestrictedLoss, resolve_keys, restricted_loss

__all__ = ["PROGRESS_COLUMNS", "PARTITION_COLUMNS", "progress_measures", "measures_of_model", "run_keys",
           "restricted_verdict", "detect_stages", "Stages", "GrokkingStagesThresholds", "grokking_stages"]

PARTITION_COLUMNS = ["test_mirrored_accuracy", "test_unseen_accuracy", "train_both_orders_accuracy",
                     "train_one_order_accuracy"]
PROGRESS_COLUMNS = ["train_loss", "test_loss", "train_accuracy", "test_accuracy", "mean_abs_sin_d", "ipr",
                    "param_norm", *PARTITION_COLUMNS, "restricted_loss", "restricted_loss_all", "excluded_loss"]


def _logits64(model, max_memory: int | None = None) -> Tensor:
    """float64 logits of all p^2 pairs from the weights (hooks do not apply), streamed within
    ``max_memory`` bytes (:func:`mechinterp_modadd.forward.logits`); other families: their view."""
    return family_logits(model, max_memory=max_memory)


@takes_device
def measures_of_model(model, split: Split | None = None, keys: KeyChoice = None) -> dict[str, float]:
    """The progress measures of one model (see the module docstring), a dict of floats.

    With ``split=None`` (or a split without test pairs) the "train" columns use all pairs and the
    test and partition columns are NaN. ``keys``: the key frequencies of the restricted / excluded
    loss, a list or a rule of :func:`~mechinterp_modadd.analysis.restricted.resolve_keys` (default
    ``"norm"``: top-k by the norm of this model's theta).
    """
    p = model.cfg.p
    if split is not None and split.p != p:
        raise InputError(f"split is for p = {split.p}, model has p = {p}")
    logits = _logits64(model)
    has_test = split is not None and bool(split.test_mask.any())
    out: dict[str, float] = {}
    train_mask = split.train_mask if split is not None else None
    out["train_accuracy"], out["train_loss"] = accuracy_and_loss(logits, p, train_mask)
    if has_test:
        out["test_accuracy"], out["test_loss"] = accuracy_and_loss(logits, p, split.test_mask)
        parts = mirror_partitions(split)
        for col in PARTITION_COLUMNS:
            out[col] = accuracy_and_loss(logits, p, getattr(parts, col.removesuffix("_accuracy")))[0]
    else:
        out["test_accuracy"] = out["test_loss"] = math.nan
        for col in PARTITION_COLUMNS:
            out[col] = math.nan
    sp = family_spectrum(model)
    rl = restricted_loss(logits, p, keys, train_mask, test_mask=split.test_mask if has_test else None, spectrum=sp)
    out["restricted_loss"], out["restricted_loss_all"] = rl.restricted_loss, rl.restricted_loss_all
    out["excluded_loss"] = rl.excluded_loss
    out["mean_abs_sin_d"] = float(torch.sin(sp.d).abs().mean())
    out["ipr"] = float(sp.ipr.mean())
    with torch.no_grad():
        out["param_norm"] = float(torch.sqrt(sum((q.detach().double() ** 2).sum() for q in model.parameters())))
    return {k: out[k] for k in PROGRESS_COLUMNS}


def run_keys(series: Any, keys: KeyChoice = None) -> tuple[list[int], str]:
    """The key frequencies of a run (those of its last checkpoint; ``keys`` as in
    :func:`~mechinterp_modadd.analysis.restricted.resolve_keys`) and how they were chosen."""
    return resolve_keys(keys, int(series.p), spectrum=series.spectrum(series.last_step))


def restricted_verdict(series: Any, keys: KeyChoice = None) -> RestrictedLoss:
    """The restricted / excluded loss verdict of a run's last checkpoint, with the run's keys."""
    key_list, how = run_keys(series, keys)
    split = series.split if series.has_test else None
    model = series.model(series.last_step)
    res = restricted_loss(_logits64(model), int(series.p), key_list, split.train_mask if split is not None else None,
                          test_mask=split.test_mask if split is not None else None)
    res.key_rule = how
    return res


@takes_device
def progress_measures(series: Any, progress: bool = True, steps: list[int] | None = None,
                      keys: KeyChoice = None) -> pd.DataFrame:
    """Progress measures at every checkpoint of a :class:`~mechinterp_modadd.series.RunSeries`.

    Returns a DataFrame indexed by step with the columns :data:`PROGRESS_COLUMNS` (the restricted
    and excluded loss use the key frequencies of the last checkpoint at every step, chosen by
    ``keys``: see :func:`run_keys`).
    """
    from ..series import track

    split = series.split if series.has_test else None
    keys, _ = run_keys(series, keys)
    df = track(series, {"m": lambda model: measures_of_model(model, split, keys)}, progress=progress, steps=steps)
    df.columns = [c.split(".", 1)[1] for c in df.columns]
    return df[PROGRESS_COLUMNS]


# --------------------------------------------------------------------------------- stages
def detect_stages(
    steps, train_accuracy, test_accuracy, *, train_threshold: float = 0.95, test_threshold: float = 0.95,
) -> tuple[int | None, int | None]:
    """The two stage boundaries (end of stage I, end of stage II) by the rule of the module docstring.

    Args:
        steps: increasing checkpoint steps.
        train_accuracy, test_accuracy: aligned with ``steps`` (NaN test accuracy: no boundary II).
    """
    steps = np.asarray(steps)
    tr = np.asarray(train_accuracy, dtype=np.float64)
    te = np.asarray(test_accuracy, dtype=np.float64)
    if not (len(steps) == len(tr) == len(te)):
        raise InputError(f"steps, train_accuracy and test_accuracy differ in length: "
                         f"{len(steps)}, {len(tr)}, {len(te)}")
    if len(steps) > 1 and np.any(np.diff(steps) <= 0):
        raise InputError("steps must be strictly increasing")
    hit = np.nonzero(tr >= train_threshold)[0]
    if len(hit) == 0:
        return None, None
    i1 = int(hit[0])
    later = np.nonzero(te[i1 + 1:] >= test_threshold)[0]
    if len(later) == 0:
        return int(steps[i1]), None
    return int(steps[i1]), int(steps[i1 + 1 + later[0]])


@dataclass(frozen=True)
class GrokkingStagesThresholds(Thresholds):
    """Thresholds of ``grokking_stages``: stage 1 ends when the train accuracy first reaches
    ``train_threshold``, stage 2 when the test accuracy first reaches ``test_threshold`` after it."""

    train_threshold: float = 0.95
    test_threshold: float = 0.95


@dataclass
class Stages(ClaimResult):
    """The three grokking stages of a run, detected on its progress measures.

    Holds when both boundaries are found and, between them, the mean frequency IPR rises while
    the test accuracy rises (generalisation comes with sparser Fourier features).
    """

    end_stage1: int | None = None
    end_stage2: int | None = None
    test_accuracy_at_end1: float = math.nan
    test_accuracy_at_end2: float = math.nan
    ipr_at_end1: float = math.nan
    ipr_at_end2: float = math.nan
    final_test_accuracy: float = math.nan
    claim: ClassVar[str] = "grokking_stages"
    key_metric: ClassVar[str] = "end_stage2"

    @property
    def boundaries(self) -> list[int | None]:
        return [self.end_stage1, self.end_stage2]

    def stage_of(self, step: int) -> int:
        """1, 2 or 3."""
        if self.end_stage1 is None or step <= self.end_stage1:
            return 1
        if self.end_stage2 is None or step <= self.end_stage2:
            return 2
        return 3


def grokking_stages(measures: pd.DataFrame, *, train_threshold: float = 0.95,
                    test_threshold: float = 0.95) -> Stages:
    """Detect the stages on a :func:`progress_measures` frame and summarise them."""
    for c in ("train_accuracy", "test_accuracy", "ipr"):
        if c not in measures:
            raise InputError(f"progress measures lack column {c!r}")
    steps = list(measures.index)
    e1, e2 = detect_stages(steps, measures["train_accuracy"], measures["test_accuracy"],
                           train_threshold=train_threshold, test_threshold=test_threshold)
    at = lambda s, c: float(measures.loc[s, c]) if s is not None else math.nan  # noqa: E731
    holds = (e1 is not None and e2 is not None and at(e2, "ipr") > at(e1, "ipr")
             and at(e2, "test_accuracy") > at(e1, "test_accuracy"))
    return Stages(holds=bool(holds), end_stage1=e1, end_stage2=e2,
                  test_accuracy_at_end1=at(e1, "test_accuracy"), test_accuracy_at_end2=at(e2, "test_accuracy"),
                  ipr_at_end1=at(e1, "ipr"), ipr_at_end2=at(e2, "ipr"),
                  final_test_accuracy=float(measures["test_accuracy"].iloc[-1]),
                  thresholds=GrokkingStagesThresholds(train_threshold, test_threshold))
