"""The majority vote, tested by intervention (docs/science.md 3.6-3.8).

The paper says each neuron is a noisy voter: its vote for logit j carries the signal
cos(w(x + y - j)) plus noise terms that only cancel over a population whose phases are
symmetric (sum exp(i iota phi) ~ 0) and whose frequencies are diversified. Each experiment here
removes neurons and measures what is left, so the claim can fail on a given checkpoint:

- :func:`random_ablation`: keep a random fraction of neurons (several seeded draws);
- :func:`frequency_group_ablation`: drop each frequency group alone / keep each group alone;
- :func:`phase_biased_ablation`: keep, in every group, the half of the neurons whose iota * phi
  lies in one half circle (breaks the phase symmetry of order iota) against size-matched random
  halves drawn inside the same groups;
- :func:`activation_swap`: replace sigma at test time (only its even part should matter);
- :func:`noise_scaling`: split each group's summed vote into its coherent part and the residual
  noise and fit how both grow with the number of voters;
- :func:`majority_vote`: the claim check (:class:`MajorityVoteResult`).

All accuracies, losses and margins are over all p^2 pairs (computed on the p(p+1)/2 unordered
pairs with multiplicities, which is exact because f(x, y) = f(y, x)); ablated forward passes are
batched (:class:`~mechinterp_modadd.analysis.ablation.ActivationTable`). Every random draw comes
from a ``torch.Generator`` seeded by the ``seed`` argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm import tqdm

from ..errors import InputError
from ..forward import hidden, weights64
from ..fourier import NeuronSpectrum, neuron_spectrum
from .ablation import (
    ActivationTable,
    activation_table,
    frequency_groups,
    half_circle_selection,
    swapped_activation,
)
from .base import ClaimResult, to_jsonable

__all__ = [
    "DEFAULT_KEEP_FRACTIONS",
    "SWAP_ACTIVATIONS",
    "HALF_ACCURACY_MIN",
    "SINGLE_GROUP_MAX",
    "PHASE_DROP_MIN",
    "RandomAblationResult",
    "FrequencyGroupResult",
    "PhaseBiasedResult",
    "ActivationSwapResult",
    "NoiseScalingResult",
    "VoteSplit",
    "MajorityVoteResult",
    "AblationSuite",
    "random_ablation",
    "frequency_group_ablation",
    "phase_biased_ablation",
    "activation_swap",
    "vote_split",
    "noise_scaling",
    "majority_vote",
    "majority_vote_from",
    "run_ablation_suite",
    "QUICK_CHECK",
    "diagnosis_check",
]

#: keep fractions of the random ablation curve
DEFAULT_KEEP_FRACTIONS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.1, 0.05)
#: activations of the test-time swap (docs/science.md 3.7): relu, |x|, x^2, x^4, log(1+e^{2x}), e^x, x, x^3
SWAP_ACTIVATIONS: tuple[str, ...] = ("relu", "abs", "quad", "quartic", "softplus2", "exp", "identity", "cube")

#: majority_vote thresholds (see :class:`MajorityVoteResult`)
HALF_ACCURACY_MIN = 0.95
SINGLE_GROUP_MAX = 0.6
PHASE_DROP_MIN = 0.1


def _lookup(rows: pd.DataFrame, key_col: str, key: Any, value_col: str) -> float:
    """``value_col`` of the row whose ``key_col`` equals ``key`` (InputError naming what was measured)."""
    r = rows[rows[key_col] == key]
    if r.empty:
        raise InputError(f"{key_col} {key!r} was not measured; measured {list(rows[key_col])}")
    return float(r[value_col].iloc[0])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _random_subsets(n_draws: int, n_total: int, n_keep: int, g: torch.Generator) -> Tensor:
    """[n_draws, n_total] boolean masks, each with n_keep uniformly chosen True entries."""
    if n_draws == 0 or n_total == 0:
        return torch.zeros(n_draws, n_total, dtype=torch.bool)
    ranks = torch.rand(n_draws, n_total, generator=g, dtype=torch.float64).argsort(dim=1).argsort(dim=1)
    return ranks < n_keep


def _random_within_groups(n_draws: int, group: Tensor, n_keep: Tensor, g: torch.Generator) -> Tensor:
    """[n_draws, M] boolean masks keeping, in every group c, n_keep[c] uniformly chosen neurons
    (``group`` [M] holds 0-based group ids)."""
    M = group.shape[0]
    keys = torch.rand(n_draws, M, generator=g, dtype=torch.float64) + 2.0 * group.double()[None]
    order = keys.argsort(dim=1)  # grouped by id, random order inside each group
    pos = torch.empty_like(order)
    pos.scatter_(1, order, torch.arange(M).expand(n_draws, M).contiguous())
    counts = torch.bincount(group, minlength=n_keep.shape[0])
    starts = torch.cumsum(counts, 0) - counts
    return (pos - starts[group]) < n_keep[group]


def _table(model, table: ActivationTable | None) -> ActivationTable:
    return activation_table(model) if table is None else table


# ================================================================ random ablation curve
@dataclass
class RandomAblationResult:
    """Random ablation curve: keep ``round(f * d_mlp)`` uniformly random neurons (zero-ablate or
    mean-ablate the rest) for each keep fraction f, ``draws`` seeded draws each.

    ``rows``: one per (keep, draw) with n_kept, accuracy, loss, margin (mean over pairs of the
    correct logit minus the best other logit).
    """

    rows: pd.DataFrame
    mode: str
    seed: int

    def to_frame(self) -> pd.DataFrame:
        return self.rows.copy()

    def summary(self) -> pd.DataFrame:
        """Per keep fraction: accuracy mean/min/max, loss mean, margin mean."""
        g = self.rows.groupby("keep", sort=False)
        out = pd.DataFrame({
            "keep": list(g.groups.keys()),
            "n_kept": g["n_kept"].first().to_numpy(),
            "accuracy_mean": g["accuracy"].mean().to_numpy(),
            "accuracy_min": g["accuracy"].min().to_numpy(),
            "accuracy_max": g["accuracy"].max().to_numpy(),
            "loss_mean": g["loss"].mean().to_numpy(),
            "margin_mean": g["margin"].mean().to_numpy(),
        })
        return out

    def accuracy_at(self, keep: float) -> float:
        """Mean accuracy at keep fraction ``keep``."""
        r = self.rows[np.isclose(self.rows["keep"], keep)]
        if r.empty:
            raise InputError(f"keep fraction {keep} was not measured; measured {sorted(set(self.rows['keep']))}")
        return float(r["accuracy"].mean())

    def to_json(self) -> list[dict[str, Any]]:
        s = self.summary()
        cols = ["keep", "accuracy_mean", "accuracy_min", "accuracy_max", "margin_mean"]
        return to_jsonable(s[cols].to_dict(orient="records"))


def random_ablation(model, keep: Sequence[float] = DEFAULT_KEEP_FRACTIONS, *, draws: int = 10, seed: int = 0,
                    mode: str = "zero", hook_point: str = "mlp.hook_post",
                    table: ActivationTable | None = None, metrics: str = "all") -> RandomAblationResult:
    """Accuracy, loss and mean margin when only a random fraction of the neurons is kept.

    All draws of all fractions run as one batch of keep masks (see ``ActivationTable.evaluate``).
    """
    if draws < 1:
        raise InputError(f"draws must be >= 1, got {draws}")
    keep = [float(f) for f in keep]
    if not keep or any(not 0 < f <= 1 for f in keep):
        raise InputError(f"keep fractions must lie in (0, 1], got {keep}")
    tab = _table(model, table)
    M = tab.d_mlp
    g = _gen(seed)
    counts = [max(1, round(f * M)) for f in keep]
    masks = torch.cat([_random_subsets(draws, M, n, g) for n in counts])
    ev = tab.evaluate(masks, mode, hook_point, metrics=metrics)
    rows = pd.DataFrame({
        "keep": np.repeat(keep, draws),
        "draw": np.tile(np.arange(draws), len(keep)),
        "n_kept": np.repeat(counts, draws),
        "accuracy": ev.accuracy.numpy(),
        "loss": ev.loss.numpy(),
        "margin": ev.margin.numpy(),
    })
    return RandomAblationResult(rows=rows, mode=mode, seed=seed)


# ================================================================ frequency groups
@dataclass
class FrequencyGroupResult:
    """Per frequency group N_k (neurons with dominant frequency k): accuracy, loss and margin when
    the group alone is ablated (``drop_*``) and when only that group is kept (``keep_*``).
    Groups with no neuron are listed with n = 0 (dropping them changes nothing; keeping them
    alone keeps no neuron)."""

    rows: pd.DataFrame
    mode: str

    def to_frame(self) -> pd.DataFrame:
        return self.rows.copy()

    @property
    def min_drop_accuracy(self) -> float:
        r = self.rows[self.rows["n"] > 0]
        return float(r["drop_accuracy"].min()) if len(r) else float("nan")

    @property
    def max_keep_accuracy(self) -> float:
        r = self.rows[self.rows["n"] > 0]
        return float(r["keep_accuracy"].max()) if len(r) else float("nan")

    @property
    def best_keep_group(self) -> int:
        r = self.rows[self.rows["n"] > 0]
        return int(r.loc[r["keep_accuracy"].idxmax(), "k"]) if len(r) else 0

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "drop_group": [{"k": int(r.k), "accuracy": float(r.drop_accuracy)} for r in self.rows.itertuples()],
            "keep_group": [{"k": int(r.k), "accuracy": float(r.keep_accuracy)} for r in self.rows.itertuples()],
        }


def frequency_group_ablation(model, *, mode: str = "zero", hook_point: str = "mlp.hook_post",
                             spectrum: NeuronSpectrum | None = None,
                             table: ActivationTable | None = None, metrics: str = "all") -> FrequencyGroupResult:
    """Drop each frequency group alone, and keep each group alone (2K ablations in one batch)."""
    sp = neuron_spectrum(model) if spectrum is None else spectrum
    tab = _table(model, table)
    groups = frequency_groups(sp)
    K = len(groups)
    evs = []
    step = tab.group_chunk(max((len(v) for v in groups.values()), default=0))
    full = None
    for i in range(0, K, step):
        contrib, base = tab.group_logits(list(groups.values())[i:i + step], mode, hook_point)
        if full is None:
            full = tab.logits(torch.ones(1, tab.d_mlp, dtype=torch.bool), mode, hook_point)[0]
        evs.append((tab.score(full - contrib, metrics), tab.score(contrib + base, metrics)))
    drop = [torch.cat([getattr(e[0], f) for e in evs]) for f in ("accuracy", "loss", "margin")]
    keep = [torch.cat([getattr(e[1], f) for e in evs]) for f in ("accuracy", "loss", "margin")]
    ev = type(evs[0][0])(*(torch.cat([a, b]) for a, b in zip(drop, keep, strict=True)))
    rows = pd.DataFrame({
        "k": list(groups.keys()),
        "n": [len(v) for v in groups.values()],
        "drop_accuracy": ev.accuracy[:K].numpy(),
        "drop_loss": ev.loss[:K].numpy(),
        "drop_margin": ev.margin[:K].numpy(),
        "keep_accuracy": ev.accuracy[K:].numpy(),
        "keep_loss": ev.loss[K:].numpy(),
        "keep_margin": ev.margin[K:].numpy(),
    })
    return FrequencyGroupResult(rows=rows, mode=mode)


# ================================================================ phase-biased ablation
@dataclass
class PhaseBiasedResult:
    """The causal test of phase symmetry.

    For each order iota: in each frequency group keep the neurons whose iota * phi* lies in one
    half circle [a, a + pi) (a on a grid of ``n_grid`` values, kept count closest to half the
    group; see :func:`~mechinterp_modadd.analysis.ablation.half_circle_selection`), ablate the
    rest, and compare with ``draws`` size-matched random subsets drawn inside the same groups.
    ``difference`` = matched random accuracy (mean over draws) minus phase-biased accuracy: a
    large positive difference means the cancellation of the order-iota noise term needed the
    symmetric phases.
    """

    rows: pd.DataFrame
    draws: int
    seed: int
    mode: str

    def to_frame(self) -> pd.DataFrame:
        return self.rows.copy()

    def difference(self, order: int) -> float:
        return _lookup(self.rows, "order", order, "difference")

    def to_json(self) -> list[dict[str, Any]]:
        return [{"order": int(r.order), "accuracy": float(r.accuracy),
                 "matched_random_accuracy": float(r.matched_random_accuracy)} for r in self.rows.itertuples()]


def phase_biased_ablation(model, orders: Sequence[int] = (1, 2, 3, 4), *, draws: int = 20, n_grid: int = 72,
                          seed: int = 0, mode: str = "zero", hook_point: str = "mlp.hook_post",
                          spectrum: NeuronSpectrum | None = None,
                          table: ActivationTable | None = None, metrics: str = "all") -> PhaseBiasedResult:
    """Phase-biased halves against size-matched random halves, for each order iota (one batch)."""
    if draws < 1:
        raise InputError(f"draws must be >= 1, got {draws}")
    orders = [int(o) for o in orders]
    if not orders or any(o < 1 for o in orders):
        raise InputError(f"orders must be positive integers, got {orders}")
    sp = neuron_spectrum(model) if spectrum is None else spectrum
    tab = _table(model, table)
    group = sp.frequency - 1
    g = _gen(seed)
    masks = []
    for o in orders:
        keep, _ = half_circle_selection(sp, o, n_grid)
        n_keep = torch.bincount(group[keep], minlength=sp.K)
        masks += [keep[None], _random_within_groups(draws, group, n_keep, g)]
    ev = tab.evaluate(torch.cat(masks), mode, hook_point, metrics=metrics)
    acc = ev.accuracy.reshape(len(orders), 1 + draws)
    rows = pd.DataFrame({
        "order": orders,
        "n_kept": [int(m.sum()) for m in masks[0::2]],
        "accuracy": acc[:, 0].numpy(),
        "loss": ev.loss.reshape(len(orders), 1 + draws)[:, 0].numpy(),
        "matched_random_accuracy": acc[:, 1:].mean(1).numpy(),
        "matched_random_min": acc[:, 1:].amin(1).numpy(),
        "matched_random_max": acc[:, 1:].amax(1).numpy(),
    })
    rows["difference"] = rows["matched_random_accuracy"] - rows["accuracy"]
    return PhaseBiasedResult(rows=rows, draws=draws, seed=seed, mode=mode)


# ================================================================ activation swap
@dataclass
class ActivationSwapResult:
    """Accuracy and loss on all pairs with sigma replaced at test time by each activation
    (weights unchanged). Theory (docs/science.md 3.7): with symmetric phases only the even part of
    sigma votes, so even activations keep accuracy and odd ones (x, x^3) fall to chance."""

    rows: pd.DataFrame
    original: str

    def to_frame(self) -> pd.DataFrame:
        return self.rows.copy()

    def accuracy(self, name: str) -> float:
        return _lookup(self.rows, "activation", name, "accuracy")

    def to_json(self) -> dict[str, float]:
        return {str(r.activation): float(r.accuracy) for r in self.rows.itertuples()}

    def loss_json(self) -> dict[str, float]:
        """Name -> cross-entropy loss on all pairs (the ``loss`` column of the printed table)."""
        return {str(r.activation): float(r.loss) for r in self.rows.itertuples()}


def activation_swap(model, activations: Sequence[str] = SWAP_ACTIVATIONS) -> ActivationSwapResult:
    """Swap sigma on the model for each activation (restored afterwards, also on errors) and
    measure accuracy and loss on all pairs."""
    tab_rows = []
    original = model.activation
    for name in activations:
        with swapped_activation(model, name):
            tab = activation_table(model)
        ev = tab.evaluate(torch.ones(1, tab.d_mlp, dtype=torch.bool))
        tab_rows.append({"activation": name, "accuracy": float(ev.accuracy[0]), "loss": float(ev.loss[0]),
                         "even": _is_even(name)})
    return ActivationSwapResult(rows=pd.DataFrame(tab_rows),
                                original=original if isinstance(original, str) else repr(original))


def _is_even(name: str) -> bool:
    from ..model import get_activation

    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    f = get_activation(name)
    return bool(torch.allclose(f(x), f(-x)))


# ================================================================ noise scaling
def _coherent_basis(p: int, k: int) -> Float[Tensor, "6 P"]:
    """Orthonormal basis (over all (x, y, j) in Z_p^3, flattened x-major, y, then j) of the
    coherent subspace of frequency k: cos and sin of w_k(x + y - j), w_k(2x - j), w_k(2y - j).

    These are the real parts of three distinct Fourier modes of Z_p^3 -- (k, k, -k), (2k, 0, -k),
    (0, 2k, -k) -- so the six functions are orthogonal, each of squared norm p^3 / 2.
    """
    r = torch.arange(p, dtype=torch.float64)
    x, y, j = torch.meshgrid(r, r, r, indexing="ij")
    w = 2 * math.pi * k / p
    args = [w * (x + y - j), w * (2 * x - j), w * (2 * y - j)]
    funcs = [f(a) for a in args for f in (torch.cos, torch.sin)]
    return torch.stack(funcs).reshape(6, -1) / math.sqrt(p**3 / 2)


@dataclass(frozen=True)
class VoteSplit:
    """Coherent and residual parts of summed group votes, as RMS over the p^3 entries (x, y, j).

    ``coherent[b, i]`` / ``residual[b, i]`` belong to keep mask b and group ``ks[i]``; a group
    with no kept neuron gives 0."""

    ks: list[int]
    coherent: Float[Tensor, "B G"]
    residual: Float[Tensor, "B G"]


def _post_all_pairs(model) -> Tensor:
    """float64 post-activations [p^2, M] on all pairs (:func:`mechinterp_modadd.forward.hidden`)."""
    return hidden(model)[1]


def _group_parts(post: Tensor, W_out: Tensor, idx: Tensor, p: int, k: int) -> tuple[Tensor, Tensor]:
    """Per-neuron coherent coefficients C [n, 6] and residual votes R [n, p^3] of group idx."""
    votes = (post[:, idx].T[:, :, None] * W_out[:, idx].T[:, None, :]).reshape(len(idx), -1)  # [n, p^3]
    basis = _coherent_basis(p, k)
    C = votes @ basis.T
    R = votes - C @ basis
    return C, R


def _split_norms(C: Tensor, R: Tensor, masks: Tensor, chunk_elems: int = 1 << 23) -> tuple[Tensor, Tensor]:
    masks = masks.double()
    n_entries = R.shape[1]
    coh = (masks @ C).norm(dim=1) / math.sqrt(n_entries)
    step = max(1, chunk_elems // max(1, n_entries))
    res = torch.cat([(masks[i:i + step] @ R).norm(dim=1) for i in range(0, masks.shape[0], step)])
    return coh, res / math.sqrt(n_entries)


@torch.no_grad()
def vote_split(model, keep: Tensor, *, spectrum: NeuronSpectrum | None = None) -> VoteSplit:
    """For each keep mask [B, d_mlp] and frequency group k, the summed vote of the kept neurons
    of that group, V(x, y, j) = sum_m post_m(x, y) W_out[j, m], split into its projection on the
    coherent subspace (:func:`_coherent_basis`: the correct peak and the two ghosts) and the
    residual. Computed explicitly (not by a difference of squared norms), so an exact
    cancellation shows up at ~1e-15."""
    sp = neuron_spectrum(model) if spectrum is None else spectrum
    keep = torch.as_tensor(keep)
    keep = keep[None] if keep.ndim == 1 else keep
    post = _post_all_pairs(model)
    W_out = weights64(model).W_out
    groups = {k: idx for k, idx in frequency_groups(sp).items() if len(idx)}
    coh = torch.zeros(keep.shape[0], len(groups), dtype=torch.float64)
    res = torch.zeros_like(coh)
    for i, (k, idx) in enumerate(groups.items()):
        C, R = _group_parts(post, W_out, idx, model.cfg.p, k)
        coh[:, i], res[:, i] = _split_norms(C, R, keep[:, idx])
    return VoteSplit(ks=list(groups), coherent=coh, residual=res)


def _loglog_fit(n: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of log v against log n (points with v > 0)."""
    ok = (v > 0) & np.isfinite(v)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(n[ok]), np.log(v[ok]), 1)
    return float(slope), float(intercept)


