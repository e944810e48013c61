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
from ..report import HtmlReport

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
        "activation": d.activation, "final_step": d.final_step, "basis_labels": d.basis_labels,
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

# The page's script: decodes the packed arrays once, then redraws figures on every control change.
_JS = r"""
(function () {
const D = JSON.parse(document.getElementById('explorer-data').textContent);
const p = D.p, M = D.d_mlp, K = D.K;
function bytes(s) { const b = atob(s), u = new Uint8Array(b.length); for (let i = 0; i < b.length; i++) u[i] = b.charCodeAt(i); return u; }
const A = {};
for (const [k, v] of Object.entries(D.arrays)) {
  const u = bytes(v.b64);
  if (v.dtype === 'f4') { A[k] = new Float32Array(u.buffer); }
  else if (v.scale) { const f = new Float32Array(u.length); for (let i = 0; i < u.length; i++) f[i] = u[i] / v.scale; A[k] = f; }
  else { A[k] = u; }
}
const row = (arr, i, n) => Array.from(arr.subarray(i * n, (i + 1) * n));
const cfg = {displaylogo: false, responsive: true};
const fmt = (v, d) => (v === null || v === undefined || Number.isNaN(v)) ? 'n/a' : Number(v).toFixed(d);
const ks = Array.from({length: K}, (_, i) => i + 1);
const kColor = k => 'hsl(' + Math.round(300 * (k - 1) / Math.max(1, K - 1)) + ',70%,45%)';

// ------------------------------------------------------------------ neuron panel
const byK = ks.map(k => []);
for (let m = 0; m < M; m++) byK[D.frequency[m] - 1].push(m);
for (const g of byK) g.sort((a, b) => A.vote[b] - A.vote[a]);
const selK = document.getElementById('neuron-k'), selN = document.getElementById('neuron-in-group');
const inN = document.getElementById('neuron-index');
selK.innerHTML = ks.map(k => '<option value="' + k + '">k* = ' + k + ' (' + byK[k - 1].length + ' neurons)</option>').join('');
function fillGroup(k, chosen) {
  selN.innerHTML = byK[k - 1].map(m => '<option value="' + m + '">neuron ' + m + ' (vote ' + A.vote[m].toPrecision(3) + ')</option>').join('');
  if (chosen !== undefined) selN.value = String(chosen);
}
function drawNeuron(m) {
  const k = D.frequency[m];
  if (String(selK.value) !== String(k)) { selK.value = String(k); fillGroup(k, m); } else { selN.value = String(m); }
  inN.value = String(m);
  const a = row(A.alpha, m, K), b = row(A.beta, m, K);
  Plotly.react('neuron-spectrum', [
    {type: 'bar', x: ks, y: a, name: 'alpha_k (W_in)', marker: {color: '#1f77b4'}},
    {type: 'bar', x: ks, y: b, name: 'beta_k (W_out)', marker: {color: '#ff7f0e'}}],
    {title: {text: 'Neuron ' + m + ': Fourier magnitudes, k* = ' + k}, barmode: 'group', height: 340,
     xaxis: {title: {text: 'frequency k'}, dtick: 1}, yaxis: {title: {text: 'magnitude'}},
     legend: {orientation: 'h', y: -0.25}, margin: {t: 50, l: 60, r: 10, b: 60}}, cfg);
  const j = Array.from({length: p}, (_, i) => i);
  const jj = Array.from({length: 20 * (p - 1) + 1}, (_, i) => i / 20);
  const w = 2 * Math.PI * k / p;
  const fitIn = jj.map(t => A.in_dc[m] / Math.sqrt(p) + A.alpha_star[m] * Math.cos(w * t + A.phi[m]));
  const fitOut = jj.map(t => A.out_dc[m] / Math.sqrt(p) + A.beta_star[m] * Math.cos(w * t + A.psi[m]));
  Plotly.react('neuron-fit', [
    {x: j, y: row(A.theta, m, p), mode: 'markers', name: 'theta_m[j]', marker: {color: '#1f77b4'}},
    {x: jj, y: fitIn, mode: 'lines', name: 'alpha cos(w j + phi)', line: {color: '#1f77b4', dash: 'dot'}},
    {x: j, y: row(A.xi, m, p), mode: 'markers', name: 'xi_m[j]', marker: {color: '#ff7f0e', symbol: 'diamond'}, xaxis: 'x2', yaxis: 'y2'},
    {x: jj, y: fitOut, mode: 'lines', name: 'beta cos(w j + psi)', line: {color: '#ff7f0e', dash: 'dot'}, xaxis: 'x2', yaxis: 'y2'}],
    {title: {text: 'Cosine fits at k* = ' + k}, height: 340, grid: {rows: 1, columns: 2, pattern: 'independent'},
     xaxis: {title: {text: 'j (input token)'}}, xaxis2: {title: {text: 'j (output class)'}},
     legend: {orientation: 'h', y: -0.3}, margin: {t: 50, l: 60, r: 10, b: 70}}, cfg);
  document.getElementById('neuron-params').innerHTML =
    '<tr><th>neuron</th><th>k*</th><th>alpha</th><th>beta</th><th>phi</th><th>psi</th><th>D = psi - 2 phi</th><th>share at k*</th><th>vote alpha^2 beta</th></tr>' +
    '<tr><td>' + m + '</td><td>' + k + '</td><td>' + fmt(A.alpha_star[m], 4) + '</td><td>' + fmt(A.beta_star[m], 4) +
    '</td><td>' + fmt(A.phi[m], 3) + '</td><td>' + fmt(A.psi[m], 3) + '</td><td>' + fmt(A.D[m], 3) +
    '</td><td>' + fmt(A.share[m], 3) + '</td><td>' + A.vote[m].toPrecision(4) + '</td></tr>';
}
selK.addEventListener('change', () => { const k = +selK.value; fillGroup(k); drawNeuron(byK[k - 1][0]); });
selN.addEventListener('change', () => drawNeuron(+selN.value));
inN.addEventListener('change', () => { const m = Math.max(0, Math.min(M - 1, Math.round(+inN.value || 0))); drawNeuron(m); });

// -------------------------------------------------------------------- pair panel
const pairRow = new Map(D.pair_index.map((v, i) => [v, i]));
const inA = document.getElementById('pair-a'), inB = document.getElementById('pair-b');
function drawPair() {
  const a = Math.max(0, Math.min(p - 1, Math.round(+inA.value || 0))), b = Math.max(0, Math.min(p - 1, Math.round(+inB.value || 0)));
  inA.value = String(a); inB.value = String(b);
  const r = pairRow.get(a * p + b), msg = document.getElementById('pair-message');
  if (r === undefined) { msg.textContent = 'pair (' + a + ', ' + b + ') is not among the stored pairs'; return; }
  const z = (a + b) % p, L = row(A.logits, r, p);
  let best = 0; for (let i = 1; i < p; i++) if (L[i] > L[best]) best = i;
  msg.textContent = 'right answer z = ' + z + '; the network answers ' + best + (best === z ? ' (right)' : ' (wrong)');
  const zs = Array.from({length: p}, (_, i) => i);
  Plotly.react('pair-logits', [
    {type: 'bar', x: zs, y: L, name: 'logit', marker: {color: zs.map(i => i === z ? '#2ca02c' : '#9aa4b1')}},
    {x: [z], y: [L[z]], mode: 'markers+text', name: 'right answer', text: ['z = ' + z], textposition: 'top center',
     marker: {symbol: 'star', size: 14, color: '#2ca02c'}}],
    {title: {text: 'Logits of (' + a + ', ' + b + ') over z'}, height: 340, xaxis: {title: {text: 'class z'}, dtick: p > 40 ? 5 : 1},
     yaxis: {title: {text: 'logit'}}, showlegend: false, margin: {t: 50, l: 60, r: 10, b: 50}}, cfg);
  const c = row(A.contributions, r, M);
  const traces = [];
  let pos = 0, nPos = 0;
  for (const k of ks) {
    const g = byK[k - 1].slice().sort((u, v) => c[v] - c[u]);
    if (!g.length) continue;
    traces.push({type: 'bar', x: g.map((_, i) => pos + i), y: g.map(m => c[m]), name: 'k* = ' + k,
                 marker: {color: kColor(k)}, customdata: g, hovertemplate: 'neuron %{customdata}: %{y:.4g}<extra>k* = ' + k + '</extra>'});
    pos += g.length; nPos += g.filter(m => c[m] > 0).length;
  }
  Plotly.react('pair-contrib', traces,
    {title: {text: 'Each neuron\'s vote for z = ' + z + ' (sum ' + L[z].toFixed(3) + '; ' + nPos + ' of ' + M + ' neurons vote for it)'},
     height: 380, bargap: 0, xaxis: {title: {text: 'neurons, grouped by k*, sorted by vote'}, showticklabels: false},
     yaxis: {title: {text: 'W_out[z, m] sigma(theta_m[a] + theta_m[b])'}}, margin: {t: 50, l: 70, r: 10, b: 50}}, cfg);
}
inA.addEventListener('change', drawPair); inB.addEventListener('change', drawPair);

// -------------------------------------------------------------------- step panel
const slider = document.getElementById('step-slider');
const H = D.heatmap_neurons.length;
const rowLabels = D.heatmap_neurons.map(m => 'n' + m + ' (k*=' + D.frequency[m] + ')');
const train = A.train_mask;
const testX = [], testY = [];
if (train) for (let i = 0; i < p * p; i++) if (!train[i]) { testX.push(i % p); testY.push(Math.floor(i / p)); }
function drawStep() {
  const s = Math.round(+slider.value), step = D.steps[s];
  const ok = row(A.correct, s, p * p);
  const z = Array.from({length: p}, (_, a) => ok.slice(a * p, (a + 1) * p));
  document.getElementById('step-label').textContent = 'step ' + step + ': train accuracy ' + fmt(D.train_accuracy[s], 4) +
    (train ? ', test accuracy ' + fmt(D.test_accuracy[s], 4) : ' (no held-out pairs)');
  const grid = [{type: 'heatmap', z: z, x: Array.from({length: p}, (_, i) => i), y: Array.from({length: p}, (_, i) => i),
                 zmin: 0, zmax: 1, colorscale: [[0, '#d62728'], [0.5, '#d62728'], [0.5, '#2ca02c'], [1, '#2ca02c']],
                 showscale: false, hovertemplate: 'a %{y}, b %{x}: %{z}<extra>1 = right</extra>'}];
  if (train) grid.push({x: testX, y: testY, mode: 'markers', name: 'test pair', marker: {symbol: 'circle-open', size: 5, color: 'black'},
                        hovertemplate: 'test pair (%{y}, %{x})<extra></extra>'});
  Plotly.react('step-grid', grid,
    {title: {text: 'Right (green) and wrong (red) pairs at step ' + step + (train ? '; circles: test pairs' : '')}, height: 520, width: 540,
     xaxis: {title: {text: 'b'}, constrain: 'domain'}, yaxis: {title: {text: 'a'}, autorange: 'reversed', scaleanchor: 'x'},
     legend: {orientation: 'h', y: -0.15}, margin: {t: 50, l: 50, r: 10, b: 50}}, cfg);
  const hin = [], hout = [];
  for (let h = 0; h < H; h++) { hin.push(row(A.dft_in, s * H + h, p)); hout.push(row(A.dft_out, s * H + h, p)); }
  const hm = {type: 'heatmap', x: D.basis_labels, y: rowLabels, zmin: 0, zmax: 1, colorscale: 'Viridis'};
  Plotly.react('step-dft', [
    Object.assign({}, hm, {z: hin, showscale: false, hovertemplate: '%{y}<br>%{x}: %{z:.2f}<extra>W_in</extra>'}),
    Object.assign({}, hm, {z: hout, xaxis: 'x2', yaxis: 'y2', colorbar: {title: {text: '|coef| / row max'}},
                           hovertemplate: '%{y}<br>%{x}: %{z:.2f}<extra>W_out</extra>'})],
    {title: {text: '|Fourier coefficients| per neuron at step ' + step + ' (rows ordered by final k*)'},
     grid: {rows: 1, columns: 2, pattern: 'independent'}, height: 560,
     yaxis: {autorange: 'reversed', showticklabels: false, title: {text: 'neurons (W_in)'}},
     yaxis2: {autorange: 'reversed', showticklabels: false, title: {text: 'neurons (W_out)'}},
     margin: {t: 50, l: 60, r: 10, b: 60}}, cfg);
  Plotly.react('step-counts', [{type: 'bar', x: ks, y: D.counts[s], name: 'neurons', marker: {color: ks.map(kColor)}}],
    {title: {text: 'Neurons per dominant frequency at step ' + step}, height: 320,
     xaxis: {title: {text: 'k*'}, dtick: 1}, yaxis: {title: {text: 'neurons'}}, margin: {t: 50, l: 60, r: 10, b: 50},
     shapes: [{type: 'line', xref: 'paper', x0: 0, x1: 1, y0: M / K, y1: M / K, line: {dash: 'dash', color: 'gray'}}]}, cfg);
}
slider.addEventListener('input', drawStep);

// ----------------------------------------------------------------- ablation panel
const fr = document.getElementById('abl-fraction'), G = D.group_sets.length, F = D.keep_fractions.length;
const setIndex = new Map(D.group_sets.map((v, i) => [v, i]));
function chosenBits() { let bits = 0; for (const k of ks) if (document.getElementById('abl-k-' + k).checked) bits += 2 ** (k - 1); return bits; }
function drawAblation() {
  const f = Math.round(+fr.value), bits = chosenBits(), g = setIndex.get(bits), out = document.getElementById('abl-result');
  const chosen = ks.filter(k => document.getElementById('abl-k-' + k).checked);
  if (g === undefined) {
    out.textContent = bits === 0 ? 'choose at least one frequency group' : 'this set of groups was not precomputed (for large p: all groups, one group, or all but one)';
    Plotly.react('abl-curve', [], {title: {text: 'no data for this choice'}, height: 340}, cfg); return;
  }
  const curve = D.keep_fractions.map((_, i) => A.ablation_accuracy[i * G + g]);
  out.textContent = 'keep ' + Math.round(100 * D.keep_fractions[f]) + ' % of the neurons of k* in {' + chosen.join(', ') +
    '}: accuracy ' + curve[f].toFixed(4) + ' over all ' + p * p + ' pairs (mean of ' + D.ablation_draws + ' seeded draws)';
  Plotly.react('abl-curve', [
    {x: D.keep_fractions, y: curve, mode: 'lines+markers', name: 'accuracy'},
    {x: [D.keep_fractions[f]], y: [curve[f]], mode: 'markers', name: 'chosen', marker: {size: 14, color: '#d62728', symbol: 'circle-open', line: {width: 3}}}],
    {title: {text: 'Accuracy keeping a fraction of the neurons of k* in {' + chosen.join(', ') + '}'}, height: 340,
     xaxis: {title: {text: 'keep fraction inside each chosen group'}}, yaxis: {title: {text: 'accuracy'}, range: [0, 1.02]},
     showlegend: false, margin: {t: 50, l: 60, r: 10, b: 50}}, cfg);
}
fr.addEventListener('input', drawAblation);
for (const k of ks) document.getElementById('abl-k-' + k).addEventListener('change', drawAblation);
document.getElementById('abl-all').addEventListener('click', () => { for (const k of ks) document.getElementById('abl-k-' + k).checked = true; drawAblation(); });
document.getElementById('abl-none').addEventListener('click', () => { for (const k of ks) document.getElementById('abl-k-' + k).checked = false; drawAblation(); });

fillGroup(D.frequency[0]);
drawNeuron(0); drawPair(); drawStep(); drawAblation();
window.explorerReady = true;
})();
"""


def explorer_page(d: ExplorerData) -> HtmlReport:
    """The page for ``d`` (an :class:`~mechinterp_modadd.report.HtmlReport`; ``save`` writes it)."""
    page = HtmlReport(f"modadd explore: {d.name}")
    K, S = d.K, len(d.steps)
    step = f", step {d.final_step}" if d.final_step is not None else ""
    page.raw(f"<style>{_CSS}</style>")
    page.text(f"{d.source}: p = {d.p}, d_mlp = {d.d_mlp}, activation {d.activation}{step}. "
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
    data = json.dumps(_payload(d), separators=(",", ":")).replace("</", "<\\/")
    page.raw(f"<script type='application/json' id='explorer-data'>{data}</script>")
    page.raw(f"<script>{_JS}</script>")
    return page


def save_explorer(d: ExplorerData, path: str | os.PathLike) -> Path:
    """Render ``d`` and write the page atomically; returns the path."""
    return explorer_page(d).save(path)
