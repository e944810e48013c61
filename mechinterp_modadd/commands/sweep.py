"""``modadd sweep SPEC.toml --out DIR [--executor auto|ray|local] [--address ADDR] [--storage URI] [--device ...]``.

Trains every run of a sweep spec (a TOML grid, or ``--preset lottery|grokking|primes``) that is not
yet complete in DIR, analyses each finished run, and writes ``DIR/results.csv`` (and
``results.parquet`` with pyarrow). Rerunning the same command after a kill trains only what is
missing; a different spec for an existing DIR is refused with the differences. ``modadd report
DIR --out PAGE.html`` renders the sweep's research page. See :mod:`mechinterp_modadd.sweeps`.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import ConfigError
from .registry import command


def _configure(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("spec", metavar="SPEC.toml", nargs="?", default=None, help="the sweep spec (TOML)")
    ap.add_argument("--preset", default=None, metavar="NAME",
                    help="a research sweep instead of SPEC: lottery, grokking or primes")
    ap.add_argument("--out", default=None, metavar="DIR", help="sweep folder (created; reused to resume)")
    ap.add_argument("--executor", default="auto", choices=["auto", "ray", "local"],
                    help="ray (a private Ray on this machine, or the cluster of --address), local (in this "
                    "process) or auto (default: ray when Ray is installed, else local with a note)")
    ap.add_argument("--address", default=None, metavar="ADDR",
                    help="join this Ray cluster (auto, HOST:PORT, ray://HOST:PORT) instead of a private Ray")
    ap.add_argument("--storage", default=None, metavar="PATH_OR_URI",
                    help="where Ray workers put finished runs, reachable from every node (a shared folder or an "
                    "fsspec URI such as s3://bucket/sweeps); default: they come back through Ray's object store")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="training device")
    ap.add_argument("--workers", type=int, default=None, metavar="N",
                    help="CPUs of the private local Ray (default: all of this machine's)")
    ap.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", dest="overrides",
                    help="replace a grid key of the spec or preset, VALUE in TOML (repeatable), e.g. "
                    "--set steps=50000 --set 'seed=\"0-9\"' --set 'p=[5, 7]'")
    ap.add_argument("--print-spec", action="store_true", help="print the spec as TOML (edit it, pass it back) "
                                                              "and exit")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")


@command("sweep", "train a grid of runs (batched; local or on Ray), analyse each, write one results table")(_configure)
def _run(args: argparse.Namespace) -> int:
    if (args.spec is None) == (args.preset is None):
        raise ConfigError("give exactly one of SPEC.toml and --preset NAME")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    from ..sweeps import load_spec, parse_set, preset_spec, run_sweep

    over = parse_set(args.overrides)
    spec = load_spec(args.spec, over) if args.spec else preset_spec(args.preset, **over)
    if args.print_spec:
        sys.stdout.write(spec.to_toml())
        return 0
    if args.out is None:
        raise ConfigError("--out DIR is required (the sweep folder)")
    t0 = time.perf_counter()
    table = run_sweep(spec, args.out, executor=args.executor, address=args.address, device=args.device,
                      workers=args.workers, progress=not args.quiet, storage=args.storage)
    print(f"sweep {spec.name or args.out}: {table.n_complete}/{len(spec.runs)} runs complete "
          f"({time.perf_counter() - t0:.1f} s); results in {args.out}/results.csv")
    _print_summary(spec.page, table)
    return 0


def _print_summary(page: str | None, table) -> None:
    from ..analysis import sweep as agg

    fmt = lambda v: f"{v:.4g}"  # noqa: E731
    if page == "lottery":
        print(agg.lottery_summary(table).to_string(index=False, float_format=fmt))
        v = agg.lottery_verdicts(table)
        print("\nlottery claim over seeds (flow >= threshold; mean with 95 % bootstrap interval, share of seeds "
              "with 95 % Wilson interval):")
        for r in v.to_dict("records"):
            if r["verdict"] == "undefined":
                print(f"  {r['preset']}: no lottery numbers (undefined)")
                continue
            print(f"  {r['preset']} ({r.get('optimizer', '?')}, {r.get('steps', '?')} steps, {r['n_seeds']} seeds): "
                  f"median {r['median']:.3f}, mean {r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}], "
                  f"{r['share_holding']:.0%} of seeds >= {r['threshold']:g} [{r['share_ci_low']:.2f}, "
                  f"{r['share_ci_high']:.2f}] -> {r['verdict']}")
    elif page == "grokking":
        print(agg.grokking_phase(table).drop(columns=["regions"]).to_string(index=False, float_format=fmt))
    elif page == "primes":
        df = agg.primes_summary(table)
        print(df[[c for c in df.columns if not c.endswith(".holds")]].to_string(index=False, float_format=fmt))
        cmp = agg.primes_vs_authors(table)
        if not cmp.empty:
            print("\nbeside the authors' published standard runs (ours / theirs):")
            print(cmp.to_string(index=False, float_format=fmt))
    else:
        cols = [c for c in ("name", "final_train_accuracy", "final_test_accuracy", "grok_step") if c in table.frame]
        print(table.frame[cols].to_string(index=False, float_format=fmt))
