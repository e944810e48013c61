"""Figures of training dynamics: the frequency race, the decoupled flow, the grokking stages.

Every function takes analysis results (or spectra) and returns a plotly ``Figure``; nothing here
computes (the ODE is integrated by :func:`mechinterp_modadd.dynamics.run_dynamics`). The page
sections that show them are in :mod:`mechinterp_modadd.pages.dynamics`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..fourier import NeuronSpectrum
from ._style import log_axis

__all__ = ["race_figure", "lottery_contour_figure", "trajectory_figure", "stage_shading", "loss_figure",
           "accuracy_figure", "sin_d_figure", "ipr_norm_figure", "partition_figure", "grokking_figures",
           "dft_snapshots_figure"]

_STAGE_COLOURS = ("rgba(31,119,180,0.10)", "rgba(255,127,14,0.12)", "rgba(44,160,44,0.10)")
_GREY = "rgba(140,140,140,0.55)"


# ------------------------------------------------------------------------------ the race
def race_figure(race: Any, title: str | None = None) -> go.Figure:
    """D(t) and beta(t) of every frequency of one neuron; the winner is drawn thick in colour.

    ``race`` is a :class:`~mechinterp_modadd.analysis.lottery.FrequencyRace`.
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("phase misalignment D = wrap(2 phi - psi)", "output magnitude beta"))
    df = race.frame
    for k, g in df.groupby("k"):
        win = int(k) == race.winner
        line = dict(width=3.5, color="#d62728") if win else dict(width=1.2, color=_GREY)
        name = f"k = {k}" + (" (winner)" if win else "")
        fig.add_trace(go.Scatter(x=g["step"], y=g["D"], mode="lines", line=line, name=name, legendgroup=str(k),
                                 showlegend=True), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["step"], y=g["beta"], mode="lines", line=line, name=name, legendgroup=str(k),
                                 showlegend=False), row=2, col=1)
    fig.update_yaxes(title_text="D (rad)", range=[-math.pi, math.pi], row=1, col=1)
    fig.update_yaxes(title_text="beta", row=2, col=1, **log_axis(df["beta"]))
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(title=title or f"Frequency race of neuron {race.neuron} (winner k = {race.winner})",
                      height=620, template="plotly_white")
    return fig


def lottery_contour_figure(contour: Any, title: str | None = None) -> go.Figure:
    """log10 of the final beta over initial D (x) and initial magnitude (y): the lottery contour.

    ``contour`` is a :class:`~mechinterp_modadd.analysis.ode.LotteryContour`.
    """
    z = np.log10(contour.final_beta.numpy())
    fig = go.Figure(go.Contour(x=contour.d0.numpy(), y=contour.magnitudes.numpy(), z=z, colorscale="Viridis",
                               colorbar=dict(title="log10 beta(T)"), contours=dict(showlabels=True)))
    fig.add_vline(x=math.pi, line=dict(dash="dash", color="white"), annotation_text="D = pi")
    default = f"Lottery contour of the decoupled flow (p = {contour.p}, T = {contour.t_end:.3g})"
    fig.update_layout(title=title or default,
                      xaxis_title="initial D = 2 phi - psi (rad)", yaxis_title="initial magnitude alpha = beta",
                      template="plotly_white", height=480)
    return fig


def trajectory_figure(traj: Any, index: int | tuple[int, ...] = 0, title: str | None = None) -> go.Figure:
    """One flow: psi and 2 phi converging (top), then alpha and beta taking off (bottom, log).

    ``traj`` is a :class:`~mechinterp_modadd.analysis.ode.FlowTrajectory`.
    """
    df = traj.to_frame(index)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("phases (wrapped)", "magnitudes"))
    fig.add_trace(go.Scatter(x=df.t, y=df.psi, name="psi", mode="lines"), row=1, col=1)
    fig.add_trace(go.Scatter(x=df.t, y=df.two_phi, name="2 phi", mode="lines"), row=1, col=1)
    fig.add_trace(go.Scatter(x=df.t, y=df.D, name="D = 2 phi - psi", mode="lines", line=dict(dash="dot")),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=df.t, y=df.alpha, name="alpha", mode="lines"), row=2, col=1)
    fig.add_trace(go.Scatter(x=df.t, y=df.beta, name="beta", mode="lines"), row=2, col=1)
    fig.update_yaxes(title_text="rad", row=1, col=1)
    fig.update_yaxes(title_text="magnitude", row=2, col=1, **log_axis(np.concatenate([df.alpha, df.beta])))
    fig.update_xaxes(title_text="time (ODE units)", row=2, col=1)
    fig.update_layout(title=title or "Decoupled flow: phases align first, then magnitudes take off",
                      height=600, template="plotly_white")
    return fig


