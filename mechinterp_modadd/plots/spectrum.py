"""Figures of the mechanism diagnostics: spectra, phases, magnitudes and the ghost logits.

Every function returns a ``plotly.graph_objects.Figure`` built from a
:class:`~mechinterp_modadd.fourier.NeuronSpectrum` or an analysis result (claim results, and the
figure data of :mod:`mechinterp_modadd.analysis.views`); nothing is computed here. For notebook
convenience the functions that draw weights or logits also accept a model or a logits tensor and
then call the analysis function that makes their data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..analysis import views
from ..analysis.views import CosineFits, LogitSlice, NeuronSample, sample_neurons
from ..fourier import NeuronSpectrum, neuron_spectrum, wrap

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


def _sample(model_or_sample, spectrum: NeuronSpectrum | None, n_neurons: int, seed: int) -> NeuronSample:
    if isinstance(model_or_sample, NeuronSample):
        return model_or_sample
    s = spectrum if spectrum is not None else neuron_spectrum(model_or_sample)
    return views.neuron_sample(model_or_sample, s, n_neurons, seed)


def dft_heatmaps(sample, spectrum: NeuronSpectrum | None = None, n_neurons: int = 48, seed: int = 0) -> go.Figure:
    """|Fourier coefficients| of theta_m (W_in) and xi_m (W_out) for a sample of neurons (rows).

    ``sample`` is a :class:`~mechinterp_modadd.analysis.views.NeuronSample` (each row already divided
    by its largest entry, so neurons of different norms share one colour scale); a model is accepted
    for convenience and its sample computed by :func:`~mechinterp_modadd.analysis.views.neuron_sample`.
    """
    smp = _sample(sample, spectrum, n_neurons, seed)
    rows = [f"n{int(i)} (k={int(k)})" for i, k in zip(smp.neurons, smp.frequency, strict=True)]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("W_in (theta_m)", "W_out (xi_m)"), horizontal_spacing=0.12)
    for col, coef in ((1, smp.in_coef), (2, smp.out_coef)):
        fig.add_trace(go.Heatmap(z=coef, x=smp.labels, y=rows, colorscale="Viridis", zmin=0, zmax=1,
                                 showscale=col == 2, colorbar=dict(title=dict(text="|coef| / row max", side="right")),
                                 hovertemplate="%{y}<br>%{x}: %{z:.3g} of the row max<extra></extra>"),
                      row=1, col=col)
    fig.update_yaxes(autorange="reversed", showticklabels=len(rows) <= 60)
    fig.update_xaxes(title_text="Fourier basis vector")
    fig.update_layout(height=max(350, 12 * len(rows) + 140), title="Fourier coefficients per neuron (sorted by k*)",
                      margin=dict(l=10, r=10, t=60, b=50))
    return fig


def cosine_fits(fits, spectrum: NeuronSpectrum | None = None, neurons: Sequence[int] | None = None,
                n: int = 4, seed: int = 0) -> go.Figure:
    """theta_m[j] (dots) against DC / sqrt(p) + alpha cos(w_k* j + phi) (line) for a few neurons.

    ``fits`` is a :class:`~mechinterp_modadd.analysis.views.CosineFits`; a model is accepted for
    convenience (with ``spectrum``, ``neurons``, ``n``, ``seed`` passed to
    :func:`~mechinterp_modadd.analysis.views.cosine_fits`).
    """
    if not isinstance(fits, CosineFits):
        s = spectrum if spectrum is not None else neuron_spectrum(fits)
        fits = views.cosine_fits(fits, s, neurons, n, seed)
    f = fits
    # two-line titles: one line per panel collided with its neighbours at notebook widths
    fig = make_subplots(rows=1, cols=len(f.neurons), subplot_titles=[
        f"neuron {int(m)}<br>k = {int(k)}, share {float(sh):.2f}"
        for m, k, sh in zip(f.neurons, f.frequency, f.share, strict=True)])
    j = np.arange(f.p)
    jj = np.linspace(0, f.p - 1, 20 * f.p)
    for c in range(len(f.neurons)):
        fig.add_trace(go.Scatter(x=j, y=f.theta[c], mode="markers", name="theta", showlegend=c == 0,
                                 marker=dict(color="#1f77b4")), row=1, col=c + 1)
        fig.add_trace(go.Scatter(x=jj, y=f.fit(c, jj), mode="lines", name="fit", showlegend=c == 0,
                                 line=dict(color="#d62728")), row=1, col=c + 1)
    fig.update_xaxes(title_text="j")
    fig.update_yaxes(title_text="theta_m[j]", col=1)
    fig.update_layout(height=350, title="Cosine fit of the input weights", margin=dict(l=10, r=10, t=100, b=10))
    return fig


def phase_alignment_scatter(spectrum: NeuronSpectrum, alignment=None) -> go.Figure:
    """psi against wrap(2 phi) at k*, coloured by k*; the diagonal is psi = 2 phi (for a
    ``concat_mlp`` spectrum, psi against wrap(phi_x + phi_y)).

    ``alignment`` (a :class:`~mechinterp_modadd.analysis.phases.PhaseAlignmentResult`) supplies the
    mean |sin d| of the title; without it the title shows no number.
    """
    s = spectrum
    # a concatenated-input network's spectrum has two input phases: its alignment is psi = phi_x + phi_y
    two = hasattr(s, "phi_y_star")
    target = wrap(s.phi_star + s.phi_y_star) if two else wrap(2 * s.phi_star)
    name = "phi_x + phi_y" if two else "2 phi"
    fig = go.Figure(go.Scatter(
        x=target.numpy(), y=s.psi_star.numpy(), mode="markers", name="neurons", showlegend=False,
        marker=dict(color=s.frequency.numpy(), colorscale="Turbo", size=5, cmin=1, cmax=s.K,
                    colorbar=dict(title="k*")),
        text=[f"neuron {m}, D = {d:.3f}" for m, d in enumerate(s.d.tolist())],
        hovertemplate=name.replace(" ", "") + " %{x:.3f}, psi %{y:.3f}<br>%{text}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[-math.pi, math.pi], y=[-math.pi, math.pi], mode="lines", name=f"psi = {name}",
                             line=dict(color="gray", dash="dash"), showlegend=False, hoverinfo="skip"))
    title = "Phase alignment"
    if alignment is not None:
        title += f": mean |sin(psi - {name})| = {alignment.mean_abs_sin_d:.3f}"
    fig.update_layout(title=title, xaxis_title=f"{name} (wrapped)", yaxis_title="psi", height=480, width=560,
                      showlegend=False)
    return fig


def phase_circles(spectrum: NeuronSpectrum, orders: Sequence[int] = (1, 2, 3, 4)) -> go.Figure:
    """iota * phi of every neuron on a ring of radius k* (one ring per frequency group), one panel per
    iota; the marker colour is k* too, with its colour scale on the right."""
    s = spectrum
    orders = list(orders)
    fig = make_subplots(rows=1, cols=len(orders), specs=[[{"type": "polar"}] * len(orders)],
                        subplot_titles=[f"iota = {o}" for o in orders])
    k = s.frequency.numpy()
    for c, o in enumerate(orders, start=1):
        ang = np.degrees(np.mod(o * s.phi_star.numpy(), 2 * np.pi))
        marker = dict(size=4, color=k, colorscale="Turbo", cmin=1, cmax=s.K)
        if c == len(orders):
            marker.update(showscale=True, colorbar=dict(title="k", len=0.8, thickness=12))
        fig.add_trace(go.Scatterpolar(r=k, theta=ang, mode="markers", showlegend=False, marker=marker,
                                      hovertemplate="k %{r}, angle %{theta:.0f} deg<extra></extra>"), row=1, col=c)
    fig.update_polars(radialaxis=dict(range=[0, s.K + 0.5], showticklabels=False),
                      angularaxis=dict(showticklabels=False))
    fig.update_layout(height=330, title="Phases iota * phi per frequency group (ring radius = k)",
                      margin=dict(l=20, r=20, t=80, b=20))
    return fig


def phase_moment_bars(symmetry) -> go.Figure:
    """Per-frequency moments |m_iota| (bars, one colour per iota) and the random baseline (line).

    ``symmetry`` is a :class:`~mechinterp_modadd.analysis.phases.PhaseSymmetryResult` (or the
    ``concat_mlp`` result, whose moments are of a phi_x + b phi_y; its ``moment_labels`` name them).
    """
    per = symmetry.per_frequency
    ks = [r["k"] for r in per]
    fig = go.Figure()
    labels = symmetry.moment_labels if hasattr(symmetry, "moment_labels") else \
        [f"iota = {o}" for o in symmetry.orders]
    for i, label in enumerate(labels):
        fig.add_trace(go.Bar(x=ks, y=[r["moments"][i] for r in per], name=label))
    fig.add_trace(go.Scatter(x=ks, y=[r["baseline"] for r in per], mode="lines+markers", name="random baseline",
                             line=dict(color="black", dash="dash")))
    fig.update_layout(barmode="group", title=f"Phase moments per frequency (Bonferroni Rayleigh p = "
                      f"{symmetry.corrected_p:.3g})", xaxis_title="k", yaxis_title="|mean exp(i iota phi)|",
                      height=380)
    return fig


def frequency_counts(spectrum: NeuronSpectrum, diversification=None) -> go.Figure:
    """Neurons per dominant frequency (bars) and each frequency's share of the vote weight (line).

    The share comes from ``diversification`` (a
    :class:`~mechinterp_modadd.analysis.features.DiversificationResult`), computed by
    :func:`~mechinterp_modadd.analysis.features.frequency_diversification` when not given.
    """
    from ..analysis.features import frequency_diversification

    s = spectrum
    div = diversification if diversification is not None else frequency_diversification(s)
    K = s.K
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    ks = np.arange(1, K + 1)
    fig.add_trace(go.Bar(x=ks, y=list(div.counts), name="neurons"), secondary_y=False)
    fig.add_trace(go.Scatter(x=ks, y=list(div.vote_share), name="vote share", mode="lines+markers"),
                  secondary_y=True)
    fig.add_hline(y=s.d_mlp / K, line_dash="dash", line_color="gray", annotation_text="M / K")
    fig.update_yaxes(title_text="neurons", secondary_y=False)
    fig.update_yaxes(title_text="share of alpha^2 beta", secondary_y=True, rangemode="tozero")
    title = "Neurons per frequency"
    if diversification is not None:
        title += f" (balance {diversification.balance:.3f})"
    # the legend above the plot, right: at its default place it covered the right axis title
    fig.update_layout(title=title, xaxis_title="k*", height=380,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1))
    return fig


def magnitude_histograms(spectrum: NeuronSpectrum, homogeneity=None) -> go.Figure:
    """Histograms of alpha, beta and the vote weight alpha^2 beta at k*.

    ``homogeneity`` (a :class:`~mechinterp_modadd.analysis.features.HomogeneityResult`) supplies the
    coefficient of variation shown in the title.
    """
    s = spectrum
    names = ("alpha (input)", "beta (output)", "vote alpha^2 beta")
    fig = make_subplots(rows=1, cols=3, subplot_titles=names)
    for c, v in enumerate((s.alpha_star, s.beta_star, s.vote_weight), start=1):
        fig.add_trace(go.Histogram(x=v.numpy(), nbinsx=50, showlegend=False), row=1, col=c)
        fig.update_xaxes(title_text=("alpha", "beta", "alpha^2 beta")[c - 1], row=1, col=c)
        fig.update_yaxes(title_text="neurons" if c == 1 else None, row=1, col=c)
    title = "Magnitudes at k*"
    if homogeneity is not None:
        title += f" (vote weight CV = {homogeneity.cv:.3g})"
    fig.update_layout(height=340, title=title, margin=dict(l=50, r=10, t=70, b=50))
    return fig


def logit_heatmap(logits, p: int | None = None, x: int = 3) -> go.Figure:
    """Centred logits f(x, y)[j] for one x: rows y, columns j; circles at x + y, crosses at the ghosts.

    ``logits`` is a :class:`~mechinterp_modadd.analysis.views.LogitSlice`, or all-pairs logits
    [p*p, p] (then ``p`` is required and the slice at ``x`` is taken).
    """
    sl = logits if isinstance(logits, LogitSlice) else views.logit_slice(logits, int(p), x)
    p, x = sl.p, sl.x
    L = sl.centred
    y = np.arange(p)
    fig = go.Figure(go.Heatmap(z=L, x=np.arange(p), y=y, colorscale="RdBu_r", zmid=0, name="logit",
                               colorbar=dict(title="centred logit", x=1.02),
                               hovertemplate="y %{y}, j %{x}: %{z:.3g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=(x + y) % p, y=y, mode="markers", name="x + y",
                             marker=dict(symbol="circle-open", size=9, color="black")))
    fig.add_trace(go.Scatter(x=np.full(p, (2 * x) % p), y=y, mode="markers", name="2x",
                             marker=dict(symbol="x-thin-open", size=7, color="green", line=dict(width=2))))
    fig.add_trace(go.Scatter(x=(2 * y) % p, y=y, mode="markers", name="2y",
                             marker=dict(symbol="cross-thin-open", size=7, color="purple", line=dict(width=2))))
    fig.update_layout(title=f"Centred logits for x = {x}", xaxis_title="class j", yaxis_title="y",
                      yaxis_autorange="reversed", height=560, width=640,
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0))
    return fig
