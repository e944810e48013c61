"""The page of a :class:`~mechinterp_modadd.diagnose.Diagnosis` (``modadd diagnose --html``, and the
first half of ``modadd report``), and the registry of its sections.

Get the page of a diagnosis with :func:`render`::

    from mechinterp_modadd.diagnose import diagnose
    from mechinterp_modadd.pages.diagnosis import render

    d = diagnose(model, ablation=True)    # ablation=True: the page shows the ablation suite too
    render(d, "diagnosis.html")           # returns the HtmlReport; writes it when a path is given

The page reads the diagnosis only (its claims, spectrum, ``views`` and ``ablation``): nothing is
computed here. Without the ablation suite (``diagnose(model)`` alone) its section says how to get it.
Numbers carry their path in the diagnosis JSON (``data-json``), prefixed with ``prefix`` when the
diagnosis is nested in a larger document (``modadd report`` passes ``"diagnosis."``).

Adding a section: write one function ``section(page, diagnosis, prefix="") -> None`` here (or in an
extension module) that appends headings, text, tables and figures to the
:class:`~mechinterp_modadd.pages.html.HtmlReport`, and register it with the decorator
``@page_section("name")``; sections are drawn in registration order (:data:`SECTIONS`).
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from pathlib import Path

from ..diagnose import Diagnosis, format_value
from ..errors import ConfigError
from ..plots import spectrum as sp
from .ablation import add_ablation_section
from .html import HtmlReport, cell, number

__all__ = ["SECTIONS", "DiagnosisSection", "page_section", "render", "summary_section", "spectrum_section",
           "fourier2d_section",
           "transformer_views_section", "add_transformer_views", "phases_section", "magnitudes_section",
           "logits_section", "ablation_section", "header_html"]

#: ``section(page, diagnosis, prefix="")``: appends to ``page``, reading only ``diagnosis``.
DiagnosisSection = Callable[..., None]

#: The registry: section name -> section function, in page order (add with :func:`page_section`).
SECTIONS: dict[str, DiagnosisSection] = {}


def page_section(name: str, *, replace: bool = False) -> Callable[[DiagnosisSection], DiagnosisSection]:
    """Decorator registering ``section(page, diagnosis, prefix="")`` under ``name``, at the end of
    the page (a replaced section keeps its place). Raises :class:`ConfigError` for a name already
    registered without ``replace=True``."""

    def add(section: DiagnosisSection) -> DiagnosisSection:
        if name in SECTIONS and not replace:
            raise ConfigError(f"page section {name!r} is already registered; pass replace=True to swap it")
        SECTIONS[name] = section
        return section

    return add


def render(diagnosis: Diagnosis, path: str | os.PathLike | None = None, *, title: str | None = None,
           page: HtmlReport | None = None, prefix: str = "") -> HtmlReport:
    """The page of ``diagnosis``: every section of :data:`SECTIONS`, in order.

    Returns the :class:`~mechinterp_modadd.pages.html.HtmlReport` (a self-contained offline page,
    plotly.js inlined) and writes it when ``path`` is given. With ``page`` the sections are appended
    to that existing report instead of a new one (titled ``title``, default the diagnosis' name).
    Raises :class:`ConfigError` when the diagnosis holds no figure data (``views``), i.e. was not
    made by :func:`~mechinterp_modadd.diagnose.diagnose`.
    """
    if diagnosis.views is None:
        raise ConfigError("this Diagnosis holds no figure data (views is None); make it with diagnose(model)")
    if page is None:
        page = HtmlReport(title or diagnosis.name, subtitle=diagnosis.source)
    for section in SECTIONS.values():
        section(page, diagnosis, prefix=prefix)
    if path is not None:
        page.save(Path(path))
    return page


def header_html(diagnosis: Diagnosis, prefix: str = "") -> str:
    """The model line (p, d_mlp, activation, accuracy, loss) with its numbers tagged."""
    d = diagnosis
    return (f"<p>p = {number(str(d.p), prefix + 'p')}, d_mlp = {number(str(d.d_mlp), prefix + 'd_mlp')}, "
            f"activation {html.escape(d.activation)}, accuracy {number(f'{d.accuracy:.4f}', prefix + 'accuracy')}, "
            f"loss {number(f'{d.loss:.4g}', prefix + 'loss')}</p>")


@page_section("summary")
def summary_section(page: HtmlReport, diagnosis: Diagnosis, prefix: str = "") -> None:
    """The model line and the claims table (claim, metric, value, verdict, details)."""
    page.raw(header_html(diagnosis, prefix))
    rows = []
    for r in diagnosis.to_frame().itertuples(index=False):
        cls = "holds" if r.verdict == "holds" else ("fails" if r.verdict == "fails" else None)
        value_path = f"{prefix}claims.{r.claim}.{r.metric}" if r.metric else None
        rows.append(f"<tr>{cell(r.claim, cls='text')}{cell(r.metric, cls='text')}"
                    + cell(format_value(r.value), value_path)
                    + cell(r.verdict, f"{prefix}claims.{r.claim}.holds", cls)
                    + f"<td class='text'>{html.escape(str(r.details))}</td></tr>")
    page.heading("Claims")
    page.raw("<table class='dataframe' id='claims'><thead><tr><th>claim</th><th>metric</th><th>value</th>"
             "<th>verdict</th><th>details</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    page.text("Each verdict compares the numbers with a documented threshold (see the result classes in "
              "mechinterp_modadd.analysis). The JSON output holds every number.", cls="note")


@page_section("spectrum")
def spectrum_section(page: HtmlReport, diagnosis: Diagnosis, prefix: str = "") -> None:
    page.heading("Fourier spectrum of the neurons")
    page.figure(sp.frequency_counts(diagnosis.spectrum, diagnosis.claims.get("frequency_diversification")),
                "Neurons per dominant frequency k* (bars) and each frequency's share of the total vote weight.")
    page.figure(sp.dft_heatmaps(diagnosis.views.sample),
                "|Fourier coefficient| of theta_m (W_in) and xi_m (W_out) for a sample of neurons sorted by k*: "
                "one bright pair of columns per neuron means a single-frequency feature (ReLU adds faint harmonics).")
    page.figure(sp.cosine_fits(diagnosis.views.fits),
                "A few neurons' input weights theta_m[j] (dots) against their fit alpha cos(w_k* j + phi) plus DC.")


@page_section("fourier2d")
def fourier2d_section(page: HtmlReport, diagnosis: Diagnosis, prefix: str = "") -> None:
    """The 2D Fourier reading of the neurons: the fraction of each neuron's variance over the (x, y)
    grid that one frequency explains (docs/science.md section 10.1)."""
    f2 = diagnosis.fourier2d
    if f2 is None:
        return
    from ..plots.fourier2d import summary_histogram

    page.heading("2D Fourier analysis of the neurons")
    sampled = f" (a seeded sample of {f2.n_neurons} neurons)" if f2.sampled else ""
    page.raw("<p>Fraction of a neuron's variance over the (x, y) grid explained by its best frequency"
             f"{html.escape(sampled)}: pre-activations median "
             + number(format_value(f2.pre["median"]), f"{prefix}fourier2d.pre.median") + ", 10th percentile "
             + number(format_value(f2.pre["p10"]), f"{prefix}fourier2d.pre.p10") + "; post-activations median "
             + number(format_value(f2.post["median"]), f"{prefix}fourier2d.post.median") + ", 10th percentile "
             + number(format_value(f2.post["p10"]), f"{prefix}fourier2d.post.p10") + ".</p>")
    if f2.pre_fractions:
        page.figure(summary_histogram(f2), "Per neuron, the share of its activation's variance in the eight terms "
                    "of its best frequency (cos/sin in x, in y, and their products); 1 = a one-frequency neuron.")


@page_section("transformer_views")
def transformer_views_section(page: HtmlReport, diagnosis: Diagnosis, prefix: str = "") -> None:
    """Nanda et al.'s views of a transformer (``diagnosis.extras``): the embedding's Fourier
    spectrum and the attention at ``=`` over (x, y) per head. Absent for the MLP families."""
    from ..analysis.transformer_views import AttentionPatterns, EmbeddingSpectrum

    emb = diagnosis.extras.get("embedding_sparse")
    att = diagnosis.extras.get("attention")
    emb = emb if isinstance(emb, EmbeddingSpectrum) else None
    att = att if isinstance(att, AttentionPatterns) else None
    if emb is None and att is None:
        return
    page.heading("Embedding and attention (transformer)")
    add_transformer_views(page, {} if emb is None else {None: emb}, att, f"{prefix}extras.embedding_sparse")


def add_transformer_views(page: HtmlReport, spectra: dict, attention, json_path: str | None = None) -> None:
    """Append the embedding spectrum figure of each result of ``spectra`` (key: the step it was
    read at, or None) and the attention heat maps of ``attention`` (or nothing when None). With
    ``json_path``, each spectrum's Gini, key count and key share carry their JSON paths: the
    spectrum's object is at ``json_path`` (step None) or at ``json_path.<step>``."""
    from ..plots import transformer as tp

    for step, emb in spectra.items():
        at = "" if step is None else f"Step {step}: "
        base = None if json_path is None else (json_path if step is None else f"{json_path}.{step}")

        def num(text: str, key: str, base=base) -> str:
            return number(text, f"{base}.{key}") if base else html.escape(text)

        page.raw(f"<p>{at}Gini coefficient of the embedding's frequency norms " + num(f"{emb.gini:.3f}", "gini")
                 + "; " + num(str(emb.n_keys), "n_keys") + f" of {len(emb.norms or [])} frequencies carry "
                 + num(f"{emb.key_energy_share:.3f}", "key_energy_share") + " of its energy.</p>")
        page.figure(tp.embedding_spectrum_bars(emb),
                    f"{at}Norm of each frequency k of the number embeddings W_E[:p] in the real Fourier basis "
                    "(cos k and sin k rows together). A trained model concentrates on a few key frequencies "
                    "(red: the fewest reaching 90% of the energy); a random embedding spreads evenly.")
    if attention is not None:
        page.figure(tp.attention_heatmaps(attention),
                    "Attention weight of the '=' position on the x token for every input (x, y), one panel per "
                    "head; titles: the best 2D frequency of that weight (share of its variance) and the mean "
                    "weights on x, y and '='.")


@page_section("phases")
def phases_section(page: HtmlReport, diagnosis: Diagnosis, prefix: str = "") -> None:
    page.heading("Phases")
    two = "phi_x + phi_y" if diagnosis.family == "concat_mlp" else "2 phi"
    page.figure(sp.phase_alignment_scatter(diagnosis.spectrum, diagnosis.claims.get("phase_alignment")),
                f"Output phase psi against {two} (wrapped) at k*: aligned neurons lie on the diagonal.")
    page.figure(sp.phase_circles(diagnosis.spectrum),
                "Phases iota * phi on circles of radius k (one ring per frequency group): symmetry means each ring "
                "is covered evenly for every iota.")
    sym = diagnosis.claims.get("phase_symmetry")
    if sym is not None:
        page.figure(sp.phase_moment_bars(sym),
                    "Per-frequency moments |mean exp(i iota phi)| against the random-phase baseline "
                    "sqrt(pi)/(2 sqrt n).")


@page_section("magnitudes")
def magnitudes_section(page: HtmlReport, diagnosis: Diagnosis, prefix: str = "") -> None:
    page.heading("Magnitudes")
    page.figure(sp.magnitude_histograms(diagnosis.spectrum, diagnosis.claims.get("magnitude_homogeneity")),
                "Distributions of alpha, beta and the vote weight alpha^2 beta at k*.")


@page_section("logits")
def logits_section(page: HtmlReport, diagnosis: Diagnosis, prefix: str = "") -> None:
    sl = diagnosis.views.logits
    page.heading("Logits and the flawed indicator")
    page.figure(sp.logit_heatmap(sl),
                f"Centred logits for x = {sl.x} and every y (rows) over classes j (columns). Circles: the correct "
                f"class x + y; crosses: the ghosts 2x and 2y.")


@page_section("ablation")
def ablation_section(page: HtmlReport, diagnosis: Diagnosis, prefix: str = "") -> None:
    """The ablation suite held by the diagnosis (``diagnosis.ablation``), next to the diagnosis'
    own ``majority_vote`` verdict."""
    suite = diagnosis.ablation
    if suite is None:
        page.heading("Majority vote by intervention")
        page.text("The ablation suite was not run for this diagnosis (diagnose(model, ablation=True)).", cls="note")
        return
    claim = diagnosis.claims.get("majority_vote")
    path = f"{prefix}claims.majority_vote" if claim is not None else f"{prefix}ablation.majority_vote"
    add_ablation_section(page, suite, claim, p=diagnosis.p, json_prefix=path)
    settings = diagnosis.ablation_settings or {}
    if settings.get("max_pairs"):
        page.text(f"For p > 61 the ablation accuracies are estimated on a seeded sample of {settings['max_pairs']} "
                  f"unordered pairs.", cls="note")
    if suite.noise_scaling is None:
        page.text("Noise scaling skipped for p > 61 (it needs n_k p^3 values per group); run "
                  "analysis.majority.noise_scaling directly.", cls="note")
