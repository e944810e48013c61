"""The research page of a sweep folder (``modadd report DIR --out PAGE.html``).

Reads ``DIR/results.csv`` and ``DIR/sweep.json`` into a :class:`~mechinterp_modadd.analysis.sweep.SweepTable`,
aggregates it with the page's function of :mod:`mechinterp_modadd.analysis.sweep` and lays out the
figures of :mod:`mechinterp_modadd.plots.sweep`, the aggregate table and the full results table.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..analysis import sweep as agg
from .html import HtmlReport

__all__ = ["is_sweep_folder", "build_sweep_page"]


def is_sweep_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / "sweep.json").is_file()


def build_sweep_page(path: str | os.PathLike, n_planned: int | None = None) -> HtmlReport:
    """The page of the sweep in ``path``: its research page when the spec names one, else the table.
    ``n_planned``: the runs the spec plans (the page then says how many of them are complete)."""
    from ..plots import sweep as figs

    table = agg.SweepTable.from_folder(path)
    spec = table.spec
    page = HtmlReport(f"modadd sweep: {spec.get('name') or Path(path).name}")
    n = table.n_complete
    done = f"{n} run{'' if n == 1 else 's'}" if n_planned in (None, n) else f"{n} of {n_planned} planned runs complete"
    page.text(f"{done}; grid: " + "; ".join(f"{k} = {v}" for k, v in spec.get("grid", {}).items()))
    kind = spec.get("page")
    if kind == "lottery":
        s = agg.lottery_summary(table)
        page.heading("Which frequency wins a neuron? Predictors from step-0 weights across seeds")
        page.text("Each run: the fraction of neurons whose final dominant frequency equals the prediction "
                  "from the step-0 weights alone (argmin |D(0)|, argmax alpha(0), argmax alpha beta cos D(0), "
                  "and the decoupled flow integrated from step 0). Across seeds: the mean with a 95 % percentile "
                  "bootstrap interval (10,000 resamples of the seeds); chance is 1/K. 'seeds_above_chance' is the "
                  "fraction of seeds on which the predictor beats chance.")
        page.figure(figs.lottery_rates_figure(s))
        page.table(s)
        v = agg.lottery_verdicts(table)
        page.heading("The lottery claim over seeds, per arm")
        page.text("The claim (ours): the decoupled flow names the final frequency of at least "
                  f"{v['threshold'].iloc[0]:g} of the neurons. Stated over seeds, not one seed's number: the median "
                  "and mean flow success rate (95 % percentile bootstrap interval of the mean over seeds), the share "
                  "of seeds at or above the threshold with its 95 % Wilson score interval, and the verdict: holds when "
                  "the whole interval of the mean is at or above the threshold, fails when it is below, 'within seed "
                  "spread' when it contains the threshold. The arms differ by optimizer: the authors' config table "
                  "says AdamW 5e-5 for quad_random, their shipped quad_random checkpoints were trained with SGD 0.1 "
                  "for 10,000 steps (preset lottery_sgd). The flow the predictor integrates is gradient flow: SGD "
                  "follows it, AdamW's per-coordinate step normalisation does not, so fewer neurons end on the "
                  "frequency the flow predicts; argmin_abs_d0 is the paper's prediction for equal initial magnitudes.")
        page.table(v)
    elif kind == "grokking":
        ph = agg.grokking_phase(table)
        fr = table.frame
        if "stop_accuracy" in fr and fr["stop_accuracy"].notna().any():
            thr, win = fr["stop_accuracy"].dropna().iloc[0], int(fr["stop_window"].dropna().iloc[0])
            stop = (f"a run ends early once its train and test accuracy held >= {thr:g} for {win:,} steps, "
                    f"so its final numbers are those of the stop step")
        else:
            stop = "no early stop"
        page.heading("Grokking phase diagram: weight decay x train fraction")
        page.text(f"Steps to grok = first step with test accuracy >= 0.95 (median over the seeds that got there; "
                  f"blank: none did within {int(fr['steps'].max()):,} steps; {stop}). Regions, per "
                  f"run: confusion (X: train accuracy never reaches 0.95), memorisation only (M: train does, test "
                  f"never does), comprehension from the start (C: test reaches 0.95 within "
                  f"{agg.COMPREHENSION_RATIO:g} x the step at which train did), grokking (G: later); a cell shows "
                  f"its seeds' most common region. The red circle marks the paper's point (wd 2.0, fraction 0.75).")
        page.figure(figs.phase_heatmap_figure(ph, "median_grok_step", "steps to grok (test accuracy >= 0.95)",
                                              agg.PAPER_POINT, "steps"))
        page.figure(figs.phase_heatmap_figure(ph, "final_test_accuracy", "final test accuracy (mean over seeds)",
                                              agg.PAPER_POINT, "accuracy"))
        page.table(ph.assign(regions=ph["regions"].astype(str)))
    elif kind == "primes":
        s = agg.primes_summary(table)
        page.heading("The claims across p")
        page.text("One point per p (mean over seeds): each claim's key number on the final checkpoint, filled "
                  "green where the claim holds (on at least half of the seeds), open red where it fails; and the "
                  "training wall time per run.")
        page.figure(figs.claims_vs_p_figure(s))
        if "train_seconds" in s:
            page.figure(figs.seconds_vs_p_figure(s))
        page.table(s)
        cmp = agg.primes_vs_authors(table)
        page.heading("Beside the authors' published numbers")
        if cmp.empty:
            page.text("No p of this sweep is among those the authors published for the standard preset "
                      f"({', '.join(str(p) for p in agg.AUTHORS_PRIMES)}).")
        else:
            page.text("The authors' precomputed standard runs (their repository's precomputed_results: one run per "
                      "p, seed 42, their width rule, AdamW 5e-5, 5,000 steps) beside ours (mean over our seeds): the "
                      "width, the first step with train accuracy 1.0 (theirs logged every 50 steps), the train loss "
                      "and parameter norm at the last step (their step 4,999, ours 5,000), and the mean frequency "
                      "IPR (W_in and W_out averaged; theirs at step 4,800, the last they store; ours at the last "
                      "step, with the 'progress' analysis). Ratios are ours / theirs. One seed each side: seed-to-"
                      "seed spread alone moves the step of first 100 % accuracy by a few hundred steps.")
            page.table(cmp)
    page.heading("All runs")
    page.text("One row per run: the settings that vary across the sweep, the seed and the outcomes; "
              f"results.csv in the sweep folder keeps all {table.frame.shape[1]} columns of every run.")
    page.table(agg.runs_overview(table), table_id="runs")
    return page
