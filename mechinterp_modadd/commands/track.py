"""``modadd track RUN [--activation NAME] [--json FILE] [--html FILE]``.

Follows a training run through its checkpoints: the progress measures of the grokking analysis
at every checkpoint, the two stage boundaries, and (when step 0 is present) the lottery table of
winner predictors. Works on our run folders and on the paper authors' folders (which need
``--activation``).

JSON contract (other tools read it; keep these names): ``steps`` and, as lists aligned with it,
``train_accuracy``, ``test_accuracy``, ``train_loss``, ``test_loss``, ``mean_abs_sin_d``, ``ipr``,
``param_norm``, ``test_mirrored_accuracy``, ``test_unseen_accuracy``,
``train_both_orders_accuracy``, ``train_one_order_accuracy``, ``restricted_loss``,
``excluded_loss`` (partition lists, and the test lists, are null when the run holds out no test
pairs); ``key_frequencies`` (those of the last checkpoint, used by the restricted / excluded loss
at every step); ``stages`` = [end of stage I, end of stage II] (null where not reached);
``lottery`` (null without step 0) with the success rates ``argmin_abs_d0``, ``argmax_alpha0``,
``argmax_alpha_beta_cos_d0``, ``flow`` and ``chance``.
Extra keys (``run``, ``source_format``, ``final_step``, ``stage_rule``, ``partition_counts``)
may be added; none of the above is ever renamed.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..cli import command

_LIST_KEYS = ["train_accuracy", "test_accuracy", "train_loss", "test_loss", "mean_abs_sin_d", "ipr", "param_norm",
              "test_mirrored_accuracy", "test_unseen_accuracy", "train_both_orders_accuracy",
              "train_one_order_accuracy", "restricted_loss", "excluded_loss"]
_TEST_KEYS = {"test_accuracy", "test_loss", "test_mirrored_accuracy", "test_unseen_accuracy",
              "train_both_orders_accuracy", "train_one_order_accuracy"}


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def track_json(series: Any, measures: Any, stages: Any, lottery: Any) -> dict[str, Any]:
    """The JSON document of the contract above."""
    doc: dict[str, Any] = {"run": str(series.path), "source_format": series.source_format,
                           "final_step": series.final_step,
                           "steps": [int(s) for s in measures.index]}
    for k in _LIST_KEYS:
        if k in _TEST_KEYS and not series.has_test:
            doc[k] = None
        else:
            doc[k] = [_num(v) for v in measures[k]]
    from ..analysis.restricted import key_frequencies

    doc["key_frequencies"] = key_frequencies(series.spectrum(series.last_step))
    doc["stages"] = [stages.end_stage1, stages.end_stage2]
    doc["stage_rule"] = (f"end of stage I: first checkpoint with train accuracy >= {stages.train_threshold}; "
                         f"end of stage II: first later checkpoint with test accuracy >= {stages.test_threshold}")
    doc["lottery"] = None if lottery is None else {k: _num(v) for k, v in lottery.rates().items()}
    if series.has_test:
        from ..data import mirror_partitions

        doc["partition_counts"] = mirror_partitions(series.split).counts()
    return doc


def _configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("run", metavar="RUN", help="run folder (ours: checkpoints/step_*.safetensors; or the "
                                               "authors': N.pth files)")
    ap.add_argument("--activation", default=None,
                    help="activation (required for the authors' folders, which do not record it)")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the progress table, stages and lottery "
                                                                 "as JSON")
    ap.add_argument("--html", default=None, metavar="FILE", help="write a self-contained HTML report with figures")
    ap.add_argument("--neuron", type=int, default=None,
                    help="neuron for the race figure (default: the one with the largest final alpha at k*)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


def _print_table(measures: Any, has_test: bool) -> None:
    cols = ["train_loss", "train_accuracy"] + (["test_loss", "test_accuracy"] if has_test else []) + \
        ["mean_abs_sin_d", "ipr", "param_norm", "restricted_loss", "excluded_loss"]
    if has_test:
        cols += ["test_mirrored_accuracy", "test_unseen_accuracy", "train_both_orders_accuracy",
                 "train_one_order_accuracy"]
    short = {"train_loss": "tr_loss", "train_accuracy": "tr_acc", "test_loss": "te_loss", "test_accuracy": "te_acc",
             "mean_abs_sin_d": "|sin d|", "ipr": "ipr", "param_norm": "norm",
             "restricted_loss": "restr", "excluded_loss": "excl",
             "test_mirrored_accuracy": "te_mirr", "test_unseen_accuracy": "te_unseen",
             "train_both_orders_accuracy": "tr_both", "train_one_order_accuracy": "tr_one"}
    df = measures[cols].rename(columns=short)
    print(df.to_string(float_format=lambda v: f"{v:.4g}"))


@command("track", "follow a training run through its checkpoints: progress measures, grokking stages, "
                  "lottery predictors")(_configure)
def _run(args: argparse.Namespace) -> int:
    import time

    from ..analysis.grokking import grokking_stages, progress_measures
    from ..analysis.lottery import lottery_from_series
    from ..series import load_run

    t0 = time.perf_counter()
    series = load_run(args.run, activation=args.activation, cache_size=4, force=args.force)
    print(series.describe())
    measures = progress_measures(series, progress=not args.quiet)
    stages = grokking_stages(measures)
    lottery = lottery_from_series(series) if series.has_step0 else None

    print()
    _print_table(measures, series.has_test)
    print()
    print(f"stages: end of stage I = {stages.end_stage1}, end of stage II = {stages.end_stage2} "
          f"(rule: train accuracy >= {stages.train_threshold}, then test accuracy >= {stages.test_threshold})")
    if series.has_test:
        print(f"final test accuracy {stages.final_test_accuracy:.4f}")
    if lottery is None:
        print("lottery: step 0 not in the run; predictors skipped")
    else:
        print(f"\nlottery ticket: winner predictors from step-0 weights vs the dominant frequency at step "
              f"{lottery.final_step} ({lottery.n_neurons} neurons, K = {lottery.K})")
        print(lottery.to_frame().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    # every output is built before any is written: a failure leaves no partial set of files
    from ..checkpoint import atomic_write_text

    text = json.dumps(track_json(series, measures, stages, lottery), indent=1) if args.json else None
    page = _html_page(series, measures, stages, lottery, args.neuron) if args.html else None
    if text is not None:
        atomic_write_text(args.json, text)
        print(f"JSON written to {args.json}")
    if page is not None:
        page.save(args.html)
        print(f"HTML written to {args.html}")
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0


def _html_page(series: Any, measures: Any, stages: Any, lottery: Any, neuron: int | None) -> Any:
    from ..plots.dynamics import add_dynamics_sections
    from ..report import HtmlReport

    page = HtmlReport(f"modadd track: {Path(series.path).name}")
    page.text(series.describe())
    add_dynamics_sections(page, series, measures, stages, lottery, neuron)
    return page
