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

Network families. A model-level claim's ``check`` is its definition on the paper's MLP (family
``"mlp"``). Its definition on another family is added with :func:`register_family_check` (a check
and one line saying how it is computed), or the family is declared to have none with
``undefined="the reason"``; ``checks("model", family=...)`` gives every claim's check for one
family, a claim without a definition there answering :class:`UndefinedClaim` (no verdict, with the
reason). :func:`claim_table` is the table "claim x family" (docs/science.md section 10.3).
Per family, :func:`register_family_spectrum` names the closed-form decomposition the diagnosis
context carries (``ctx.spectrum``; None for a family without one, which then reads ``ctx.view``).
Example (a transformer family registering a view-based claim and declaring another undefined)::

    claims.register_family_check("single_frequency", "transformer",
                                 lambda model, ctx: my_2d_single_frequency(ctx.view),
                                 how="2D Fourier variance explained by one frequency, from the view")
    claims.register_family_check("phase_alignment", "transformer", undefined="no input phase ...")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

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
from .per_family import FAMILY_SPECTRA, family_spectrum, register_family_spectrum
from .phases import (
    PhaseAlignmentResult,
    PhaseAlignmentThresholds,
    PhaseSymmetryResult,
    PhaseSymmetryThresholds,
    phase_alignment,
    phase_symmetry,
)

__all__ = ["LEVELS", "Claim", "CLAIMS", "RunContext", "register", "claims", "checks", "run_claims",
           "FamilyCheck", "UndefinedClaim", "register_family_check", "register_family_spectrum",
           "family_spectrum", "FAMILY_SPECTRA", "claim_table",
           "FAMILY_EXTRAS", "register_family_extras"]

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
    how: str = ""
    families: dict[str, FamilyCheck] = field(default_factory=dict)


@dataclass(frozen=True)
class FamilyCheck:
    """A claim's definition on one network family: ``check(model, ctx)`` and how it is computed, or
    ``check=None`` and the ``undefined`` reason."""

    family: str
    check: Callable[..., ClaimResult | None] | None
    how: str = ""
    undefined: str = ""


@dataclass
class UndefinedClaim(ClaimResult):
    """A claim that has no definition on the model's family: no verdict (``holds`` is None), the
    ``reason`` says why. ``diagnose`` shows it as "undefined" and leaves it out of ``holds_all``."""

    holds: bool | None = None
    name: str = ""
    family: str = ""
    reason: str = ""
    defined: bool = False
    claim: ClassVar[str] = "undefined"
    key_metric: ClassVar[str] = ""

    def details(self) -> str:
        return f"undefined for family {self.family!r}: {self.reason}"


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
             thresholds: type[Thresholds] | None = None, replace: bool = False, how: str = "") -> Claim:
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
    families = CLAIMS[name].families if name in CLAIMS else {}
    entry = Claim(name=name, level=level, check=check, function=function, result=result, thresholds=thresholds,
                  how=how, families=families)
    CLAIMS[name] = entry
    return entry


def register_family_check(name: str, family: str, check: Callable[..., ClaimResult | None] | None = None, *,
                          how: str = "", undefined: str = "", replace: bool = False) -> FamilyCheck:
    """Define the claim ``name`` on ``family``: ``check(model, ctx)`` (``check(run)`` for a run-level
    claim) with a line
    ``how`` it is computed, or ``undefined="why"`` (no check) when the claim has no meaning there.
    ``family="mlp"`` is the claim's own ``check`` and cannot be redefined here."""
    if name not in CLAIMS:
        raise ConfigError(f"no claim {name!r}; registered: {', '.join(CLAIMS)}")
    if family == "mlp":
        raise ConfigError("a claim's check on family 'mlp' is the one given to register()")
    if (check is None) == (not undefined):
        raise ConfigError("register_family_check needs either a check or an undefined reason, not both")
    fams = CLAIMS[name].families
    if family in fams and not replace:
        raise ConfigError(f"claim {name!r} already has a definition on family {family!r}; pass replace=True")
    fams[family] = FamilyCheck(family=family, check=check, how=how, undefined=undefined)
    return fams[family]


