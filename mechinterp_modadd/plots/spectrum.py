"""Figures of the mechanism diagnostics: spectra, phases, magnitudes and the ghost logits.

Every function returns a ``plotly.graph_objects.Figure`` built from a model, a
:class:`~mechinterp_modadd.fourier.NeuronSpectrum` or an analysis result; nothing is computed here
that the analyses do not already define.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from torch import Tensor

from ..forward import weights64
from ..fourier import NeuronSpectrum, basis_labels, fourier_basis, neuron_spectrum, wrap

__all__ = [
    "sample_neurons",
    "dft_heatmaps",
    "cosine_fits",
    "phase_alignment_scatter",
    "phase_circles",
    "phase_moment_bars",
    "frequency_counts",
    "magnitude_histograms",
    "logit_heatmap",
]


def sample_neurons(spectrum: NeuronSpectrum, n: int = 48, seed: int = 0) -> np.ndarray:
    """Indices of up to ``n`` neurons (seeded sample), sorted by dominant frequency then phase."""
    M = spectrum.d_mlp
    rng = np.random.default_rng(seed)
    idx = np.arange(M) if M <= n else rng.choice(M, size=n, replace=False)
    k = spectrum.frequency.numpy()[idx]
    phi = spectrum.phi_star.numpy()[idx]
    return idx[np.lexsort((phi, k))]


def dft_heatmaps(model, spectrum: NeuronSpectrum | None = None, n_neurons: int = 48, seed: int = 0) -> go.Figure:
    """|Fourier coefficients| of theta_m (W_in) and xi_m (W_out) for a sample of neurons (rows).

    Each row is divided by its largest entry, so neurons of different norms share one colour scale.
    """
    s = spectrum if spectrum is not None else neuron_spectrum(model)
    w64 = weights64(model)
    theta, xi = w64.theta, w64.xi
    idx = sample_neurons(s, n_neurons, seed)
    B = fourier_basis(s.p)
    labels = basis_labels(s.p)
    rows = [f"n{int(i)} (k={int(s.frequency[i])})" for i in idx]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("W_in (theta_m)", "W_out (xi_m)"), horizontal_spacing=0.12)
    for col, w in ((1, theta), (2, xi)):
        coef = (w[idx] @ B.T).abs()
        coef = (coef / coef.amax(dim=1, keepdim=True).clamp(min=1e-300)).numpy()  # each row relative to its max
        fig.add_trace(go.Heatmap(z=coef, x=labels, y=rows, colorscale="Viridis", zmin=0, zmax=1,
                                 showscale=col == 2, colorbar=dict(title="|coef| / row max"),
                                 hovertemplate="%{y}<br>%{x}: %{z:.3g} of the row max<extra></extra>"),
                      row=1, col=col)
    fig.update_yaxes(autorange="reversed", showticklabels=len(idx) <= 60)
    fig.update_layout(height=max(350, 12 * len(idx) + 120), title="Fourier coefficients per neuron (sorted by k*)",
                      margin=dict(l=10, r=10, t=60, b=10))
    return fig


def cosine_fits(model, spectrum: NeuronSpectrum | None = None, neurons: Sequence[int] | None = None,
                n: int = 4, seed: int = 0) -> go.Figure:
    """theta_m[j] (dots) against DC / sqrt(p) + alpha cos(w_k* j + phi) (line) for a few neurons."""
    s = spectrum if spectrum is not None else neuron_spectrum(model)
    theta = weights64(model).theta
    p = s.p
    idx = list(neurons) if neurons is not None else list(sample_neurons(s, n, seed))
    fig = make_subplots(rows=1, cols=len(idx), subplot_titles=[
        f"neuron {int(m)}: k = {int(s.frequency[m])}, share {float(s.share[m]):.2f}" for m in idx])
    j = np.arange(p)
    jj = np.linspace(0, p - 1, 20 * p)
    for c, m in enumerate(idx, start=1):
        k = int(s.frequency[m])
        a, ph, dc = float(s.alpha_star[m]), float(s.phi_star[m]), float(s.in_dc[m]) / math.sqrt(p)
        fig.add_trace(go.Scatter(x=j, y=theta[m].numpy(), mode="markers", name="theta", showlegend=c == 1,
                                 marker=dict(color="#1f77b4")), row=1, col=c)
        fig.add_trace(go.Scatter(x=jj, y=dc + a * np.cos(2 * np.pi * k * jj / p + ph), mode="lines",
                                 name="fit", showlegend=c == 1, line=dict(color="#d62728")), row=1, col=c)
    fig.update_xaxes(title_text="j")
    fig.update_layout(height=330, title="Cosine fit of the input weights", margin=dict(l=10, r=10, t=70, b=10))
    return fig


def phase_alignment_scatter(spectrum: NeuronSpectrum) -> go.Figure:
    """psi against wrap(2 phi) at k*, coloured by k*; the diagonal is psi = 2 phi."""
    s = spectrum
    two_phi = wrap(2 * s.phi_star).numpy()
    fig = go.Figure(go.Scatter(
        x=two_phi, y=s.psi_star.numpy(), mode="markers",
        marker=dict(color=s.frequency.numpy(), colorscale="Turbo", size=5, colorbar=dict(title="k*")),
        text=[f"neuron {m}, D = {d:.3f}" for m, d in enumerate(s.d.tolist())],
        hovertemplate="2phi %{x:.3f}, psi %{y:.3f}<br>%{text}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[-math.pi, math.pi], y=[-math.pi, math.pi], mode="lines",
                             line=dict(color="gray", dash="dash"), showlegend=False))
    fig.update_layout(title=f"Phase alignment: mean |sin(psi - 2 phi)| = {float(s.d.sin().abs().mean()):.3f}",
                      xaxis_title="2 phi (wrapped)", yaxis_title="psi", height=480, width=560)
    return fig


def phase_circles(spectrum: NeuronSpectrum, orders: Sequence[int] = (1, 2, 3, 4)) -> go.Figure:
    """iota * phi of every neuron on a ring of radius k* (one ring per frequency group), one panel per iota."""
    s = spectrum
    orders = list(orders)
    fig = make_subplots(rows=1, cols=len(orders), specs=[[{"type": "polar"}] * len(orders)],
                        subplot_titles=[f"iota = {o}" for o in orders])
    k = s.frequency.numpy()
    for c, o in enumerate(orders, start=1):
        ang = np.degrees(np.mod(o * s.phi_star.numpy(), 2 * np.pi))
        fig.add_trace(go.Scatterpolar(r=k, theta=ang, mode="markers", showlegend=False,
                                      marker=dict(size=4, color=k, colorscale="Turbo"),
                                      hovertemplate="k %{r}, angle %{theta:.0f} deg<extra></extra>"), row=1, col=c)
    fig.update_polars(radialaxis=dict(range=[0, s.K + 0.5], showticklabels=False),
                      angularaxis=dict(showticklabels=False))
    fig.update_layout(height=330, title="Phases iota * phi per frequency group (ring radius = k)",
                      margin=dict(l=20, r=20, t=80, b=20))
    return fig


def phase_moment_bars(symmetry) -> go.Figure:
    """Per-frequency moments |m_iota| (bars, one colour per iota) and the random baseline (line).

    ``symmetry`` is a :class:`~mechinterp_modadd.analysis.phases.PhaseSymmetryResult`.
    """
    per = symmetry.per_frequency
    ks = [r["k"] for r in per]
    fig = go.Figure()
    for i, o in enumerate(symmetry.orders):
        fig.add_trace(go.Bar(x=ks, y=[r["moments"][i] for r in per], name=f"iota = {o}"))
    fig.add_trace(go.Scatter(x=ks, y=[r["baseline"] for r in per], mode="lines+markers", name="random baseline",
                             line=dict(color="black", dash="dash")))
    fig.update_layout(barmode="group", title=f"Phase moments per frequency (Bonferroni Rayleigh p = "
                      f"{symmetry.corrected_p:.3g})", xaxis_title="k", yaxis_title="|mean exp(i iota phi)|",
                      height=380)
    return fig


def frequency_counts(spectrum: NeuronSpectrum, diversification=None) -> go.Figure:
    """Neurons per dominant frequency (bars) and each frequency's share of the vote weight (line)."""
    s = spectrum
    K = s.K
    counts = s.counts().numpy()
    vw = s.vote_weight
    vote = torch.zeros(K, dtype=torch.float64).index_add_(0, s.frequency - 1, vw)
    share = (vote / vote.sum()).numpy() if float(vote.sum()) > 0 else np.zeros(K)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    ks = np.arange(1, K + 1)
    fig.add_trace(go.Bar(x=ks, y=counts, name="neurons"), secondary_y=False)
    fig.add_trace(go.Scatter(x=ks, y=share, name="vote share", mode="lines+markers"), secondary_y=True)
    fig.add_hline(y=s.d_mlp / K, line_dash="dash", line_color="gray", annotation_text="M / K")
    fig.update_yaxes(title_text="neurons", secondary_y=False)
    fig.update_yaxes(title_text="share of alpha^2 beta", secondary_y=True, rangemode="tozero")
    title = "Neurons per frequency"
    if diversification is not None:
        title += f" (balance {diversification.balance:.3f})"
    fig.update_layout(title=title, xaxis_title="k*", height=360)
    return fig


