"""``diagnose(model)``: every mechanism claim checked on one model, with a verdict each.

The result, a :class:`Diagnosis`, renders as a pandas table (:meth:`Diagnosis.to_frame`),
Markdown, text and JSON (:meth:`Diagnosis.to_dict` / :meth:`Diagnosis.to_json`, the contract below).
Its self-contained offline HTML page with plotly figures is presentation and lives in
:mod:`mechinterp_modadd.pages.diagnosis`: ``render(diagnosis, path)`` (``modadd diagnose --html``).

Compute once, render twice: everything a page shows is computed here and stored on the
``Diagnosis``: the claim results, the figure data of :mod:`mechinterp_modadd.analysis.views`
(``views``) and, with ``diagnose(model, ablation=True)`` or :meth:`Diagnosis.ensure_ablation`, the
ablation suite (``ablation``). The JSON document and the page render these same objects; the page
computes nothing. This module never imports ``plots`` or ``pages``.

Extending the diagnosis
-----------------------
The claims are the model-level part of the one claim registry,
:mod:`mechinterp_modadd.analysis.claims`: :func:`diagnose` runs ``claims.checks("model")`` in
registry order, each as ``check(model, ctx)``. The :class:`DiagnosisContext` ``ctx`` holds what
several checks share and is computed once per diagnosis: the
:class:`~mechinterp_modadd.fourier.NeuronSpectrum`, the float64 all-pairs logits [p*p, p],
accuracy and loss, plus a free ``cache`` dict for extensions. A check must not modify the model
(use hooks, removed on exit, for interventions). Page sections are registered in
:mod:`mechinterp_modadd.pages.diagnosis` (``@page_section(name)``). Example of an extension module::

    from mechinterp_modadd.analysis import claims

    claims.register("my_claim", lambda model, ctx: my_claim(ctx.spectrum), function=my_claim,
                    result=MyResult, thresholds=MyThresholds)

JSON contract (other tools read it; names are stable)
-----------------------------------------------------
Schema ``diagnose`` (``mechinterp_modadd/schemas/diagnose.schema.json``), stamped with ``schema``
and ``mechinterp_modadd_version``. Top level: ``family`` (the network family, e.g. ``"mlp"`` or
``"concat_mlp"``, :mod:`mechinterp_modadd.families`), ``p``, ``d_mlp``, ``activation``,
``accuracy`` (all pairs), ``loss``, ``source`` (the checkpoint path or null), ``holds_all`` (over
the claims defined for the family); ``fourier2d``: the per-neuron fraction of variance one
frequency explains in the 2D Fourier analysis of the pre- and post-activations over the p x p grid
(:mod:`mechinterp_modadd.fourier2d`), ``{"pre": {"median", "p10"}, "post": {...}, "n_neurons",
"sampled"}``; ``neurons``:
equal-length lists ``frequency`` (1-based k*), ``share``, ``family_share``, ``ipr``, ``alpha``,
``beta``, ``phi``, ``psi``, ``d``;
``claims``: one object per registered claim (``single_frequency``, ``phase_alignment``,
``phase_symmetry``, ``frequency_diversification``, ``magnitude_homogeneity``,
``flawed_indicator``, ...), each with a boolean ``holds`` and its numbers, among them
``phase_alignment.mean_abs_sin_d``, ``phase_symmetry.per_frequency`` (objects with ``k``, ``n``,
``moments`` = [|m1|, |m2|, |m3|, |m4|], ``baseline``, ``p_values``),
``frequency_diversification.counts`` (n_1..n_K), ``magnitude_homogeneity.cv`` and
``flawed_indicator.ghost_ratio``. A claim with no definition on the model's family has ``holds``
null, ``defined`` false and its ``reason`` (see :func:`mechinterp_modadd.analysis.claims.claim_table`).
``ablation``: null, or when the ablation suite was run the
document of ``modadd ablate`` (schema ``ablate``) without its stamp.

The thresholds of each verdict are documented on the result classes in
:mod:`mechinterp_modadd.analysis.features`, :mod:`~mechinterp_modadd.analysis.phases` and
:mod:`~mechinterp_modadd.analysis.logits`, and repeated in each claim's JSON object.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from .analysis import claims as claim_registry
from .analysis import views as _views
from .analysis.base import ClaimResult, accuracy_and_loss, all_pair_logits, to_jsonable
from .checkpoint import atomic_write_text
from .errors import ConfigError
from .families import family_of
from .fourier import NeuronSpectrum
from .runtime import takes_device

__all__ = [
    "Fourier2DSummary",
    "fourier2d_summary",
    "DiagnosisContext",
    "Diagnosis",
    "diagnose",
    "build_context",
    "build_views",
    "NEURON_KEYS",
    "DiagnosisViews",
    "ablation_document",
    "run_diagnosis_ablation",
    "format_value",
]

#: Per-neuron lists of the JSON ``neurons`` object, in this order.
NEURON_KEYS = ("frequency", "share", "family_share", "ipr", "alpha", "beta", "phi", "psi", "d")


@dataclass
class DiagnosisContext:
    """What the claim checks share, computed once per diagnosis.

    Attributes:
        model: the model diagnosed (never modified).
        spectrum: its closed-form decomposition (float64): a :class:`NeuronSpectrum` for the
            paper's MLP, the family's registered one otherwise
            (:func:`~mechinterp_modadd.analysis.claims.register_family_spectrum`), None for a
            family without one.
        logits: float64 logits on all pairs [p*p, p] in ``all_pairs`` order (hooks of the model apply).
        accuracy, loss: on all pairs.
        cache: free space for extensions that want to share intermediate results.
        family: the model's family name.
        p: the modulus.

    ``view`` is the model's :class:`~mechinterp_modadd.neurons.NeuronView`, computed on first use.
    """

    model: Any
    spectrum: Any
    logits: Tensor
    accuracy: float
    loss: float
    cache: dict[str, Any] = field(default_factory=dict)
    family: str = "mlp"
    p: int = 0

    def __post_init__(self) -> None:
        if not self.p:
            self.p = int(self.model.cfg.p)

    @property
    def view(self):
        """The model's neuron view (all neurons, computed once)."""
        if "view" not in self.cache:
            self.cache["view"] = family_of(self.model).neuron_view(self.model)
        return self.cache["view"]


