"""Pair sampling for the ablations at large p: how many pairs, and how sure the estimates are.

The ablation experiments evaluate many keep masks, each a full pass over the pairs: with P unordered
pairs, d_mlp neurons and B masks that is ``2 B P d_mlp p`` operations and ``16 P d_mlp`` bytes of
float64 activations. At p = 199 and d_mlp = 38,329 all 19,900 unordered pairs would need 12 GB and
about 5e13 operations, so :func:`ablation_pair_count` picks a seeded uniform sample of unordered
pairs that fits both the memory budget (:mod:`mechinterp_modadd.memory`, a third of it for the
activations) and :data:`ABLATION_FLOPS`; up to p = 97 at the default width everything stays exact.

Estimates from a sample carry a confidence interval (:func:`wilson_interval`): the Wilson score
interval at 95 % for a proportion, with the effective sample size n_eff = (sum w)^2 / sum w^2 of the
pair weights (1 on the diagonal, 2 off it) and the finite-population correction
(N - n) / (N - 1) for sampling n of the N unordered pairs without replacement. An accuracy averaged
over several draws on the same pairs is a per-pair average in [0, 1]; its variance is at most that
of a proportion with the same mean, so the same interval is conservative for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..memory import current_budget

__all__ = ["ABLATION_FLOPS", "CONFIDENCE", "Z_95", "PairSample", "ablation_pair_count", "wilson_interval"]

#: operations allowed for the ablation experiments before pairs are sampled (about 1-3 minutes of a
#: 2-core CPU in float64)
ABLATION_FLOPS: float = 3e12
#: share of the memory budget for the [pairs, d_mlp] pre- and post-activation tables
TABLE_SHARE: float = 1 / 3
#: smallest sample drawn (below it the intervals are too wide to judge a threshold)
MIN_SAMPLE: int = 256
CONFIDENCE: float = 0.95
Z_95: float = 1.959963984540054


def ablation_pair_count(p: int, d_mlp: int, n_masks: int, *, max_memory: int | None = None) -> int | None:
    """Unordered pairs to sample for ``n_masks`` ablation passes, or None when all of them fit.

    All p(p+1)/2 pairs are used when their table (``16 P d_mlp`` bytes) fits in :data:`TABLE_SHARE`
    of the budget and ``2 n_masks P d_mlp p`` <= :data:`ABLATION_FLOPS`; otherwise the largest
    sample meeting both limits (at least :data:`MIN_SAMPLE`).
    """
    P = p * (p + 1) // 2
    by_memory = int(current_budget(max_memory) * TABLE_SHARE // (16 * d_mlp))
    by_time = int(ABLATION_FLOPS // max(1.0, 2.0 * max(1, n_masks) * d_mlp * p))
    n = min(by_memory, by_time)
    return None if n >= P else max(MIN_SAMPLE, n)


def wilson_interval(estimate: Tensor | float, n_eff: float, *, population: float | None = None,
                    z: float = Z_95) -> tuple[Tensor, Tensor]:
    """Wilson score interval (lo, hi) of a proportion ``estimate`` from ``n_eff`` observations.

    With ``population`` N (sampling without replacement) n_eff is inflated by (N - 1) / (N - n),
    the finite-population correction; a census (n >= N) gives the point itself.
    """
    est = torch.as_tensor(estimate, dtype=torch.float64)
    n = float(n_eff)
    if population is not None:
        N = float(population)
        if n >= N:
            return est.clone(), est.clone()
        n = n * (N - 1) / (N - n)
    z2 = z * z
    centre = (est + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * torch.sqrt(est * (1 - est) / n + z2 / (4 * n * n))
    return (centre - half).clamp(0, 1), (centre + half).clamp(0, 1)


@dataclass(frozen=True)
class PairSample:
    """Which pairs an experiment used: ``n_pairs`` of the ``population`` unordered pairs x <= y
    (seeded by ``seed``); ``exact`` when all of them. ``n_eff`` is the effective sample size."""

    n_pairs: int
    population: int
    n_eff: float
    seed: int
    exact: bool

    @classmethod
    def of_table(cls, table: Any, seed: int = 0) -> PairSample:
        """From an :class:`~mechinterp_modadd.analysis.ablation.ActivationTable`."""
        w = table.weight
        n_eff = float(w.sum() ** 2 / (w * w).sum()) if len(w) else 0.0
        return cls(n_pairs=int(w.shape[0]), population=table.p * (table.p + 1) // 2, n_eff=n_eff,
                   seed=int(seed), exact=bool(table.exact))

    def interval(self, estimate: Tensor | float) -> tuple[Tensor, Tensor]:
        """95 % interval of an accuracy estimated on this sample (the point itself when exact)."""
        est = torch.as_tensor(estimate, dtype=torch.float64)
        if self.exact:
            return est.clone(), est.clone()
        return wilson_interval(est, self.n_eff, population=self.population)

    def describe(self) -> str:
        """One line for printed tables."""
        if self.exact:
            return f"exact: all {self.population} unordered pairs"
        return (f"estimated on a seeded sample of {self.n_pairs} of the {self.population} unordered pairs "
                f"(seed {self.seed}); intervals are {CONFIDENCE:.0%} Wilson intervals")

    def to_json(self) -> dict[str, Any]:
        return {"exact": self.exact, "n_pairs": self.n_pairs, "population": self.population,
                "n_eff": round(self.n_eff, 3) if math.isfinite(self.n_eff) else None, "seed": self.seed,
                "confidence": CONFIDENCE, "interval": "wilson, finite-population corrected"}