def _undefined_check(name: str, family: str, reason: str) -> Callable[..., UndefinedClaim]:
    return lambda *args: UndefinedClaim(name=name, family=family, reason=reason)


def _family_check(c: Claim, family: str) -> Callable[..., ClaimResult | None]:
    if family == "mlp":
        return c.check
    fc = c.families.get(family)
    if fc is None:
        return _undefined_check(c.name, family, "no definition registered for this family")
    if fc.check is None:
        return _undefined_check(c.name, family, fc.undefined)
    return fc.check


#: family -> function(model, ctx) -> {name: result}: what ``diagnose`` shows for the family beside the
#: registered claims (each result has ``summary()`` and ``to_dict()``); see :func:`register_family_extras`
FAMILY_EXTRAS: dict[str, Callable[..., dict[str, Any]]] = {}


def register_family_extras(family: str, fn: Callable[..., dict[str, Any]]) -> None:
    """Name the family's own results for ``diagnose`` (e.g. a transformer's embedding spectrum and
    attention patterns): ``fn(model, ctx)`` returns ``{name: result}``, shown after the claims and
    stored under ``extras`` in the JSON."""
    FAMILY_EXTRAS[family] = fn


def claim_table(families: list[str] | None = None) -> pd.DataFrame:
    """The table "claim x family": one row per model-level claim, one column per family, each cell
    how the claim is computed there or "undefined: why"."""
    fams = ["mlp"] + sorted({f for c in claims("model") for f in c.families}) if families is None else families
    rows = []
    for c in claims("model"):
        row = {"claim": c.name}
        for f in fams:
            if f == "mlp":
                row[f] = c.how or "registered check"
            elif f in c.families:
                fc = c.families[f]
                row[f] = fc.how if fc.check is not None else f"undefined: {fc.undefined}"
            else:
                row[f] = "undefined: no definition registered"
        rows.append(row)
    return pd.DataFrame(rows, columns=["claim", *fams])


def claims(level: str | None = None) -> list[Claim]:
    """The registered claims of one level (or all: model-level first, then run-level), in order."""
    levels = LEVELS if _level(level, allow_none=True) is None else (level,)
    return [c for lv in levels for c in CLAIMS.values() if c.level == lv]


def checks(level: str, family: str = "mlp") -> dict[str, Callable[..., ClaimResult | None]]:
    """name -> check of the claims of one level, in order (a fresh dict: register to add one).
    The checks are those of ``family`` (a claim without a definition there gives an
    :class:`UndefinedClaim`)."""
    lv = _level(level)
    return {c.name: _family_check(c, family) for c in claims(lv)}


@takes_device
def run_claims(series: Any, measures: pd.DataFrame, names: list[str] | None = None
               ) -> dict[str, ClaimResult | None]:
    """Every run-level claim (or the named ones) on one run: name -> result, or None when the run
    lacks what the claim needs."""
    registered = checks("run", getattr(series, "family", "mlp"))
    names = list(registered) if names is None else list(names)
    unknown = [n for n in names if n not in registered]
    if unknown:
        raise ConfigError(f"unknown run-level claims {unknown}; registered: {', '.join(registered)}")
    ctx = RunContext(series=series, measures=measures)
    return {n: registered[n](ctx) for n in names}


# ------------------------------------------------------------------------------ the paper's claims
register("single_frequency", lambda model, ctx: single_frequency(ctx.spectrum), function=single_frequency,
         result=SingleFrequencyResult, thresholds=SingleFrequencyThresholds,
         how="theta_m and xi_m from the weights: family share of k* >= 0.8 and the same k* in both layers")
register("phase_alignment", lambda model, ctx: phase_alignment(ctx.spectrum), function=phase_alignment,
         result=PhaseAlignmentResult, thresholds=PhaseAlignmentThresholds,
         how="D = psi - 2 phi at k* from the weights: mean |sin D| <= 0.25, 70% with |D| < 0.3")