def _activation_name(model) -> str:
    act = model.activation
    return act if isinstance(act, str) else getattr(act, "__name__", "custom")


def build_context(model) -> DiagnosisContext:
    """Spectrum and all-pairs logits (float64), accuracy and loss: computed once. The paper's MLP
    reads its logits from the weights (:func:`~mechinterp_modadd.forward.all_pair_logits`); other
    families from their neuron view."""
    family = family_of(model).name
    spectrum = claim_registry.family_spectrum(model, family)
    ctx = DiagnosisContext(model=model, spectrum=spectrum, logits=torch.empty(0), accuracy=math.nan,
                           loss=math.nan, family=family)
    ctx.logits = all_pair_logits(model) if family == "mlp" else ctx.view.logits()
    ctx.accuracy, ctx.loss = accuracy_and_loss(ctx.logits, ctx.p)
    return ctx


#: Above this many float64 numbers (pre and post over all p^2 pairs) the 2D Fourier summary reads a
#: seeded sample of :data:`FOURIER2D_SAMPLE` neurons instead of all of them.
FOURIER2D_MAX_NUMBERS = 2**23  # 64 MiB of float64
FOURIER2D_SAMPLE = 512


@dataclass(frozen=True)
class Fourier2DSummary:
    """The 2D Fourier fraction of variance explained by one frequency, per neuron, summarised:
    median and 10th percentile over the neurons, for the pre- and post-activations over the p x p
    grid (:meth:`mechinterp_modadd.fourier2d.Fourier2D.best_fraction`). ``sampled``: a seeded
    sample of ``n_neurons`` neurons was read (large models, see :data:`FOURIER2D_MAX_NUMBERS`).
    ``pre_fractions`` / ``post_fractions``: the per-neuron fractions (the page's histogram; not in
    the JSON)."""

    pre: dict[str, float]
    post: dict[str, float]
    n_neurons: int
    sampled: bool
    pre_fractions: tuple[float, ...] = field(default=(), repr=False)
    post_fractions: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"pre": dict(self.pre), "post": dict(self.post), "n_neurons": self.n_neurons, "sampled": self.sampled}

    def text(self) -> str:
        s = f" (a seeded sample of {self.n_neurons} neurons)" if self.sampled else ""
        return (f"2D Fourier, variance explained by one frequency per neuron{s}: pre median "
                f"{self.pre['median']:.3f} (10th pct {self.pre['p10']:.3f}), post median {self.post['median']:.3f} "
                f"(10th pct {self.post['p10']:.3f})")


