"""The lottery ticket: inside each neuron the frequencies race, and the winner is predictable.

docs/science.md section 4: at small initialisation each (neuron, frequency) follows its own decoupled
flow (:mod:`mechinterp_modadd.analysis.ode`). Phases align first (D = 2 phi - psi -> 0), then the
magnitudes blow up; the frequency that blows up first takes the neuron. So the neuron's final
dominant frequency should be predictable from its step-0 weights alone.

Four predictors, each computed from the initial spectrum only and scored against every neuron's
final dominant frequency (argmax_k of the input energy at the last checkpoint):

- ``argmin_abs_d0``: argmin_k |D_k(0)| (best initial phase alignment; the paper's prediction for
  equal initial magnitudes);
- ``argmax_alpha0``: argmax_k alpha_k(0) (largest initial input magnitude);
- ``argmax_alpha_beta_cos_d0``: argmax_k alpha_k beta_k cos D_k at step 0 (the initial growth
  rate alpha'/(2p) of the flow);
- ``flow``: the decoupled flow integrated from each neuron's (alpha, phi, beta, psi) for every k;
  the frequency whose magnitude first reaches 100 x the neuron's largest initial magnitude
  (:func:`~mechinterp_modadd.analysis.ode.flow_race`).

Chance level is 1/K. The paper gives no success rate: measuring one is new. Our verdict
threshold (the paper has none): the lottery claim *holds* when the flow predictor is right for at
least :data:`FLOW_THRESHOLD` = 80 % of neurons.

One run is one seed, and the rate varies over seeds: measured at p = 23, Quad, 512 neurons, twelve
seeds per arm, the flow rate has a standard deviation of 0.020 over seeds under AdamW 5e-5 (mean
0.782) and 0.011 under SGD 0.1 (mean 0.921) (docs/science.md section 4). A single run therefore
carries ``flow_ci``, the 95 % Wilson interval of its rate over its neurons (half-width 0.035 at
0.79 with 512 neurons, the same size as the seed spread), and ``near_threshold`` is True when that
interval contains the threshold: the run's verdict is then within the seed spread of the
threshold, and the claim must be judged over seeds
(:func:`~mechinterp_modadd.analysis.sweep.lottery_verdicts`).

Angles: D = wrap(2 phi - psi), the sign used by the flow (the diagnostics' ``d`` is
wrap(psi - 2 phi) = -D; |D| is the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor

from ..errors import InputError
from ..fourier import NeuronSpectrum, wrap
from ..runtime import takes_device
from .base import ClaimResult, Thresholds
from .ode import flow_race

__all__ = ["FrequencyRace", "frequency_race", "LotteryResult", "lottery_predictors", "lottery_from_series",
           "predict_winners", "PREDICTORS", "FLOW_THRESHOLD", "LotteryThresholds"]

#: names of the four predictors, in table order
PREDICTORS = ("argmin_abs_d0", "argmax_alpha0", "argmax_alpha_beta_cos_d0", "flow")
#: flow success rate at or above which the lottery claim holds (our threshold)
FLOW_THRESHOLD = 0.8


# --------------------------------------------------------------------------- race of one neuron
@dataclass
class FrequencyRace:
    """One neuron's frequencies over training: ``frame`` has one row per (step, k) with alpha,
    beta, phi, psi and D = wrap(2 phi - psi); ``winner`` is the dominant frequency at the last
    step (1-based)."""

    neuron: int
    winner: int
    frame: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        return self.frame

    def pivot(self, column: str) -> pd.DataFrame:
        """[step x k] table of one column (e.g. ``"beta"`` or ``"D"``)."""
        return self.frame.pivot(index="step", columns="k", values=column)


@takes_device
def frequency_race(series: Any, neuron: int, steps: list[int] | None = None) -> FrequencyRace:
    """alpha, beta, phi, psi and D = wrap(2 phi - psi) of every frequency of ``neuron`` at every step.

    ``series`` is a :class:`~mechinterp_modadd.series.RunSeries` (spectra come from its cache).
    """
    steps = list(series.steps if steps is None else steps)
    if not steps:
        raise InputError("frequency_race needs at least one step")
    first = series.spectrum(steps[0])
    if not 0 <= neuron < first.d_mlp:
        raise InputError(f"neuron {neuron} out of range [0, {first.d_mlp})")
    K = first.K
    rows = []
    for s in steps:
        sp = series.spectrum(s)
        a, b, ph, ps = (t[neuron] for t in (sp.alpha, sp.beta, sp.phi, sp.psi))
        D = wrap(2 * ph - ps)
        rows.append(pd.DataFrame({"step": s, "k": range(1, K + 1), "alpha": a.numpy(), "beta": b.numpy(),
                                  "phi": ph.numpy(), "psi": ps.numpy(), "D": D.numpy()}))
    winner = int(series.spectrum(steps[-1]).frequency[neuron])
    return FrequencyRace(neuron=neuron, winner=winner, frame=pd.concat(rows, ignore_index=True))


# ----------------------------------------------------------------------------------- predictors
def predict_winners(initial: NeuronSpectrum, *, factor: float = 100.0, h: float = 0.01
                    ) -> dict[str, Int[Tensor, "M"]]:
    """The four predictions (1-based frequencies per neuron) from the step-0 spectrum alone."""
    D0 = wrap(2 * initial.phi - initial.psi)
    race = flow_race(initial.alpha, initial.phi, initial.beta, initial.psi, initial.p, factor=factor, h=h)
    return {
        "argmin_abs_d0": D0.abs().argmin(dim=1) + 1,
        "argmax_alpha0": initial.alpha.argmax(dim=1) + 1,
        "argmax_alpha_beta_cos_d0": (initial.alpha * initial.beta * torch.cos(D0)).argmax(dim=1) + 1,
        "flow": race.winner,
    }


@dataclass(frozen=True)
class LotteryThresholds(Thresholds):
    """Thresholds of ``lottery_ticket``: the flow predictor names the final frequency of at least
    ``min_flow`` of the neurons."""

    min_flow: float = FLOW_THRESHOLD


@dataclass
class LotteryResult(ClaimResult):
    """Success rates of the four winner predictors against the final dominant frequencies.

    Holds when ``flow`` >= ``min_flow`` = :data:`FLOW_THRESHOLD` (0.8). ``chance`` = 1/K.
    ``flow_ci``: 95 % Wilson interval of the flow rate over the neurons; ``near_threshold``: it
    contains ``min_flow``, so this one seed's verdict sits within the seed spread (module docstring).
    """

    n_neurons: int = 0
    K: int = 0
    chance: float = 0.0
    argmin_abs_d0: float = 0.0
    argmax_alpha0: float = 0.0
    argmax_alpha_beta_cos_d0: float = 0.0
    flow: float = 0.0
    initial_step: int | None = None
    final_step: int | None = None
    flow_ci: tuple[float, float] = (0.0, 0.0)
    near_threshold: bool = False
    predictions: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    claim: ClassVar[str] = "lottery_ticket"
    key_metric: ClassVar[str] = "flow"

    def summary(self) -> str:
        near = (f" (within the seed spread of {self.min_flow:g}: 95 % interval {self.flow_ci[0]:.3f}-"
                f"{self.flow_ci[1]:.3f}; judge the claim over seeds)") if self.near_threshold else ""
        return f"{super().summary()}{near}"

    def rates(self) -> dict[str, float]:
        """``{predictor: success rate, ..., "chance": 1/K}`` (the JSON ``lottery`` object)."""
        return {**{k: getattr(self, k) for k in PREDICTORS}, "chance": self.chance}

    def to_frame(self) -> pd.DataFrame:
        """The predictor table: predictor, success rate, chance, ratio to chance."""
        return pd.DataFrame({"predictor": list(PREDICTORS),
                             "success_rate": [getattr(self, k) for k in PREDICTORS],
                             "chance": self.chance,
                             "x_chance": [getattr(self, k) / self.chance for k in PREDICTORS]})

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.pop("predictions", None)
        return d


def lottery_predictors(initial: NeuronSpectrum, final: NeuronSpectrum, *, factor: float = 100.0,
                       h: float = 0.01) -> LotteryResult:
    """Score the predictors of :func:`predict_winners` against ``final.frequency``.

    ``predictions`` holds one row per neuron: the final frequency and each prediction.
    """
    if initial.p != final.p or initial.d_mlp != final.d_mlp:
        raise InputError(f"initial and final spectra differ in shape: p {initial.p} vs {final.p}, "
                         f"d_mlp {initial.d_mlp} vs {final.d_mlp}")
    pred = predict_winners(initial, factor=factor, h=h)
    target = final.frequency
    rates = {k: float((v == target).double().mean()) for k, v in pred.items()}
    frame = pd.DataFrame({"neuron": range(initial.d_mlp), "final_frequency": target.numpy(),
                          **{k: v.numpy() for k, v in pred.items()}})
    th = LotteryThresholds()
    lo, hi = _wilson(int((pred["flow"] == target).sum()), initial.d_mlp)
    return LotteryResult(holds=rates["flow"] >= th.min_flow, n_neurons=initial.d_mlp, K=initial.K,
                         chance=1.0 / initial.K, predictions=frame, thresholds=th, flow_ci=(lo, hi),
                         near_threshold=bool(lo <= th.min_flow <= hi), **rates)


def _wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95 % Wilson score interval of k / n."""
    if n <= 0:
        return math.nan, math.nan
    ph = k / n
    den = 1 + z * z / n
    centre = (ph + z * z / (2 * n)) / den
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


@takes_device
def lottery_from_series(series: Any, *, factor: float = 100.0, h: float = 0.01) -> LotteryResult:
    """:func:`lottery_predictors` between step 0 and the last checkpoint of a run series."""
    if not series.has_step0:
        raise InputError(f"{series.path}: the lottery predictors need the step-0 checkpoint; the first "
                         f"checkpoint is at step {series.first_step}")
    res = lottery_predictors(series.spectrum(0), series.spectrum(series.last_step), factor=factor, h=h)
    res.initial_step, res.final_step = 0, series.last_step
    return res