register("phase_symmetry", lambda model, ctx: phase_symmetry(ctx.spectrum), function=phase_symmetry,
         result=PhaseSymmetryResult, thresholds=PhaseSymmetryThresholds,
         how="Rayleigh tests of iota phi (iota = 1..4) per frequency group, Bonferroni p >= 0.01")
register("frequency_diversification", lambda model, ctx: frequency_diversification(ctx.spectrum),
         function=frequency_diversification, result=FrequencyDiversificationResult,
         thresholds=FrequencyDiversificationThresholds,
         how="neurons per k*: every k covered, min n_k >= 0.3 M/K")
register("magnitude_homogeneity", lambda model, ctx: magnitude_homogeneity(ctx.spectrum),
         function=magnitude_homogeneity, result=MagnitudeHomogeneityResult, thresholds=MagnitudeHomogeneityThresholds,
         how="cv of the vote alpha^2 beta and of the aligned vote <= 0.5")
register("flawed_indicator", lambda model, ctx: flawed_indicator(ctx.logits, ctx.p), function=flawed_indicator,
         result=FlawedIndicatorResult, thresholds=FlawedIndicatorThresholds,
         how="ghost ratio of the all-pairs logits at 2x, 2y in [0.02, 0.75], correct above ghosts on 95%")
register("majority_vote", diagnosis_check, function=majority_vote, result=MajorityVoteResult,
         thresholds=MajorityVoteThresholds,
         how="zero-ablation of neurons on unordered pairs: random halves, single groups, phase-biased halves")

register("grokking_stages", lambda run: grokking_stages(run.measures), level="run", function=grokking_stages,
         result=Stages, thresholds=GrokkingStagesThresholds)
register("lottery_ticket", lambda run: lottery_from_series(run.series) if run.series.has_step0 else None,
         level="run", function=lottery_from_series, result=LotteryResult, thresholds=LotteryThresholds)


# ------------------------------------------------------------------ the claims on other families
def _register_concat() -> None:
    """The claims on ``concat_mlp`` (:mod:`mechinterp_modadd.analysis.concat`): each claim's
    analogue derived for separate input weights u, v (docs/science.md, "Network families")."""
    from .concat import (
        concat_flawed_indicator,
        concat_frequency_diversification,
        concat_magnitude_homogeneity,
        concat_phase_alignment,
        concat_phase_symmetry,
        concat_single_frequency,
    )
    from .family_ablation import concat_majority_vote

    fam = "concat_mlp"
    register_family_check("single_frequency", fam, lambda model, ctx: concat_single_frequency(ctx.spectrum),
                          how="u_m, v_m, xi_m from the weights: family share of k* (u and v together) >= 0.8 "
                              "and the same k* in u, v and xi")
    register_family_check("phase_alignment", fam, lambda model, ctx: concat_phase_alignment(ctx.spectrum),
                          how="D = psi - phi_x - phi_y at k*: mean |sin D| <= 0.25, 70% with |D| < 0.3")
    register_family_check("phase_symmetry", fam, lambda model, ctx: concat_phase_symmetry(ctx.spectrum),
                          how="Rayleigh tests of a phi_x + b phi_y for the seven ghost-cancelling (a, b) per "
                              "group, Bonferroni p >= 0.01")
    register_family_check("frequency_diversification", fam,
                          lambda model, ctx: concat_frequency_diversification(ctx.spectrum),
                          how="neurons per k* (u and v together): every k covered, min n_k >= 0.3 M/K")
    register_family_check("magnitude_homogeneity", fam, lambda model, ctx: concat_magnitude_homogeneity(ctx.spectrum),
                          how="cv of the vote alpha_x alpha_y beta and of the aligned vote <= 0.5")
    register_family_check("flawed_indicator", fam,
                          lambda model, ctx: concat_flawed_indicator(model, ctx.logits),
                          how="measured ghost ratio within 0.1 of (1/4) sum (alpha_x^2 + alpha_y^2) beta "
                              "cos(phi_x - phi_y) / sum alpha_x alpha_y beta; correct above ghosts on 95%")
    register_family_check("majority_vote", fam,
                          lambda model, ctx: concat_majority_vote(model, view=ctx.view, spectrum=ctx.spectrum),
                          how="zero-ablation in the neuron view on all p^2 pairs: random halves, single groups, "
                              "half circles of a phi_x + b phi_y")
    register_family_check("grokking_stages", fam, CLAIMS["grokking_stages"].check,
                          how="the stage rule on train/test accuracy and the IPR of u and v together")
    register_family_check("lottery_ticket", fam,
                          undefined="the lottery-ticket dynamics (docs/science.md section 4) are derived for the "
                                    "shared-input MLP; their concatenated-input analogue is not derived here")


