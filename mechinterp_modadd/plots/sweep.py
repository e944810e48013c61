"""Figures of a sweep: lottery success rates with intervals, the grokking phase diagram, claims
against p. Every function takes the aggregation frames of :mod:`mechinterp_modadd.analysis.sweep`
and returns a plotly ``Figure``; nothing here computes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["lottery_rates_figure", "phase_heatmap_figure", "claims_vs_p_figure", "seconds_vs_p_figure"]

_REGION_MARK = {"grokking": "G", "comprehension": "C", "memorisation only": "M", "confusion": "X"}


def lottery_rates_figure(summary: pd.DataFrame) -> go.Figure:
    """Mean success rate of each predictor per preset with its 95 % interval; chance dashed."""
    fig = go.Figure()
    for (preset, p), g in summary.groupby(["preset", "p"], sort=False):
        fig.add_trace(go.Bar(x=g["predictor"], y=g["success_rate"], name=f"{preset} (p = {p}, {g['n_seeds'].max()} "
                             f"seeds)", error_y=dict(type="data", symmetric=False,
                                                     array=g["ci_high"] - g["success_rate"],
                                                     arrayminus=g["success_rate"] - g["ci_low"])))
    for chance in sorted(set(summary["chance"].round(12))):
        fig.add_hline(y=chance, line_dash="dash", line_color="grey", annotation_text=f"chance 1/K = {chance:.3f}")
    fig.update_layout(barmode="group", yaxis_title="fraction of neurons whose winner is predicted",
                      yaxis_range=[0, 1.05], title="winner predictors from step-0 weights (mean over seeds, 95 % "
                      "bootstrap interval)", height=460)
    return fig


def phase_heatmap_figure(phase: pd.DataFrame, value: str, title: str, paper_point: tuple[float, float] | None,
                         colorbar: str) -> go.Figure:
    """Heat-map of ``value`` over (train fraction, weight decay) cells, each cell labelled with its
    region (G grokking, C comprehension, M memorisation only, X confusion); the paper's point circled."""
    wds = sorted(phase["weight_decay"].unique())
    tfs = sorted(phase["train_fraction"].unique())
    z = np.full((len(wds), len(tfs)), np.nan)
    text = [["" for _ in tfs] for _ in wds]
    for r in phase.itertuples():
        i, j = wds.index(r.weight_decay), tfs.index(r.train_fraction)
        v = getattr(r, value)
        z[i, j] = v
        num = "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3g}"
        text[i][j] = f"{_REGION_MARK[r.region]} {num}"
    xl, yl = [f"{t:g}" for t in tfs], [f"{w:g}" for w in wds]
    empty = bool(np.isnan(z).all())
    if empty:
        # no cell has a value (e.g. no seed grokked anywhere): light cells with their region letters and
        # a sentence, not a grey box under a colour bar without a scale
        fig = go.Figure(go.Heatmap(z=np.zeros_like(z), x=xl, y=yl, colorscale=[[0, "#eeeeee"], [1, "#eeeeee"]],
                                   showscale=False, hoverinfo="skip", name=value, xgap=1, ygap=1))
        fig.add_annotation(text=f"no cell has a value: {title.split(' (')[0]} is undefined everywhere "
                                f"(see the region letters)", xref="paper", yref="paper", x=0.5, y=1.0,
                           yanchor="bottom", showarrow=False, font=dict(color="#555"))
    else:
        fig = go.Figure(go.Heatmap(z=z, x=xl, y=yl, colorscale="Viridis", colorbar=dict(title=colorbar),
                                   hoverongaps=False, name=value))
    # labels as a text layer, so that cells without a value (never grokked) still show their region
    fig.add_trace(go.Scatter(x=[x for _ in yl for x in xl], y=[y for y in yl for _ in xl],
                             text=[t for row in text for t in row], mode="text", showlegend=False,
                             textfont=dict(color="#333" if empty else "white"), hoverinfo="skip"))
    if paper_point is not None and paper_point[0] in wds and paper_point[1] in tfs:
        fig.add_trace(go.Scatter(x=[f"{paper_point[1]:g}"], y=[f"{paper_point[0]:g}"], mode="markers",
                                 marker=dict(size=48, symbol="circle-open", color="red", line=dict(width=3)),
                                 name="the paper's point (wd 2.0, fraction 0.75)"))
    fig.update_layout(title=title, xaxis_title="train fraction", yaxis_title="weight decay", height=480,
                      xaxis=dict(type="category", categoryorder="array", categoryarray=xl),
                      yaxis=dict(type="category", categoryorder="array", categoryarray=yl),
                      plot_bgcolor="white" if empty else "#777", legend=dict(orientation="h", y=-0.2))
    return fig


def claims_vs_p_figure(summary: pd.DataFrame) -> go.Figure:
    """Each claim's key number against p, one panel per claim; markers filled where it holds."""
    claims = [c[: -len(".holds")] for c in summary.columns if c.endswith(".holds")]
    n = max(1, len(claims))
    cols = 2
    rows = math.ceil(n / cols)
    metrics = []
    for c in claims:
        m = [k for k in summary.columns if k.startswith(c + ".") and k != c + ".holds"]
        metrics.append(m[0] if m else None)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[m or c for c, m in zip(claims, metrics, strict=True)])
    for i, (c, m) in enumerate(zip(claims, metrics, strict=True)):
        if m is None:
            continue
        holds = summary[c + ".holds"] >= 0.5
        fig.add_trace(go.Scatter(x=summary["p"], y=summary[m], mode="lines+markers", name=c, showlegend=False,
                                 marker=dict(size=9, symbol=["circle" if h else "circle-open" for h in holds],
                                             color=["#1a7f37" if h else "#b42318" for h in holds]),
                                 line=dict(color="#888")), row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(height=260 * rows, title="key number of each claim against p (filled green: holds; "
                      "open red: fails)")
    return fig


def seconds_vs_p_figure(summary: pd.DataFrame) -> go.Figure:
    """Training wall time per run against p."""
    fig = go.Figure(go.Scatter(x=summary["p"], y=summary["train_seconds"], mode="lines+markers"))
    fig.update_layout(title="training time per run", xaxis_title="p", yaxis_title="seconds", height=360)
    return fig