# ------------------------------------------------------------------------------ grokking
def stage_shading(fig: go.Figure, boundaries: list[int | None], first: float, last: float,
                  row: int | None = None, col: int | None = None) -> go.Figure:
    """Shade stage I, II and III behind a figure's traces (a missing boundary ends the shading)."""
    b1, b2 = (list(boundaries) + [None, None])[:2]
    e1 = last if b1 is None else float(b1)
    e2 = last if b2 is None or b1 is None else float(b2)
    edges = [first, e1, max(e1, e2), last]
    names = ("I memorisation", "II generalisation", "III clean-up")
    kw = {} if row is None else dict(row=row, col=col)
    for i in range(min(3, len(edges) - 1)):
        if edges[i + 1] <= edges[i]:
            continue
        # labels alternate between the top and the bottom so a short stage I does not hide stage II's
        fig.add_vrect(x0=edges[i], x1=edges[i + 1], fillcolor=_STAGE_COLOURS[i], line_width=0, layer="below",
                      annotation_text=names[i], annotation_position="bottom left" if i == 1 else "top left",
                      **kw)
    return fig


def _line_figure(m: pd.DataFrame, cols: list[str], title: str, ytitle: str, boundaries: list[int | None],
                 log_y: bool = False) -> go.Figure:
    fig = go.Figure()
    for c in cols:
        if c in m and m[c].notna().any():
            fig.add_trace(go.Scatter(x=m.index, y=m[c], mode="lines+markers", name=c, marker=dict(size=4)))
    stage_shading(fig, boundaries, float(m.index[0]), float(m.index[-1]))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title=ytitle, template="plotly_white", height=380)
    if log_y:
        fig.update_yaxes(**log_axis(m[cols].to_numpy()))
    return fig


def loss_figure(m: pd.DataFrame, boundaries: list[int | None]) -> go.Figure:
    """Train and test loss (log scale), stages shaded, with Nanda et al.'s restricted and excluded
    loss (the ``restricted_loss`` and ``excluded_loss`` columns) where the measures hold them."""
    cols = ["train_loss", "test_loss"] + [c for c in ("restricted_loss", "excluded_loss")
                                          if c in m and m[c].notna().any()]
    clipped = m[cols].clip(lower=1e-12)
    title = "Loss" if len(cols) == 2 else "Loss, restricted and excluded loss"
    return _line_figure(clipped, cols, title, "cross-entropy", boundaries, log_y=True)


def accuracy_figure(m: pd.DataFrame, boundaries: list[int | None]) -> go.Figure:
    return _line_figure(m, ["train_accuracy", "test_accuracy"], "Accuracy", "accuracy", boundaries)


def sin_d_figure(m: pd.DataFrame, boundaries: list[int | None]) -> go.Figure:
    return _line_figure(m, ["mean_abs_sin_d"], "Phase alignment: mean |sin(psi - 2 phi)|", "mean |sin d|",
                        boundaries)


