"""Figures of the majority-vote experiments (:mod:`mechinterp_modadd.analysis.majority`), one per
experiment. The page section that shows them is :mod:`mechinterp_modadd.pages.ablation`.

Each function takes the experiment's result object and returns a ``plotly.graph_objects.Figure``.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..analysis.majority import (
    HALF_ACCURACY_MIN,
    SINGLE_GROUP_MAX,
    AblationSuite,
    ActivationSwapResult,
    FrequencyGroupResult,
    NoiseScalingResult,
    PhaseBiasedResult,
    RandomAblationResult,
)
from ._style import log_axis

__all__ = [
    "random_ablation_figure",
    "frequency_group_figure",
    "phase_biased_figure",
    "activation_swap_figure",
    "noise_scaling_figure",
    "suite_figures",
]

_BLUE, _ORANGE, _GREY, _GREEN, _RED = "#1f77b4", "#ff7f0e", "#7f7f7f", "#2ca02c", "#d62728"


def _layout(fig: go.Figure, title: str, **kw) -> go.Figure:
    fig.update_layout(title=title, template="plotly_white", height=kw.pop("height", 380),
                      margin=dict(l=60, r=30, t=60, b=50), legend=dict(orientation="h", y=-0.2), **kw)
    return fig


def random_ablation_figure(result: RandomAblationResult) -> go.Figure:
    """Accuracy (mean, with the min-max range over draws) and mean margin against the fraction kept."""
    s = result.summary().sort_values("keep")
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=s["keep"], y=s["accuracy_mean"], mode="lines+markers", name="accuracy (mean over draws)",
        line=dict(color=_BLUE),
        error_y=dict(type="data", symmetric=False, array=s["accuracy_max"] - s["accuracy_mean"],
                     arrayminus=s["accuracy_mean"] - s["accuracy_min"])))
    fig.add_trace(go.Scatter(x=s["keep"], y=s["margin_mean"], mode="lines+markers", name="mean margin",
                             line=dict(color=_ORANGE, dash="dot"), yaxis="y2"))
    # a worded label at the left end: a bare "0.95" at the right read as one of the axis ticks
    fig.add_hline(y=HALF_ACCURACY_MIN, line=dict(color=_GREY, dash="dash"),
                  annotation_text=f"accuracy {HALF_ACCURACY_MIN} (the half-kept criterion)",
                  annotation_position="top left", annotation_font=dict(color=_GREY))
    return _layout(fig, f"Random ablation ({result.mode}-ablation, {result.rows['draw'].nunique()} draws)",
                   xaxis=dict(type="log", title="fraction of neurons kept", tickvals=list(s["keep"]),
                              ticktext=[f"{v:g}" for v in s["keep"]]),
                   yaxis=dict(title="accuracy on all pairs", range=[0, 1.05]),
                   yaxis2=dict(title="margin (correct - best other)", overlaying="y", side="right",
                               showgrid=False))


def frequency_group_figure(result: FrequencyGroupResult) -> go.Figure:
    """Per frequency group: accuracy with the group dropped, and with only the group kept."""
    r = result.rows
    fig = go.Figure()
    fig.add_trace(go.Bar(x=r["k"], y=r["drop_accuracy"], name="drop this group", marker_color=_BLUE,
                         customdata=r["n"], hovertemplate="k=%{x}, n=%{customdata}: %{y:.3f}"))
    fig.add_trace(go.Bar(x=r["k"], y=r["keep_accuracy"], name="keep only this group", marker_color=_ORANGE,
                         customdata=r["n"], hovertemplate="k=%{x}, n=%{customdata}: %{y:.3f}"))
    fig.add_hline(y=SINGLE_GROUP_MAX, line=dict(color=_GREY, dash="dash"),
                  annotation_text=f"single group limit {SINGLE_GROUP_MAX}")
    return _layout(fig, "Frequency groups: drop one / keep one", barmode="group",
                   xaxis=dict(title="frequency k", dtick=1), yaxis=dict(title="accuracy", range=[0, 1.05]))


def phase_biased_figure(result: PhaseBiasedResult) -> go.Figure:
    """Accuracy keeping a half circle of iota * phi in every group, against matched random halves."""
    r = result.rows
    x = [f"iota = {o}" for o in r["order"]]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=x, y=r["accuracy"], name="half circle of iota*phi kept", marker_color=_RED))
    fig.add_trace(go.Bar(
        x=x, y=r["matched_random_accuracy"], name=f"size-matched random ({result.draws} draws)",
        marker_color=_GREY,
        error_y=dict(type="data", symmetric=False, array=r["matched_random_max"] - r["matched_random_accuracy"],
                     arrayminus=r["matched_random_accuracy"] - r["matched_random_min"])))
    return _layout(fig, "Breaking the phase symmetry of order iota", barmode="group",
                   yaxis=dict(title="accuracy", range=[0, 1.05]))


def activation_swap_figure(result: ActivationSwapResult, p: int | None = None) -> go.Figure:
    """Accuracy with sigma swapped at test time; even activations in green, the others in blue."""
    r = result.rows
    colors = [_GREEN if e else _BLUE for e in r["even"]]
    fig = go.Figure(go.Bar(x=r["activation"], y=r["accuracy"], marker_color=colors, name="accuracy",
                           showlegend=False, text=[f"{a:.3f}" for a in r["accuracy"]], textposition="outside"))
    if p:
        # the chance line is named in the legend: a label on the line sat on the bars' own labels
        # (odd activations score about 1/p, so their labels are drawn right at the line)
        fig.add_hline(y=1 / p, line=dict(color=_GREY, dash="dash"))
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color=_GREY, dash="dash"),
                                 name=f"chance 1/p = {1 / p:.3f}", showlegend=True))
    return _layout(fig, f"Activation swap at test time (trained with {result.original}; green = even)",
                   yaxis=dict(title="accuracy", range=[0, 1.12]), xaxis=dict(title="activation"))


def noise_scaling_figure(result: NoiseScalingResult) -> go.Figure:
    """Log-log RMS of the coherent vote and of the noise against the voters per group, with fits."""
    d = result.per_n
    n = d["n"].to_numpy(dtype=float)
    fig = go.Figure()
    for col, name, color, slope, icpt in [
        ("coherent_rms", "coherent (peak + ghosts)", _BLUE, result.signal_exponent, result.signal_intercept),
        ("residual_rms", "residual (noise)", _RED, result.noise_exponent, result.noise_intercept),
    ]:
        fig.add_trace(go.Scatter(x=n, y=d[col], mode="markers", name=name, marker=dict(color=color, size=8)))
        if np.isfinite(slope):
            fig.add_trace(go.Scatter(x=n, y=np.exp(icpt) * n**slope, mode="lines", line=dict(color=color),
                                     name=f"fit n^{slope:.2f}"))
    return _layout(fig, "Noise cancellation: summed votes of n neurons per group",
                   xaxis=log_axis(n, title="neurons per group n"),
                   yaxis=log_axis(np.concatenate([d["coherent_rms"], d["residual_rms"]]), title="RMS over (x, y, j)"))


def suite_figures(suite: AblationSuite, p: int | None = None) -> list[tuple[go.Figure, str]]:
    """(figure, caption) for every experiment of an :class:`AblationSuite`."""
    return [
        (random_ablation_figure(suite.random),
         "Keep a random fraction of neurons (zero-ablate the rest): a majority vote degrades gracefully."),
        (frequency_group_figure(suite.groups),
         "Dropping one frequency group should cost nothing; one group alone should not suffice."),
        (phase_biased_figure(suite.phase_biased),
         "In every group keep the neurons whose iota*phi lies in one half circle (red) or a random subset of "
         "the same size (grey): the noise term of order iota no longer cancels in red."),
        (activation_swap_figure(suite.activation_swap, p),
         "Only the even part of sigma votes (docs/science.md 3.7): even activations keep accuracy, x and x^3 do not."),
    ] + ([] if suite.noise_scaling is None else [
        (noise_scaling_figure(suite.noise_scaling),
         "Coherent part (projection on cos/sin of w_k(x+y-j), w_k(2x-j), w_k(2y-j)) and residual of each group's "
         "summed vote: independent random phases give n^1 and n^0.5; symmetric phases make the noise smaller."),
    ])
