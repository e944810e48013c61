"""The section of an ablation suite (``modadd ablate --html`` and the diagnosis page)."""

from __future__ import annotations

import html

import pandas as pd

from ..analysis.family_ablation import ViewMajorityVoteResult
from ..analysis.majority import HALF_ACCURACY_MIN, PHASE_DROP_MIN, SINGLE_GROUP_MAX, AblationSuite, MajorityVoteResult
from ..plots.ablation import suite_figures
from .html import HtmlReport, number

__all__ = ["add_ablation_section", "add_view_ablation_section", "verdict_html"]


def verdict_html(claim: MajorityVoteResult, json_prefix: str = "majority_vote") -> str:
    """``majority_vote: holds (...)`` with the three criteria's numbers tagged with their JSON paths."""
    c, j = claim, json_prefix
    verdict = "holds" if c.holds else "fails"
    return (f"<p>majority_vote: {number(verdict, j + '.holds', verdict)} (random 50% keeps "
            f"{number(f'{c.half_accuracy:.3f}', j + '.half_accuracy')} (need >= {HALF_ACCURACY_MIN}); best single "
            f"group k={number(str(c.best_single_group), j + '.best_single_group')} alone "
            f"{number(f'{c.best_single_group_accuracy:.3f}', j + '.best_single_group_accuracy')} (need <= "
            f"{SINGLE_GROUP_MAX}); phase-biased half loses {number(f'{c.phase_drop:.3f}', j + '.phase_drop')} at "
            f"iota={number(str(c.phase_drop_order), j + '.phase_drop_order')} (need >= {PHASE_DROP_MIN}); top 5% of "
            f"neurons hold {number(f'{c.top_vote_share:.1%}', j + '.top_vote_share')} of the vote weight)</p>")


def add_ablation_section(page: HtmlReport, suite: AblationSuite, claim: MajorityVoteResult | None = None,
                         p: int | None = None, json_prefix: str = "majority_vote") -> None:
    """Append a 'Majority vote by intervention' section: the verdict (``claim``, default the suite's)
    with its reasons, and one figure per experiment."""
    claim = suite.claim if claim is None else claim
    page.heading("Majority vote by intervention")
    page.raw(verdict_html(claim, json_prefix))
    for reason in claim.reasons:
        page.raw(f"<p class='note'>{html.escape(reason)}</p>")
    for fig, caption in suite_figures(suite, p):
        page.figure(fig, caption)


def add_view_ablation_section(page: HtmlReport, claim: ViewMajorityVoteResult,
                              json_prefix: str = "majority_vote") -> None:
    """Append a 'Majority vote by intervention' section for a family ablated through the neuron view
    (``modadd ablate --html`` on ``concat_mlp``): the verdict with its reasons, a table of the three
    experiments against their thresholds, and a table of the accuracy lost per phase angle."""
    c, j = claim, json_prefix
    th = c.thresholds
    verdict = "holds" if c.holds else "fails"
    page.heading("Majority vote by intervention")
    page.raw(f"<p>majority_vote: {number(verdict, j + '.holds', verdict)} on all "
             f"{number(str(c.n_pairs), j + '.n_pairs')} ordered pairs, zero-ablation in the neuron view; "
             f"full model accuracy {number(f'{c.full_accuracy:.4f}', j + '.full_accuracy')}</p>")
    for reason in c.reasons:
        page.raw(f"<p class='note'>{html.escape(reason)}</p>")
    rows = [(f"random 50% of neurons kept (mean of {c.draws} draws)", c.half_accuracy,
             f">= {th.half_accuracy_min}" if th else ""),
            ("random 50% kept, worst draw", c.half_accuracy_min, ""),
            (f"best single frequency group alone (k = {c.best_single_group})", c.best_single_group_accuracy,
             f"<= {th.single_group_max}" if th else ""),
            (f"accuracy lost by the phase-biased half, largest (angle {c.phase_drop_angle})", c.phase_drop,
             f">= {th.phase_drop_min}" if th else "")]
    paths = [f"{j}.half_accuracy", f"{j}.half_accuracy_min", f"{j}.best_single_group_accuracy", f"{j}.phase_drop"]
    page.table(pd.DataFrame(rows, columns=["experiment", "value", "needed"]), float_format="{:.4f}",
               json_path=lambda i, col: paths[i] if col == "value" else None)
    page.text("Phase-biased halves: in every frequency group keep the neurons whose angle a phi_x + b phi_y "
              "lies in one half circle; the accuracy lost is the mean accuracy of size-matched random halves "
              "within the same groups minus the accuracy of the biased half.")
    page.table(pd.DataFrame({"angle (a, b)": list(c.phase_drops), "accuracy lost": list(c.phase_drops.values())}),
               float_format="{:+.4f}")
