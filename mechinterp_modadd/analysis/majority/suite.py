"""Every majority-vote experiment on one model at once (what ``modadd ablate`` runs)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from ...errors import InputError
from ...fourier import NeuronSpectrum, neuron_spectrum
from ...runtime import takes_device
from ..ablation import activation_table
from ..base import Result
from ..sampling import PairSample, ablation_pair_count
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

    @property
    def sample(self) -> PairSample | None:
        """The pairs the ablations used (all of them, or a seeded sample)."""
        return self.random.sample

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of ``modadd ablate``: keys ``random``, ``drop_group``, ``keep_group``,
        ``phase_biased``, ``activation_swap`` (name -> accuracy), ``activation_swap_loss`` (name ->
        loss), ``noise_scaling`` (the two exponents), plus ``majority_vote`` (the claim's
        ``to_dict``, the same object as in the ``diagnose`` JSON). When the pairs were sampled
        (large p) also ``sampling`` (``exact``, ``n_pairs`` of ``population`` unordered pairs,
        ``n_eff``, ``seed``, ``confidence``), ``accuracy_ci`` = [low, high] in the entries and
        ``activation_swap_ci`` (name -> [low, high]), 95 % Wilson intervals."""
        g = self.groups.group_records()
        extra: dict[str, Any] = {}
        if self.sample is not None and not self.sample.exact:
            extra["sampling"] = self.sample.to_json()
        if self.activation_swap.intervals() is not None:
            extra["activation_swap_ci"] = self.activation_swap.intervals()
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
        } | extra

    def to_frame(self) -> pd.DataFrame:
        """The random ablation summary (the headline table); the other experiments have their own."""
        return self.random.summary()


@takes_device
def run_ablation_suite(model, *, seed: int = 0, draws: int = 10, phase_draws: int = 20,
                       keep: Sequence[float] = DEFAULT_KEEP_FRACTIONS, noise_draws: int = 10,
                       activations: Sequence[str] = SWAP_ACTIVATIONS, noise: bool = True,
                       max_pairs: int | None | str = "auto", progress: bool = False,
                       spectrum: NeuronSpectrum | None = None, max_memory: int | None = None) -> AblationSuite:
    """Run every experiment (seeded) and the ``majority_vote`` verdict on one model.

    ``noise=False`` skips :func:`noise_scaling` (``noise_scaling`` is then None). ``max_pairs``:
    ``"auto"`` (default) uses all unordered pairs when the experiments fit the memory budget
    (``max_memory`` or ``--max-memory``) and the operation limit of
    :func:`~mechinterp_modadd.analysis.sampling.ablation_pair_count`, else a seeded sample of the
    size it gives (always exact up to p = 97 at the default width); an integer samples that many;
    None forces all pairs. The sample (size, intervals) is recorded in every result and in
    :attr:`AblationSuite.sample`; the activation swap uses the same pairs. ``spectrum``: the model's
    spectrum when already computed (else computed here, once). With the default draws
    the verdict's numbers equal those of ``diagnose`` (same seeded draws, see :mod:`.selectors`).
    A model on a GPU is copied to the CPU first: the suite computes on the CPU (float64 where it
    says so) on every device, so its numbers are the same wherever the model lives."""
    from ...runtime import cpu_model

    model = cpu_model(model)
    keep = list(keep)
    if not any(math.isclose(f, 0.5) for f in keep):
        keep.append(0.5)
    if isinstance(max_pairs, str):
        if max_pairs != "auto":
            raise InputError(f"max_pairs must be 'auto', None or a positive integer, got {max_pairs!r}")
        n_masks = len(keep) * draws + 4 * (1 + phase_draws) + 2 + len(activations)
        max_pairs = ablation_pair_count(model.cfg.p, model.cfg.d_mlp, n_masks, max_memory=max_memory)
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
    sizes = sample_size(tab)
    del tab  # the swap builds one table per activation
    sw = activation_swap(model, activations, max_pairs=max_pairs, seed=seed)
    steps.update()
    ns = noise_scaling(model, draws=noise_draws, seed=seed, spectrum=sp, max_memory=max_memory) if noise else None
    steps.update()
    steps.close()
    claim = majority_vote_from(rnd, grp, ph, sp, full_accuracy=full, **sizes)
    return AblationSuite(random=rnd, groups=grp, phase_biased=ph, activation_swap=sw, noise_scaling=ns, claim=claim)
