"""Noise cancellation measured directly: each group's summed vote split into its coherent part
and the residual noise, and how both grow with the number of voters (docs/science.md 3.6).

The vote of neuron m is v_m(x, y, j) = post_m(x, y) W_out[j, m]; post-activations come from the
shared forward pass (:func:`mechinterp_modadd.forward.hidden`, float64).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from ...errors import InputError
from ...forward import Weights64, hidden, unordered_pairs, weights64
from ...fourier import NeuronSpectrum, neuron_spectrum
from ...memory import current_budget
from ...runtime import takes_device
from ..ablation import frequency_groups
from ..base import Result, to_jsonable
from .selectors import generator, random_subsets

__all__ = ["VoteSplit", "NoiseScalingResult", "vote_split", "noise_scaling"]


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


def _group_post(w: Weights64, idx: Tensor, pairs: Tensor | None = None) -> Tensor:
    """float64 post-activations [P, n] of the neurons ``idx`` only (default: all p^2 pairs), through
    :func:`mechinterp_modadd.forward.hidden` on the sub-network of those neurons."""
    sub = Weights64(theta=w.theta[idx], W_out=w.W_out[:, idx], W_in=w.W_in[idx], W_E=w.W_E, act_fn=w.act_fn)
    return hidden(sub, pairs)[1]


def _explicit_fits(n: int, p: int, max_memory: int | None = None) -> bool:
    """Whether one group's explicit votes (n p^3 float64 values, about 3 copies) fit in half the budget."""
    numeric = isinstance(max_memory, (int, float)) and not isinstance(max_memory, bool)
    budget = max_memory if numeric else current_budget(max_memory)  # a number: bytes, no floor (tests)
    return 3 * 8 * n * p**3 <= budget // 2


def _group_gram(w: Weights64, idx: Tensor, p: int, k: int) -> tuple[Tensor, Tensor]:
    """Coherent coefficients C [n, 6] and the Gram matrix of the residual votes G_R [n, n] of group
    idx without forming the [n, p^3] votes (for large p).

    v_m(x, y, j) = post_m(x, y) xi_m[j] factorises, so <v_m, v_m'> = <post_m, post_m'> <xi_m, xi_m'>
    (sums over the p^2 pairs, computed on the unordered pairs with multiplicities), and each basis
    function cos/sin(a(x, y) - w j) splits by cos(a - b) = cos a cos b + sin a sin b into pair sums
    times the Fourier coefficients of xi_m at k. Then G_R = G_v - C C^T (R = votes - C basis with
    an orthonormal basis); residual norms come from masks^T G_R masks, clamped at 0, so they carry
    a rounding floor of about 1e-8 of the total vote instead of the 1e-15 of the explicit path.
    """
    pairs, weight = unordered_pairs(p)
    post = _group_post(w, idx, pairs)  # [P, n]
    xi = w.W_out[:, idx]  # [p, n]
    wk = 2 * math.pi * k / p
    j = torch.arange(p, dtype=torch.float64)
    cw, sw = torch.cos(wk * j) @ xi, torch.sin(wk * j) @ xi  # [n]
    x, y = pairs[:, 0].double(), pairs[:, 1].double()
    wp = post * weight[:, None]  # [P, n]: sums over ordered pairs
    a1, b1 = torch.cos(wk * (x + y)) @ wp, torch.sin(wk * (x + y)) @ wp
    a2 = 0.5 * (torch.cos(2 * wk * x) + torch.cos(2 * wk * y)) @ wp  # post is symmetric: the 2x and
    b2 = 0.5 * (torch.sin(2 * wk * x) + torch.sin(2 * wk * y)) @ wp  # 2y terms share coefficients
    c_xy, s_xy = a1 * cw + b1 * sw, b1 * cw - a1 * sw
    c_2, s_2 = a2 * cw + b2 * sw, b2 * cw - a2 * sw
    C = torch.stack([c_xy, s_xy, c_2, s_2, c_2, s_2], 1) / math.sqrt(p**3 / 2)
    G = (post.T @ wp) * (xi.T @ xi)
    return C, G - C @ C.T


def _gram_norms(C: Tensor, GR: Tensor, masks: Tensor, n_entries: int) -> tuple[Tensor, Tensor]:
    masks = masks.double()
    coh = (masks @ C).norm(dim=1) / math.sqrt(n_entries)
    res = ((masks @ GR) * masks).sum(1).clamp_min(0).sqrt()
    return coh, res / math.sqrt(n_entries)


