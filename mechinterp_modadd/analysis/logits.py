"""The "flawed indicator": ghost peaks of the logits at 2x and 2y (docs/science.md 3.6).

For Quad and psi = 2 phi, each neuron's vote contains cos^2(w(x - y)/2), which cannot be cancelled
by phase symmetry; summed over a symmetric, diversified population the logits become a correct
peak at x + y plus two half-height ghosts at 2x and 2y (mod p). The ghost ratio measures how tall
the ghosts are relative to the correct peak: 0.5 for the exact Quad closed form, lower for ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from ..data import all_pairs
from ..errors import InputError
from ..runtime import takes_device
from .base import ClaimResult, Thresholds, accuracy_and_loss, all_pair_logits

__all__ = ["FlawedIndicatorThresholds", "FlawedIndicatorResult", "flawed_indicator", "ghost_parts"]


def ghost_parts(logits: Float[Tensor, "pp p"], p: int) -> dict[str, Tensor]:
    """Per-pair centred logits at the correct class, the two ghosts and the mean of the others.

    Centring: subtract, for each input pair, the mean of its logits over j. Eligible pairs are those
    where x + y, 2x and 2y are three distinct classes (x != y for odd p). Returns float64 tensors
    over the eligible pairs: ``correct``, ``ghost`` (mean of the two ghosts), ``ghost_x``,
    ``ghost_y``, ``other`` (mean over the p - 3 other classes), and the boolean ``eligible`` mask
    over all pairs (``all_pairs`` order).
    """
    logits = torch.as_tensor(logits).to(torch.float64)
    if logits.shape != (p * p, p):
        raise InputError(f"logits must be [p*p, p] = [{p * p}, {p}] in all_pairs order, got {tuple(logits.shape)}")
    if p < 5:
        raise InputError(f"the ghost ratio needs p >= 5 (three distinct classes and others), got p = {p}")
    pairs = all_pairs(p)
    x, y = pairs[:, 0], pairs[:, 1]
    c, g1, g2 = (x + y) % p, (2 * x) % p, (2 * y) % p
    eligible = (c != g1) & (c != g2) & (g1 != g2)
    L = logits - logits.mean(dim=1, keepdim=True)
    lc, l1, l2 = L.gather(1, torch.stack([c, g1, g2], dim=1)).unbind(1)
    lo = (L.sum(1) - lc - l1 - l2) / (p - 3)
    e = eligible
    return {"correct": lc[e], "ghost": 0.5 * (l1 + l2)[e], "ghost_x": l1[e], "ghost_y": l2[e],
            "other": lo[e], "eligible": eligible}


@dataclass(frozen=True)
class FlawedIndicatorThresholds(Thresholds):
    """Thresholds of ``flawed_indicator``: ``min_ratio`` <= ghost ratio <= ``max_ratio`` and the correct
    logit above both ghosts on at least ``min_fraction_below`` of the pairs."""

    min_ratio: float = 0.02
    max_ratio: float = 0.75
    min_fraction_below: float = 0.95


@dataclass
class FlawedIndicatorResult(ClaimResult):
    """Claim (docs/science.md 3.6): the logits carry the predicted ghosts at 2x and 2y, below the correct peak.

    With centred logits (each input's logits minus their mean over j), over pairs where x + y, 2x,
    2y are three distinct classes: ``mean_correct``, ``mean_ghost`` (the two ghosts averaged) and
    ``mean_other`` (the other p - 3 classes averaged) are averages over pairs, and

        ghost_ratio = mean over pairs of (ghost - other) / (correct - other).

    Theory: 0.5 for Quad with exact symmetry (the closed form), lower for ReLU. ``ratio_of_means``
    is the same ratio of the pair averages (robust when some denominators are near 0).

    Holds when ``min_ratio`` (0.02) <= ghost_ratio <= ``max_ratio`` (0.75), so ghosts exist and
    are clearly below the correct peak, and the correct logit exceeds both ghosts on at least
    ``min_fraction_below`` (0.95) of the pairs. Measured ghost ratio: authors' standard ReLU final
    0.145, grokking 0.103, quad_random 0.358, quad_single_freq 0.362, our standard run 0.196 (all
    hold, correct above both ghosts on 100 % of pairs). At step 0 the denominators are noise: the
    ratio is meaningless (0.44 to 51 on the step-0 checkpoints) and the correct logit beats both
    ghosts on only 15-40 % of the pairs, so the claim fails.
    """

    ghost_ratio: float = 0.0
    ratio_of_means: float = 0.0
    mean_correct: float = 0.0
    mean_ghost: float = 0.0
    mean_other: float = 0.0
    fraction_correct_above_ghosts: float = 0.0
    fraction_ghosts_above_other: float = 0.0
    n_pairs: int = 0
    accuracy: float = 0.0
    claim: ClassVar[str] = "flawed_indicator"
    key_metric: ClassVar[str] = "ghost_ratio"

    def details(self) -> str:
        return (f"centred logits: correct {self.mean_correct:.3g}, ghosts {self.mean_ghost:.3g}, others "
                f"{self.mean_other:.3g}; correct above both ghosts on {self.fraction_correct_above_ghosts:.1%} "
                f"(Quad theory 0.5; need {self.min_ratio:g} <= ratio <= {self.max_ratio:g})")


@takes_device
def flawed_indicator(model_or_logits, p: int | None = None, *, min_ratio: float = 0.02, max_ratio: float = 0.75,
                     min_fraction_below: float = 0.95) -> FlawedIndicatorResult:
    """Ghost ratio of the all-pairs logits (see the result class).

    Args:
        model_or_logits: a model, or its float64 all-pairs logits [p*p, p] (``all_pair_logits``).
        p: the modulus (needed only with logits).
    """
    if isinstance(model_or_logits, Tensor):
        if p is None:
            raise InputError("flawed_indicator(logits) needs p")
        logits = model_or_logits.to(torch.float64)
    else:
        logits = all_pair_logits(model_or_logits)
        p = model_or_logits.cfg.p
    g = ghost_parts(logits, p)
    num, den = g["ghost"] - g["other"], g["correct"] - g["other"]
    ratio = float((num / den).mean())
    mc, mg, mo = float(g["correct"].mean()), float(g["ghost"].mean()), float(g["other"].mean())
    rom = (mg - mo) / (mc - mo) if mc != mo else float("nan")
    above = float(((g["correct"] > g["ghost_x"]) & (g["correct"] > g["ghost_y"])).double().mean())
    ghosts_up = float(((g["ghost_x"] > g["other"]) & (g["ghost_y"] > g["other"])).double().mean())
    acc, _ = accuracy_and_loss(logits, p)
    ok = min_ratio <= ratio <= max_ratio and above >= min_fraction_below
    return FlawedIndicatorResult(
        holds=bool(ok),
        ghost_ratio=ratio,
        ratio_of_means=rom,
        mean_correct=mc,
        mean_ghost=mg,
        mean_other=mo,
        fraction_correct_above_ghosts=above,
        fraction_ghosts_above_other=ghosts_up,
        n_pairs=int(g["eligible"].sum()),
        accuracy=acc,
        thresholds=FlawedIndicatorThresholds(min_ratio, max_ratio, min_fraction_below))
