"""The paper's claims on Nanda et al.'s one-layer transformer, through its neuron view.

The view (:mod:`mechinterp_modadd.families.transformer`) holds the MLP neurons at ``=``: the
pre-activation ``pre_m(x, y)`` on the p x p grid and the output direction ``W[m] = (W_out W_U)[m]``
over the p answers.

**Input and output phases of a transformer neuron.** The MLP of the paper's network sees
``theta_m[x] + theta_m[y]``; a transformer neuron sees a table ``pre_m(x, y)`` built by attention,
which need not be a sum. We split it as a two-way table: the grand mean, the main effects

    u_m[x] = mean_y pre_m(x, y) - mean,    v_m[y] = mean_x pre_m(x, y) - mean,

and an interaction (what attention's dependence on both tokens adds). ``u_m`` and ``v_m`` play the
part of the concatenated-input MLP's input weights (``additive_share`` reports the share of the
variance of ``pre_m`` they carry, per neuron and on average). In the real Fourier basis of Z_p,
at frequency k, ``u_m[x] ~ alpha_x cos(w_k x + phi_x)``, ``v_m[y] ~ alpha_y cos(w_k y + phi_y)``
and ``W[m][q] ~ beta cos(w_k q + psi)``: **phi_x and phi_y are the input phases, psi the output
phase through W_out W_U.** The claims are then those of the concatenated-input MLP
(:mod:`mechinterp_modadd.analysis.concat`), with the same formulas and thresholds:

- ``single_frequency``: u_m, v_m and W[m] share one dominant frequency carrying >= 0.8 of the
  input energy, for >= 0.7 of the neurons;
- ``single_frequency_2d`` (Nanda et al.'s reading, :func:`single_frequency_2d`): the best frequency
  of the 2D Fourier expansion of ``post_m(x, y)`` explains >= ``min_share`` (0.8) of its variance,
  for >= 0.7 of the neurons that are ever active;
- ``phase_alignment``: psi = phi_x + phi_y (the x + y wave a product of the two inputs makes peaks
  at q = x + y exactly then);
- ``input_phase_tie`` (measured, it decides the next claim's form): phi_x = phi_y, by the mean
  |sin(phi_x - phi_y)| <= 0.25 and >= 0.7 of the neurons within 0.3 rad. Attention treats x and y
  alike, so a transformer neuron's two input phases come out tied, as in the paper's MLP where
  they are equal by construction (and unlike an MLP on concatenated inputs);
- ``phase_symmetry``: the paper's form with phi = phi_x: within each frequency group the moments
  |mean exp(i iota phi)|, iota = 1..4, are consistent with uniform phases (Bonferroni Rayleigh
  p >= 0.01). With tied phases, the concat form's (1, -1) moment is 1 by construction and cannot
  test anything, which is why the paper's form is the one used here;
- ``frequency_diversification``: every frequency 1..K has neurons, in balanced numbers;
- ``majority_vote``: random halves of the neurons keep the accuracy, no frequency group alone
  suffices, and halves biased in iota phi (iota = 1..4) cost accuracy (by zero-ablating MLP
  neurons in the view, :func:`~mechinterp_modadd.analysis.family_ablation.view_majority_vote`);
- ``magnitude_homogeneity``: every neuron casts about the same vote alpha_x alpha_y beta.

Key frequencies (:func:`key_frequencies`): the frequencies whose share of the neurons' votes
(best 2D frequency of ``post``, weighted by its energy) is at least 1 / (2K) — the rule of
:meth:`~mechinterp_modadd.fourier2d.Fourier2D.key_frequencies_by_vote` — and Nanda's top-k by
summed energy; the result says whether they are a strict subset of 1..K.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import ConfigError
from ..fourier import wrap
from ..neurons import NeuronView
from .base import ClaimResult, Thresholds
from .concat import (
    ConcatSpectrum,
    concat_frequency_diversification,
    concat_magnitude_homogeneity,
    concat_phase_alignment,
    concat_single_frequency,
    concat_spectrum,
)
from .family_ablation import view_majority_vote
from .phases import phase_symmetry

__all__ = ["effective_inputs", "transformer_spectrum", "transformer_spectrum_of", "transformer_majority_vote",
           "SingleFrequency2DResult", "single_frequency_2d", "KeyFrequenciesResult", "key_frequencies",
           "PhaseTieResult", "input_phase_tie", "transformer_claims", "transformer_extras"]


def effective_inputs(view: NeuronView) -> tuple[Tensor, Tensor, Tensor]:
    """u [n, p], v [n, p] (main effects of ``pre`` over x and y) and the per-neuron share of the
    variance of ``pre`` they carry [n] (0 for a constant table)."""
    p, n = view.p, view.n
    grid = view.pre.T.reshape(n, p, p)  # [n, x, y]
    mean = grid.mean((1, 2), keepdim=True)
    u = grid.mean(2) - mean[:, :, 0]
    v = grid.mean(1) - mean[:, 0, :]
    total = (grid - mean).pow(2).sum((1, 2))
    additive = p * (u.pow(2).sum(1) + v.pow(2).sum(1))
    share = torch.where(total > 0, additive / total.clamp_min(1e-300), torch.zeros_like(total))
    return u, v, share


def transformer_spectrum(view: NeuronView) -> ConcatSpectrum:
    """The :class:`~mechinterp_modadd.analysis.concat.ConcatSpectrum` of (u, v, W) (module docstring)."""
    u, v, _ = effective_inputs(view)
    return concat_spectrum(u, v, view.W)


def transformer_spectrum_of(model: Any) -> ConcatSpectrum:
    """:func:`transformer_spectrum` of a transformer's full neuron view."""
    from ..families import neuron_view

    return transformer_spectrum(neuron_view(model))