_register_concat()


def _register_transformer() -> None:
    """The claims on ``transformer`` (:mod:`mechinterp_modadd.analysis.transformer_claims`): the
    MLP neurons at ``=`` through the neuron view; input phases from the main effects u, v of the
    pre-activation table, output phase through W_out W_U (docs/transformer.md)."""
    from .concat import (
        concat_flawed_indicator,
        concat_frequency_diversification,
        concat_magnitude_homogeneity,
        concat_phase_alignment,
        concat_single_frequency,
    )
    from .transformer_claims import transformer_extras, transformer_majority_vote, transformer_spectrum_of

    fam = "transformer"
    register_family_spectrum(fam, transformer_spectrum_of)
    register_family_extras(fam, lambda model, ctx: transformer_extras(model, ctx.view, ctx.spectrum))
    register_family_check("single_frequency", fam, lambda model, ctx: concat_single_frequency(ctx.spectrum),
                          how="u_m, v_m (main effects of pre at '=' over x and y) and W_out W_U: family share of "
                              "k* >= 0.8 and the same k* in u, v and W")
    register_family_check("phase_alignment", fam, lambda model, ctx: concat_phase_alignment(ctx.spectrum),
                          how="D = psi - phi_x - phi_y at k* (phases of u, v and W_out W_U): mean |sin D| <= 0.25, "
                              "70% with |D| < 0.3")
    register_family_check("phase_symmetry", fam, lambda model, ctx: phase_symmetry(ctx.spectrum),
                          how="phi_x = phi_y (tied): Rayleigh tests of iota phi, iota = 1..4, per group, "
                              "Bonferroni p >= 0.01")
    register_family_check("frequency_diversification", fam,
                          lambda model, ctx: concat_frequency_diversification(ctx.spectrum),
                          how="neurons per k* (u and v together): every k covered, min n_k >= 0.3 M/K")
    register_family_check("magnitude_homogeneity", fam,
                          lambda model, ctx: concat_magnitude_homogeneity(ctx.spectrum),
                          how="cv of the vote alpha_x alpha_y beta and of the aligned vote <= 0.5")
    register_family_check("flawed_indicator", fam,
                          lambda model, ctx: concat_flawed_indicator(ctx.spectrum, ctx.logits),
                          how="measured ghost ratio (peaks at 2x, 2y over the x + y peak) against the additive "
                              "model's prediction from u, v, W_out W_U (1/2 for tied phases)")
    register_family_check("majority_vote", fam,
                          lambda model, ctx: transformer_majority_vote(ctx.view, ctx.spectrum),
                          how="zero-ablation of MLP neurons at '=' in the neuron view on all p^2 pairs: random "
                              "halves, single groups, half circles of iota phi")
    register_family_check("grokking_stages", fam, CLAIMS["grokking_stages"].check,
                          how="the stage rule on train/test accuracy and the IPR of u and v together")
    register_family_check("lottery_ticket", fam,
                          undefined="the lottery-ticket dynamics (docs/science.md section 4) are derived for the "
                                    "shared-input MLP; a transformer's neurons start from attention-mixed inputs")


_register_transformer()
