"""Restricted and excluded loss: Nanda et al.'s progress measures (2023, "Progress measures for grokking").

Definitions (ours made precise; the paper describes them in words):

Write the float64 logits of all p^2 pairs as L(x, y, z) (z = the output class). For each output z,
view L(., ., z) as a function on Z_p x Z_p with the uniform inner product and split off its
projection onto the *key directions*

    P_z(x, y) = sum_{k in keys} [ C_k(z) cos(w_k (x + y)) + S_k(z) sin(w_k (x + y)) ],
    C_k(z) = (2 / p^2) sum_{x, y} L(x, y, z) cos(w_k (x + y)),   S_k(z) likewise with sin,

with w_k = 2 pi k / p. Since cos(w_k (x + y - z)) = cos(w_k (x + y)) cos(w_k z) + sin(w_k (x + y))
sin(w_k z), every term cos / sin (w_k (x + y - z)) of key k lies in these directions (they allow any
dependence on z, as in Nanda et al., who project each output's logits separately).

- **restricted logits** R(x, y, z) = c(z) + P_z(x, y), with c(z) the mean of L(., ., z) over all
  pairs (each output's constant). **Restricted loss** = mean cross-entropy of R over *all* p^2
  pairs. It stays close to the full loss once the Fourier algorithm carries the prediction.
- **excluded logits** E = L - P (the key directions removed, everything else kept, constants
  included). **Excluded loss** = mean cross-entropy of E over the *training* pairs (all pairs for a
  full-data run). It rises as the algorithm forms, even while the training loss stays low.

Checks (tests): if L is exactly a sum of a_k cos(w_k (x + y - z)) over key k, then R = L (restricted
loss = full loss) and E = 0 (excluded loss = log p). For the idealised network (Quad, all K
frequencies, symmetric phases) the closed form is (a N / 2)[-1 + (p/2) 1(x + y = z) + (p/4)(1(2x = z)
+ 1(2y = z))]; its ghost terms are functions of (x, z) or (y, z) alone, which have no x + y
component, so R = (a N / 2)[(p/2) 1(x + y = z) - 1/2], restricted loss = log(1 + (p - 1)
exp(-a N p / 4)), and E keeps the ghosts: excluded loss on a pair with x != y is
log(p - 2 + 2 exp(a N p / 8)) (the two ghosts beat the correct class by a N p / 8).

**Key frequencies** (:func:`key_frequencies`): the dominant frequencies k* that carry at least
``min_share`` (default 1 / (2K)) of the network's total vote weight alpha^2 beta (summed over the
neurons whose k* is k). The paper's trained networks use all K; a grokked network under weight
decay may use a few. Over a run, :func:`~mechinterp_modadd.analysis.grokking.progress_measures`
takes the keys of the *last* checkpoint and uses them at every step, as Nanda et al. do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from ..data import all_pairs
from ..errors import InputError
from ..fourier import NeuronSpectrum
from .base import ClaimResult, Thresholds

__all__ = ["key_frequencies", "key_direction_part", "restricted_excluded_logits", "RestrictedLoss",
           "restricted_loss"]


def key_frequencies(spectrum: NeuronSpectrum, min_share: float | None = None) -> list[int]:
    """1-based frequencies k whose neurons (k* = k) hold >= ``min_share`` of the total vote weight.

    Vote weight of neuron m: alpha_m(k*)^2 beta_m(k*). ``min_share`` defaults to 1 / (2K). When no
    neuron has any weight (all-zero network) every k is returned.
    """
    K = spectrum.K
    share_min = 1.0 / (2 * K) if min_share is None else float(min_share)
    if not 0.0 <= share_min <= 1.0:
        raise InputError(f"min_share must be in [0, 1], got {min_share!r}")
    w = spectrum.vote_weight.double()
    per_k = torch.zeros(K, dtype=torch.float64).index_add_(0, spectrum.frequency.long() - 1, w)
    total = float(per_k.sum())
    if not total > 0:
        return list(range(1, K + 1))
    return [k + 1 for k in range(K) if float(per_k[k]) / total >= share_min]


def _check_keys(p: int, keys: Sequence[int]) -> list[int]:
    K = (p - 1) // 2
    out = sorted({int(k) for k in keys})
    if any(not 1 <= k <= K for k in out):
        raise InputError(f"key frequencies must lie in 1..{K} for p = {p}, got {list(keys)}")
    return out


def key_direction_part(logits: Float[Tensor, "pairs p"], p: int, keys: Sequence[int]) -> Float[Tensor, "pairs p"]:
    """P: the projection of each output's logits onto cos / sin (w_k (x + y)) for k in ``keys``.

    ``logits`` are [p*p, p] in ``all_pairs`` order (x major). Computed through the mean of L over
    each anti-diagonal x + y = s (the projection onto functions of x + y), then a real DFT in s.
    """
    if logits.shape != (p * p, p):
        raise InputError(f"logits must have shape [{p * p}, {p}] (all pairs x classes), got {tuple(logits.shape)}")
    keys = _check_keys(p, keys)
    L = logits.detach().to("cpu", torch.float64)
    pairs = all_pairs(p)
    s = (pairs[:, 0] + pairs[:, 1]) % p  # [p*p]
    B = torch.zeros(p, p, dtype=torch.float64).index_add_(0, s, L) / p  # [s, z]: mean over each anti-diagonal
    if not keys:
        return torch.zeros_like(L)
    k = torch.tensor(keys, dtype=torch.float64)[:, None]
    w = 2 * math.pi * k * torch.arange(p, dtype=torch.float64)[None, :] / p  # [n_keys, s]
    cos, sin = torch.cos(w), torch.sin(w)
    C, S = (2.0 / p) * cos @ B, (2.0 / p) * sin @ B  # [n_keys, z]
    part = cos.T @ C + sin.T @ S  # [s, z]
    return part[s]


def restricted_excluded_logits(logits: Float[Tensor, "pairs p"], p: int, keys: Sequence[int]
                               ) -> tuple[Float[Tensor, "pairs p"], Float[Tensor, "pairs p"]]:
    """(R, E) of the module docstring: R = c(z) + P, E = L - P."""
    L = logits.detach().to("cpu", torch.float64)
    P = key_direction_part(L, p, keys)
    const = L.mean(dim=0, keepdim=True)  # c(z): each output's mean over all pairs
    return const + P, L - P


def _ce(logits: Tensor, y: Tensor, mask: Tensor | None) -> float:
    if mask is not None:
        logits, y = logits[mask], y[mask]
    if len(y) == 0:
        return math.nan
    return float(torch.nn.functional.cross_entropy(logits, y))


@dataclass(frozen=True)
class RestrictedLossThresholds(Thresholds):
    """Thresholds of ``restricted_loss``: restricted loss <= full loss + ``max_excess`` (nats, log 2)
    and < ``max_fraction_of_log_p`` * log p; the excluded loss must exceed the training loss."""

    max_excess: float = math.log(2)
    max_fraction_of_log_p: float = 0.5


@dataclass
class RestrictedLoss(ClaimResult):
    """Full, restricted and excluded loss of one model (definitions in the module docstring).

    ``holds`` when the restricted loss is at most ``full_loss + log(2)`` and below log p / 2 (the
    key directions alone predict well) and the excluded loss is above the full training loss (the
    key directions carry the prediction). Our thresholds; Nanda et al. read the curves by eye.
    """

    full_loss: float = math.nan
    train_loss: float = math.nan
    restricted_loss: float = math.nan
    excluded_loss: float = math.nan
    log_p: float = math.nan
    keys: list[int] = field(default_factory=list)
    claim: ClassVar[str] = "restricted_loss"
    key_metric: ClassVar[str] = "restricted_loss"


def restricted_loss(logits: Float[Tensor, "pairs p"], p: int, keys: Sequence[int],
                    train_mask: Tensor | None = None) -> RestrictedLoss:
    """Restricted loss over all pairs and excluded loss over ``train_mask`` (all pairs when None)."""
    if train_mask is not None and (train_mask.shape != (p * p,) or train_mask.dtype != torch.bool):
        raise InputError(f"train_mask must be a bool tensor of shape [{p * p}], got "
                         f"{train_mask.dtype} {tuple(train_mask.shape)}")
    L = logits.detach().to("cpu", torch.float64)
    R, E = restricted_excluded_logits(L, p, keys)
    pairs = all_pairs(p)
    y = (pairs[:, 0] + pairs[:, 1]) % p
    full, train = _ce(L, y, None), _ce(L, y, train_mask)
    rl, el = _ce(R, y, None), _ce(E, y, train_mask)
    th = RestrictedLossThresholds()
    holds = rl <= full + th.max_excess and rl < math.log(p) * th.max_fraction_of_log_p and el > train
    return RestrictedLoss(holds=bool(holds), full_loss=full, train_loss=train, restricted_loss=rl,
                          excluded_loss=el, log_p=math.log(p), keys=_check_keys(p, keys), thresholds=th)
