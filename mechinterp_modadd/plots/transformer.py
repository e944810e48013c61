"""Figures of Nanda et al.'s views of the one-layer transformer: the embedding's Fourier spectrum
and the attention at ``=`` over the (x, y) grid.

Both draw finished results of :mod:`mechinterp_modadd.analysis.transformer_views`
(:class:`~mechinterp_modadd.analysis.transformer_views.EmbeddingSpectrum` and
:class:`~mechinterp_modadd.analysis.transformer_views.AttentionPatterns`); nothing is computed here.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..analysis.transformer_views import AttentionPatterns, EmbeddingSpectrum

__all__ = ["embedding_spectrum_bars", "attention_heatmaps"]

#: Panels per row of :func:`attention_heatmaps` (more heads wrap onto further rows).
HEADS_PER_ROW = 2


def embedding_spectrum_bars(spectrum: EmbeddingSpectrum) -> go.Figure:
    """Norm of each frequency k of the embedding (bars; the key frequencies highlighted), with the
    Gini coefficient of the norms and the key frequencies' energy share in the title."""
    norms = list(spectrum.norms or [])
    ks = list(range(1, len(norms) + 1))
    keys = set(spectrum.key_frequencies or [])
    colors = ["#d62728" if k in keys else "#9aa5b1" for k in ks]
    fig = go.Figure(go.Bar(x=ks, y=norms, marker_color=colors, name="norm",
                           customdata=["key frequency" if k in keys else "" for k in ks],
                           hovertemplate="k = %{x}: norm %{y:.4g} %{customdata}<extra></extra>"))
    verdict = "sparse" if spectrum.holds else "not sparse"
    fig.update_layout(
        title=dict(text=f"Embedding Fourier spectrum: Gini {spectrum.gini:.3f}, {spectrum.n_keys} key "
                        f"frequencies carry {spectrum.key_energy_share:.0%} ({verdict})<br>"
                        f"<sup>key frequencies (red): {sorted(keys)}</sup>"),
        xaxis_title="frequency k", yaxis_title="norm of the cos k and sin k rows",
        height=380, margin=dict(l=10, r=10, t=90, b=10), showlegend=False, bargap=0.15)
    return fig


def attention_heatmaps(attention: AttentionPatterns) -> go.Figure:
    """Per head, the attention weight of the ``=`` query on the x token as a heat map over the
    inputs (x, y) (one panel per head, shared 0..1 colour scale); each panel's title gives the
    head's mean weight on x, y and ``=`` and, when the weight varies, its best 2D frequency with
    the share of its variance it explains. The weight on y is one minus those on x and ``=``."""
    a = attention
    n = a.n_heads
    cols = min(n, HEADS_PER_ROW)
    rows = math.ceil(n / cols)
    titles = []
    for h in range(n):
        m = [float(a.mean_weight[h, i]) for i in range(3)]
        freq = (f"k={a.x_best_frequency[h]} ({a.x_best_fraction[h]:.0%})" if a.x_best_frequency[h] else "flat")
        titles.append(f"head {h}: {freq}<br>x {m[0]:.2f} · y {m[1]:.2f} · = {m[2]:.2f}")
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.06,
                        vertical_spacing=0.3 / rows if rows > 1 else 0.1)
    axis = list(range(a.p))
    for h in range(n):
        fig.add_trace(go.Heatmap(z=a.pattern[h, 0].tolist(), x=axis, y=axis, zmin=0, zmax=1, colorscale="Viridis",
                                 showscale=h == 0, colorbar=dict(title=dict(text="weight on x", side="right")),
                                 hovertemplate=f"head {h}<br>x = %{{y}}, y = %{{x}}: weight on x %{{z:.3f}}"
                                               "<extra></extra>"),
                      row=h // cols + 1, col=h % cols + 1)
    fig.update_xaxes(title_text="y", row=rows)
    fig.update_yaxes(title_text="x", col=1)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Attention of '=' on x over the inputs (x, y), per head",
                      height=140 + 300 * rows, margin=dict(l=10, r=10, t=120, b=10))
    return fig
