"""The majority vote by ablation for any family, through the neuron view.

:func:`view_majority_vote` runs the three experiments of the paper's ``majority_vote`` claim
(:class:`~mechinterp_modadd.analysis.majority.MajorityVoteResult`) on a
:class:`~mechinterp_modadd.neurons.NeuronView`: the logits with some neurons zero-ablated are
``view.logits(scale)`` (exact, because the neurons enter the logits linearly once their activations
are fixed), evaluated on all p^2 ordered pairs (the concatenated-input network is not symmetric in
x and y, so the paper's unordered pairs do not apply). What the family supplies: each neuron's
group (its dominant frequency k*) and the angles whose symmetry cancels the noise (for the paper's
MLP iota phi, iota = 1..4; for ``concat_mlp`` a phi_x + b phi_y over
:data:`~mechinterp_modadd.analysis.concat.SYMMETRY_COMBINATIONS`).

Seeds: every batch of draws has its own generator from the seed and a label
(:func:`~mechinterp_modadd.analysis.majority.selectors.generator`), as in ``modadd ablate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from ..errors import InputError
from ..neurons import NeuronView
from .majority.claim import MajorityVoteResult, MajorityVoteThresholds
from .majority.selectors import generator, random_subsets, random_within_groups

__all__ = ["RANDOM_DRAWS", "PHASE_DRAWS", "ViewMajorityVoteResult", "view_majority_vote", "half_circle_keep",
           "concat_majority_vote"]

#: random halves drawn for criterion (1), and size-matched random halves per angle for criterion (3)
RANDOM_DRAWS = 10
PHASE_DRAWS = 20


def half_circle_keep(angle: Tensor, group: Tensor, n_groups: int, n_grid: int = 72) -> Tensor:
    """Boolean [n]: in each group keep the neurons whose ``angle`` lies in one half circle [a, a + pi),
    a on the grid 2 pi i / n_grid chosen so that the kept count is closest to half the group (the
    median of tied grid values), the rule of
    :func:`mechinterp_modadd.analysis.ablation.half_circle_selection` for any angle."""
    grid = 2 * math.pi * torch.arange(n_grid, dtype=torch.float64) / n_grid
    inside = torch.remainder(angle.double()[None, :] - grid[:, None], 2 * math.pi) < math.pi  # [G, n]
    onehot = torch.nn.functional.one_hot(group, n_groups).double()
    n = onehot.sum(0)
    err = (inside.double() @ onehot - n / 2).abs()
    ties = err == err.min(0).values
    median = ties & (ties.cumsum(0) == (ties.sum(0) // 2 + 1))
    a_idx = median.double().argmax(0)
    return inside[a_idx[group], torch.arange(angle.shape[0])]


@dataclass
class ViewMajorityVoteResult(MajorityVoteResult):
    """Claim ``majority_vote`` computed through the neuron view (any family; used for ``concat_mlp``).

    The three criteria and thresholds of the paper's claim, on all p^2 ordered pairs with
    zero-ablation in the view: (1) mean accuracy of ``draws`` random halves >= 0.95; (2) the best
    single frequency group alone <= 0.6; (3) for some angle of ``phase_angles`` (the family's
    symmetry angles), keeping a half circle of that angle in every group loses >= 0.1 accuracy
    against ``phase_draws`` size-matched random halves within the same groups. ``phase_drops`` is
    keyed by angle name (e.g. ``"1,-1"`` for phi_x - phi_y) and ``phase_drop_angle`` names the
    largest; ``phase_drop_order`` is its position (1-based) in ``phase_angles``. ``top_vote_share``
    is the share of the total |vote weight| held by the top 5 % of neurons (reported, not judged).
    """

    phase_angles: list[str] = field(default_factory=list)
    phase_drop_angle: str = ""
    claim: ClassVar[str] = "majority_vote"

    def details(self) -> str:
        th = self.thresholds or MajorityVoteThresholds()
        return (f"all {self.n_pairs} ordered pairs: random 50% keeps {self.half_accuracy:.3f} (mean of {self.draws} "
                f"draws; need >= {th.half_accuracy_min}); best single group k={self.best_single_group} alone "
                f"{self.best_single_group_accuracy:.3f} (need <= {th.single_group_max}); phase-biased half loses "
                f"{self.phase_drop:.3f} at angle ({self.phase_drop_angle}) (need >= {th.phase_drop_min}); top 5% "
                f"of neurons hold {self.top_vote_share:.1%} of the vote weight")


def _accuracy(view: NeuronView, masks: Tensor) -> Tensor:
    """Accuracy [B] of the view with each boolean keep mask [B, n] (chunks of 16 interventions)."""
    out = []
    for i in range(0, masks.shape[0], 16):
        out.append(view.accuracy(view.logits(masks[i:i + 16].double())))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


@torch.no_grad()
def view_majority_vote(view: NeuronView, frequency: Tensor, angles: dict[str, Tensor], *,
                       vote_weight: Tensor | None = None, draws: int = RANDOM_DRAWS, phase_draws: int = PHASE_DRAWS,
                       seed: int = 0,
                       half_accuracy_min: float = 0.95, single_group_max: float = 0.6,
                       phase_drop_min: float = 0.1) -> ViewMajorityVoteResult:
    """The majority-vote claim on ``view`` (see :class:`ViewMajorityVoteResult`).

    Args:
        frequency: [n] each neuron's 1-based group (k*).
        angles: name -> [n] angle per neuron (radians) for the phase-biased halves.
        vote_weight: [n] for ``top_vote_share`` (None: NaN).
    """
    n, K = view.n, view.K
    frequency = torch.as_tensor(frequency).long()
    if frequency.shape != (n,) or int(frequency.min()) < 1 or int(frequency.max()) > K:
        raise InputError(f"frequency must be [{n}] with values in 1..{K}")
    if not angles:
        raise InputError("angles must name at least one angle per neuron")
    th = MajorityVoteThresholds(half_accuracy_min, single_group_max, phase_drop_min)
    group = frequency - 1
    full = float(view.accuracy())
    # (1) random halves
    halves = random_subsets(draws, n, n // 2, generator(seed, "random", n // 2))
    half_acc = _accuracy(view, halves)
    half = float(half_acc.mean())
    # (2) single groups
    present = [k for k in range(K) if bool((group == k).any())]
    single = _accuracy(view, torch.stack([group == k for k in present]))
    best_i = int(single.argmax())
    best, best_k = float(single[best_i]), present[best_i] + 1
    # (3) phase-biased halves against matched random halves
    drops: dict[str, float] = {}
    for name, ang in angles.items():
        ang = torch.as_tensor(ang, dtype=torch.float64)
        if ang.shape != (n,):
            raise InputError(f"angle {name!r} must have shape [{n}], got {tuple(ang.shape)}")
        keep = half_circle_keep(ang, group, K)
        n_keep = torch.bincount(group[keep], minlength=K)
        matched = random_within_groups(phase_draws, group, n_keep, generator(seed, "matched", name))
        acc_b = float(_accuracy(view, keep[None])[0])
        acc_m = float(_accuracy(view, matched).mean())
        drops[name] = acc_m - acc_b
    names = list(angles)
    angle = max(names, key=lambda a: drops[a])
    drop = drops[angle]
    share = math.nan
    if vote_weight is not None:
        v = torch.as_tensor(vote_weight, dtype=torch.float64).abs()
        top = max(1, round(0.05 * n))
        tot = float(v.sum())
        share = float(v.sort(descending=True).values[:top].sum() / tot) if tot > 0 else math.nan
    ok_half, ok_group, ok_phase = half >= half_accuracy_min, not best > single_group_max, drop >= phase_drop_min
    reasons = []
    if not ok_half:
        reasons.append(f"keeping a random 50% of neurons gives accuracy {half:.3f} < {half_accuracy_min} "
                       f"(full model {full:.3f})")
    if not ok_group:
        reasons.append(f"keeping frequency group k = {best_k} alone gives accuracy {best:.3f} > {single_group_max}")
    if not ok_phase:
        reasons.append(f"breaking the phase symmetry costs at most {drop:.3f} accuracy (angle {angle}) "
                       f"< {phase_drop_min}")
    pairs = view.p * view.p
    return ViewMajorityVoteResult(
        holds=bool(ok_half and ok_group and ok_phase), full_accuracy=full, half_accuracy=half,
        half_accuracy_min=float(half_acc.min()), best_single_group_accuracy=best, best_single_group=best_k,
        phase_drop=drop, phase_drop_order=names.index(angle) + 1, phase_drops=drops, top_vote_share=share,
        draws=draws, exact=True, n_pairs=pairs, n_pairs_total=pairs, reasons=reasons, thresholds=th,
        phase_angles=names, phase_drop_angle=angle)


def concat_majority_vote(model, view: NeuronView | None = None, spectrum=None, **kw) -> ViewMajorityVoteResult:
    """:func:`view_majority_vote` for a ``concat_mlp`` model: groups by k* (u and v together),
    angles a phi_x + b phi_y over :data:`~mechinterp_modadd.analysis.concat.SYMMETRY_COMBINATIONS`,
    vote weight alpha_x alpha_y beta."""
    from ..families import neuron_view
    from .concat import SYMMETRY_COMBINATIONS, concat_spectrum_of

    s = concat_spectrum_of(model if spectrum is None else spectrum)
    view = neuron_view(model) if view is None else view
    angles = {f"{a},{b}": a * s.phi_star + b * s.phi_y_star for a, b in SYMMETRY_COMBINATIONS}
    return view_majority_vote(view, s.frequency, angles, vote_weight=s.vote_weight, **kw)
