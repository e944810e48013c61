"""The section of an ablation suite (``modadd ablate --html`` and the diagnosis page)."""

from __future__ import annotations

import html

from ..analysis.majority import HALF_ACCURACY_MIN, PHASE_DROP_MIN, SINGLE_GROUP_MAX, AblationSuite, MajorityVoteResult
from ..plots.ablation import suite_figures
from .html import HtmlReport, number

__all__ = ["add_ablation_section", "verdict_html"]


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
