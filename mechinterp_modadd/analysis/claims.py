"""The one registry of the paper's claims, model-level and run-level, in display order.

Each entry of :data:`CLAIMS` is a :class:`Claim`: its JSON name, its level, the ``check`` that
computes it from a shared context, the public claim function, its result class and its frozen
thresholds dataclass. Readers iterate the registry instead of wiring claims by hand:

- model-level checks run as ``check(model, ctx)`` with a diagnosis context (the spectrum, the
  all-pairs logits, accuracy and loss computed once, plus a free ``cache`` dict; see
  :class:`mechinterp_modadd.diagnose.DiagnosisContext`). ``diagnose`` runs ``checks("model")``; a
  check must not modify the model (use hooks, removed on exit, for interventions);
- run-level checks run as ``check(run)`` with a :class:`RunContext` (a checkpoint series and its
  progress measures) and may return None when the run lacks what they need (the lottery ticket
  needs step 0): :func:`run_claims` evaluates all of them for ``modadd track`` and ``report``.

Adding a claim: write its function and result class (with its thresholds) in an ``analysis``
module, then add one :func:`register` line, here at the end of its level or in an extension
module. Claims appear in the table, the JSON and the pages in registry order. Example::

    from mechinterp_modadd.analysis import claims

    claims.register("my_claim", lambda model, ctx: my_claim(ctx.spectrum), function=my_claim,
                    result=MyResult, thresholds=MyThresholds)
    claims.register("my_run_claim", lambda run: my_run_claim(run.measures), level="run")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..errors import ConfigError
from ..runtime import takes_device
from .base import ClaimResult, Thresholds
from .features import (
    FrequencyDiversificationResult,
    FrequencyDiversificationThresholds,
    MagnitudeHomogeneityResult,
    MagnitudeHomogeneityThresholds,
    SingleFrequencyResult,
    SingleFrequencyThresholds,
    frequency_diversification,
    magnitude_homogeneity,
    single_frequency,
)
from .grokking import GrokkingStagesThresholds, Stages, grokking_stages
from .logits import FlawedIndicatorResult, FlawedIndicatorThresholds, flawed_indicator
from .lottery import LotteryResult, LotteryThresholds, lottery_from_series
from .majority import MajorityVoteResult, MajorityVoteThresholds, diagnosis_check, majority_vote
from .phases import (
    PhaseAlignmentResult,
    PhaseAlignmentThresholds,
    PhaseSymmetryResult,
    PhaseSymmetryThresholds,
    phase_alignment,
    phase_symmetry,
)

__all__ = ["LEVELS", "Claim", "CLAIMS", "RunContext", "register", "claims", "checks", "run_claims"]

#: the two levels a claim can live at
LEVELS = ("model", "run")


@dataclass(frozen=True)
class Claim:
    """A registered claim: ``check`` computes it from a context (see the module docstring);
    ``function`` is the public claim function, ``result`` its result class and ``thresholds`` its
    frozen thresholds dataclass (None when unknown, e.g. for claims registered by name only)."""

    name: str
    level: str
    check: Callable[..., ClaimResult | None]
    function: Callable[..., ClaimResult] | None = None
    result: type[ClaimResult] | None = None
    thresholds: type[Thresholds] | None = None


@dataclass
class RunContext:
    """What run-level checks share: the checkpoint ``series`` (a
    :class:`~mechinterp_modadd.series.RunSeries`), its ``measures``
    (:func:`~mechinterp_modadd.analysis.grokking.progress_measures`) and a free ``cache``."""

    series: Any
    measures: pd.DataFrame
    cache: dict[str, Any] = field(default_factory=dict)


#: The registry: every claim by name, in registration order (:func:`claims` lists a level's).
CLAIMS: dict[str, Claim] = {}


def _level(level: str | None, *, allow_none: bool = False) -> str | None:
    if (level is None and allow_none) or level in LEVELS:
        return level
    raise ConfigError(f"claim level must be one of {LEVELS}, got {level!r}")


def register(name: str, check: Callable[..., ClaimResult | None], *, level: str = "model",
             function: Callable[..., ClaimResult] | None = None, result: type[ClaimResult] | None = None,
             thresholds: type[Thresholds] | None = None, replace: bool = False) -> Claim:
    """Add a claim to :data:`CLAIMS`, at the end of the order of its level (the one way to add one).

    ``check`` is ``check(model, ctx) -> ClaimResult`` for ``level="model"`` and
    ``check(run) -> ClaimResult | None`` for ``level="run"`` (see the module docstring).
    Raises :class:`ConfigError` for a name that is not an identifier (names are JSON keys), an
    unknown level, or a name already registered without ``replace=True`` (a replaced claim keeps
    its place in the order).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"claim names must be identifiers (they are JSON keys), got {name!r}")
    _level(level)
    if name in CLAIMS and not replace:
        raise ConfigError(f"claim {name!r} is already registered; pass replace=True to swap it")
    entry = Claim(name=name, level=level, check=check, function=function, result=result, thresholds=thresholds)
    CLAIMS[name] = entry
    return entry


