"""``modadd ablate CKPT [--activation NAME] [--json FILE] [--html FILE] [--seed N]``.

Runs every majority-vote experiment of :mod:`mechinterp_modadd.analysis.majority` on one
checkpoint (random ablation curve, frequency groups, phase-biased halves, activation swap, noise
scaling), prints their tables and the ``majority_vote`` verdict, and writes the JSON contract:
``random`` (objects ``keep``, ``accuracy_mean``, ``accuracy_min``, ``accuracy_max``,
``margin_mean``), ``drop_group`` and ``keep_group`` (objects ``k``, ``accuracy``), ``phase_biased``
(objects ``order``, ``accuracy``, ``matched_random_accuracy``), ``activation_swap`` (name ->
accuracy), ``activation_swap_loss`` (name -> loss, as in the printed table), ``noise_scaling``
(``signal_exponent``, ``noise_exponent``); added later: ``majority_vote`` (the verdict object),
``settings``, ``p``, ``d_mlp``, ``activation``, ``source``. Schema ``ablate``
(``mechinterp_modadd/schemas/ablate.schema.json``), stamped with ``schema`` and
``mechinterp_modadd_version``. The page and the JSON render the same suite, computed once.

Large p: the experiments stream within ``--max-memory`` (default 3 GiB). When all p(p+1)/2 unordered
pairs would not fit the budget or the operation limit (e.g. p = 199 at the default width), they run
on a seeded sample of pairs: the output then says so, the tables gain ``ci_low`` / ``ci_high``
columns (95 % Wilson intervals) and the JSON gains ``sampling`` (sample size, population, seed),
``accuracy_ci`` in the entries and ``activation_swap_ci``.
"""

from __future__ import annotations

import argparse
import json

from .registry import command, write_outputs

#: up to this p the experiments run on one torch thread (restored afterwards)
SINGLE_THREAD_MAX_P = 64


def _configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("checkpoint", metavar="CKPT",
                    help="checkpoint (.safetensors of this package, or the authors' .pth)")
    ap.add_argument("--activation", default=None,
                    help="activation the model was trained with (required for the authors' .pth files)")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")
    ap.add_argument("--html", default=None, metavar="FILE", help="write an HTML page with one figure per experiment")
    ap.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")


def _table(df, floatfmt: str = "{:.4f}") -> str:
    return df.to_string(index=False, float_format=lambda v: floatfmt.format(v))


@command("ablate", "test the majority vote by ablating neurons (random, frequency groups, phase-biased, "
                   "activation swap, noise scaling)")(_configure)
def _run(args: argparse.Namespace) -> int:
    import torch

    from ..analysis.majority import run_ablation_suite
    from ..checkpoint import load_checkpoint
    from ..diagnose import ablation_document
    from ..schemas import stamp

    ckpt = load_checkpoint(args.checkpoint, activation=args.activation, force=args.force, family=args.family,
                           config=args.config)
    model = ckpt.model
    if ckpt.family != "mlp":
        return _run_family(args, ckpt)
    threads = torch.get_num_threads()
    if model.cfg.p <= SINGLE_THREAD_MAX_P:
        # small matrices: starting threads costs more than it saves, and far more on a busy machine
        # (p = 23: 0.3 s on one thread against 2-4 s on two threads of a loaded 2-core machine)
        torch.set_num_threads(1)
    try:
        suite = run_ablation_suite(model, seed=args.seed, progress=model.cfg.p > SINGLE_THREAD_MAX_P)
    finally:
        torch.set_num_threads(threads)
    act = model.activation if isinstance(model.activation, str) else "custom"
    print(f"{args.checkpoint}: p = {model.cfg.p}, d_mlp = {model.cfg.d_mlp}, activation {act}")
    if suite.sample is not None and not suite.sample.exact:
        print(f"pairs: {suite.sample.describe()} (ci_low, ci_high; the whole set would not fit the memory "
              f"budget and time limit)")
    print("\nRandom ablation (keep a fraction of neurons, zero-ablate the rest)")
    print(_table(suite.random.summary()))
    print("\nFrequency groups (drop one group / keep only one group)")
    print(_table(suite.groups.to_frame()[["k", "n", "drop_accuracy", "keep_accuracy"]]))
    print("\nPhase-biased halves against size-matched random halves")
    ph = suite.phase_biased.to_frame()
    print(_table(ph[[c for c in ("order", "n_kept", "accuracy", "ci_low", "ci_high", "matched_random_accuracy",
                                 "matched_ci_low", "matched_ci_high", "difference") if c in ph]]))
    print("\nActivation swap at test time")
    sw = suite.activation_swap.to_frame()
    print(_table(sw[[c for c in ("activation", "accuracy", "ci_low", "ci_high", "loss") if c in sw]], "{:.4g}"))
    ns = suite.noise_scaling
    print(f"\nNoise scaling: coherent ~ n^{ns.signal_exponent:.3f}, residual ~ n^{ns.noise_exponent:.3f}")
    c = suite.claim
    print(f"\nmajority_vote: {'holds' if c.holds else 'fails'} ({c.details()})")
    for r in c.reasons:
        print(f"  - {r}")
    # every output is built before any is written: a failure leaves no partial set of files
    doc = {"family": ckpt.family, "p": model.cfg.p, "d_mlp": model.cfg.d_mlp, "activation": act,
           "source": str(args.checkpoint),
           **ablation_document(suite, {"seed": args.seed, "noise_scaling": True,
                                       "max_pairs": None if suite.sample.exact else suite.sample.n_pairs})}
    text = json.dumps(stamp(doc, "ablate"), indent=1, allow_nan=False) + "\n" if args.json else None
    page = None
    if args.html:
        from ..diagnose import display_name
        from ..pages.ablation import add_ablation_section
        from ..pages.html import HtmlReport

        page = HtmlReport(f"Ablation of {display_name(args.checkpoint)}", subtitle=str(args.checkpoint))
        add_ablation_section(page, suite, p=model.cfg.p)
    write_outputs(args.json, text, args.html, page)
    return 0