@dataclass
class NoiseScalingResult:
    """How the coherent vote and the noise grow with the number of voters n per group.

    ``rows``: one per (k, n, draw) with the RMS (over the p^3 entries (x, y, j)) of the coherent
    part and of the residual of the summed vote of n neurons drawn without replacement from group
    k (n = group size takes the whole group). ``per_n``: for each n, the root mean square over
    the groups with at least n neurons and over the draws. ``signal_exponent`` /
    ``noise_exponent``: least-squares slopes of log RMS against log n over ``per_n``. Independent
    random phases give noise ~ n^0.5 and signal ~ n^1; exactly symmetric phases make the whole
    group's noise vanish (docs/science.md 3.6).
    """

    rows: pd.DataFrame
    per_n: pd.DataFrame
    signal_exponent: float
    noise_exponent: float
    signal_intercept: float
    noise_intercept: float
    seed: int

    def to_frame(self) -> pd.DataFrame:
        return self.rows.copy()

    def to_json(self) -> dict[str, float]:
        return to_jsonable({"signal_exponent": self.signal_exponent, "noise_exponent": self.noise_exponent})


def _default_sizes(n_max: int, n_points: int = 10) -> list[int]:
    if n_max <= n_points:
        return list(range(1, n_max + 1))
    g = np.unique(np.round(np.geomspace(1, n_max, n_points)).astype(int))
    return [int(v) for v in g]