def ipr_norm_figure(m: pd.DataFrame, boundaries: list[int | None]) -> go.Figure:
    """Mean frequency IPR (left axis) with the parameter norm (right axis), stages shaded."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=m.index, y=m["ipr"], name="mean IPR", mode="lines+markers", marker=dict(size=4)),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=m.index, y=m["param_norm"], name="parameter norm", mode="lines",
                             line=dict(dash="dash")), secondary_y=True)
    stage_shading(fig, boundaries, float(m.index[0]), float(m.index[-1]))
    fig.update_yaxes(title_text="frequency IPR", secondary_y=False)
    fig.update_yaxes(title_text="L2 norm", secondary_y=True)
    fig.update_layout(title="Sparsity of features (IPR) and parameter norm", xaxis_title="step",
                      template="plotly_white", height=380)
    return fig


def partition_figure(m: pd.DataFrame, boundaries: list[int | None], counts: dict[str, int] | None = None
                     ) -> go.Figure:
    """Accuracy on the four mirror partitions, common to rare: train both orders, test mirrored,
    train one order, test truly unseen."""
    # test_mirrored often equals train_one_order exactly (a mirrored test pair is predicted like its
    # one-order train twin): dashes and distinct markers keep both lines visible on top of each other
    style = {"train_both_orders_accuracy": dict(line=dict(width=2), marker=dict(size=5, symbol="circle")),
             "test_mirrored_accuracy": dict(line=dict(width=3, dash="dash"),
                                            marker=dict(size=9, symbol="diamond-open", line=dict(width=2))),
             "train_one_order_accuracy": dict(line=dict(width=1.5), marker=dict(size=5, symbol="square")),
             "test_unseen_accuracy": dict(line=dict(width=2, dash="dot"), marker=dict(size=6, symbol="x"))}
    fig = go.Figure()
    for c, kw in style.items():
        if c in m and m[c].notna().any():
            key = c.removesuffix("_accuracy")
            name = key + (f" (n = {counts[key]})" if counts and key in counts else "")
            fig.add_trace(go.Scatter(x=m.index, y=m[c], mode="lines+markers", name=name, **kw))
    stage_shading(fig, boundaries, float(m.index[0]), float(m.index[-1]))
    fig.update_layout(title="Accuracy by mirror partition (common to rare)", xaxis_title="step",
                      yaxis_title="accuracy", template="plotly_white", height=400)
    return fig


def grokking_figures(m: pd.DataFrame, boundaries: list[int | None], counts: dict[str, int] | None = None
                     ) -> list[go.Figure]:
    """Loss, accuracy, |sin d|, IPR with norm and (when present) the partition accuracies."""
    figs = [loss_figure(m, boundaries), accuracy_figure(m, boundaries), sin_d_figure(m, boundaries),
            ipr_norm_figure(m, boundaries)]
    parts = [c for c in ("test_mirrored_accuracy", "test_unseen_accuracy", "train_both_orders_accuracy",
                         "train_one_order_accuracy") if c in m]
    if any(m[c].notna().any() for c in parts):
        figs.append(partition_figure(m, boundaries, counts))
    return figs


def dft_snapshots_figure(spectra: dict[int, NeuronSpectrum], order_by: NeuronSpectrum | None = None,
                         title: str | None = None) -> go.Figure:
    """Heatmaps of W_in's Fourier energy per neuron and frequency at a few steps.

    Rows are neurons sorted by their dominant frequency in ``order_by`` (e.g. the final spectrum;
    default: the last snapshot), columns k = 1..K; each row is normalised to its total non-DC
    energy.
    """
    steps = list(spectra)
    ref = order_by if order_by is not None else spectra[steps[-1]]
    order = np.argsort(ref.frequency.numpy(), kind="stable")
    fig = make_subplots(rows=1, cols=len(steps), subplot_titles=[f"step {s}" for s in steps],
                        shared_yaxes=True, horizontal_spacing=0.03)
    for i, s in enumerate(steps):
        e = spectra[s].in_energy.numpy()[order]
        e = e / np.maximum(e.sum(1, keepdims=True), 1e-300)
        fig.add_trace(go.Heatmap(z=e, x=np.arange(1, e.shape[1] + 1), colorscale="Blues", zmin=0, zmax=1,
                                 showscale=(i == len(steps) - 1), colorbar=dict(title="energy share")),
                      row=1, col=i + 1)
        fig.update_xaxes(title_text="frequency k", row=1, col=i + 1)
    fig.update_yaxes(title_text="neuron (sorted by final k*)", row=1, col=1)
    fig.update_layout(title=title or "W_in in the Fourier basis", height=520, template="plotly_white")
    return fig
