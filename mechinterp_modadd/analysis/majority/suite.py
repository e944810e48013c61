"""Every majority-vote experiment on one model at once (what ``modadd ablate`` runs)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from ...fourier import NeuronSpectrum, neuron_spectrum
from ..ablation import activation_table
from ..base import Result
from .claim import MajorityVoteResult, majority_vote_from, sample_size
from .experiments import (
    DEFAULT_KEEP_FRACTIONS,
    FrequencyGroupResult,
    PhaseBiasedResult,
    RandomAblationResult,
    frequency_group_ablation,
    phase_biased_ablation,
    random_ablation,
)
from .hooks import SWAP_ACTIVATIONS, ActivationSwapResult, activation_swap
from .noise import NoiseScalingResult, noise_scaling

__all__ = ["AblationSuite", "run_ablation_suite"]


@dataclass
class AblationSuite(Result):
    """All ablation experiments on one model (what ``modadd ablate`` runs)."""

    random: RandomAblationResult
    groups: FrequencyGroupResult
    phase_biased: PhaseBiasedResult
    activation_swap: ActivationSwapResult
    noise_scaling: NoiseScalingResult | None
    claim: MajorityVoteResult

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``modadd ablate``: keys ``random``, ``drop_group``, ``keep_group``,
        ``phase_biased``, ``activation_swap`` (name -> accuracy), ``activation_swap_loss`` (name ->
        loss), ``noise_scaling`` (the two exponents), plus ``majority_vote`` (the claim's
        ``to_dict``, the same object as in the ``diagnose`` JSON)."""
        g = self.groups.group_records()
        return {
            "random": self.random.summary_records(),
            "drop_group": g["drop_group"],
            "keep_group": g["keep_group"],
            "phase_biased": self.phase_biased.order_records(),
            "activation_swap": self.activation_swap.accuracies(),
            "activation_swap_loss": self.activation_swap.losses(),
            "noise_scaling": (self.noise_scaling.exponents() if self.noise_scaling is not None
                              else {"signal_exponent": None, "noise_exponent": None}),
            "majority_vote": self.claim.to_dict(),
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
    spectrum when already computed (else computed here, once). With the default draws
    the verdict's numbers equal those of ``diagnose`` (same seeded draws, see :mod:`.selectors`).
    A model on a GPU is copied to the CPU first: the suite computes on the CPU (float64 where it
    says so) on every device, so its numbers are the same wherever the model lives."""
    from ...runtime import cpu_model

    model = cpu_model(model)
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
    claim = majority_vote_from(rnd, grp, ph, sp, full_accuracy=full, **sample_size(tab))
    return AblationSuite(random=rnd, groups=grp, phase_biased=ph, activation_swap=sw, noise_scaling=ns, claim=claim)