@torch.no_grad()
def noise_scaling(model, sizes: Sequence[int] | None = None, *, draws: int = 10, seed: int = 0,
                  spectrum: NeuronSpectrum | None = None, progress: bool = False) -> NoiseScalingResult:
    """Coherent and residual norms of group votes for subsets of n neurons, and the fitted exponents.

    The vote of neuron m is v_m(x, y, j) = post_m(x, y) W_out[j, m] (its whole contribution to
    logit j). In group k, the coherent part of a vote is its orthogonal projection (over
    (x, y, j) in Z_p^3) on the six functions cos / sin of w_k(x + y - j), w_k(2x - j),
    w_k(2y - j): the correct peak and the two ghosts of docs/science.md 3.6 (the sine terms make the
    subspace the full real span of the three Fourier modes, so a phase offset psi - 2 phi != 0
    still counts as coherent); the residual is the rest (the noise terms 2 cos(w j + 2 phi) and
    cos(w(x + y + j) + 4 phi), plus harmonics and DC for non-quadratic sigma).

    ``sizes`` default: about 10 geometric steps from 1 to the median non-empty group size; at each
    size n, ``draws`` seeded subsets per group with at least n neurons. Memory: one group's votes,
    n_k p^3 float64 values, at a time.
    """
    if draws < 1:
        raise InputError(f"draws must be >= 1, got {draws}")
    sp = neuron_spectrum(model) if spectrum is None else spectrum
    p = model.cfg.p
    groups = {k: idx for k, idx in frequency_groups(sp).items() if len(idx)}
    sizes_all = np.array([len(v) for v in groups.values()])
    if sizes is None:
        sizes = _default_sizes(int(np.median(sizes_all)))
    sizes = sorted({int(n) for n in sizes})
    if not sizes or sizes[0] < 1:
        raise InputError(f"sizes must be positive integers, got {sizes}")
    post = _post_all_pairs(model)
    W_out = weights64(model).W_out
    g = _gen(seed)
    recs: list[dict[str, Any]] = []
    for k, idx in tqdm(groups.items(), desc="noise scaling", disable=not progress):
        C, R = _group_parts(post, W_out, idx, p, k)
        ns = [n for n in sizes if n <= len(idx)]
        if not ns:
            continue
        masks = torch.cat([_random_subsets(draws, len(idx), n, g) for n in ns])
        coh, res = _split_norms(C, R, masks)
        for i, n in enumerate(ns):
            for d in range(draws):
                recs.append({"k": k, "n": n, "draw": d, "coherent": float(coh[i * draws + d]),
                             "residual": float(res[i * draws + d])})
    rows = pd.DataFrame(recs, columns=["k", "n", "draw", "coherent", "residual"])
    grp = rows.groupby("n")
    per_n = pd.DataFrame({
        "n": np.array(list(grp.groups.keys()), dtype=int),
        "groups": grp["k"].nunique().to_numpy(),
        "coherent_rms": np.sqrt(grp["coherent"].apply(lambda s: float((s**2).mean())).to_numpy()),
        "residual_rms": np.sqrt(grp["residual"].apply(lambda s: float((s**2).mean())).to_numpy()),
    })
    n_arr = per_n["n"].to_numpy(dtype=float)
    se, si = _loglog_fit(n_arr, per_n["coherent_rms"].to_numpy())
    ne, ni = _loglog_fit(n_arr, per_n["residual_rms"].to_numpy())
    return NoiseScalingResult(rows=rows, per_n=per_n, signal_exponent=se, noise_exponent=ne,
                              signal_intercept=si, noise_intercept=ni, seed=seed)


