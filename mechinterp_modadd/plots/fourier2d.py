"""Figures of the 2D Fourier analysis (:mod:`mechinterp_modadd.fourier2d`): heat maps and fractions.

Every function draws a finished :class:`~mechinterp_modadd.fourier2d.Fourier2D` (or the activation
table it came from, passed beside it); nothing is computed here beyond picking entries.

- :func:`coefficient_heatmap`: one neuron's 2D coefficients as a p x p heat map (rows: the x basis
  Const, cos 1, sin 1, ...; columns: the y basis), the way TransformerLens users read a neuron;
- :func:`activation_heatmap`: a neuron's activation over the (x, y) grid;
- :func:`fraction_histogram`: the per-neuron fraction of variance one frequency explains, for one or
  more decompositions side by side (e.g. two families, or pre and post);
- :func:`frequency_energy_bars`: the energy per frequency summed over neurons, key frequencies marked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from torch import Tensor

from ..fourier import basis_labels
from ..fourier2d import Fourier2D

__all__ = ["coefficient_heatmap", "activation_heatmap", "fraction_histogram", "frequency_energy_bars",
           "summary_histogram"]


def coefficient_heatmap(f: Fourier2D, neuron: int = 0, *, energy: bool = False, title: str | None = None) -> go.Figure:
    """Neuron ``neuron``'s 2D Fourier coefficients (signed; squared with ``energy``) as a heat map."""
    g = f.grid(neuron, energy=energy).numpy()
    labels = basis_labels(f.p)
    k = int(f.best_frequency[neuron])
    frac = float(f.best_fraction[neuron])
    lim = float(np.abs(g).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=g, x=[f"{s} y" if s != "Const" else "Const" for s in labels],
                               y=[f"{s} x" if s != "Const" else "Const" for s in labels],
                               colorscale="Viridis" if energy else "RdBu", zmid=None if energy else 0.0,
                               zmin=0 if energy else -lim, zmax=lim if not energy else None,
                               colorbar=dict(title="energy" if energy else "coefficient")))
    fig.update_layout(title=title or f"Neuron {neuron}: 2D Fourier coefficients (k = {k} explains {frac:.1%})",
                      yaxis=dict(autorange="reversed"), height=520, width=600)
    return fig


def activation_heatmap(acts: Tensor, p: int, neuron: int = 0, *, title: str | None = None) -> go.Figure:
    """Neuron ``neuron``'s activation over the grid (x down, y across); ``acts`` is [p*p, n]."""
    a = acts[:, neuron].detach().cpu().double().reshape(p, p).numpy()
    fig = go.Figure(go.Heatmap(z=a, colorscale="RdBu", zmid=0.0, colorbar=dict(title="activation")))
    fig.update_layout(title=title or f"Neuron {neuron} over (x, y)", xaxis_title="y", yaxis_title="x",
                      yaxis=dict(autorange="reversed"), height=480, width=520)
    return fig


def fraction_histogram(decompositions: Mapping[str, Fourier2D], *, bins: int = 40,
                       title: str = "Variance explained by one frequency, per neuron") -> go.Figure:
    """Overlaid histograms of :attr:`Fourier2D.best_fraction`, one per named decomposition."""
    fig = go.Figure()
    for name, f in decompositions.items():
        s = f.summary()
        fig.add_trace(go.Histogram(x=f.best_fraction.numpy(), name=f"{name} (median {s['median']:.2f}, "
                                   f"10th pct {s['p10']:.2f})", opacity=0.6, xbins=dict(start=0, end=1, size=1 / bins)))
    fig.update_layout(barmode="overlay", title=title, xaxis_title="fraction of the neuron's variance",
                      yaxis_title="neurons", height=420)
    return fig


def frequency_energy_bars(f: Fourier2D, key: Sequence[int] | None = None, *,
                          title: str = "Energy per frequency, summed over neurons") -> go.Figure:
    """The frequency energy summed over neurons (the norm behind the top-k key frequencies), the
    frequencies in ``key`` highlighted."""
    tot = f.energy.sum(0).numpy()
    ks = list(range(1, f.K + 1))
    key = set(key or [])
    colors = ["#d62728" if k in key else "#1f77b4" for k in ks]
    fig = go.Figure(go.Bar(x=ks, y=tot, marker_color=colors))
    fig.update_layout(title=title, xaxis_title="k", yaxis_title="energy", height=380)
    return fig


def summary_histogram(summary, *, bins: int = 40) -> go.Figure:
    """Histograms of the per-neuron fractions held by a diagnosis'
    :class:`~mechinterp_modadd.diagnose.Fourier2DSummary` (pre- and post-activations)."""
    fig = go.Figure()
    for name, vals, s in (("pre", summary.pre_fractions, summary.pre), ("post", summary.post_fractions, summary.post)):
        fig.add_trace(go.Histogram(x=list(vals), name=f"{name} (median {s['median']:.2f}, 10th pct {s['p10']:.2f})",
                                   opacity=0.6, xbins=dict(start=0, end=1, size=1 / bins)))
    fig.update_layout(barmode="overlay", title="Variance explained by one frequency, per neuron (2D Fourier)",
                      xaxis_title="fraction of the neuron's variance", yaxis_title="neurons", height=400)
    return fig
