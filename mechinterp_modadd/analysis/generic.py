"""Claims computed from the neuron view alone, for families without a closed form in their weights.

A family whose neurons cannot be read from its weights in closed form (a transformer: its MLP
neurons see attention outputs, not one-hot rows) still has a
:class:`~mechinterp_modadd.neurons.NeuronView`; these functions judge it from the view:

- :func:`view_single_frequency`: the claim ``single_frequency`` by the 2D Fourier analysis of the
  neurons' activations over the p x p grid (docs/science.md section 10.1);
- :func:`view_key_frequencies`: key frequencies by our vote rule or as the top k by energy;
- the majority vote by ablation is :func:`mechinterp_modadd.analysis.family_ablation.view_majority_vote`.

The two MLP families keep their closed-form definitions (docs/science.md section 10.3); the numbers
below on them are for orientation. A family registers a view-based definition with
:func:`mechinterp_modadd.analysis.claims.register_family_check`, e.g.::

    claims.register_family_check("single_frequency", "transformer",
                                 lambda model, ctx: view_single_frequency(ctx.view),
                                 how="2D Fourier: >= 70% of neurons with >= 0.5 of their variance at one k")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import ConfigError
from ..neurons import NeuronView
from .base import ClaimResult, Thresholds

__all__ = ["ViewSingleFrequencyThresholds", "ViewSingleFrequencyResult", "view_single_frequency",
           "view_key_frequencies"]


@dataclass(frozen=True)
class ViewSingleFrequencyThresholds(Thresholds):
    """Thresholds of :func:`view_single_frequency`: a neuron is single-frequency when one frequency
    explains >= ``min_explained`` of its variance; the claim holds when >= ``min_fraction`` are."""

    min_explained: float = 0.5
    min_fraction: float = 0.7


@dataclass
class ViewSingleFrequencyResult(ClaimResult):
    """Claim ``single_frequency`` from the neuron view: each neuron is a function of one frequency.

    Per neuron, the 2D Fourier fraction of variance that its best frequency explains (the eight
    terms of frequency k: linear in x, linear in y, and the products; docs/science.md section 10.1),
    read on the ``which`` activations ("pre" by default: for an MLP the pre-activation is where the
    input features live; the post-activation adds the activation's harmonics). A neuron is
    single-frequency when that fraction is >= ``min_explained`` (0.5); the claim holds when at least
    ``min_fraction`` (0.7) of the neurons are. ``median`` and ``p10`` summarise the fractions;
    ``counts`` is the number of neurons per best frequency (k = 1..K).

    Measured on pre-activations (fraction of neurons >= 0.5): the shipped standard run (mlp) 0.902,
    a trained gromov network (concat_mlp, p = 23) 0.871, both at step 0 0.014 and 0.000 (a random
    table spreads its variance, about 8 / (p^2 - 1) per frequency).
    """

    fraction_single: float = 0.0
    median: float = 0.0
    p10: float = 0.0
    which: str = "pre"
    n_neurons: int = 0
    counts: list[int] = field(default_factory=list)
    claim: ClassVar[str] = "single_frequency"
    key_metric: ClassVar[str] = "fraction_single"

    def details(self) -> str:
        return (f"2D Fourier of the {self.which}-activations: median {self.median:.3f}, 10th pct {self.p10:.3f} "
                f"of a neuron's variance at its best frequency (need >= {self.min_fraction:g} of neurons with >= "
                f"{self.min_explained:g})")


def view_single_frequency(view: NeuronView, *, which: str = "pre", min_explained: float = 0.5,
                          min_fraction: float = 0.7) -> ViewSingleFrequencyResult:
    """The share of neurons one frequency explains (see :class:`ViewSingleFrequencyResult`)."""
    import torch

    if not 0 < min_explained <= 1 or not 0 < min_fraction <= 1:
        raise ConfigError(f"min_explained and min_fraction must be in (0, 1]; got {min_explained}, {min_fraction}")
    f = view.fourier2d(which)
    best = f.best_fraction
    frac = float((best >= min_explained).double().mean()) if view.n else 0.0
    s = f.summary() if view.n else {"median": float("nan"), "p10": float("nan")}
    counts = torch.bincount(f.best_frequency - 1, minlength=f.K).tolist() if view.n else [0] * f.K
    return ViewSingleFrequencyResult(
        holds=bool(frac >= min_fraction), fraction_single=frac, median=s["median"], p10=s["p10"], which=which,
        n_neurons=view.n, counts=[int(c) for c in counts],
        thresholds=ViewSingleFrequencyThresholds(min_explained, min_fraction))


def view_key_frequencies(view: NeuronView, *, rule: str = "vote", k: int | None = None, which: str = "post",
                         min_share: float | None = None) -> list[int]:
    """Key frequencies of the view's ``which`` activations: ``rule="vote"`` (each neuron votes for its
    best frequency with its energy there; share >= ``min_share``, default 1 / (2K)) or ``rule="top"``
    (the ``k`` frequencies with the most energy summed over neurons, largest first)."""
    f = view.fourier2d(which)
    if rule == "vote":
        return f.key_frequencies_by_vote(min_share=min_share)
    if rule == "top":
        if k is None:
            raise ConfigError("rule='top' needs k, the number of key frequencies")
        return f.key_frequencies_top(k)
    raise ConfigError(f"rule must be 'vote' or 'top', got {rule!r}")