# ================================================================ the claim
@dataclass
class MajorityVoteResult(ClaimResult):
    """Claim ``majority_vote``: the function is a vote spread over many neurons whose noise cancels.

    Holds when all three hold:

    1. random halves keep accuracy: mean accuracy over draws with a random 50 % of the neurons kept
       (the rest zero-ablated) is >= ``HALF_ACCURACY_MIN`` = 0.95;
    2. no single frequency group can do it alone: the best accuracy with only one group N_k kept
       is <= ``SINGLE_GROUP_MAX`` = 0.6;
    3. breaking the phase symmetry hurts: for some order iota, keeping a half circle of iota * phi
       in every group loses >= ``PHASE_DROP_MIN`` = 0.1 accuracy against size-matched random halves
       drawn within the same groups (``phase_drop`` is the largest such loss).

    Measured (10 / 20 draws): the authors' standard ReLU model 0.998, 0.34, 0.58 (iota = 2); their
    Quad single-frequency model 0.995, 0.51, 0.22 (iota = 2). On quad_random, where a few huge
    neurons carry the function, criterion 1 fails (0.36; the top 5 % of neurons hold 99.6 % of the
    vote weight). ``top_vote_share`` (share of the total |alpha^2 beta| held by the top 5 % of
    neurons) is reported, not judged. ``reasons`` states each failed criterion in numbers. A
    network built on one frequency fails criterion 2; an untrained one, or one with sigma swapped
    to x, fails criterion 1 (the full model does not work).
    """

    full_accuracy: float = float("nan")
    half_accuracy: float = float("nan")
    half_accuracy_min: float = float("nan")
    best_single_group_accuracy: float = float("nan")
    best_single_group: int = 0
    phase_drop: float = float("nan")
    phase_drop_order: int = 0
    phase_drops: dict[str, float] = field(default_factory=dict)
    top_vote_share: float = float("nan")
    draws: int = 0
    exact: bool = True
    reasons: list[str] = field(default_factory=list)

    claim: ClassVar[str] = "majority_vote"
    key_metric: ClassVar[str] = "half_accuracy"

    def details(self) -> str:
        """One line with the three criteria."""
        return (f"random 50% keeps {self.half_accuracy:.3f} (need >= {HALF_ACCURACY_MIN}); best single group "
                f"k={self.best_single_group} alone {self.best_single_group_accuracy:.3f} (need <= {SINGLE_GROUP_MAX}); "
                f"phase-biased half loses {self.phase_drop:.3f} at iota={self.phase_drop_order} "
                f"(need >= {PHASE_DROP_MIN}); top 5% of neurons hold {self.top_vote_share:.1%} of the vote weight")