def fourier2d_summary(model, ctx: DiagnosisContext | None = None) -> Fourier2DSummary:
    """:class:`Fourier2DSummary` of ``model`` through its neuron view (``ctx.view`` when it fits)."""
    fam = family_of(model)
    M, p = fam.d_mlp(model), int(model.cfg.p)
    from .fourier2d import fourier2d

    if 2 * p * p * M <= FOURIER2D_MAX_NUMBERS:
        view = ctx.view if ctx is not None else fam.neuron_view(model)
        pre_acts, post_acts, sampled = view.pre, view.post, False
    else:  # a seeded sample of neurons, read without the rest of the view
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(M, generator=g)[:FOURIER2D_SAMPLE].sort().values
        pre_acts, post_acts = fam.activations(model, neurons=idx)
        sampled = True
    pre, post = fourier2d(pre_acts), fourier2d(post_acts)
    return Fourier2DSummary(pre=pre.summary(), post=post.summary(), n_neurons=pre.n, sampled=sampled,
                            pre_fractions=tuple(pre.best_fraction.tolist()),
                            post_fractions=tuple(post.best_fraction.tolist()))


@dataclass(frozen=True)
class DiagnosisViews:
    """Figure data of a diagnosis page (see :mod:`mechinterp_modadd.analysis.views`)."""

    sample: _views.NeuronSample
    fits: _views.CosineFits
    logits: _views.LogitSlice


def build_views(model, ctx: DiagnosisContext) -> DiagnosisViews:
    """The figure data of the diagnosis page: 48 sampled neurons' coefficients, 4 cosine fits, the
    centred logits at x = min(3, p - 1)."""
    return DiagnosisViews(sample=_views.neuron_sample(model, ctx.spectrum),
                          fits=_views.cosine_fits(model, ctx.spectrum),
                          logits=_views.logit_slice(ctx.logits, ctx.p, x=min(3, ctx.p - 1)))


#: Above this p the diagnosis' ablation suite samples pairs and skips the noise scaling.
ABLATION_EXACT_MAX_P = 61


def run_diagnosis_ablation(model, spectrum: NeuronSpectrum | None = None) -> tuple[Any, dict[str, Any]]:
    """The ablation suite of a diagnosis page (seed 0) and its settings.

    For p > :data:`ABLATION_EXACT_MAX_P` the accuracies are estimated on a seeded sample of 2048
    unordered pairs (fewer where :func:`~mechinterp_modadd.analysis.sampling.ablation_pair_count`
    says the memory budget or the operation limit asks for it) and the noise scaling (memory
    ~ n_k p^3) is skipped.
    """
    from .analysis.majority import run_ablation_suite
    from .analysis.sampling import ablation_pair_count

    large = model.cfg.p > ABLATION_EXACT_MAX_P
    # at most 2048 pairs, fewer where the memory budget or the operation limit asks (e.g. p = 199)
    n_auto = ablation_pair_count(model.cfg.p, model.cfg.d_mlp, 6 * 10 + 4 * 21 + 2 + 8)
    settings = {"seed": 0, "max_pairs": (2048 if n_auto is None else min(2048, n_auto)) if large else None,
                "noise_scaling": not large}
    suite = run_ablation_suite(model, noise=not large, max_pairs=settings["max_pairs"], spectrum=spectrum)
    return suite, settings