def transformer_majority_vote(view: NeuronView, spectrum: ConcatSpectrum | None = None, *, seed: int = 0,
                              draws: int = 10) -> Any:
    """The majority vote by zero-ablating MLP neurons at ``=`` (groups k*, halves of iota phi)."""
    s = transformer_spectrum(view) if spectrum is None else spectrum
    angles = {f"{i} phi": i * s.phi_star for i in (1, 2, 3, 4)}
    return view_majority_vote(view, s.frequency, angles, vote_weight=s.vote_weight, draws=draws, seed=seed)


@dataclass(frozen=True)
class SingleFrequency2DThresholds(Thresholds):
    min_share: float = 0.8
    min_fraction: float = 0.7


@dataclass
class SingleFrequency2DResult(ClaimResult):
    """Claim ``single_frequency_2d``: each neuron's activation table is one frequency.

    Per neuron with a non-constant ``post_m(x, y)``: ``best_fraction`` = the largest fraction of its
    variance the eight terms of one frequency explain (:class:`~mechinterp_modadd.fourier2d.Fourier2D`).
    Holds when ``fraction_single`` = share of those neurons with best_fraction >= ``min_share`` (0.8)
    is >= ``min_fraction`` (0.7). ``n_dead`` neurons (constant tables, e.g. never active) are left
    out and counted. A random table scores about 8 / (p^2 - 1) per frequency.
    """

    fraction_single: float = 0.0
    median_best_fraction: float = 0.0
    n_active: int = 0
    n_dead: int = 0
    claim: ClassVar[str] = "single_frequency_2d"
    key_metric: ClassVar[str] = "fraction_single"


def single_frequency_2d(view: NeuronView, *, min_share: float = 0.8, min_fraction: float = 0.7
                        ) -> SingleFrequency2DResult:
    """Share of active neurons whose ``post`` table is explained by one frequency (see the result)."""
    if not 0 < min_share <= 1 or not 0 < min_fraction <= 1:
        raise ConfigError(f"min_share and min_fraction must be in (0, 1]; got {min_share}, {min_fraction}")
    f2 = view.fourier2d("post")
    active = f2.variance > 1e-12 * float(f2.variance.max().clamp_min(1e-300))
    best = f2.best_fraction[active]
    frac = float((best >= min_share).double().mean()) if best.numel() else 0.0
    return SingleFrequency2DResult(
        holds=bool(best.numel()) and frac >= min_fraction, fraction_single=frac,
        median_best_fraction=float(best.median()) if best.numel() else 0.0, n_active=int(active.sum()),
        n_dead=int((~active).sum()), thresholds=SingleFrequency2DThresholds(min_share, min_fraction))


@dataclass(frozen=True)
class KeyFrequencyThresholds(Thresholds):
    min_share: float | None = None
    max_fraction: float = 0.5


@dataclass
class KeyFrequenciesResult(ClaimResult):
    """Claim ``key_frequencies``: the neurons use a strict subset of the K frequencies.

    ``keys``: frequencies whose share of the votes (each active neuron's best 2D frequency of
    ``post``, weighted by its energy there) is >= ``min_share`` (default 1 / (2K)); ``vote_share``
    per k; ``top_by_energy``: Nanda et al.'s rule, the ``len(keys)`` frequencies with the largest
    energy summed over neurons. Holds when 1 <= len(keys) <= ``max_fraction`` K (default one half:
    a clear strict subset). A model whose neurons spread their votes over the frequencies (the
    paper's MLP, or a random network at initialisation) fails.
    """

    keys: list[int] = field(default_factory=list)
    n_keys: int = 0
    K: int = 0
    vote_share: list[float] = field(default_factory=list)
    top_by_energy: list[int] = field(default_factory=list)
    claim: ClassVar[str] = "key_frequencies"
    key_metric: ClassVar[str] = "n_keys"

    def summary(self) -> str:
        return (f"{self.claim}: {self.n_keys} of {self.K} frequencies {self.keys} -> "
                f"{'holds' if self.holds else 'fails'}")