def _top_vote_share(sp: NeuronSpectrum, frac: float = 0.05) -> float:
    v = sp.vote_weight.abs()
    n = max(1, round(frac * len(v)))
    tot = float(v.sum())
    return float(v.sort(descending=True).values[:n].sum() / tot) if tot > 0 else float("nan")


def majority_vote_from(random: RandomAblationResult, groups: FrequencyGroupResult, phase: PhaseBiasedResult,
                       spectrum: NeuronSpectrum, *, full_accuracy: float, exact: bool = True) -> MajorityVoteResult:
    """The verdict from already computed experiments (``random`` must include keep = 0.5)."""
    halves = random.rows[np.isclose(random.rows["keep"], 0.5)]
    if halves.empty:
        raise InputError("the random ablation result has no keep = 0.5 rows")
    half = float(halves["accuracy"].mean())
    best = groups.max_keep_accuracy
    drops = {str(int(r.order)): float(r.difference) for r in phase.rows.itertuples()}
    order = max(drops, key=lambda o: drops[o])
    drop = drops[order]
    ok_half = half >= HALF_ACCURACY_MIN
    ok_group = not best > SINGLE_GROUP_MAX
    ok_phase = drop >= PHASE_DROP_MIN
    share = _top_vote_share(spectrum)
    reasons = []
    if not ok_half and full_accuracy < HALF_ACCURACY_MIN:
        reasons.append(f"the full model reaches only accuracy {full_accuracy:.3f} < {HALF_ACCURACY_MIN} "
                       f"(random 50% of neurons: {half:.3f}): there is no working vote to test")
    elif not ok_half:
        reasons.append(f"keeping a random 50% of neurons gives accuracy {half:.3f} < {HALF_ACCURACY_MIN} "
                       f"(full model {full_accuracy:.3f}): the function is not a vote spread over many neurons; "
                       f"the top 5% of neurons hold {share:.1%} of the total vote weight alpha^2 beta")
    if not ok_group:
        reasons.append(f"keeping frequency group k = {groups.best_keep_group} alone gives accuracy {best:.3f} "
                       f"> {SINGLE_GROUP_MAX}: one group does the job without the others")
    if not ok_phase:
        reasons.append(f"breaking the phase symmetry costs at most {drop:.3f} accuracy (order {order}) "
                       f"< {PHASE_DROP_MIN}: the phases are not what cancels the noise")
    return MajorityVoteResult(
        holds=bool(ok_half and ok_group and ok_phase), full_accuracy=full_accuracy, half_accuracy=half,
        half_accuracy_min=float(halves["accuracy"].min()), best_single_group_accuracy=best,
        best_single_group=groups.best_keep_group, phase_drop=drop, phase_drop_order=int(order),
        phase_drops=drops, top_vote_share=share, draws=int(len(halves)), exact=exact, reasons=reasons)