def ablation_document(suite, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of an ablation suite (schema ``ablate`` without its stamp): the keys of
    :meth:`~mechinterp_modadd.analysis.majority.AblationSuite.to_dict`, the suite's own
    ``majority_vote`` verdict and the ``settings`` it ran with."""
    doc = suite.to_dict()
    doc["majority_vote"] = suite.claim.to_dict()
    doc["settings"] = to_jsonable(settings or {})
    return doc


@dataclass
class Diagnosis:
    """All claim checks of one model. Render with ``to_frame``, ``to_markdown``, ``to_text``, ``to_json``;
    its HTML page is :func:`mechinterp_modadd.pages.diagnosis.render`.

    ``views`` holds the figure data of the page and ``ablation`` the ablation suite (None until
    computed, see :meth:`ensure_ablation`).
    """

    p: int
    d_mlp: int
    activation: str
    accuracy: float
    loss: float
    spectrum: NeuronSpectrum
    claims: dict[str, ClaimResult]
    source: str | None = None
    context: DiagnosisContext | None = field(default=None, repr=False)
    views: DiagnosisViews | None = field(default=None, repr=False)
    ablation: Any = field(default=None, repr=False)
    ablation_settings: dict[str, Any] | None = None
    family: str = "mlp"
    fourier2d: Fourier2DSummary | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """A short name for titles: the run folder and step of ``source`` (else its file name)."""
        return display_name(self.source)

    def ensure_ablation(self) -> Any:
        """Run the ablation suite once (:func:`run_diagnosis_ablation`) and keep it; returns it."""
        if self.ablation is None:
            if self.context is None:
                raise ConfigError("this Diagnosis has no model attached (context is None); run diagnose(model)")
            if self.family != "mlp":
                raise ConfigError(f"the ablation suite (modadd ablate, --ablation) is defined for family 'mlp'; on "
                                  f"{self.family!r} the majority vote by ablation is the claim 'majority_vote'")
            with torch.no_grad():
                self.ablation, self.ablation_settings = run_diagnosis_ablation(self.model, self.spectrum)
        return self.ablation

    @property
    def model(self):
        return None if self.context is None else self.context.model

    @property
    def verdicts(self) -> dict[str, bool]:
        """name -> verdict of the claims defined for the family (undefined ones are left out)."""
        return {name: bool(r.holds) for name, r in self.claims.items() if getattr(r, "defined", True)}

    @property
    def undefined(self) -> dict[str, str]:
        """name -> reason of the claims that have no definition on the model's family."""
        return {name: r.reason for name, r in self.claims.items() if not getattr(r, "defined", True)}

    @property
    def holds_all(self) -> bool:
        return all(self.verdicts.values())

    def __getitem__(self, name: str) -> ClaimResult:
        try:
            return self.claims[name]
        except KeyError:
            raise KeyError(f"no claim {name!r}; claims: {', '.join(self.claims)}") from None

    # ---------------------------------------------------------------------------- rendering
    def to_frame(self) -> pd.DataFrame:
        """One row per claim: claim, metric (the key number's name), value, verdict, details."""
        rows = []
        for name, r in self.claims.items():
            details = r.details() if hasattr(r, "details") else ""
            verdict = "undefined" if not getattr(r, "defined", True) else ("holds" if r.holds else "fails")
            rows.append({"claim": name, "metric": r.key_metric, "value": r.key_value,
                         "verdict": verdict, "details": details})
        return pd.DataFrame(rows, columns=["claim", "metric", "value", "verdict", "details"])

    def header(self) -> str:
        src = f"{self.source}: " if self.source else ""
        fam = "" if self.family == "mlp" else f"family {self.family}, "
        return (f"{src}{fam}p = {self.p}, d_mlp = {self.d_mlp}, activation {self.activation}, "
                f"accuracy {self.accuracy:.4f}, loss {self.loss:.4g}")

    def to_markdown(self) -> str:
        """A Markdown summary: the model line and the claims table."""
        lines = [f"**{self.header()}**", "", "| claim | metric | value | verdict | details |",
                 "|---|---|---:|---|---|"]
        for row in self.to_frame().itertuples(index=False):
            details = str(row.details).replace("|", "\\|")
            lines.append(f"| {row.claim} | {row.metric} | {format_value(row.value)} | **{row.verdict}** | "
                         f"{details} |")
        return "\n".join(lines) + "\n"

    def to_text(self, details: bool = False) -> str:
        """The short plain-text table printed by ``modadd diagnose``."""
        df = self.to_frame()
        w = max(len("claim"), *(len(c) for c in df["claim"]))
        wm = max(len("metric"), *(len(m) for m in df["metric"]))
        lines = [self.header(), "", f"{'claim':<{w}}  {'metric':<{wm}}  {'value':>9}  verdict"]
        for row in df.itertuples(index=False):
            lines.append(f"{row.claim:<{w}}  {row.metric:<{wm}}  {format_value(row.value):>9}  {row.verdict}")
            if details and row.details:
                lines.append(f"{'':<{w}}    {row.details}")
        for name, r in self.claims.items():  # estimates on a sample of pairs (large p) say so
            if getattr(r, "exact", True) is False and getattr(r, "n_pairs", 0):
                ci = getattr(r, f"{r.key_metric}_ci", None)
                ci = "" if ci is None else f"; {r.key_metric} 95% CI [{ci[0]:.3f}, {ci[1]:.3f}]"
                lines.append(f"{name}: estimated on a seeded sample of {r.n_pairs} of "
                             f"{getattr(r, 'n_pairs_total', '?')} unordered pairs{ci}")
        if self.fourier2d is not None:
            lines.append(self.fourier2d.text())
        if self.extras:
            lines.append(f"family {self.family}:")
            lines.extend(f"  {r.summary()}" for r in self.extras.values())
        return "\n".join(lines)

    def neurons_dict(self) -> dict[str, list]:
        """The per-neuron lists (:data:`NEURON_KEYS`, plus ``alpha_y`` and ``phi_y`` for ``concat_mlp``:
        then ``alpha`` and ``phi`` describe u, the x input)."""
        df = self.spectrum.to_frame()
        keys = list(NEURON_KEYS) + [k for k in ("alpha_y", "phi_y") if k in df.columns]
        return {k: to_jsonable(df[k].to_numpy()) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract of the module docstring, as plain Python values."""
        return {
            "family": self.family,
            "p": self.p,
            "d_mlp": self.d_mlp,
            "activation": self.activation,
            "accuracy": to_jsonable(self.accuracy),
            "loss": to_jsonable(self.loss),
            "source": self.source,
            "holds_all": self.holds_all,
            "fourier2d": None if self.fourier2d is None else self.fourier2d.to_dict(),
            "neurons": self.neurons_dict(),
            "claims": {name: r.to_dict() for name, r in self.claims.items()},
            "ablation": None if self.ablation is None else ablation_document(self.ablation, self.ablation_settings),
            "extras": {name: r.to_dict() for name, r in self.extras.items()},
        }

    def to_json(self, path: str | os.PathLike | None = None, indent: int | None = 1) -> str:
        """The JSON text (stamped with schema ``diagnose``); also written atomically to ``path`` when given."""
        from .schemas import stamp

        text = json.dumps(stamp(self.to_dict(), "diagnose"), indent=indent, allow_nan=False)
        if path is not None:
            atomic_write_text(path, text + "\n")
        return text


def display_name(source: str | os.PathLike | None) -> str:
    """``runs/grokking_p23/checkpoints/step_000500.safetensors (step 500)`` -> ``grokking_p23, step 500``.

    A checkpoint inside a run folder (``RUN/checkpoints/FILE`` or the authors' ``RUN/N.pth``) is
    named by the run and its step; any other file by its name.
    """
    if source is None:
        return "a model"
    text = str(source)
    step = None
    if text.endswith(")") and " (step " in text:
        text, step = text[: -1].rsplit(" (step ", 1)
    path = Path(text)
    run = path.parent.parent.name if path.parent.name == "checkpoints" else (
        path.parent.name if path.stem.isdigit() or path.stem == "final" else "")
    base = run or path.name
    return f"{base}, step {step}" if step is not None else (f"{base}, {path.name}" if run else base)


def format_value(v: Any) -> str:
    """Numbers for tables: 3 decimals in [0.001, 1e4), else 3 significant digits."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.3f}" if v == 0 or 1e-3 <= abs(v) < 1e4 else f"{v:.3g}"
    return str(v)


@takes_device
def diagnose(model, *, claims: Sequence[str] | None = None, source: str | os.PathLike | None = None,
             ablation: bool = False) -> Diagnosis:
    """Run the model-level claim checks of :mod:`mechinterp_modadd.analysis.claims` (all, or the
    named ones) on ``model``, in registry order.

    The spectrum and the all-pairs logits are computed once (:func:`build_context`) and shared,
    and so is the figure data of the page (:func:`build_views`). ``ablation=True`` also runs the
    ablation suite (:func:`run_diagnosis_ablation`) that the page and the JSON show. ``source``
    (e.g. the checkpoint path) is recorded in the output.

    Device and threads: the checks compute in float64 whatever device ``model`` lives on (a CUDA
    model is copied to the CPU first, :func:`~mechinterp_modadd.runtime.cpu_model`). ``device``
    (``"cpu"``, ``"cuda"``, ``"auto"``; None: the enclosing choice, e.g. ``--device``, else the CPU)
    is where the heavy float64 passes run: the all-pairs logits, the ablation batches and the
    Fourier transform; spectra statistics and verdicts stay on the CPU (see
    :mod:`mechinterp_modadd.runtime`). On the CPU the numbers are the same bits with or without
    it; on a GPU they agree to about 1e-12 relative, with the same verdicts. Torch threads follow the model's size
    (:func:`~mechinterp_modadd.runtime.analysis_scope`; one thread at p = 23) unless ``--threads``
    or the user's ``torch.set_num_threads`` says otherwise.
    """
    from .runtime import analysis_scope, cpu_model

    model = cpu_model(model)
    family = family_of(model).name
    checks = claim_registry.checks("model", family)
    names = list(checks) if claims is None else list(claims)
    unknown = [n for n in names if n not in checks]
    if unknown:
        raise ConfigError(f"unknown claims {unknown}; registered: {', '.join(checks)}")
    with torch.no_grad(), analysis_scope(model):
        ctx = build_context(model)
        results = {n: checks[n](model, ctx) for n in names}
        views = build_views(model, ctx)
        f2 = fourier2d_summary(model, ctx)
        extras_fn = claim_registry.FAMILY_EXTRAS.get(family)
        extras = {} if extras_fn is None else extras_fn(model, ctx)
    d = Diagnosis(p=ctx.p, d_mlp=family_of(model).d_mlp(model), activation=_activation_name(model),
                  accuracy=ctx.accuracy, loss=ctx.loss, spectrum=ctx.spectrum, claims=results,
                  source=None if source is None else str(source), context=ctx, views=views, family=family,
                  fourier2d=f2, extras=extras)
    if ablation:
        d.ensure_ablation()
    return d