def key_frequencies(view: NeuronView, *, min_share: float | None = None, max_fraction: float = 0.5
                    ) -> KeyFrequenciesResult:
    """The key frequencies of the view's neurons (see the result class)."""
    f2 = view.fourier2d("post")
    active = f2.variance > 1e-12 * float(f2.variance.max().clamp_min(1e-300))
    w = f2.energy.gather(1, (f2.best_frequency - 1)[:, None])[:, 0] * active.double()
    keys = f2.key_frequencies_by_vote(w, min_share)
    share = f2.vote_share(w)
    top = f2.key_frequencies_top(max(1, len(keys)))
    K = f2.K
    return KeyFrequenciesResult(holds=1 <= len(keys) <= max_fraction * K, keys=keys, n_keys=len(keys), K=K,
                                vote_share=share.tolist(), top_by_energy=sorted(top),
                                thresholds=KeyFrequencyThresholds(min_share, max_fraction))


@dataclass(frozen=True)
class PhaseTieThresholds(Thresholds):
    tie_radius: float = 0.3
    max_mean_abs_sin: float = 0.25
    min_fraction: float = 0.7


@dataclass
class PhaseTieResult(ClaimResult):
    """``input_phase_tie``: the two input phases of each neuron agree, phi_x = phi_y (at k*).

    d_m = wrap(phi_x,m - phi_y,m); holds when mean |sin d| <= ``max_mean_abs_sin`` (0.25) and at
    least ``min_fraction`` (0.7) of the neurons have |d| < ``tie_radius`` (0.3 rad); uniformly
    random, independent phases give 0.637 and 0.095 (the statistics of ``phase_alignment``).
    """

    mean_abs_sin: float = 0.0
    fraction_tied: float = 0.0
    claim: ClassVar[str] = "input_phase_tie"
    key_metric: ClassVar[str] = "mean_abs_sin"


def input_phase_tie(spectrum: ConcatSpectrum, *, tie_radius: float = 0.3, max_mean_abs_sin: float = 0.25,
                    min_fraction: float = 0.7) -> PhaseTieResult:
    """Whether phi_x = phi_y neuron by neuron (see the result class)."""
    d = wrap(spectrum.phi_star - spectrum.phi_y_star)
    mean_sin = float(d.sin().abs().mean())
    tied = float((d.abs() < tie_radius).double().mean())
    return PhaseTieResult(holds=mean_sin <= max_mean_abs_sin and tied >= min_fraction, mean_abs_sin=mean_sin,
                          fraction_tied=tied, thresholds=PhaseTieThresholds(tie_radius, max_mean_abs_sin,
                                                                            min_fraction))


@dataclass
class AdditiveShareResult(ClaimResult):
    """Reported with the phases (not a claim of the paper; ``holds`` is always True): the mean share
    of the variance of the neurons' pre-activation tables carried by their additive part
    u_m[x] + v_m[y], over neurons with a non-constant table. The input phases describe that part."""

    mean_additive_share: float = 0.0
    claim: ClassVar[str] = "additive_share"
    key_metric: ClassVar[str] = "mean_additive_share"


def transformer_extras(model: Any, view: NeuronView | None = None, spectrum: ConcatSpectrum | None = None
                       ) -> dict[str, Any]:
    """The results ``modadd diagnose`` shows for a transformer beyond the registered claims: key
    frequencies, input phase tie, additive share, Nanda et al.'s embedding spectrum and attention
    patterns at ``=``."""
    from ..families import neuron_view
    from ..transformer import all_pair_tokens
    from .transformer_views import attention_patterns, embedding_spectrum

    view = neuron_view(model) if view is None else view
    s = transformer_spectrum(view) if spectrum is None else spectrum
    _, _, share = effective_inputs(view)
    var = view.pre.var(0)
    nonconst = var > 1e-12 * float(var.max().clamp_min(1e-300))
    p = model.cfg.p
    with torch.no_grad():
        _, cache = model.run_with_cache(all_pair_tokens(p, device=model.cfg.device),
                                        names_filter="blocks.0.attn.hook_pattern")
    return {
        "key_frequencies": key_frequencies(view),
        "input_phase_tie": input_phase_tie(s),
        "additive_share": AdditiveShareResult(holds=True, mean_additive_share=float(share[nonconst].mean())
                                              if nonconst.any() else 0.0),
        "embedding_sparse": embedding_spectrum(model.W_E, p),
        "attention": attention_patterns(cache["blocks.0.attn.hook_pattern"][:, :, -1, :], p),
    }


def transformer_claims(view: NeuronView, *, seed: int = 0, draws: int = 10) -> list[ClaimResult]:
    """Every claim of the paper on a transformer's view, in display order (module docstring)."""
    spectrum = transformer_spectrum(view)
    _, _, share = effective_inputs(view)
    var = view.pre.var(0)
    nonconst = var > 1e-12 * float(var.max().clamp_min(1e-300))
    out: list[Any] = [
        single_frequency_2d(view),
        concat_single_frequency(spectrum),
        key_frequencies(view),
        concat_phase_alignment(spectrum),
        input_phase_tie(spectrum),
        phase_symmetry(spectrum),
        concat_frequency_diversification(spectrum),
        concat_magnitude_homogeneity(spectrum),
        transformer_majority_vote(view, spectrum, seed=seed, draws=draws),
        AdditiveShareResult(holds=True, mean_additive_share=float(share[nonconst].mean()) if nonconst.any()
                            else 0.0),
    ]
    return out
