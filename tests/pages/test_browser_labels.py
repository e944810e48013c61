"""Figure labels do not collide, checked where they are drawn: in a real browser (Playwright driving
Chromium), at the widths of a narrow notebook (700 px), the tutorials' static PNGs (900 px) and the
report pages (1100 px).

Covered: every figure of the ablation suite (the activation swap's "chance 1/p" against its bar
labels, the random ablation's criterion line), the Fourier-feature figures of tutorial 02 (the
cosine fits' subplot titles, the DFT heat-maps' colour bar, the frequency counts' legend against
the right axis title), the sweep figures (the grokking phase diagram with and without values) and
tutorial 09's heat-map (its tick labels must sit on the cells), the transformer's embedding spectrum
and attention heat-maps. Each check has a negative control
built the old way, which the check must flag.
"""

from __future__ import annotations

import re

import nbformat
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import pytest
from helpers import DATA, REPO
from labels import Box, collisions, label_boxes, ticks_off_cells

pytestmark = pytest.mark.slow

WIDTHS = (700, 900, 1100)
_NUMBER = re.compile(r"^[-+]?\d*\.?\d+(e[-+]?\d+)?$")


@pytest.fixture(scope="module")
def model_figures() -> dict[str, go.Figure]:
    from mechinterp_modadd.analysis.majority import run_ablation_suite
    from mechinterp_modadd.analysis.phases import phase_symmetry
    from mechinterp_modadd.checkpoint import load_checkpoint
    from mechinterp_modadd.fourier import neuron_spectrum
    from mechinterp_modadd.plots import ablation as pa
    from mechinterp_modadd.plots import spectrum as sp

    model = load_checkpoint(DATA / "standard_p23" / "checkpoints" / "step_005000.safetensors").model
    spec = neuron_spectrum(model)
    figs = {f"ablation {i}: {f.layout.title.text}": f for i, (f, _) in enumerate(pa.suite_figures(
        run_ablation_suite(model), model.cfg.p))}
    figs.update({"dft heat-maps": sp.dft_heatmaps(model, spec, n_neurons=32),
                 "cosine fits": sp.cosine_fits(model, spec, n=4),
                 "phase alignment": sp.phase_alignment_scatter(spec),
                 "phase circles": sp.phase_circles(spec),
                 "phase moments": sp.phase_moment_bars(phase_symmetry(spec)),
                 "frequency counts": sp.frequency_counts(spec),
                 "magnitudes": sp.magnitude_histograms(spec)})
    from mechinterp_modadd.analysis.transformer_claims import transformer_extras
    from mechinterp_modadd.plots import transformer as tp
    from mechinterp_modadd.transformer import ModAddTransformer, TransformerConfig

    extras = transformer_extras(ModAddTransformer(TransformerConfig(p=23, d_model=32, n_heads=4, d_head=8,
                                                                    d_mlp=64), seed=0))
    figs.update({"embedding spectrum": tp.embedding_spectrum_bars(extras["embedding_sparse"]),
                 "attention heat-maps": tp.attention_heatmaps(extras["attention"])})
    return figs


def _phase(values) -> pd.DataFrame:
    return pd.DataFrame({"weight_decay": [0.0, 0.0, 1.0, 1.0], "train_fraction": [0.5, 0.75, 0.5, 0.75],
                         "median_grok_step": values, "final_test_accuracy": [0.1, 0.4, 0.97, 0.99],
                         "region": ["memorisation only", "memorisation only", "grokking", "grokking"]})


def _sweep_figures() -> dict[str, go.Figure]:
    from mechinterp_modadd.analysis.sweep import PAPER_POINT
    from mechinterp_modadd.plots import sweep as ps

    return {
        "steps to grok (some cells)": ps.phase_heatmap_figure(_phase([np.nan, np.nan, 3000.0, 1200.0]),
                                                              "median_grok_step", "steps to grok", PAPER_POINT,
                                                              "steps"),
        "steps to grok (no cell)": ps.phase_heatmap_figure(_phase([np.nan] * 4), "median_grok_step",
                                                           "steps to grok (test accuracy >= 0.95)", PAPER_POINT,
                                                           "steps"),
        "final test accuracy": ps.phase_heatmap_figure(_phase([np.nan] * 4), "final_test_accuracy",
                                                       "final test accuracy", PAPER_POINT, "accuracy"),
    }


def _tutorial09_heatmap(df: pd.DataFrame) -> go.Figure:
    """The heat-map cell of tutorial 09, run on ``df`` (its source read from the notebook)."""
    nb = nbformat.read(REPO / "tutorials" / "09_sweeps.ipynb", as_version=4)
    cell = next(c.source for c in nb.cells if c.cell_type == "code" and "px.imshow" in c.source)
    ns = {"df": df, "px": px}
    exec(compile(cell.replace("fig.show()", ""), "tutorial 09", "exec"), ns)
    return ns["fig"]


