"""The paper's claims on the concatenated-input MLP (family ``concat_mlp``), and Gromov's network.

The network (:mod:`mechinterp_modadd.families.concat_mlp`): neuron m sees u_m[x] + v_m[y] and
writes xi_m = W_out[:, m] into the logits. Its closed form is read from the weights, as for the
paper's MLP: :func:`concat_spectrum` decomposes u_m, v_m and xi_m in the real Fourier basis of
Z_p (docs/science.md section 10), giving per neuron and frequency k the
magnitudes alpha_x, alpha_y, beta and the phases phi_x, phi_y, psi (u_m[x] ~ alpha_x cos(w_k x +
phi_x), ...). The dominant frequency k* maximises the input energy of u and v together.

Why the claims change (quadratic sigma; the even part of any sigma behaves alike): with
a = alpha_x cos(w x + phi_x), b = alpha_y cos(w y + phi_y),

    sigma(a + b) = a^2 + b^2 + 2ab,
    2ab = alpha_x alpha_y [cos(w (x + y) + phi_x + phi_y) + cos(w (x - y) + phi_x - phi_y)],
    a^2 = alpha_x^2 / 2 [1 + cos(2 w x + 2 phi_x)],

and the neuron's vote for class q is that times beta cos(w q + psi). The term
cos(w (x + y) + phi_x + phi_y) cos(w q + psi) contains (1/2) cos(w (x + y - q) + phi_x + phi_y - psi),
a peak at q = x + y exactly when **psi = phi_x + phi_y** (phase alignment; the paper's psi = 2 phi is
the case phi_x = phi_y). Every other product is a "ghost" that only the population can cancel:
summed over the neurons of a frequency group it vanishes when the group's mean of
exp(i (a phi_x + b phi_y)) vanishes, for (a, b) in

    (1, 1)   the constant of sigma times the vote        (1, -1)  a^2 and b^2: peaks at q = 2x, 2y
    (2, 0), (0, 2)  the x - y product                    (2, 2)   the x + y + q product
    (3, 1), (1, 3)  a^2 and b^2: peaks at q = -2x, -2y

(**phase symmetry**: :func:`concat_phase_symmetry` tests these seven moments per group). For the
paper's MLP (phi_x = phi_y) the (1, -1) moment is 1 and cannot cancel: its ghosts at 2x and 2y are
the flawed indicator. Here they have the height

    ghost ratio ~ (1/4) sum_m (alpha_x^2 + alpha_y^2) beta cos(phi_x - phi_y) / sum_m alpha_x alpha_y beta,

1/2 for tied phases (the paper's value) and about 0 when phi_x - phi_y is spread out as in Gromov's
solution: :func:`concat_flawed_indicator` compares the measured ghost ratio with this prediction.

The claims (each result class states formula, thresholds and measured values):
:func:`concat_single_frequency`, :func:`concat_phase_alignment`, :func:`concat_phase_symmetry`,
:func:`concat_frequency_diversification`, :func:`concat_magnitude_homogeneity`,
:func:`concat_flawed_indicator`; the majority vote by ablation is
:func:`mechinterp_modadd.analysis.family_ablation.view_majority_vote`. The thresholds are the paper's
MLP's, unchanged.

Gromov's idealised network (:func:`gromov_network`): for each frequency, neurons with independent
uniform input phases phi_x, phi_y and output phase psi = phi_x + phi_y, sigma = x^2. Negative
controls: ``phases="concentrated"`` (phi_x, phi_y of each group in a narrow arc: phase symmetry
fails) and ``output="shuffled"`` (psi drawn independently: phase alignment fails).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import ConfigError, InputError
from ..families.concat_mlp import ConcatMLP, ConcatMLPConfig
from ..fourier import NeuronSpectrum, frequency_coefficients, magnitude_phase, wrap
from ..runtime import takes_device
from .base import ClaimResult, Thresholds
from .features import (
    FrequencyDiversificationResult,
    MagnitudeHomogeneityResult,
    SingleFrequencyResult,
    SingleFrequencyThresholds,
    frequency_diversification,
    magnitude_homogeneity,
)
from .logits import FlawedIndicatorResult, ghost_parts
from .phases import PhaseAlignmentResult, phase_alignment, random_phase_baseline, rayleigh_p_value

__all__ = [
    "ConcatSpectrum",
    "concat_spectrum",
    "concat_spectrum_of",
    "SYMMETRY_COMBINATIONS",
    "ConcatSingleFrequencyResult",
    "concat_single_frequency",
    "ConcatPhaseAlignmentResult",
    "concat_phase_alignment",
    "ConcatPhaseSymmetryThresholds",
    "ConcatPhaseSymmetryResult",
    "concat_phase_symmetry",
    "ConcatFrequencyDiversificationResult",
    "concat_frequency_diversification",
    "ConcatMagnitudeHomogeneityResult",
    "concat_magnitude_homogeneity",
    "ConcatFlawedIndicatorThresholds",
    "ConcatFlawedIndicatorResult",
    "concat_flawed_indicator",
    "predicted_ghost_ratio",
    "gromov_phases",
    "gromov_network",
]


# ----------------------------------------------------------------------------------- spectrum
@dataclass(frozen=True, kw_only=True)
class ConcatSpectrum(NeuronSpectrum):
    """The per-neuron Fourier decomposition of a concatenated-input MLP (float64, CPU).

    A :class:`~mechinterp_modadd.fourier.NeuronSpectrum` whose input side is u (``alpha``, ``phi``
    and ``coefficients_in`` describe u_m) and whose ``in_energy`` is the energy of u and v together
    (so k* = argmax_k (E_u + E_v), and ``share``, ``family_share`` and ``ipr_in`` read both input
    matrices); ``alpha_y``, ``phi_y`` and ``energy_x``, ``energy_y`` describe v and u apart. Two
    quantities are redefined for this family: :attr:`vote_weight` = alpha_x alpha_y beta at k*
    (the amplitude of the x + y peak) and :attr:`d` = wrap(psi - phi_x - phi_y).
    """

    alpha_y: Float[Tensor, "d_mlp K"]
    phi_y: Float[Tensor, "d_mlp K"]
    energy_x: Float[Tensor, "d_mlp K"]
    energy_y: Float[Tensor, "d_mlp K"]

    @property
    def alpha_x(self) -> Tensor:
        return self.alpha

    @property
    def phi_x(self) -> Tensor:
        return self.phi

    @property
    def alpha_y_star(self) -> Tensor:
        return self._at_kstar(self.alpha_y)

    @property
    def phi_y_star(self) -> Tensor:
        return self._at_kstar(self.phi_y)

    @property
    def d(self) -> Tensor:
        """wrap(psi - phi_x - phi_y) at k* (0 when the neuron's x + y peak is at q = x + y)."""
        return wrap(self.psi_star - self.phi_star - self.phi_y_star)

    @property
    def vote_weight(self) -> Tensor:
        """alpha_x alpha_y beta at k*: the height of the neuron's x + y term (quadratic sigma)."""
        return self.alpha_star * self.alpha_y_star * self.beta_star

    def to_frame(self):  # -> pandas.DataFrame
        """The columns of :meth:`NeuronSpectrum.to_frame` (``alpha``, ``phi`` of u) plus ``alpha_y``,
        ``phi_y``."""
        df = super().to_frame()
        df["alpha_y"] = self.alpha_y_star.numpy()
        df["phi_y"] = self.phi_y_star.numpy()
        return df


def concat_spectrum(u: Tensor, v: Tensor, xi: Tensor) -> ConcatSpectrum:
    """Decompose input weights u, v [d_mlp, p] (rows u_m, v_m) and output weights xi [d_mlp, p]."""
    u, v, xi = (torch.as_tensor(t).detach().to("cpu", torch.float64) for t in (u, v, xi))
    if u.ndim != 2 or u.shape != v.shape or u.shape != xi.shape:
        raise InputError(f"u, v and xi must all be [d_mlp, p]; got {tuple(u.shape)}, {tuple(v.shape)}, "
                         f"{tuple(xi.shape)}")
    p = u.shape[1]
    if p % 2 == 0:
        raise InputError(f"weights over Z_p with p = {p} (even): use an odd p")
    dc, c, s = frequency_coefficients(torch.stack([u, v, xi]))
    mag, ph = magnitude_phase(c, s, p)
    e = c * c + s * s
    return ConcatSpectrum(p=p, alpha=mag[0], phi=ph[0], beta=mag[2], psi=ph[2], in_energy=e[0] + e[1],
                          out_energy=e[2], in_dc=dc[0], out_dc=dc[2], alpha_y=mag[1], phi_y=ph[1],
                          energy_x=e[0], energy_y=e[1])


@torch.no_grad()
def concat_spectrum_of(obj) -> ConcatSpectrum:
    """The :class:`ConcatSpectrum` of a :class:`ConcatMLP` (its weights), or the spectrum itself."""
    if isinstance(obj, ConcatSpectrum):
        return obj
    if isinstance(obj, ConcatMLP):
        return concat_spectrum(obj.W_x, obj.W_y, obj.W_out.T)
    raise ConfigError(f"expected a ConcatMLP or a ConcatSpectrum, got {type(obj).__name__}")


def _as(cls, result):
    """``result`` (a paper-MLP result computed on a ConcatSpectrum) as the concat result class."""
    return cls(**{f.name: getattr(result, f.name) for f in fields(result)})


# ---------------------------------------------------------------------------- single frequency
@dataclass
class ConcatSingleFrequencyResult(SingleFrequencyResult):
    """Claim ``single_frequency`` on ``concat_mlp``: u_m, v_m and xi_m carry one frequency, the same.

    Per neuron, with E_k the energy of u_m and v_m together at k (DC excluded) and k* = argmax E_k:
    the family share (energy at k* and its harmonics r k*, r <= 5, over sum_k E_k) >= 0.8, and the
    dominant frequencies of u_m, v_m and xi_m apart all equal k* (``same_frequency_fraction``).
    Holds when at least 0.7 of the neurons are single-frequency (the paper-MLP thresholds).
    ``mean_ipr_in`` is the IPR of E (u and v together).
    """


@takes_device
def concat_single_frequency(model_or_spectrum, *, family_threshold: float = 0.8, min_fraction: float = 0.7,
                            max_harmonic: int = 5) -> ConcatSingleFrequencyResult:
    """Fraction of neurons whose u, v and xi share one frequency (see the result class)."""
    s = concat_spectrum_of(model_or_spectrum)
    if not 0 < family_threshold <= 1 or not 0 < min_fraction <= 1:
        raise ConfigError(f"family_threshold and min_fraction must be in (0, 1]; got {family_threshold}, "
                          f"{min_fraction}")
    k = s.frequency
    same = ((s.energy_x.argmax(1) + 1) == k) & ((s.energy_y.argmax(1) + 1) == k) & ((s.out_energy.argmax(1) + 1) == k)
    fam = s.family_share(max_harmonic)
    single = (fam >= family_threshold) & same
    frac = float(single.double().mean())
    return ConcatSingleFrequencyResult(
        holds=frac >= min_fraction, fraction_single=frac, mean_share=float(s.share.mean()),
        mean_family_share=float(fam.mean()), same_frequency_fraction=float(same.double().mean()),
        mean_ipr=float(s.ipr.mean()), mean_ipr_in=float(s.ipr_in.mean()), mean_ipr_out=float(s.ipr_out.mean()),
        n_neurons=s.d_mlp, thresholds=SingleFrequencyThresholds(family_threshold, min_fraction, max_harmonic))


# ----------------------------------------------------------------------------- phase alignment
@dataclass
class ConcatPhaseAlignmentResult(PhaseAlignmentResult):
    """Claim ``phase_alignment`` on ``concat_mlp``: psi_m = phi_x,m + phi_y,m (mod 2 pi).

    D_m = wrap(psi_m - phi_x,m - phi_y,m) at k* (module docstring: the x + y term peaks at q = x + y
    exactly when D = 0). Same statistics and thresholds as the paper's psi = 2 phi: mean |sin D| <=
    0.25 and at least 0.7 of the neurons with |D| < 0.3 rad; uniformly random phases give 0.637 and
    0.095.
    """


@takes_device
def concat_phase_alignment(model_or_spectrum, *, aligned_radius: float = 0.3, max_mean_abs_sin: float = 0.25,
                           min_fraction: float = 0.7) -> ConcatPhaseAlignmentResult:
    """Mean |sin D|, fraction |D| < 0.3 for D = wrap(psi - phi_x - phi_y) (see the result class)."""
    s = concat_spectrum_of(model_or_spectrum)
    return _as(ConcatPhaseAlignmentResult, phase_alignment(s, aligned_radius=aligned_radius,
                                                           max_mean_abs_sin=max_mean_abs_sin,
                                                           min_fraction=min_fraction))


# ------------------------------------------------------------------------------ phase symmetry
#: The combinations (a, b) whose moments |mean exp(i (a phi_x + b phi_y))| must vanish in each
#: frequency group for the ghosts of a quadratic sigma to cancel (module docstring).
SYMMETRY_COMBINATIONS: tuple[tuple[int, int], ...] = ((1, 1), (1, -1), (2, 0), (0, 2), (2, 2), (3, 1), (1, 3))


@dataclass(frozen=True)
class ConcatPhaseSymmetryThresholds(Thresholds):
    """Thresholds of ``phase_symmetry`` on ``concat_mlp``: Bonferroni Rayleigh p >= ``alpha``."""

    alpha: float = 0.01


@dataclass
class ConcatPhaseSymmetryResult(ClaimResult):
    """Claim ``phase_symmetry`` on ``concat_mlp``: within each frequency group the ghosts cancel.

    For each group N_k = {m : k*_m = k} and combination (a, b) of :data:`SYMMETRY_COMBINATIONS`, the
    moment |(1/n_k) sum_{m in N_k} exp(i (a phi_x,m + b phi_y,m))|, its random-phase baseline
    sqrt(pi) / (2 sqrt(n_k)) and the Rayleigh p-value of uniformity (as for the paper's MLP, where
    the angles are iota phi). Holds when no (group, combination) rejects uniformity at family-wise
    level ``alpha`` = 0.01 (Bonferroni over all tested pairs: ``corrected_p`` = min(1, n_tests min p)
    >= alpha). For the paper's MLP seen as a concat network (u = v) the (1, -1) angle is 0 in every
    neuron, so this claim fails there: its ghosts at 2x and 2y do not cancel (the flawed indicator).
    Uniform random phases (step 0) pass too: the check alone does not separate trained from
    untrained models. ``combinations`` lists (a, b); each ``per_frequency`` entry has one moment and
    p-value per combination.
    """

    combinations: list[list[int]] = field(default_factory=list)
    per_frequency: list[dict] = field(default_factory=list)
    mean_moments: list[float] = field(default_factory=list)
    mean_baseline: float = 0.0
    max_moment_over_baseline: float = 0.0
    min_p_value: float = 1.0
    corrected_p: float = 1.0
    n_tests: int = 0
    claim: ClassVar[str] = "phase_symmetry"
    key_metric: ClassVar[str] = "corrected_p"

    @property
    def moment_labels(self) -> list[str]:
        """``"(a, b)"`` per moment, for figures."""
        return [f"({a}, {b})" for a, b in self.combinations]

    def details(self) -> str:
        mm = " / ".join(f"{v:.3f}" for v in self.mean_moments)
        combos = ",".join(f"({a},{b})" for a, b in self.combinations)
        return (f"mean moment over k for (a, b) = {combos}: {mm} (random baseline {self.mean_baseline:.3f}); "
                f"need Bonferroni Rayleigh p >= {self.alpha:g}")


@takes_device
def concat_phase_symmetry(model_or_spectrum, *, combinations: Sequence[tuple[int, int]] = SYMMETRY_COMBINATIONS,
                          alpha: float = 0.01) -> ConcatPhaseSymmetryResult:
    """Per-frequency moments of a phi_x + b phi_y, baselines and Rayleigh p-values (see the result)."""
    s = concat_spectrum_of(model_or_spectrum)
    combos = [(int(a), int(b)) for a, b in combinations]
    if not combos or any(a == 0 and b == 0 for a, b in combos):
        raise ConfigError(f"combinations must be non-zero pairs (a, b), got {combos}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    K = s.K
    g = s.frequency - 1
    ab = torch.tensor(combos, dtype=torch.float64)  # [C, 2]
    ang = s.phi_star[:, None] * ab[None, :, 0] + s.phi_y_star[:, None] * ab[None, :, 1]  # [M, C]
    n = torch.bincount(g, minlength=K).to(torch.float64)
    c = torch.zeros(K, len(combos), dtype=torch.float64).index_add_(0, g, torch.cos(ang))
    sn = torch.zeros(K, len(combos), dtype=torch.float64).index_add_(0, g, torch.sin(ang))
    mom = torch.sqrt(c * c + sn * sn) / n.clamp(min=1)[:, None]
    mom = torch.where(n[:, None] > 0, mom, torch.full_like(mom, math.nan))
    base = random_phase_baseline(n)
    pv = rayleigh_p_value(n[:, None].expand_as(mom), torch.nan_to_num(mom, nan=0.0))
    pv = torch.where(n[:, None] > 0, pv, torch.full_like(pv, math.nan))
    present = n > 0
    n_tests = int(present.sum()) * len(combos)
    min_p = float(pv[present].min()) if n_tests else 1.0
    corrected = min(1.0, min_p * n_tests)
    per = [{"k": k + 1, "n": int(n[k]), "moments": mom[k].tolist(), "baseline": float(base[k]),
            "p_values": pv[k].tolist()} for k in range(K)]
    ratio = mom[present] / base[present][:, None]
    return ConcatPhaseSymmetryResult(
        holds=bool(corrected >= alpha), combinations=[list(t) for t in combos], per_frequency=per,
        mean_moments=[float(mom[present, i].mean()) if present.any() else math.nan for i in range(len(combos))],
        mean_baseline=float(base[present].mean()) if present.any() else math.nan,
        max_moment_over_baseline=float(ratio.max()) if ratio.numel() else math.nan,
        min_p_value=min_p, corrected_p=corrected, n_tests=n_tests,
        thresholds=ConcatPhaseSymmetryThresholds(alpha))


# ------------------------------------------------------------------ diversification, magnitudes
@dataclass
class ConcatFrequencyDiversificationResult(FrequencyDiversificationResult):
    """Claim ``frequency_diversification`` on ``concat_mlp``: the paper's definition (coverage of
    k = 1..K by the neurons' k*, balance min_k n_k / (M / K) >= 0.3) with k* from u and v together
    and ``vote_share`` weighted by alpha_x alpha_y beta."""


@takes_device
def concat_frequency_diversification(model_or_spectrum, *, min_balance: float = 0.3
                                     ) -> ConcatFrequencyDiversificationResult:
    """Neurons per dominant frequency, coverage and balance (see the result class)."""
    return _as(ConcatFrequencyDiversificationResult,
               frequency_diversification(concat_spectrum_of(model_or_spectrum), min_balance=min_balance))


@dataclass
class ConcatMagnitudeHomogeneityResult(MagnitudeHomogeneityResult):
    """Claim ``magnitude_homogeneity`` on ``concat_mlp``: every neuron casts about the same vote.

    Vote weight a_m = alpha_x,m alpha_y,m beta_m at k* (the height of the neuron's x + y term);
    aligned vote a_m cos(D_m) with D = psi - phi_x - phi_y. Holds when the coefficient of variation
    of both is <= 0.5 and the mean aligned vote is > 0 (the paper-MLP thresholds). Gromov's
    idealised network has cv 0 by construction.
    """


@takes_device
def concat_magnitude_homogeneity(model_or_spectrum, *, max_cv: float = 0.5) -> ConcatMagnitudeHomogeneityResult:
    """Coefficient of variation of the vote weight alpha_x alpha_y beta (see the result class)."""
    return _as(ConcatMagnitudeHomogeneityResult,
               magnitude_homogeneity(concat_spectrum_of(model_or_spectrum), max_cv=max_cv))


# ---------------------------------------------------------------------------- flawed indicator
def predicted_ghost_ratio(spectrum: ConcatSpectrum) -> float:
    """(1/4) sum_m (alpha_x^2 + alpha_y^2) beta cos(phi_x - phi_y) / sum_m alpha_x alpha_y beta, at k*
    (module docstring; 1/2 for tied phases, near 0 for spread phase differences). NaN when the
    denominator is 0."""
    s = spectrum
    ax, ay, b = s.alpha_star, s.alpha_y_star, s.beta_star
    den = float((ax * ay * b).sum())
    num = float(((ax * ax + ay * ay) * b * torch.cos(s.phi_star - s.phi_y_star)).sum()) / 4
    return num / den if den != 0 else math.nan


@dataclass(frozen=True)
class ConcatFlawedIndicatorThresholds(Thresholds):
    """Thresholds of ``flawed_indicator`` on ``concat_mlp``: |measured - predicted ghost ratio| <=
    ``tolerance`` (quadratic sigma; other activations: measured <= predicted + tolerance) and the
    correct logit above both ghosts on at least ``min_fraction_below`` of the pairs."""

    tolerance: float = 0.1
    min_fraction_below: float = 0.95


@dataclass
class ConcatFlawedIndicatorResult(FlawedIndicatorResult):
    """Claim ``flawed_indicator`` on ``concat_mlp``: the ghosts at 2x and 2y have the height the phases predict.

    The measured numbers are the paper's (centred logits; ghost_ratio = mean over pairs of
    (ghost - other) / (correct - other)). The derivation of the module docstring predicts

        predicted_ghost_ratio = (1/4) sum_m (alpha_x^2 + alpha_y^2) beta cos(phi_x - phi_y) / sum_m alpha_x alpha_y beta

    (at k*): 1/2 when phi_x = phi_y (the paper's flawed indicator), near 0 when the phase
    differences are spread (Gromov's solution: the flaw cancels). Holds when the correct logit is
    above both ghosts on >= 0.95 of the pairs and, for a quadratic sigma, |ghost_ratio -
    predicted_ghost_ratio| <= 0.1; for other activations (whose constants are smaller, as the
    paper's ReLU MLP shows) the prediction is an upper bound: ghost_ratio <= predicted + 0.1.
    At step 0 the correct logit is rarely above the ghosts, so the claim fails.
    """

    predicted_ghost_ratio: float = 0.0
    quadratic: bool = True

    def details(self) -> str:
        rel = "|ratio - predicted|" if self.quadratic else "ratio - predicted"
        return (f"ghost ratio {self.ghost_ratio:.3f} against predicted {self.predicted_ghost_ratio:.3f} "
                f"(need {rel} <= {self.tolerance:g}); correct above both ghosts on "
                f"{self.fraction_correct_above_ghosts:.1%} (need >= {self.min_fraction_below:g})")


def concat_flawed_indicator(model_or_spectrum, logits: Tensor, *, quadratic: bool | None = None,
                            tolerance: float = 0.1, min_fraction_below: float = 0.95) -> ConcatFlawedIndicatorResult:
    """Measured against predicted ghost ratio (see the result class). ``logits`` are the model's
    float64 all-pairs logits [p*p, p]; ``quadratic`` defaults to whether the model's activation is
    ``quad``."""
    s = concat_spectrum_of(model_or_spectrum)
    p = s.p
    logits = torch.as_tensor(logits).to(torch.float64)
    if quadratic is None:
        quadratic = getattr(model_or_spectrum, "activation", "quad") == "quad"
    g = ghost_parts(logits, p)
    num, den = g["ghost"] - g["other"], g["correct"] - g["other"]
    ratio = float((num / den).mean())
    mc, mg, mo = float(g["correct"].mean()), float(g["ghost"].mean()), float(g["other"].mean())
    rom = (mg - mo) / (mc - mo) if mc != mo else float("nan")
    above = float(((g["correct"] > g["ghost_x"]) & (g["correct"] > g["ghost_y"])).double().mean())
    ghosts_up = float(((g["ghost_x"] > g["other"]) & (g["ghost_y"] > g["other"])).double().mean())
    labels = (torch.arange(p)[:, None] + torch.arange(p)[None, :]).reshape(-1) % p
    acc = float((logits.argmax(-1) == labels).double().mean())
    pred = predicted_ghost_ratio(s)
    gap = ratio - pred
    ok_height = (abs(gap) <= tolerance) if quadratic else (gap <= tolerance)
    ok = bool(math.isfinite(ratio) and math.isfinite(pred) and ok_height and above >= min_fraction_below)
    return ConcatFlawedIndicatorResult(
        holds=ok, ghost_ratio=ratio, ratio_of_means=rom, mean_correct=mc, mean_ghost=mg, mean_other=mo,
        fraction_correct_above_ghosts=above, fraction_ghosts_above_other=ghosts_up,
        n_pairs=int(g["eligible"].sum()), accuracy=acc, predicted_ghost_ratio=pred, quadratic=bool(quadratic),
        thresholds=ConcatFlawedIndicatorThresholds(tolerance, min_fraction_below))


# ------------------------------------------------------------------------- Gromov's network
def gromov_phases(n_freqs: int, n_per_freq: int, kind: str = "random", seed: int = 0,
                  arc_width: float = 0.3) -> tuple[Tensor, Tensor]:
    """Input phases (phi_x, phi_y), each [n_freqs, n_per_freq]: ``"random"`` (independent uniform,
    Gromov's solution), ``"tied"`` (phi_y = phi_x, uniform: the paper's network written as a concat
    MLP) or ``"concentrated"`` (each in an arc of ``arc_width`` rad around 0: no phase symmetry)."""
    g = torch.Generator().manual_seed(int(seed))
    shape = (n_freqs, n_per_freq)
    if kind == "random":
        return 2 * math.pi * torch.rand(shape, generator=g, dtype=torch.float64), \
            2 * math.pi * torch.rand(shape, generator=g, dtype=torch.float64)
    if kind == "tied":
        phi = 2 * math.pi * torch.rand(shape, generator=g, dtype=torch.float64)
        return phi, phi.clone()
    if kind == "concentrated":
        return arc_width * (torch.rand(shape, generator=g, dtype=torch.float64) - 0.5), \
            arc_width * (torch.rand(shape, generator=g, dtype=torch.float64) - 0.5)
    raise ConfigError(f"phases must be 'random', 'tied' or 'concentrated', got {kind!r}")


def gromov_network(p: int, n_per_freq: int = 16, *, freqs: Sequence[int] | None = None, phases: str = "random",
                   output: str = "aligned", activation: str = "quad", alpha: float = 1.0, beta: float = 1.0,
                   seed: int = 0, arc_width: float = 0.3) -> ConcatMLP:
    """Gromov's analytic solution as a float64 :class:`ConcatMLP` (no training, no biases).

    Neuron (k, n): u[x] = alpha cos(w_k x + phi_x), v[y] = alpha cos(w_k y + phi_y),
    xi[q] = beta cos(w_k q + psi) with psi = phi_x + phi_y (``output="aligned"``) or psi uniform and
    independent of the inputs (``output="shuffled"``, the negative control of phase alignment).
    ``phases`` is a kind of :func:`gromov_phases` (``"concentrated"``: the negative control of phase
    symmetry). Neurons are ordered by frequency; ``freqs`` defaults to all k = 1..K.
    """
    K = (p - 1) // 2
    freqs = list(range(1, K + 1)) if freqs is None else [int(k) for k in freqs]
    if not freqs or any(not 1 <= k <= K for k in freqs):
        raise ConfigError(f"freqs must be a non-empty subset of 1..{K}, got {freqs}")
    if not isinstance(n_per_freq, int) or n_per_freq < 1:
        raise ConfigError(f"n_per_freq must be a positive integer, got {n_per_freq!r}")
    if output not in ("aligned", "shuffled"):
        raise ConfigError(f"output must be 'aligned' or 'shuffled', got {output!r}")
    phi_x, phi_y = gromov_phases(len(freqs), n_per_freq, phases, seed, arc_width)
    if output == "aligned":
        psi = phi_x + phi_y
    else:
        g = torch.Generator().manual_seed(int(seed) + 1)
        psi = 2 * math.pi * torch.rand(phi_x.shape, generator=g, dtype=torch.float64)
    k = torch.tensor(freqs, dtype=torch.float64)[:, None, None]
    j = torch.arange(p, dtype=torch.float64)[None, None, :]
    w = 2 * math.pi * k * j / p
    M = len(freqs) * n_per_freq
    u = alpha * torch.cos(w + phi_x[..., None])
    v = alpha * torch.cos(w + phi_y[..., None])
    xi = beta * torch.cos(w + psi[..., None])
    model = ConcatMLP(ConcatMLPConfig(p=p, d_mlp=M, activation=activation), seed=None).double()
    with torch.no_grad():
        model.mlp.W_x.copy_(u.reshape(M, p))
        model.mlp.W_y.copy_(v.reshape(M, p))
        model.mlp.W_out.copy_(xi.reshape(M, p).T)
    return model

