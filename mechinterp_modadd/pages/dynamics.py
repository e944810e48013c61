"""The training-dynamics sections of a page (``modadd track --html`` and ``modadd report`` of a run),
rendered from a :class:`~mechinterp_modadd.dynamics.RunDynamics`: nothing is computed here.

Numbers carry their path in the ``track`` JSON document (``data-json``), prefixed by
``json_prefix`` when the document is nested (``dynamics.`` in the report's JSON).
"""

from __future__ import annotations

from ..dynamics import LIST_KEYS, RunDynamics
from ..plots.dynamics import (
    dft_snapshots_figure,
    grokking_figures,
    lottery_contour_figure,
    race_figure,
    trajectory_figure,
)
from .html import HtmlReport, number

__all__ = ["add_dynamics_sections", "progress_table"]


def progress_table(page: HtmlReport, dyn: RunDynamics, json_prefix: str = "") -> None:
    """The progress measures, one row per checkpoint (columns that are NaN throughout are left out)."""
    m = dyn.measures
    cols = [c for c in m.columns if m[c].notna().any()]
    df = m[cols].reset_index()

    def path(i: int, col: str) -> str | None:
        if col == "step":
            return f"{json_prefix}steps.{i}"
        return f"{json_prefix}{col}.{i}" if col in LIST_KEYS else None

    page.table(df, json_path=path, table_id="progress")


def add_dynamics_sections(page: HtmlReport, dyn: RunDynamics, json_prefix: str = "") -> None:
    """Append the progress table, the grokking stages and their figures, the DFT snapshots, the
    frequency race, the lottery table and the decoupled flow of ``dyn``."""
    j = json_prefix
    page.heading("Progress measures")
    page.text("All measures are recomputed from the weights in float64 (stored metrics are not used).",
              cls="note")
    progress_table(page, dyn, j)
    r = getattr(dyn, "restricted", None)
    if r is not None:
        page.text(f"Restricted / excluded loss (Nanda et al.; docs/science.md section 7) at the last checkpoint, keys "
                  f"{r.keys} ({r.key_rule}): restricted {r.restricted_loss:.4g} on {r.eval_pairs} pairs "
                  f"({r.restricted_loss_all:.4g} on all), excluded {r.excluded_loss:.4g} on the training pairs: "
                  f"{r.verdict}" + (f" ({r.reason})" if r.reason else "") + ".", cls="note")
    st = dyn.stages
    page.heading("Grokking stages")
    page.raw(f"<p>End of stage I = {number(str(st.end_stage1), j + 'stages.0')}, end of stage II = "
             f"{number(str(st.end_stage2), j + 'stages.1')}. Rule: the first checkpoint with train accuracy >= "
             f"{st.train_threshold}, then the first later checkpoint with test accuracy >= {st.test_threshold}.</p>")
    for fig in grokking_figures(dyn.measures, st.boundaries, dyn.partition_counts):
        page.figure(fig)
    if dyn.snapshots is not None:
        page.figure(dft_snapshots_figure(dyn.snapshots, order_by=dyn.final_spectrum),
                    caption="Fourier energy of W_in per neuron at the first checkpoint and at the stage boundaries.")
    page.heading("Lottery ticket")
    if dyn.race is not None:
        page.figure(race_figure(dyn.race))
    if dyn.lottery is not None:
        df = dyn.lottery.to_frame()
        names = list(df["predictor"])

        def path(i: int, col: str) -> str | None:
            return {"success_rate": f"{j}lottery.{names[i]}", "chance": f"{j}lottery.chance",
                    "x_chance": f"{j}lottery_x_chance.{names[i]}"}.get(col)

        page.table(df, json_path=path, table_id="lottery")
    elif "lottery_ticket" in dyn.undefined:
        page.text(f"The lottery ticket is undefined for family {dyn.family}: {dyn.undefined['lottery_ticket']}.",
                  cls="note")
    else:
        page.text("Step 0 is not in this run: the predictors need the initial weights.", cls="note")
    if dyn.flow is not None:
        f = dyn.flow
        page.heading("Decoupled flow (Quad, docs/science.md section 4)")
        page.figure(trajectory_figure(f.trajectory, ()),
                    caption=f"One (neuron, frequency) flow from D(0) = {f.d0:.3g} rad.")
        page.figure(lottery_contour_figure(f.contour),
                    caption="Final beta over initial magnitude and initial D: winners at large magnitude and "
                            "small |D|, nothing near D = pi.")