_T09 = pd.DataFrame({"weight_decay": [0.0, 0.0, 0.0, 1.0, 1.0, 1.0],
                     "train_fraction": [0.3, 0.5, 0.75, 0.3, 0.5, 0.75],
                     "final_test_accuracy": [0.1, 0.5, 0.9, 0.2, 0.6, 0.95]})


def test_no_label_collides_at_any_width(model_figures):
    figs = {**model_figures, **_sweep_figures(), "tutorial 09": _tutorial09_heatmap(_T09)}
    bad = []
    for width in WIDTHS:
        boxes = label_boxes(figs, width=width)
        assert set(boxes) == set(figs)
        for name, b in boxes.items():
            assert any(x.kind == "title" for x in b) or name.startswith("ablation"), f"{name}: nothing measured"
            bad += [f"{width} px: {c}" for c in collisions(b)]
    assert bad == [], "\n".join(bad)


def test_line_labels_are_words_not_numbers_that_read_as_ticks(model_figures):
    boxes = label_boxes(model_figures, width=900)
    bare = [f"{b.figure}: {b.text!r}" for bs in boxes.values() for b in bs
            if b.kind == "annotation" and _NUMBER.match(b.text)]
    assert bare == []


def test_activation_swap_names_chance_in_the_legend(model_figures):
    name = next(n for n in model_figures if "Activation swap" in n)
    boxes = label_boxes({name: model_figures[name]}, width=900)[name]
    assert any(b.kind == "legend text" and b.text.startswith("chance 1/p = 0.043") for b in boxes)


def test_tutorial09_ticks_sit_on_the_cells():
    boxes = label_boxes({"tutorial 09": _tutorial09_heatmap(_T09)}, width=900)["tutorial 09"]
    assert sum(b.kind == "tick" for b in boxes) == 5  # 3 train fractions, 2 weight decays
    assert ticks_off_cells(boxes, n_columns=3, n_rows=2) == []


def test_a_phase_diagram_without_values_says_so_instead_of_a_grey_box():
    figs = _sweep_figures()
    boxes = label_boxes(figs, width=900)
    empty = boxes["steps to grok (no cell)"]
    assert not any(b.kind.startswith("colorbar") for b in empty)
    assert any(b.kind == "annotation" and "no cell has a value" in b.text for b in empty)
    assert sum(b.kind == "data text" and b.text == "M" for b in empty) == 2  # the region letters stay
    some = boxes["steps to grok (some cells)"]
    assert any(b.kind == "colorbar box" for b in some)
    assert not any(b.kind == "annotation" and "no cell" in b.text for b in some)


# ------------------------------------------------------------------------------ negative controls
def test_the_checks_flag_figures_drawn_the_old_way():
    acc = [1.0, 1.0, 1.0, 1.0, 0.656, 0.603, 0.047, 0.043]
    bars = go.Figure(go.Bar(x=["relu", "abs", "quad", "quartic", "softplus2", "exp", "identity", "cube"], y=acc,
                            text=[f"{a:.3f}" for a in acc], textposition="outside"))
    bars.add_hline(y=1 / 23, line_dash="dash", annotation_text="chance 1/p")  # the old activation swap
    bars.update_layout(title="old activation swap", yaxis_range=[0, 1.12], height=380, template="plotly_white",
                       margin=dict(l=60, r=30, t=60, b=50))
    titles = go.Figure(go.Scatter(y=[1, 2]))
    titles.add_annotation(text="a long label placed right over the y tick labels", xref="paper", yref="y",
                          x=0.0, y=1.5, xanchor="right", showarrow=False)
    titles.update_yaxes(tickvals=[1, 1.5, 2])
    titles.update_layout(title="annotation on the ticks")
    numeric = px.imshow(_T09.pivot(index="weight_decay", columns="train_fraction", values="final_test_accuracy"),
                        text_auto=".3f", aspect="auto", title="numeric axes")  # tutorial 09 before the fix
    boxes = label_boxes({"old swap": bars, "on ticks": titles, "numeric": numeric}, width=900)
    assert any("chance 1/p" in c and "0.04" in c for c in collisions(boxes["old swap"]))
    assert any("annotation" in c and "tick" in c for c in collisions(boxes["on ticks"]))
    assert ticks_off_cells(boxes["numeric"], n_columns=3, n_rows=2) != []


def test_collisions_of_boxes():
    a = Box("f", "tick", "1", 0, 0, 10, 10)
    assert collisions([a, Box("f", "annotation", "x", 5, 5, 20, 20)]) != []
    assert collisions([a, Box("f", "annotation", "x", 10, 0, 20, 10)]) == []  # touching is fine
    assert collisions([Box("f", "legend text", "a", 0, 0, 10, 10), Box("f", "legend box", "legend", 0, 0, 50, 50)]) \
        == []