@torch.no_grad()
def majority_vote(model, *, draws: int = 8, orders: Sequence[int] = (1, 2, 3, 4), seed: int = 0,
                  max_pairs: int | None = None, spectrum: NeuronSpectrum | None = None,
                  table: ActivationTable | None = None) -> MajorityVoteResult:
    """Check the ``majority_vote`` claim (see :class:`MajorityVoteResult` for the thresholds).

    ``draws`` random halves and ``draws`` matched random halves per order; ``max_pairs`` evaluates
    on a seeded sample of unordered pairs (fast estimate for large p; None = exact).
    """
    sp = neuron_spectrum(model) if spectrum is None else spectrum
    tab = activation_table(model, max_pairs=max_pairs, seed=seed) if table is None else table
    acc = "accuracy"
    full = float(tab.evaluate(torch.ones(1, tab.d_mlp, dtype=torch.bool), metrics=acc).accuracy[0])
    rnd = random_ablation(model, (0.5,), draws=draws, seed=seed, table=tab, metrics=acc)
    grp = frequency_group_ablation(model, spectrum=sp, table=tab, metrics=acc)
    ph = phase_biased_ablation(model, orders, draws=draws, seed=seed, spectrum=sp, table=tab, metrics=acc)
    return majority_vote_from(rnd, grp, ph, sp, full_accuracy=full, exact=tab.exact)


