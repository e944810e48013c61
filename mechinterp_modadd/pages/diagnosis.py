"""The sections of a diagnosis page (``Diagnosis.to_html``, ``modadd diagnose --html``).

Each ``*_section(page, diagnosis)`` appends headings, text, tables and figures to an
:class:`~mechinterp_modadd.pages.html.HtmlReport`, reading only the
:class:`~mechinterp_modadd.diagnose.Diagnosis` (its claims, spectrum, ``views`` and ``ablation``):
nothing is computed here. Numbers carry their path in the diagnosis JSON (``data-json``).
"""

from __future__ import annotations

import html

from ..diagnose import Diagnosis, format_value
from ..plots import spectrum as sp
from .ablation import add_ablation_section
from .html import HtmlReport, cell, number

__all__ = ["summary_section", "spectrum_section", "phases_section", "magnitudes_section", "logits_section",
           "ablation_section", "header_html"]


def header_html(diagnosis: Diagnosis, prefix: str = "") -> str:
    """The model line (p, d_mlp, activation, accuracy, loss) with its numbers tagged."""
    d = diagnosis
    return (f"<p>p = {number(str(d.p), prefix + 'p')}, d_mlp = {number(str(d.d_mlp), prefix + 'd_mlp')}, "
            f"activation {html.escape(d.activation)}, accuracy {number(f'{d.accuracy:.4f}', prefix + 'accuracy')}, "
            f"loss {number(f'{d.loss:.4g}', prefix + 'loss')}</p>")


def summary_section(page: HtmlReport, diagnosis: Diagnosis, prefix: str = "") -> None:
    """The model line and the claims table (claim, metric, value, verdict, details)."""
    page.raw(header_html(diagnosis, prefix))
    rows = []
    for r in diagnosis.to_frame().itertuples(index=False):
        cls = "holds" if r.verdict == "holds" else "fails"
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


def spectrum_section(page: HtmlReport, diagnosis: Diagnosis) -> None:
    page.heading("Fourier spectrum of the neurons")
    page.figure(sp.frequency_counts(diagnosis.spectrum, diagnosis.claims.get("frequency_diversification")),
                "Neurons per dominant frequency k* (bars) and each frequency's share of the total vote weight.")
    page.figure(sp.dft_heatmaps(diagnosis.views.sample),
                "|Fourier coefficient| of theta_m (W_in) and xi_m (W_out) for a sample of neurons sorted by k*: "
                "one bright pair of columns per neuron means a single-frequency feature (ReLU adds faint harmonics).")
    page.figure(sp.cosine_fits(diagnosis.views.fits),
                "A few neurons' input weights theta_m[j] (dots) against their fit alpha cos(w_k* j + phi) plus DC.")


def phases_section(page: HtmlReport, diagnosis: Diagnosis) -> None:
    page.heading("Phases")
    page.figure(sp.phase_alignment_scatter(diagnosis.spectrum, diagnosis.claims.get("phase_alignment")),
                "Output phase psi against 2 phi (wrapped) at k*: aligned neurons lie on the diagonal.")
    page.figure(sp.phase_circles(diagnosis.spectrum),
                "Phases iota * phi on circles of radius k (one ring per frequency group): symmetry means each ring "
                "is covered evenly for every iota.")
    sym = diagnosis.claims.get("phase_symmetry")
    if sym is not None:
        page.figure(sp.phase_moment_bars(sym),
                    "Per-frequency moments |mean exp(i iota phi)| against the random-phase baseline "
                    "sqrt(pi)/(2 sqrt n).")


def magnitudes_section(page: HtmlReport, diagnosis: Diagnosis) -> None:
    page.heading("Magnitudes")
    page.figure(sp.magnitude_histograms(diagnosis.spectrum, diagnosis.claims.get("magnitude_homogeneity")),
                "Distributions of alpha, beta and the vote weight alpha^2 beta at k*.")


def logits_section(page: HtmlReport, diagnosis: Diagnosis) -> None:
    sl = diagnosis.views.logits
    page.heading("Logits and the flawed indicator")
    page.figure(sp.logit_heatmap(sl),
                f"Centred logits for x = {sl.x} and every y (rows) over classes j (columns). Circles: the correct "
                f"class x + y; crosses: the ghosts 2x and 2y.")


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