def _group_split(w: Weights64, idx: Tensor, p: int, k: int, masks: Tensor,
                 max_memory: int | None = None) -> tuple[Tensor, Tensor]:
    """Coherent and residual RMS of the summed votes of group idx under each mask [B, n]: the
    explicit path when one group's votes fit in memory, else the Gram path (:func:`_group_gram`)."""
    if _explicit_fits(len(idx), p, max_memory):
        C, R = _group_parts(_group_post(w, idx), w.W_out, idx, p, k, post_is_group=True)
        return _split_norms(C, R, masks)
    C, GR = _group_gram(w, idx, p, k)
    return _gram_norms(C, GR, masks, p**3)


def _group_parts(post: Tensor, W_out: Tensor, idx: Tensor, p: int, k: int, *,
                 post_is_group: bool = False) -> tuple[Tensor, Tensor]:
    """Per-neuron coherent coefficients C [n, 6] and residual votes R [n, p^3] of group idx
    (``post`` holds all neurons, or only the group's when ``post_is_group``)."""
    gp = post if post_is_group else post[:, idx]
    votes = (gp.T[:, :, None] * W_out[:, idx].T[:, None, :]).reshape(len(idx), -1)  # [n, p^3]
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


@takes_device
@torch.no_grad()
def vote_split(model, keep: Tensor, *, spectrum: NeuronSpectrum | None = None,
               max_memory: int | None = None) -> VoteSplit:
    """For each keep mask [B, d_mlp] and frequency group k, the summed vote of the kept neurons
    of that group, V(x, y, j) = sum_m post_m(x, y) W_out[j, m], split into its projection on the
    coherent subspace (:func:`_coherent_basis`: the correct peak and the two ghosts) and the
    residual. Computed explicitly (not by a difference of squared norms), so an exact
    cancellation shows up at ~1e-15, when one group's votes (n_k p^3 values) fit in the memory
    budget; otherwise through their Gram matrix (see ``_group_gram``), with a rounding floor."""
    sp = neuron_spectrum(model) if spectrum is None else spectrum
    keep = torch.as_tensor(keep)
    keep = keep[None] if keep.ndim == 1 else keep
    w = weights64(model)
    groups = {k: idx for k, idx in frequency_groups(sp).items() if len(idx)}
    coh = torch.zeros(keep.shape[0], len(groups), dtype=torch.float64)
    res = torch.zeros_like(coh)
    for i, (k, idx) in enumerate(groups.items()):
        coh[:, i], res[:, i] = _group_split(w, idx, model.cfg.p, k, keep[:, idx], max_memory)
    return VoteSplit(ks=list(groups), coherent=coh, residual=res)


def _loglog_fit(n: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of log v against log n (points with v > 0)."""
    ok = (v > 0) & np.isfinite(v)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(n[ok]), np.log(v[ok]), 1)
    return float(slope), float(intercept)


@dataclass
class NoiseScalingResult(Result):
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

    def exponents(self) -> dict[str, float | None]:
        """The ``noise_scaling`` object of the ``modadd ablate`` JSON: the two fitted exponents."""
        return to_jsonable({"signal_exponent": self.signal_exponent, "noise_exponent": self.noise_exponent})

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({**self.exponents(), "signal_intercept": self.signal_intercept,
                            "noise_intercept": self.noise_intercept, "seed": self.seed,
                            "per_n": self.per_n, "rows": self.rows})


def _default_sizes(n_max: int, n_points: int = 10) -> list[int]:
    if n_max <= n_points:
        return list(range(1, n_max + 1))
    g = np.unique(np.round(np.geomspace(1, n_max, n_points)).astype(int))
    return [int(v) for v in g]


@takes_device
@torch.no_grad()
def noise_scaling(model, sizes: Sequence[int] | None = None, *, draws: int = 10, seed: int = 0,
                  spectrum: NeuronSpectrum | None = None, progress: bool = False,
                  max_memory: int | None = None) -> NoiseScalingResult:
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
    n_k p^3 float64 values, at a time; when that exceeds half the memory budget (``max_memory``
    or ``--max-memory``; e.g. p = 199 at the default width: 24 GB), the norms come from the
    group's Gram matrix instead (exact up to a rounding floor of ~1e-8 of the total vote).
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
    w = weights64(model)
    g = generator(seed)
    recs: list[dict[str, Any]] = []
    for k, idx in tqdm(groups.items(), desc="noise scaling", disable=not progress):
        ns = [n for n in sizes if n <= len(idx)]
        if not ns:
            continue
        masks = torch.cat([random_subsets(draws, len(idx), n, g) for n in ns])
        coh, res = _group_split(w, idx, p, k, masks, max_memory)
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