def claims(level: str | None = None) -> list[Claim]:
    """The registered claims of one level (or all: model-level first, then run-level), in order."""
    levels = LEVELS if _level(level, allow_none=True) is None else (level,)
    return [c for lv in levels for c in CLAIMS.values() if c.level == lv]


def checks(level: str) -> dict[str, Callable[..., ClaimResult | None]]:
    """name -> check of the claims of one level, in order (a fresh dict: register to add one)."""
    return {c.name: c.check for c in claims(_level(level))}


@takes_device
def run_claims(series: Any, measures: pd.DataFrame, names: list[str] | None = None
               ) -> dict[str, ClaimResult | None]:
    """Every run-level claim (or the named ones) on one run: name -> result, or None when the run
    lacks what the claim needs."""
    registered = checks("run")
    names = list(registered) if names is None else list(names)
    unknown = [n for n in names if n not in registered]
    if unknown:
        raise ConfigError(f"unknown run-level claims {unknown}; registered: {', '.join(registered)}")
    ctx = RunContext(series=series, measures=measures)
    return {n: registered[n](ctx) for n in names}


# ------------------------------------------------------------------------------ the paper's claims
register("single_frequency", lambda model, ctx: single_frequency(ctx.spectrum), function=single_frequency,
         result=SingleFrequencyResult, thresholds=SingleFrequencyThresholds)
register("phase_alignment", lambda model, ctx: phase_alignment(ctx.spectrum), function=phase_alignment,
         result=PhaseAlignmentResult, thresholds=PhaseAlignmentThresholds)
register("phase_symmetry", lambda model, ctx: phase_symmetry(ctx.spectrum), function=phase_symmetry,
         result=PhaseSymmetryResult, thresholds=PhaseSymmetryThresholds)
register("frequency_diversification", lambda model, ctx: frequency_diversification(ctx.spectrum),
         function=frequency_diversification, result=FrequencyDiversificationResult,
         thresholds=FrequencyDiversificationThresholds)
register("magnitude_homogeneity", lambda model, ctx: magnitude_homogeneity(ctx.spectrum),
         function=magnitude_homogeneity, result=MagnitudeHomogeneityResult, thresholds=MagnitudeHomogeneityThresholds)
register("flawed_indicator", lambda model, ctx: flawed_indicator(ctx.logits, ctx.p), function=flawed_indicator,
         result=FlawedIndicatorResult, thresholds=FlawedIndicatorThresholds)
register("majority_vote", diagnosis_check, function=majority_vote, result=MajorityVoteResult,
         thresholds=MajorityVoteThresholds)

register("grokking_stages", lambda run: grokking_stages(run.measures), level="run", function=grokking_stages,
         result=Stages, thresholds=GrokkingStagesThresholds)
register("lottery_ticket", lambda run: lottery_from_series(run.series) if run.series.has_step0 else None,
         level="run", function=lottery_from_series, result=LotteryResult, thresholds=LotteryThresholds)