# ================================================================ everything at once
@dataclass
class AblationSuite:
    """All ablation experiments on one model (what ``modadd ablate`` runs)."""

    random: RandomAblationResult
    groups: FrequencyGroupResult
    phase_biased: PhaseBiasedResult
    activation_swap: ActivationSwapResult
    noise_scaling: NoiseScalingResult | None
    claim: MajorityVoteResult

    def to_json(self) -> dict[str, Any]:
        """The JSON contract of ``modadd ablate``: keys ``random``, ``drop_group``, ``keep_group``,
        ``phase_biased``, ``activation_swap`` (name -> accuracy), ``activation_swap_loss`` (name ->
        loss), ``noise_scaling``."""
        g = self.groups.to_json()
        return {
            "random": self.random.to_json(),
            "drop_group": g["drop_group"],
            "keep_group": g["keep_group"],
            "phase_biased": self.phase_biased.to_json(),
            "activation_swap": self.activation_swap.to_json(),
            "activation_swap_loss": self.activation_swap.loss_json(),
            "noise_scaling": (self.noise_scaling.to_json() if self.noise_scaling is not None
                              else {"signal_exponent": None, "noise_exponent": None}),
        }

    def to_frame(self) -> pd.DataFrame:
        """The random ablation summary (the headline table); the other experiments have their own."""
        return self.random.summary()


