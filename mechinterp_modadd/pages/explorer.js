// The explorer page's script (inlined by mechinterp_modadd/pages/explorer.py): decodes the packed
// arrays once, then redraws the figures with Plotly.react whenever a control changes. No network.
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
