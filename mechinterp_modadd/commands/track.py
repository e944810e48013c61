"""``modadd track RUN [--activation NAME] [--json FILE] [--html FILE]``.

Follows a training run through its checkpoints: the progress measures of the grokking analysis
at every checkpoint, the two stage boundaries, and (when step 0 is present) the lottery table of
winner predictors. Works on our run folders and on the paper authors' folders (which need
``--activation``).

JSON contract: see :mod:`mechinterp_modadd.dynamics` (schema ``track``). The JSON and the HTML
page render one :class:`~mechinterp_modadd.dynamics.RunDynamics`, computed once.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .registry import command, write_outputs


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
    ap.add_argument("--keys", default=None, metavar="KEYS",
                    help="key frequencies of the restricted / excluded loss: 'norm' (default: the top frequencies "
                         "by the norm of the last checkpoint's input weights, holding 80%% of their energy), "
                         "'norm:N' (top N), 'vote' (vote share >= 1/(2K)) or a comma list such as 3,9,10")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


def _print_table(measures: Any, has_test: bool) -> None:
    cols = ["train_loss", "train_accuracy"] + (["test_loss", "test_accuracy"] if has_test else []) + \
        ["mean_abs_sin_d", "ipr", "param_norm", "restricted_loss"] + (["restricted_loss_all"] if has_test else []) + \
        ["excluded_loss"]
    if has_test:
        cols += ["test_mirrored_accuracy", "test_unseen_accuracy", "train_both_orders_accuracy",
                 "train_one_order_accuracy"]
    short = {"train_loss": "tr_loss", "train_accuracy": "tr_acc", "test_loss": "te_loss", "test_accuracy": "te_acc",
             "mean_abs_sin_d": "|sin d|", "ipr": "ipr", "param_norm": "norm",
             "restricted_loss": "restr_te" if has_test else "restr", "restricted_loss_all": "restr_all",
             "excluded_loss": "excl",
             "test_mirrored_accuracy": "te_mirr", "test_unseen_accuracy": "te_unseen",
             "train_both_orders_accuracy": "tr_both", "train_one_order_accuracy": "tr_one"}
    df = measures[cols].rename(columns=short)
    print(df.to_string(float_format=lambda v: f"{v:.4g}"))


def _print_frame(df: Any) -> None:
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _track_many(args: argparse.Namespace) -> int:
    """A sweep or batch folder: the run-level numbers as distributions over seeds."""
    from ..analysis.sweep import run_distributions
    from ..errors import InputError
    from ..sweeps.seeds import folder_kind, seed_table

    if args.json or args.html or args.keys or args.neuron is not None:
        raise InputError(f"{args.run}: --json, --html, --keys and --neuron apply to one run; for a folder of runs "
                         f"track prints the distributions over seeds (modadd report draws a sweep's page)")
    kind = folder_kind(args.run)
    table = seed_table(args.run, ["lottery"], progress=not args.quiet)
    print(f"{args.run}: {kind} folder, {table.n_complete} runs; numbers over seeds (median, quartiles, mean with "
          f"95 % bootstrap interval; shares with 95 % Wilson interval)")
    dist = run_distributions(table)
    names = {"fit_step": "step of train accuracy >= 0.95", "grok_step": "step to grok (test accuracy >= 0.95)",
             "end_stage1": "end of stage I", "end_stage2": "end of stage II",
             "lottery": "lottery claim (flow predictor >= 0.8) per arm"}
    if not dist:
        print("no step or lottery numbers in these runs")
    for k, df in dist.items():
        print(f"\n{names.get(k, k)}:")
        _print_frame(df)
    return 0


@command("track", "follow a training run through its checkpoints: progress measures, grokking stages, "
                  "lottery predictors")(_configure)
def _run(args: argparse.Namespace) -> int:
    import json
    import time

    from ..analysis.restricted import parse_keys
    from ..dynamics import run_dynamics
    from ..schemas import stamp
    from ..series import load_run

    t0 = time.perf_counter()
    from ..sweeps.seeds import folder_kind

    if folder_kind(args.run) is not None:
        return _track_many(args)
    keys = parse_keys(args.keys)
    series = load_run(args.run, activation=args.activation, cache_size=4, force=args.force)
    print(series.describe())
    dyn = run_dynamics(series, neuron=args.neuron, figures=bool(args.html), progress=not args.quiet, keys=keys)
    stages, lottery = dyn.stages, dyn.lottery

    print()
    _print_table(dyn.measures, series.has_test)
    print()
    print(f"stages: end of stage I = {stages.end_stage1}, end of stage II = {stages.end_stage2} "
          f"(rule: train accuracy >= {stages.train_threshold}, then test accuracy >= {stages.test_threshold})")
    if series.has_test:
        print(f"final test accuracy {stages.final_test_accuracy:.4f}")
    r = dyn.restricted
    print(f"restricted / excluded loss (Nanda et al.; keys {r.keys}, {r.key_rule}): restricted "
          f"{r.restricted_loss:.4g} on {r.eval_pairs} pairs ({r.restricted_loss_all:.4g} on all), excluded "
          f"{r.excluded_loss:.4g} on training pairs (train loss {r.train_loss:.4g}) -> {r.verdict}"
          + (f": {r.reason}" if r.reason else ""))
    views = None
    if dyn.family == "transformer":  # Nanda et al.'s views of the run (docs/transformer.md)
        from ..analysis.transformer_views import run_views, run_views_text

        views = run_views(series)
        for line in run_views_text(series, views):
            print(line)
    if "lottery_ticket" in dyn.undefined:
        print(f"lottery: undefined for family {dyn.family!r}: {dyn.undefined['lottery_ticket']}")
    elif lottery is None:
        print("lottery: step 0 not in the run; predictors skipped")
    else:
        print(f"\nlottery ticket: winner predictors from step-0 weights vs the dominant frequency at step "
              f"{lottery.final_step} ({lottery.n_neurons} neurons, K = {lottery.K})")
        print(lottery.to_frame().to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(lottery.summary())
    # every output is built before any is written: a failure leaves no partial set of files
    doc = dyn.to_dict()
    if views is not None:  # the transformer's views, as the text and the page show them
        doc["transformer_views"] = {"embedding_spectra": {str(k): v.to_dict() for k, v in views[0].items()},
                                    "attention": views[1].to_dict()}
    text = json.dumps(stamp(doc, "track"), indent=1, allow_nan=False) + "\n" if args.json else None
    page = None
    if args.html:
        from ..pages.dynamics import add_dynamics_sections
        from ..pages.html import HtmlReport

        page = HtmlReport(Path(series.path).resolve().name, subtitle=f"modadd track {series.path}")
        page.text(series.describe())
        add_dynamics_sections(page, dyn)
        if views is not None:
            from ..pages.diagnosis import add_transformer_views

            page.heading("Embedding and attention (transformer)")
            add_transformer_views(page, views[0], views[1], "transformer_views.embedding_spectra")
    write_outputs(args.json, text, args.html, page)
    print(f"({time.perf_counter() - t0:.1f} s)")
    return 0
