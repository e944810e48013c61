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
from a ``torch.Generator`` seeded from the ``seed`` argument and a label of the batch of draws
(:mod:`.selectors`), so ``diagnose`` and ``modadd ablate`` print the same numbers for the claim.

The sub-package, one job a file: :mod:`.selectors` (which neurons: seeded subsets and selectors),
:mod:`.experiments` (random, frequency-group and phase-biased ablations), :mod:`.hooks`
(interventions on the running model: the activation swap and the hook helpers), :mod:`.noise`
(coherent part and noise of group votes), :mod:`.claim` (thresholds, verdict, the quick check
of ``diagnose``) and :mod:`.suite` (everything at once). Every public name is importable from
``mechinterp_modadd.analysis.majority``.
"""

from __future__ import annotations

from .claim import (
    HALF_ACCURACY_MIN,
    PHASE_DROP_MIN,
    QUICK_CHECK,
    SINGLE_GROUP_MAX,
    MajorityVoteResult,
    MajorityVoteThresholds,
    diagnosis_check,
    majority_vote,
    majority_vote_from,
)
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
from .noise import NoiseScalingResult, VoteSplit, noise_scaling, vote_split
from .selectors import generator, random_subsets, random_within_groups
from .suite import AblationSuite, run_ablation_suite

#: pre-split private names, kept importable
_random_within_groups = random_within_groups
_random_subsets = random_subsets

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
    "MajorityVoteThresholds",
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
    "generator",
    "random_subsets",
    "random_within_groups",
]