def magnitude_histograms(spectrum: NeuronSpectrum) -> go.Figure:
    """Histograms of alpha, beta and the vote weight alpha^2 beta at k*."""
    s = spectrum
    fig = make_subplots(rows=1, cols=3, subplot_titles=("alpha (input)", "beta (output)", "vote alpha^2 beta"))
    for c, v in enumerate((s.alpha_star, s.beta_star, s.vote_weight), start=1):
        fig.add_trace(go.Histogram(x=v.numpy(), nbinsx=50, showlegend=False), row=1, col=c)
    vw = s.vote_weight
    cv = float(vw.std(unbiased=False) / vw.mean()) if float(vw.mean()) != 0 else float("inf")
    fig.update_layout(height=320, title=f"Magnitudes at k* (vote weight CV = {cv:.3g})",
                      margin=dict(l=10, r=10, t=70, b=10))
    return fig


def logit_heatmap(logits: Tensor, p: int, x: int = 3) -> go.Figure:
    """Centred logits f(x, y)[j] for one x: rows y, columns j; circles at x + y, crosses at the ghosts."""
    L = torch.as_tensor(logits, dtype=torch.float64).reshape(p, p, p)[x]  # [y, j]
    L = (L - L.mean(dim=1, keepdim=True)).numpy()
    y = np.arange(p)
    fig = go.Figure(go.Heatmap(z=L, x=np.arange(p), y=y, colorscale="RdBu_r", zmid=0,
                               hovertemplate="y %{y}, j %{x}: %{z:.3g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=(x + y) % p, y=y, mode="markers", name="x + y",
                             marker=dict(symbol="circle-open", size=9, color="black")))
    fig.add_trace(go.Scatter(x=np.full(p, (2 * x) % p), y=y, mode="markers", name="2x",
                             marker=dict(symbol="x-thin-open", size=7, color="green", line=dict(width=2))))
    fig.add_trace(go.Scatter(x=(2 * y) % p, y=y, mode="markers", name="2y",
                             marker=dict(symbol="cross-thin-open", size=7, color="purple", line=dict(width=2))))
    fig.update_layout(title=f"Centred logits for x = {x}", xaxis_title="class j", yaxis_title="y",
                      yaxis_autorange="reversed", height=560, width=620,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    return fig