def _run_family(args: argparse.Namespace, ckpt) -> int:
    """``modadd ablate`` on a family other than the paper's MLP: the majority vote by ablation
    through the neuron view (:mod:`mechinterp_modadd.analysis.family_ablation`), printed and, with
    ``--json`` / ``--html``, written as the ``ablate`` document of that family (``family``,
    ``settings``, ``majority_vote`` with the accuracy lost per phase angle) and a page rendering it.
    The paper MLP's activation swap and noise scaling are not defined there."""
    from ..analysis.family_ablation import PHASE_DRAWS, RANDOM_DRAWS, concat_majority_vote
    from ..errors import ConfigError
    from ..schemas import stamp

    if ckpt.family != "concat_mlp":
        raise ConfigError(f"{args.checkpoint}: modadd ablate has no experiments for family {ckpt.family!r}")
    model = ckpt.model
    r = concat_majority_vote(model, seed=args.seed)
    act = model.activation if isinstance(model.activation, str) else "custom"
    print(f"{args.checkpoint}: family {ckpt.family}, p = {model.cfg.p}, d_mlp = {model.cfg.d_mlp}, "
          f"activation {act}")
    print(f"\nAll {model.cfg.p ** 2} ordered pairs, zero-ablation in the neuron view (seed {args.seed})")
    print(f"full model: accuracy {r.full_accuracy:.4f}")
    print(f"random 50% of neurons kept: mean accuracy {r.half_accuracy:.4f} over {r.draws} draws "
          f"(min {r.half_accuracy_min:.4f})")
    print(f"best single frequency group alone: k = {r.best_single_group}, accuracy {r.best_single_group_accuracy:.4f}")
    print("phase-biased halves (a phi_x + b phi_y in a half circle) against matched random halves: accuracy lost")
    for name, drop in r.phase_drops.items():
        print(f"  (a, b) = ({name}): {drop:+.4f}")
    print(f"\nmajority_vote: {'holds' if r.holds else 'fails'} ({r.details()})")
    for reason in r.reasons:
        print(f"  - {reason}")
    # both outputs are built before either is written
    doc = {"family": ckpt.family, "p": model.cfg.p, "d_mlp": model.cfg.d_mlp, "activation": act,
           "source": str(args.checkpoint),
           "settings": {"seed": args.seed, "draws": RANDOM_DRAWS, "phase_draws": PHASE_DRAWS,
                        "pairs": "ordered", "ablation": "zero"},
           "majority_vote": r.to_dict()}
    text = json.dumps(stamp(doc, "ablate"), indent=1, allow_nan=False) + "\n" if args.json else None
    page = None
    if args.html:
        from ..diagnose import display_name
        from ..pages.ablation import add_view_ablation_section
        from ..pages.html import HtmlReport

        page = HtmlReport(f"Ablation of {display_name(args.checkpoint)} ({ckpt.family})",
                          subtitle=str(args.checkpoint))
        add_view_ablation_section(page, r)
    write_outputs(args.json, text, args.html, page)
    return 0
