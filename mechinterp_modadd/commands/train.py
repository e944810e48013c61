"""``modadd train --preset NAME [--p P] [--optimizer adamw|sgd] [--betas B1,B2] [--momentum M] ...``.

Trains one run, or the Cartesian product of every multi-valued flag (seeds, lrs, weight decays,
train fractions, init scales) batched by :func:`mechinterp_modadd.training.train_many`, into
ordinary run folders (:mod:`mechinterp_modadd.layout`). ``--optimizer`` and its hyper-parameters
override the preset's. There is one flag per optimizer hyper-parameter declared in
:data:`mechinterp_modadd.hyperparams.HYPER` (``--betas`` for adamw, ``--momentum`` for sgd, ...),
so a new one needs no change here; a value out of its interval, or a hyper-parameter of another
optimizer, is refused in one line (exit code 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..constants import MAX_RUNS, PRESET_NAMES
from ..hyperparams import HYPER, HyperParam
from .registry import command


def _hyper_type(hp: HyperParam):
    """The argparse type of ``hp``'s flag: its numbers (the range is checked by TrainConfig)."""

    def parse(text: str):
        try:
            return hp.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = hp.name
    return parse


def _int_values(text: str) -> list[int]:
    """``"3"`` -> [3]; ``"0-31"`` -> [0, ..., 31] (inclusive range)."""
    t = text.strip()
    lo, sep, hi = t.partition("-") if not t.startswith("-") else ("", "", "")
    try:
        if sep:
            a, b = int(lo), int(hi)
            if b < a:
                raise ValueError
            if b - a + 1 > MAX_RUNS:
                raise argparse.ArgumentTypeError(f"{text!r} names {b - a + 1:,} values; one command trains at most "
                                                 f"{MAX_RUNS:,} runs (split it into several)")
            return list(range(a, b + 1))
        return [int(t)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or a range such as 0-31, got {text!r}") from None


def _float_value(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


# ----------------------------------------------------------------------------------- train
def _configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--preset", required=True, choices=sorted(PRESET_NAMES),
                    help="one of the paper's configurations, gromov (Gromov's concatenated-input MLP, family "
                         "concat_mlp), or nanda / nanda_small (Nanda et al.'s transformer, family transformer)")
    ap.add_argument("--p", type=int, default=None, help="modulus (default: the preset's; 23 for the paper's, "
                    "113 for nanda)")
    ap.add_argument("--d-mlp", type=int, default=None,
                    help="hidden width (default: the preset's, else max(512, ceil(512 p^2/529)))")
    ap.add_argument("--steps", type=int, default=None, help="full-batch steps (default: the preset's)")
    many = " (several values train the Cartesian product of all multi-valued flags, batched)"
    ap.add_argument("--lr", type=_float_value, nargs="+", default=None, help="learning rate" + many)
    ap.add_argument("--weight-decay", type=_float_value, nargs="+", default=None, help="weight decay" + many)
    ap.add_argument("--train-fraction", type=_float_value, nargs="+", default=None,
                    help="fraction of pairs in train" + many)
    ap.add_argument("--init-scale", type=_float_value, nargs="+", default=None, help="init scale" + many)
    ap.add_argument("--activation", default=None, help="activation (default: the preset's)")
    ap.add_argument("--optimizer", default=None, metavar="NAME",
                    help="optimizer: adamw or sgd (any name of training.optim.OPTIMIZERS; default: the preset's)")
    for hp in HYPER.values():  # the optimizers' hyper-parameters, one flag each
        ap.add_argument(hp.flag, type=_hyper_type(hp), default=None, metavar=hp.metavar,
                        help=f"{hp.help}; default {hp.text(hp.default)}")
    ap.add_argument("--bias", action="store_true",
                    help="hidden and output biases, initialised at zero (families that have them: concat_mlp)")
    ap.add_argument("--seed", type=_int_values, nargs="+", default=None,
                    help="seed(s): 0, or 0 1 2, or a range 0-31" + many)
    ap.add_argument("--save-every", type=int, default=None,
                    help="checkpoint interval in steps (default: the preset's; 1000 for the paper's)")
    ap.add_argument("--stop-accuracy", type=_float_value, default=None,
                    help="early stop: end a run once train and test accuracy held >= this for --stop-window "
                    "steps (checked at multiples of the window; default: train every step)")
    ap.add_argument("--stop-window", type=int, default=None, help="early-stop window in steps (default 1000)")
    ap.add_argument("--checkpoint-steps", default=None, type=_step_list,
                    help="extra checkpoint steps, comma separated (e.g. 100,200,500)")
    ap.add_argument("--out", default=None, help="run folder (default runs/<preset>_p<p>_seed<seed>); with "
                    "several runs, the parent folder of one folder per run plus runs.csv "
                    "(default runs/<preset>_p<p>_many)")
    ap.add_argument("--resume", action="store_true", help="continue the run(s) in --out from the last checkpoint")
    ap.add_argument("--break-lock", action="store_true",
                    help="accepted for older scripts and no longer needed: the lock of --out goes away with the "
                         "training that held it, however it ended; a live training's lock is never broken")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


@command("train", "train a model with one of the paper's presets (several seeds/lrs/... batched)")(_configure)
def _run(args: argparse.Namespace) -> int:
    import itertools
    import time

    from ..errors import ConfigError
    from ..training import preset, train, train_many

    grid = train_grid(args)
    cfgs = [preset(args.preset, p=args.p, d_mlp=args.d_mlp, steps=args.steps, activation=args.activation,
                   save_every=args.save_every, stop_accuracy=args.stop_accuracy, stop_window=args.stop_window,
                   optimizer=args.optimizer, **{name: getattr(args, name) for name in HYPER},
                   bias=args.bias or None,
                   **dict(zip(grid, values, strict=True)))
            for values in itertools.product(*grid.values())]
    max_memory = getattr(args, "max_memory", None)
    _announce_training(cfgs[0], max_memory)
    t0 = time.perf_counter()
    if len(cfgs) > 1:
        if args.checkpoint_steps:
            raise ConfigError("--checkpoint-steps: not supported with several runs (use --save-every)")
        out = Path(args.out) if args.out else Path("runs") / f"{args.preset}_p{cfgs[0].p}_many"
        res = train_many(cfgs, out, device=args.device, max_memory=max_memory, threads=args.threads,
                         progress=not args.quiet, resume=args.resume, break_lock=args.break_lock)
        dt = time.perf_counter() - t0
        tab = res.table
        steps, done = int(tab["steps_done"].max()), int(tab["steps_done"].sum())
        stopped = int((tab["steps_done"] < cfgs[0].steps).sum())
        print(f"{len(cfgs)} runs in {out} (summary: {out / 'runs.csv'})")
        print(f"train acc: min {tab['train_accuracy'].min():.4f} mean {tab['train_accuracy'].mean():.4f}; "
              + (f"up to {steps} steps, {stopped} runs stopped early" if stopped else f"{steps} steps each")
              + f" ({dt:.1f} s, {done / max(dt, 1e-9):,.0f} run-steps/s)")
        for _, row in tab[tab["status"] != "ok"].iterrows():
            print(f"  {row['folder']}: {row['status']}")
        return 0
    cfg = cfgs[0]
    out = Path(args.out) if args.out else Path("runs") / f"{args.preset}_p{cfg.p}_seed{cfg.seed}"
    res = train(cfg, out, resume=args.resume, progress=not args.quiet, checkpoint_steps=args.checkpoint_steps,
                break_lock=args.break_lock, device=args.device, threads=args.threads)
    dt = time.perf_counter() - t0
    print(f"run folder: {out}")
    print(f"{summary_line(res.metrics.iloc[-1])}  ({dt:.1f} s)")
    return 0


def train_grid(args: argparse.Namespace) -> dict[str, list]:
    """The values of the multi-valued flags (their product is the runs). A product above
    :data:`~mechinterp_modadd.constants.MAX_RUNS` runs is refused with its count (standard library
    only: the CLI calls this before torch loads and before anything is written)."""
    import itertools
    import math

    from ..errors import ConfigError

    grid = {
        "seed": sorted(set(itertools.chain.from_iterable(args.seed))) if args.seed else [0],
        "lr": args.lr or [None],
        "weight_decay": args.weight_decay or [None],
        "train_fraction": args.train_fraction or [None],
        "init_scale": args.init_scale or [None],
    }
    n = math.prod(len(v) for v in grid.values())
    if n > MAX_RUNS:
        sizes = " x ".join(f"{len(v)} --{k.replace('_', '-')}" for k, v in grid.items() if len(v) > 1)
        raise ConfigError(f"{sizes} = {n:,} runs; one command trains at most {MAX_RUNS:,} runs (split the grid "
                          f"into several commands or use modadd sweep)")
    return grid


def summary_line(last) -> str:
    """One line of a metrics row; the test columns are left out when the run has no test pairs
    (full-data runs record NaN there)."""
    import math

    test = "" if math.isnan(float(last["test_accuracy"])) else \
        f"test loss {last['test_loss']:.4g}  test acc {last['test_accuracy']:.4f}  "
    return (f"steps {int(last['step'])}  train loss {last['train_loss']:.4g}  "
            f"train acc {last['train_accuracy']:.4f}  {test}param norm {last['param_norm']:.3f}"
            + ("" if test else "  (no test pairs: trained on all pairs)"))


def _step_list(text: str) -> list[int]:
    """``--checkpoint-steps``: comma-separated integers >= 0."""
    try:
        steps = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 100,200,500, got {text!r}") \
            from None
    if any(t < 0 for t in steps):
        raise argparse.ArgumentTypeError(f"steps must be >= 0, got {text!r}")
    return steps


def _announce_training(cfg, max_memory: int | None) -> None:
    """Refuse a run whose full-batch step cannot fit in memory, and print the expected time per
    step and for the run when it may last longer than a few minutes (see training.estimate)."""
    from ..errors import ConfigError
    from ..memory import format_bytes
    from ..training import get_train_family
    from ..training.estimate import REPORT_AFTER_S, available_memory, estimate_training

    mcfg = cfg.model_config()
    need = get_train_family(cfg.family).run_bytes(cfg, 0)
    what = f"a full-batch training step at p = {mcfg.p}, d_mlp = {mcfg.d_mlp} needs about {format_bytes(need)}"
    if max_memory is not None and need > max_memory:
        raise ConfigError(f"--max-memory {format_bytes(max_memory)}: {what}; raise the budget or lower --d-mlp")
    avail = available_memory()
    if avail is not None and need > avail:
        raise ConfigError(f"{what} but only {format_bytes(avail)} of memory is available; lower --d-mlp or --p")
    est = estimate_training(cfg)
    if est.total_seconds >= REPORT_AFTER_S:
        print(est.message(), flush=True)
