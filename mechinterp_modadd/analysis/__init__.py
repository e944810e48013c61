"""One module per claim family. Each public function takes a model (or a spectrum, or a checkpoint
series) and returns a small typed result: numbers, a verdict, and the protocol of
:class:`~mechinterp_modadd.analysis.base.Result` (``to_dict()`` a dict, ``to_frame()`` a pandas
table, ``to_json()`` JSON text). Every entry point that takes a model or a checkpoint series also takes
``device=`` (:func:`~mechinterp_modadd.runtime.takes_device`): where its heavy float64 passes run
(all-pairs forward passes, batched ablations, the Fourier transform), the rest staying on the
CPU; results are CPU tensors and tables either way. Each claim's thresholds are one frozen dataclass stored on its
result (``result.thresholds``). The claims, model-level and run-level, are registered in order in
:mod:`mechinterp_modadd.analysis.claims` (``from mechinterp_modadd.analysis import claims`` gives that
module: add a claim with ``claims.register``, list them with ``claims.claims()``). No plotting and
no printing here; figures live in ``mechinterp_modadd.plots``.

The public claim functions, importable from here::

    from mechinterp_modadd.analysis import single_frequency, majority_vote, grokking_stages
"""

from .base import ClaimResult, Result, Thresholds
from .claims import CLAIMS, Claim, RunContext, register, run_claims
from .features import frequency_diversification, magnitude_homogeneity, single_frequency
from .grokking import grokking_stages
from .logits import flawed_indicator
from .lottery import lottery_from_series, lottery_predictors
from .majority import majority_vote
from .phases import phase_alignment, phase_symmetry
from .restricted import restricted_loss

__all__ = [
    "Result", "Thresholds", "ClaimResult", "CLAIMS", "Claim", "RunContext", "register", "run_claims",
    "single_frequency", "phase_alignment", "phase_symmetry", "frequency_diversification",
    "magnitude_homogeneity", "flawed_indicator", "majority_vote", "grokking_stages", "lottery_from_series",
    "lottery_predictors", "restricted_loss",
]