def run_ablation_suite(model, *, seed: int = 0, draws: int = 10, phase_draws: int = 20,
                       keep: Sequence[float] = DEFAULT_KEEP_FRACTIONS, noise_draws: int = 10,
                       activations: Sequence[str] = SWAP_ACTIVATIONS, noise: bool = True,
                       max_pairs: int | None = None, progress: bool = False,
                       spectrum: NeuronSpectrum | None = None) -> AblationSuite:
    """Run every experiment (seeded) and the ``majority_vote`` verdict on one model.

    ``noise=False`` skips :func:`noise_scaling` (its memory grows like p^3; ``noise_scaling`` is
    then None). ``max_pairs`` evaluates the ablations on a seeded sample of unordered pairs
    (estimates, for large p; the activation swap always uses all pairs). ``spectrum``: the model's
    spectrum when already computed (else computed here, once)."""
    keep = list(keep)
    if not any(math.isclose(f, 0.5) for f in keep):
        keep.append(0.5)
    steps = tqdm(total=5, desc="ablation", disable=not progress)
    sp = neuron_spectrum(model) if spectrum is None else spectrum
    tab = activation_table(model, max_pairs=max_pairs, seed=seed)
    full = float(tab.evaluate(torch.ones(1, tab.d_mlp, dtype=torch.bool)).accuracy[0])
    rnd = random_ablation(model, keep, draws=draws, seed=seed, table=tab)
    steps.update()
    grp = frequency_group_ablation(model, spectrum=sp, table=tab)
    steps.update()
    ph = phase_biased_ablation(model, draws=phase_draws, seed=seed, spectrum=sp, table=tab)
    steps.update()
    sw = activation_swap(model, activations)
    steps.update()
    ns = noise_scaling(model, draws=noise_draws, seed=seed, spectrum=sp) if noise else None
    steps.update()
    steps.close()
    claim = majority_vote_from(rnd, grp, ph, sp, full_accuracy=full, exact=tab.exact)
    return AblationSuite(random=rnd, groups=grp, phase_biased=ph, activation_swap=sw, noise_scaling=ns, claim=claim)


#: Parameters of the quick ``majority_vote`` check run inside ``diagnose``: 4 random halves,
#: orders 1 and 2 with 4 matched draws each, at most 512 unordered pairs (exact for p <= 31;
#: about 0.1 s at p = 97, d_mlp = 1024).
QUICK_CHECK: dict[str, Any] = {"draws": 4, "orders": (1, 2), "max_pairs": 512}


def diagnosis_check(model, ctx) -> MajorityVoteResult:
    """``CLAIM_CHECKS`` entry of :mod:`mechinterp_modadd.diagnose`: :func:`majority_vote` with
    :data:`QUICK_CHECK`, reusing the diagnosis' spectrum (``ctx.spectrum``)."""
    return majority_vote(model, spectrum=ctx.spectrum, **QUICK_CHECK)
