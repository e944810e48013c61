"""The explorer page: an offline, self-contained HTML page rendering an
:class:`~mechinterp_modadd.analysis.explorer.ExplorerData` (nothing is computed here).

The page holds the precomputed arrays once, as JSON with base64-packed little-endian float32 (or
uint8) buffers, and a small hand-written script that redraws the figures with ``Plotly.react``
when a control changes; plotly.js is inlined once and the page makes no network request.

Figure ids (the browser test reads their ``data``): ``neuron-spectrum`` (alpha_k, beta_k of the
chosen neuron), ``neuron-fit`` (theta, its cosine fit, xi, its cosine fit), ``pair-logits``
(logits over z, the right answer marked), ``pair-contrib`` (signed contributions of every neuron
to the right answer, grouped by k* and sorted inside each group), ``step-grid`` (which pairs are
right at the chosen step; test pairs marked), ``step-dft`` (row-normalised |Fourier coefficients|
of W_in and W_out), ``step-counts`` (neurons per k*), ``abl-curve`` (accuracy against the keep
fraction for the chosen frequency groups).

Controls: ``neuron-index`` (number), ``neuron-k`` and ``neuron-in-group`` (selects),
``pair-a``/``pair-b`` (numbers), ``step-slider`` (range over checkpoint indices),
``abl-fraction`` (range over keep fractions) and ``abl-k-<k>`` (checkboxes).
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.explorer import ExplorerData
from .html import HtmlReport

__all__ = ["explorer_page", "save_explorer", "pack_array"]


def pack_array(a: np.ndarray, dtype: str = "f4", scale: float | None = None) -> dict[str, Any]:
    """``{"dtype", "shape", "b64"}``: the array as little-endian ``dtype`` bytes in base64.

    ``dtype="u1"`` with ``scale`` stores round(a * scale) clipped to 0..255 (the page divides by
    ``scale`` again): 8-bit quantisation for values in [0, 1] such as normalised heat-maps.
    """
    a = np.asarray(a)
    if dtype == "u1":
        q = a.astype(np.float64) * (1.0 if scale is None else scale)
        buf = np.clip(np.rint(q), 0, 255).astype("<u1")
    elif dtype == "f4":
        buf = a.astype("<f4")
    else:
        raise ValueError(f"unsupported dtype {dtype!r}")
    return {"dtype": dtype, "shape": list(a.shape), "scale": scale,
            "b64": base64.b64encode(buf.tobytes()).decode("ascii")}


def _payload(d: ExplorerData) -> dict[str, Any]:
    arrays = {
        "theta": pack_array(d.theta), "xi": pack_array(d.xi), "alpha": pack_array(d.alpha),
        "beta": pack_array(d.beta), "alpha_star": pack_array(d.alpha_star), "beta_star": pack_array(d.beta_star),
        "phi": pack_array(d.phi), "psi": pack_array(d.psi), "D": pack_array(d.D), "in_dc": pack_array(d.in_dc),
        "out_dc": pack_array(d.out_dc), "share": pack_array(d.share), "vote": pack_array(d.vote),
        "logits": pack_array(d.logits), "contributions": pack_array(d.contributions),
        "correct": pack_array(d.correct, "u1"),
        "dft_in": pack_array(d.dft_in, "u1", 255.0), "dft_out": pack_array(d.dft_out, "u1", 255.0),
        "ablation_accuracy": pack_array(d.ablation_accuracy),
    }
    if d.train_mask is not None:
        arrays["train_mask"] = pack_array(d.train_mask, "u1")
    return {
        "name": d.name, "source": d.source, "p": d.p, "d_mlp": d.d_mlp, "K": d.K,
        "activation": d.activation, "family": d.family, "final_step": d.final_step, "basis_labels": d.basis_labels,
        "frequency": d.frequency.astype(int).tolist(), "pair_index": d.pair_index.astype(int).tolist(),
        "steps": list(d.steps), "heatmap_neurons": d.heatmap_neurons.astype(int).tolist(),
        "counts": d.counts.astype(int).tolist(),
        "train_accuracy": [None if not np.isfinite(v) else float(v) for v in d.train_accuracy],
        "test_accuracy": [None if not np.isfinite(v) else float(v) for v in d.test_accuracy],
        "keep_fractions": d.keep_fractions.tolist(), "group_sets": d.group_sets.astype(int).tolist(),
        "ablation_draws": d.ablation_draws, "arrays": arrays,
    }


_CSS = """
.controls { background: #f6f8fa; border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; margin: .8em 0; }
.controls label { margin-right: 1.2em; white-space: nowrap; }
.controls input[type=number] { width: 5em; }
.controls input[type=range] { width: 60%; vertical-align: middle; }
.row { display: flex; flex-wrap: wrap; gap: 1em; } .row > div { flex: 1 1 480px; min-width: 0; }
table.params { border-collapse: collapse; font-size: .9em; } table.params td, table.params th {
  border: 1px solid #ccc; padding: 2px 8px; text-align: right; } table.params th { background: #f0f0f0; }
.abl-ks label { margin-right: .6em; } .readout { font-weight: bold; }
"""


def _script() -> str:
    """The page's script (``explorer.js`` beside this module, shipped as package data)."""
    from importlib.resources import files

    return files(__package__).joinpath("explorer.js").read_text(encoding="utf-8")


def explorer_page(d: ExplorerData) -> HtmlReport:
    """The page for ``d`` (an :class:`~mechinterp_modadd.pages.html.HtmlReport`; ``save`` writes it)."""
    page = HtmlReport(f"{d.name}: explorer", subtitle=d.source)
    K, S = d.K, len(d.steps)
    step = f", step {d.final_step}" if d.final_step is not None else ""
    page.raw(f"<style>{_CSS}</style>")
    fam = "" if d.family == "mlp" else f"family {d.family} (theta is u, the weights reading x), "
    page.text(f"{fam}p = {d.p}, d_mlp = {d.d_mlp}, activation {d.activation}{step}. "
              "Everything on this page was computed beforehand; the controls only choose what to draw.", cls="note")
    for n in d.notes:
        page.text(n, cls="note")
    final = f"the final checkpoint (step {d.final_step})" if d.final_step is not None else "the checkpoint"
    page.heading("Neuron")
    page.text(f"Pick a neuron by index, or by its dominant frequency k* and then a neuron of that group (sorted by "
              f"vote weight alpha^2 beta). Left: the magnitude of each frequency in its input weights theta_m "
              f"(alpha_k) and output weights xi_m (beta_k). Right: the weights themselves with the cosine at k* "
              f"(D = psi - 2 phi is near 0 for an aligned neuron). Shown for {final}.")
    page.raw("<div class='controls'>"
             f"<label>neuron <input type='number' id='neuron-index' min='0' max='{d.d_mlp - 1}' value='0'></label>"
             "<label>or k* <select id='neuron-k'></select></label>"
             "<label>then <select id='neuron-in-group'></select></label></div>"
             "<table class='params' id='neuron-params'></table>"
             "<div class='row'><div id='neuron-spectrum'></div><div id='neuron-fit'></div></div>")
    page.heading("Pair")
    page.text("Pick the inputs (a, b). Left: the logits over every class z, the right answer (a + b) mod p "
              "starred. Right: every neuron's signed contribution to the right answer's logit (these add up to "
              "it), grouped by k* and sorted inside each group: the majority vote, where many small noisy votes "
              f"agree on z. Shown for {final}.")
    page.raw("<div class='controls'>"
             f"<label>a <input type='number' id='pair-a' min='0' max='{d.p - 1}' value='{min(3, d.p - 1)}'></label>"
             f"<label>b <input type='number' id='pair-b' min='0' max='{d.p - 1}' value='{min(5, d.p - 1)}'></label>"
             "<span id='pair-message' class='readout'></span></div>"
             "<div class='row'><div id='pair-logits'></div><div id='pair-contrib'></div></div>")
    page.heading("Training steps" if S > 1 else "All pairs")
    page.text(("Move the slider over the run's checkpoints: which pairs the network gets right (test pairs circled), "
               "the Fourier coefficients of every neuron's weights (rows fixed, ordered by the final k*) and the "
               "number of neurons per dominant frequency.") if S > 1 else
              "One checkpoint: which pairs it gets right, its neurons' Fourier coefficients and the neurons per k*.")
    steps_txt = ", ".join(str(s) for s in d.steps)
    page.raw("<div class='controls'>"
             f"<label>checkpoint <input type='range' id='step-slider' min='0' max='{S - 1}' value='0' step='1'"
             f"{' disabled' if S == 1 else ''}></label>"
             f"<span id='step-label' class='readout'></span></div>"
             f"<p class='note'>steps: {html.escape(steps_txt)}</p>"
             "<div class='row'><div id='step-grid' style='flex: 0 0 560px'></div><div id='step-counts'></div></div>"
             "<div id='step-dft'></div>")
    page.heading("Ablation")
    page.text(f"Keep only the neurons whose k* is ticked and, inside each ticked group, a fraction of them (a "
              f"seeded random order, mean of {d.ablation_draws} orders); the others are zeroed after the "
              f"activation. Accuracy over all p^2 pairs of {final}, precomputed for every choice.")
    boxes = "".join(f"<label><input type='checkbox' id='abl-k-{k}' checked> {k}</label>" for k in range(1, K + 1))
    F = len(d.keep_fractions)
    page.raw("<div class='controls'>"
             f"<label>keep fraction <input type='range' id='abl-fraction' min='0' max='{F - 1}' value='{F - 1}' "
             "step='1'></label><br>"
             f"<span class='abl-ks'>groups k*: {boxes}</span> <button id='abl-all'>all</button> "
             "<button id='abl-none'>none</button><br><span id='abl-result' class='readout'></span></div>"
             "<div id='abl-curve'></div>")
    if d.embedding_spectra is not None or d.attention is not None:
        from .diagnosis import add_transformer_views

        page.heading("Embedding and attention (transformer)")
        add_transformer_views(page, d.embedding_spectra or {}, d.attention)
    data = json.dumps(_payload(d), separators=(",", ":")).replace("</", "<\\/")
    page.raw(f"<script type='application/json' id='explorer-data'>{data}</script>")
    page.raw(f"<script>{_script()}</script>")
    return page


def save_explorer(d: ExplorerData, path: str | os.PathLike) -> Path:
    """Render ``d`` and write the page atomically; returns the path."""
    return explorer_page(d).save(path)
