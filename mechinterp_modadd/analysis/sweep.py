"""The results of a sweep: one row per run (:class:`SweepTable`) and the aggregations behind the
three research pages (lottery statistics over seeds, the grokking phase diagram, claims across p).

Columns of a row (written by :mod:`mechinterp_modadd.sweeps`): the run's ``name`` and config
(``family``, the network family, ``mlp`` or ``concat_mlp``; ``preset``, ``p``, ``d_mlp``,
``activation``, ``init``, ``optimizer``, ``seed``, ``lr``, ``weight_decay``, ``train_fraction``,
``init_scale``, ``steps``, ``save_every``, ``stop_accuracy``, ``stop_window``); ``steps_done``
(the last step trained: ``steps``, or earlier when the early stop of
:class:`~mechinterp_modadd.training.TrainConfig` ended the run); the last step's
``final_train_loss``, ``final_train_accuracy``, ``final_test_loss``, ``final_test_accuracy``,
``final_param_norm``; from the per-step metrics, ``fit_step`` (first step with train accuracy
>= 0.95), ``full_step`` (first step with train accuracy 1.0), ``grok_step`` / ``grok_step_99``
(first step with test accuracy >= 0.95 / 0.99; empty
if never or without a test set), ``end_stage1`` / ``end_stage2`` (the stage boundaries of
:func:`~mechinterp_modadd.analysis.grokking.detect_stages`); with the ``progress`` analysis the
final ``restricted_loss`` (test pairs; all pairs for a full-data run), ``restricted_loss_all``,
``excluded_loss``, ``restricted_verdict`` (holds / fails / undetermined: more than half of the
frequencies are keys), ``restricted_n_keys``, ``mean_abs_sin_d``, ``ipr``; with ``diagnose`` one
``<claim>.<metric>`` (key number) and ``<claim>.verdict`` per claim; with ``lottery`` the success
rates ``lottery.<predictor>`` and ``lottery.chance`` (paper-MLP runs only: the lottery ticket is
undefined on other families); ``train_seconds`` and ``analysis_seconds`` (wall clock: the only
columns that differ between two executions of one sweep).

Confidence intervals: a 95 % percentile bootstrap of the mean over seeds (``n_boot`` resamples of
the seeds with replacement, seeded generator), since the neurons of one run are not independent
draws; the number of seeds is reported beside each interval. The share of seeds on which a claim
holds is a proportion of independent seeds: its 95 % interval is Wilson's score interval
(:func:`wilson_interval`).

Verdicts over seeds (:func:`seed_verdict`, used by :func:`lottery_verdicts` and
:func:`distribution_summary`): a claim whose number varies over seeds is stated as the
distribution, not one seed's number: median, mean with its bootstrap interval, the share of
seeds at or past the threshold with its Wilson interval, and a verdict: ``holds`` when the
bootstrap interval of the mean lies on the holding side of the threshold, ``fails`` when it lies
on the other side, ``within seed spread`` when the interval contains the threshold.

Regions of the grokking phase diagram (ours, after Omnigrok / Doshi et al.), per run:
``confusion`` (train accuracy never reaches 0.95), ``memorisation only`` (train does, test never
does within the budget), ``comprehension`` (test reaches 0.95 by ``COMPREHENSION_RATIO`` = 2 times
the step at which train did: they rise together), ``grokking`` (test reaches 0.95 later than that).
A cell's region is the most common one over its seeds (ties: the order just listed, reversed).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = ["SweepTable", "CONFIG_COLUMNS", "STEP_COLUMNS", "lottery_summary", "lottery_verdicts", "grokking_phase",
           "primes_summary", "primes_vs_authors", "AUTHORS_PRIMES", "bootstrap_mean_ci", "wilson_interval",
           "seed_verdict", "distribution_summary", "claims_over_seeds", "run_distributions",
           "run_region", "REGIONS", "COMPREHENSION_RATIO", "PAPER_POINT", "runs_overview"]

CONFIG_COLUMNS = ["name", "family", "preset", "p", "d_mlp", "activation", "init", "optimizer", "seed", "lr",
                  "weight_decay", "train_fraction", "init_scale", "steps", "save_every", "stop_accuracy", "stop_window"]
STEP_COLUMNS = ["fit_step", "full_step", "grok_step", "grok_step_99", "end_stage1", "end_stage2"]
REGIONS = ("grokking", "comprehension", "memorisation only", "confusion")
COMPREHENSION_RATIO = 2.0
#: the paper's grokking configuration (weight decay, train fraction)
PAPER_POINT = (2.0, 0.75)
PREDICTOR_COLUMNS = ["lottery.argmin_abs_d0", "lottery.argmax_alpha0", "lottery.argmax_alpha_beta_cos_d0",
                     "lottery.flow"]


@dataclass
class SweepTable:
    """One row per finished run of a sweep (columns: module docstring), in spec order."""

    frame: pd.DataFrame
    spec: dict[str, Any] = field(default_factory=dict)
    n_planned: int = 0

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], spec: dict[str, Any] | None = None,
                  n_planned: int | None = None) -> SweepTable:
        cols: list[str] = []
        for r in rows:
            cols += [c for c in r if c not in cols]
        df = pd.DataFrame(rows, columns=cols)
        return cls(frame=_typed(df), spec=spec or {}, n_planned=len(rows) if n_planned is None else n_planned)

    @classmethod
    def from_folder(cls, path: str | Path) -> SweepTable:
        """Read ``results.csv`` and ``sweep.json`` of a sweep folder."""
        path = Path(path)
        spec_f, res_f = path / "sweep.json", path / "results.csv"
        if not spec_f.is_file():
            raise InputError(f"{path}: not a sweep folder (no sweep.json)")
        if not res_f.is_file():
            raise InputError(f"{path}: no results.csv yet (run modadd sweep on it to completion)")
        spec = json.loads(spec_f.read_text())
        df = pd.read_csv(res_f)
        return cls(frame=_typed(df), spec=spec, n_planned=len(df))

    @property
    def n_complete(self) -> int:
        return len(self.frame)

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of schema ``sweep`` (``mechinterp_modadd/schemas/sweep.schema.json``)."""
        from ..schemas import stamp
        from .base import to_jsonable

        return stamp({"spec": self.spec, "n_planned": self.n_planned, "n_complete": self.n_complete,
                      "rows": to_jsonable(self.frame.astype(object).where(self.frame.notna(), None))}, "sweep")

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Step columns as nullable integers; object columns holding only numbers and None as floats."""
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object and c not in STEP_COLUMNS:
            vals = df[c].dropna()
            if len(vals) == 0 or all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                df[c] = pd.to_numeric(df[c].astype(object).where(df[c].notna(), np.nan), errors="coerce")
    for c in STEP_COLUMNS:
        if c in df:
            df[c] = pd.array([None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)
                              for v in df[c]], dtype="Int64")
    return df


# ------------------------------------------------------------------------------ statistics
def bootstrap_mean_ci(values: Any, *, n_boot: int = 10000, level: float = 0.95, seed: int = 0
                      ) -> tuple[float, float, float]:
    """(mean, lower, upper): percentile bootstrap of the mean (seeded); NaNs dropped; one value -> (v, v, v)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a proportion successes / n (``(nan, nan)`` when n = 0)."""
    from statistics import NormalDist

    if n <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= n:
        raise InputError(f"successes must lie in 0..{n}, got {successes}")
    z = NormalDist().inv_cdf(0.5 + level / 2)
    ph = successes / n
    den = 1 + z * z / n
    centre = (ph + z * z / (2 * n)) / den
    half = z * math.sqrt(ph * (1 - ph) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def seed_verdict(values: Any, threshold: float, *, higher_holds: bool = True, n_boot: int = 10000,
                 seed: int = 0) -> dict[str, Any]:
    """One claim's number over seeds against its threshold (module docstring): ``n_seeds``,
    ``median``, ``q25`` / ``q75``, ``min`` / ``max``, ``mean`` with ``ci_low`` / ``ci_high`` (bootstrap),
    ``share_holding`` (seeds at or past the threshold) with ``share_ci_low`` / ``share_ci_high``
    (Wilson) and ``verdict`` (holds / fails / within seed spread; ``undefined`` without values)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return {"n_seeds": 0, "threshold": threshold, "verdict": "undefined"}
    mean, lo, hi = bootstrap_mean_ci(v, n_boot=n_boot, seed=seed)
    ok = v >= threshold if higher_holds else v <= threshold
    wl, wh = wilson_interval(int(ok.sum()), n)
    if higher_holds:
        verdict = "holds" if lo >= threshold else "fails" if hi < threshold else "within seed spread"
    else:
        verdict = "holds" if hi <= threshold else "fails" if lo > threshold else "within seed spread"
    return {"n_seeds": n, "threshold": threshold, "median": float(np.median(v)),
            "q25": float(np.quantile(v, 0.25)), "q75": float(np.quantile(v, 0.75)), "min": float(v.min()),
            "max": float(v.max()), "mean": mean, "ci_low": lo, "ci_high": hi, "share_holding": float(ok.mean()),
            "share_ci_low": wl, "share_ci_high": wh, "verdict": verdict}


def _need(df: pd.DataFrame, cols: list[str], what: str) -> None:
    missing = [c for c in cols if c not in df]
    if missing:
        raise InputError(f"{what} needs the columns {missing} in the results table")


def lottery_summary(table: SweepTable | pd.DataFrame, *, n_boot: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Per (preset, p) and predictor: seeds, mean success rate with its 95 % bootstrap interval, chance
    (1/K), the ratio to chance, and the fraction of seeds on which the predictor beats chance."""
    df = table.frame if isinstance(table, SweepTable) else table
    _need(df, ["preset", "p", *PREDICTOR_COLUMNS, "lottery.chance"], "the lottery summary")
    rows = []
    for (preset, p), g in df.groupby(["preset", "p"], sort=False):
        chance = float(g["lottery.chance"].mean())
        for col in PREDICTOR_COLUMNS:
            mean, lo, hi = bootstrap_mean_ci(g[col], n_boot=n_boot, seed=seed)
            vals = g[col].to_numpy(dtype=np.float64)
            rows.append({"preset": preset, "p": int(p), "predictor": col.split(".", 1)[1],
                         "n_seeds": int(np.isfinite(vals).sum()), "success_rate": mean, "ci_low": lo, "ci_high": hi,
                         "chance": chance, "x_chance": mean / chance,
                         "seeds_above_chance": float(np.mean(vals[np.isfinite(vals)] > chance))})
    return pd.DataFrame(rows)


def _arms(df: pd.DataFrame) -> list[str]:
    return [c for c in ("preset", "optimizer", "lr", "steps", "p") if c in df]


def lottery_verdicts(table: SweepTable | pd.DataFrame, *, threshold: float | None = None, n_boot: int = 10000,
                     seed: int = 0) -> pd.DataFrame:
    """The lottery claim stated over seeds, one row per arm (preset, optimizer, lr, steps, p): the
    flow predictor's success rate as a distribution over seeds (:func:`seed_verdict`: median, mean
    with its 95 % bootstrap interval, the share of seeds at or above the threshold with its 95 %
    Wilson interval) and the verdict. ``threshold`` defaults to
    :data:`~mechinterp_modadd.analysis.lottery.FLOW_THRESHOLD` (0.8). Also the argmin |D(0)| rate
    (the paper's prediction for equal initial magnitudes), mean over seeds."""
    from .lottery import FLOW_THRESHOLD

    df = table.frame if isinstance(table, SweepTable) else table
    _need(df, ["preset", "p", "lottery.flow", "lottery.argmin_abs_d0"], "the lottery verdicts")
    thr = FLOW_THRESHOLD if threshold is None else float(threshold)
    rows = []
    for key, g in df.groupby(_arms(df), sort=False, dropna=False):
        arm = dict(zip(_arms(df), key if isinstance(key, tuple) else (key,), strict=True))
        d = seed_verdict(g["lottery.flow"], thr, n_boot=n_boot, seed=seed)
        rows.append({**arm, "predictor": "flow", **d,
                     "argmin_abs_d0": float(pd.to_numeric(g["lottery.argmin_abs_d0"], errors="coerce").mean())})
    return pd.DataFrame(rows)


def distribution_summary(table: SweepTable | pd.DataFrame, column: str, threshold: float | None = None, *,
                         higher_holds: bool = True, group: list[str] | None = None) -> pd.DataFrame:
    """A number that varies over seeds (``grok_step``, ``end_stage1``, a claim's key number...) as a
    distribution per group (default: the config columns that vary, seed excluded): median, quartiles,
    mean with its bootstrap interval and, with a ``threshold``, the share of seeds past it (Wilson) and
    the verdict of :func:`seed_verdict`. A run where the number is missing (never grokked) counts as
    not holding and is reported in ``n_missing``."""
    df = table.frame if isinstance(table, SweepTable) else table
    _need(df, [column], f"the distribution of {column}")
    if group is None:
        group = _varying(df)
    rows = []
    for key, g in (df.groupby(group, sort=True, dropna=False) if group else [((), df)]):
        key = key if isinstance(key, tuple) else (key,)
        vals = pd.to_numeric(g[column].astype("Float64"), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        thr = math.nan if threshold is None else float(threshold)
        d = seed_verdict(vals, thr, higher_holds=higher_holds) if threshold is not None else \
            {k: v for k, v in seed_verdict(vals, 0.0).items() if k not in ("threshold", "verdict") and "share" not in k}
        n_missing = int((~np.isfinite(vals)).sum())
        if threshold is not None and n_missing and d.get("n_seeds", 0):
            ok = int(round(d["share_holding"] * d["n_seeds"]))
            n_all = d["n_seeds"] + n_missing
            d["share_holding"] = ok / n_all
            d["share_ci_low"], d["share_ci_high"] = wilson_interval(ok, n_all)
        rows.append({**dict(zip(group, key, strict=True)), "column": column, **d, "n_missing": n_missing})
    return pd.DataFrame(rows)


def _varying(df: pd.DataFrame) -> list[str]:
    return [c for c in CONFIG_COLUMNS if c in df and c not in ("name", "seed") and df[c].nunique(dropna=False) > 1]


#: outcome columns of the runs overview, in this order, where the table has them
OVERVIEW_COLUMNS = ["steps_done", "final_train_accuracy", "final_test_accuracy", "final_test_loss", "grok_step",
                    "restricted_verdict"]


def runs_overview(table: SweepTable | pd.DataFrame) -> pd.DataFrame:
    """One row per run, narrow enough to read on a page: the run's name, the config columns that vary
    across the sweep (and the seed), the outcome columns of :data:`OVERVIEW_COLUMNS`, and, where the
    ``diagnose`` analysis ran, ``claims_holding`` as "k of n" (claims with a verdict other than
    ``n/a``/undefined). ``results.csv`` keeps every column."""
    df = table.frame if isinstance(table, SweepTable) else table
    cols = ["name", *_varying(df), *(["seed"] if "seed" in df else []),
            *(c for c in OVERVIEW_COLUMNS if c in df)]
    out = df[cols].copy()
    verdicts = [c for c in df.columns if c.endswith(".verdict")]
    if verdicts:
        v = df[verdicts].astype(str)
        defined = v.isin(["holds", "fails"])
        out["claims_holding"] = [f"{int(h)} of {int(n)}" for h, n in
                                 zip((v == "holds").sum(axis=1), defined.sum(axis=1), strict=True)]
    return out


def claims_over_seeds(table: SweepTable | pd.DataFrame, group: list[str] | None = None) -> pd.DataFrame:
    """Every claim of the ``diagnose`` analysis as a distribution over seeds, one row per (group,
    claim): the key number's median, quartiles and mean with its bootstrap interval, the share of
    seeds on which the claim holds with its 95 % Wilson interval, and ``over_seeds``: "holds on
    every seed", "fails on every seed" or "holds on k of n" (``n/a`` seeds, where the claim cannot
    be measured, are left out and counted in ``n_na``). Groups: the config columns that vary."""
    df = table.frame if isinstance(table, SweepTable) else table
    claims = [c[: -len(".verdict")] for c in df.columns if c.endswith(".verdict")]
    if not claims:
        raise InputError("no claim verdicts in the results table (run the 'diagnose' analysis)")
    group = _varying(df) if group is None else group
    rows = []
    for key, g in (df.groupby(group, sort=True, dropna=False) if group else [((), df)]):
        key = key if isinstance(key, tuple) else (key,)
        for c in claims:
            verdicts = g[c + ".verdict"].astype(str)
            ok = verdicts.isin(["holds", "fails"])
            metric = [k for k in df.columns if k.startswith(c + ".") and k != c + ".verdict"]
            vals = pd.to_numeric(g.loc[ok, metric[0]], errors="coerce") if metric else pd.Series(dtype=float)
            n, k = int(ok.sum()), int((verdicts[ok] == "holds").sum())
            mean, lo, hi = bootstrap_mean_ci(vals)
            wl, wh = wilson_interval(k, n)
            over = ("n/a" if n == 0 else "holds on every seed" if k == n else "fails on every seed" if k == 0
                    else f"holds on {k} of {n}")
            rows.append({**dict(zip(group, key, strict=True)), "claim": c,
                         "metric": metric[0].split(".", 1)[1] if metric else "", "n_seeds": n,
                         "n_na": int((~ok).sum()), "median": float(vals.median()) if len(vals) else math.nan,
                         "q25": float(vals.quantile(0.25)) if len(vals) else math.nan,
                         "q75": float(vals.quantile(0.75)) if len(vals) else math.nan, "mean": mean, "ci_low": lo,
                         "ci_high": hi, "share_holding": k / n if n else math.nan, "share_ci_low": wl,
                         "share_ci_high": wh, "over_seeds": over})
    return pd.DataFrame(rows)


def run_distributions(table: SweepTable | pd.DataFrame) -> dict[str, pd.DataFrame]:
    """What ``modadd track`` reports for a folder of runs that differ by seed: the step at which the
    train accuracy reaches 0.95 and, for runs with held-out pairs, the step to grok and the stage
    boundaries, as distributions over seeds (:func:`distribution_summary`; a run that never
    got there is counted in ``n_missing``), and the lottery claim per arm (:func:`lottery_verdicts`)
    when the rows carry lottery numbers. Keys: the column names, and ``lottery``."""
    df = table.frame if isinstance(table, SweepTable) else table
    out: dict[str, pd.DataFrame] = {}
    held_out = "train_fraction" in df and bool((pd.to_numeric(df["train_fraction"], errors="coerce") < 1).any())
    for col in ("fit_step", *(("grok_step", "end_stage1", "end_stage2") if held_out else ())):
        if col in df and df[col].notna().any():
            out[col] = distribution_summary(df, col)
    if "lottery.flow" in df and df["lottery.flow"].notna().any():
        out["lottery"] = lottery_verdicts(df)
    return out


def run_region(fit_step: Any, grok_step: Any, ratio: float = COMPREHENSION_RATIO) -> str:
    """The region of one run (module docstring)."""
    if fit_step is None or pd.isna(fit_step):
        return "confusion"
    if grok_step is None or pd.isna(grok_step):
        return "memorisation only"
    return "comprehension" if grok_step <= ratio * max(int(fit_step), 1) else "grokking"


def grokking_phase(table: SweepTable | pd.DataFrame) -> pd.DataFrame:
    """One row per (weight_decay, train_fraction) cell: seeds, how many grokked, the median step to
    grok over those that did, mean final test accuracy, mean fit step and the cell's region."""
    df = table.frame if isinstance(table, SweepTable) else table
    _need(df, ["weight_decay", "train_fraction", "fit_step", "grok_step", "final_test_accuracy"],
          "the grokking phase diagram")
    rows = []
    for (wd, tf), g in df.groupby(["weight_decay", "train_fraction"], sort=True):
        regions = [run_region(f, s) for f, s in zip(g["fit_step"], g["grok_step"], strict=True)]
        counts = Counter(regions)
        region = max(REGIONS, key=lambda r: (counts[r], -REGIONS.index(r)))
        grok = g["grok_step"].dropna().astype(float)
        rows.append({"weight_decay": float(wd), "train_fraction": float(tf), "n_seeds": len(g),
                     "n_grokked": len(grok), "median_grok_step": float(grok.median()) if len(grok) else math.nan,
                     "final_test_accuracy": float(g["final_test_accuracy"].mean()),
                     "mean_fit_step": float(g["fit_step"].dropna().astype(float).mean()) if g["fit_step"].notna().any()
                     else math.nan, "region": region, "regions": dict(sorted(counts.items()))})
    return pd.DataFrame(rows)


#: The authors' published numbers for the standard preset at the moduli where the primes page can
#: compare (their repository ``Y-Agent/modular-addition-feature-learning``, ``precomputed_results/p_NNN``:
#: one run per p, seed 42, d_mlp by their width rule max(512, ceil(512 p^2 / 529)), AdamW 5e-5, 5,000
#: steps). ``full_step``: first logged step with train accuracy 1.0 (logged every 50 steps);
#: ``loss_5000`` / ``norm_5000``: train loss and parameter norm of the last logged step (4,999);
#: ``ipr``: mean frequency IPR (W_in and W_out averaged, as :attr:`NeuronSpectrum.ipr`) at step 4,800,
#: the last their overview stores. p = 15 is odd but not prime (their pipeline runs every odd p).
AUTHORS_PRIMES: dict[int, dict[str, float]] = {
    15: {"d_mlp": 512, "full_step": 2550, "loss_5000": 0.020929, "norm_5000": 28.2232, "ipr": 0.6756},
    23: {"d_mlp": 512, "full_step": 3800, "loss_5000": 0.047694, "norm_5000": 34.9192, "ipr": 0.6495},
    29: {"d_mlp": 814, "full_step": 2750, "loss_5000": 0.003171, "norm_5000": 48.4010, "ipr": 0.6356},
    31: {"d_mlp": 931, "full_step": 3000, "loss_5000": 0.001305, "norm_5000": 52.9262, "ipr": 0.6285},
}


def primes_vs_authors(table: SweepTable | pd.DataFrame) -> pd.DataFrame:
    """Our standard runs beside the authors' published numbers (:data:`AUTHORS_PRIMES`) at every p
    the sweep shares with them: one row per p with our mean over seeds and theirs for the width,
    the first step with train accuracy 1.0, the train loss and parameter norm at the last step and
    the mean frequency IPR (``ipr``, needs the ``progress`` analysis), and our / their ratios.
    Empty when no p overlaps. Their accuracy is logged every 50 steps, so their ``full_step`` is a
    multiple of 50 at or after the true crossing; ours is exact."""
    df = table.frame if isinstance(table, SweepTable) else table
    _need(df, ["p", "d_mlp", "final_train_loss", "final_param_norm"], "the comparison with the authors")
    if "preset" in df:
        df = df[df["preset"] == "standard"]
    rows = []
    for p, g in df.groupby("p", sort=True):
        theirs = AUTHORS_PRIMES.get(int(p))
        if theirs is None:
            continue
        for d, gd in g.groupby("d_mlp", sort=True):
            full = pd.to_numeric(gd["full_step"].astype("Float64"), errors="coerce") if "full_step" in gd else None
            r: dict[str, Any] = {"p": int(p), "d_mlp": int(d), "d_mlp_authors": int(theirs["d_mlp"]),
                                 "n_seeds": len(gd),
                                 "full_step": float(full.mean()) if full is not None and full.notna().any()
                                 else math.nan, "full_step_authors": theirs["full_step"],
                                 "loss_5000": float(gd["final_train_loss"].mean()),
                                 "loss_5000_authors": theirs["loss_5000"],
                                 "norm_5000": float(gd["final_param_norm"].mean()),
                                 "norm_5000_authors": theirs["norm_5000"],
                                 "ipr": float(gd["ipr"].mean()) if "ipr" in gd else math.nan,
                                 "ipr_authors": theirs["ipr"]}
            for k in ("full_step", "loss_5000", "norm_5000", "ipr"):
                r[f"{k}_ratio"] = r[k] / r[f"{k}_authors"]
            rows.append(r)
    return pd.DataFrame(rows)


def primes_summary(table: SweepTable | pd.DataFrame) -> pd.DataFrame:
    """One row per p: mean final accuracy and loss, every claim's mean key number and the fraction
    of seeds on which it holds, mean training seconds per run."""
    df = table.frame if isinstance(table, SweepTable) else table
    _need(df, ["p", "final_train_accuracy"], "the primes summary")
    claims = [c[: -len(".verdict")] for c in df.columns if c.endswith(".verdict")]
    rows = []
    for p, g in df.groupby("p", sort=True):
        r: dict[str, Any] = {"p": int(p), "d_mlp": int(g["d_mlp"].iloc[0]), "n_seeds": len(g),
                             "final_train_accuracy": float(g["final_train_accuracy"].mean()),
                             "final_train_loss": float(g["final_train_loss"].mean())}
        for c in claims:
            metric = [k for k in df.columns if k.startswith(c + ".") and k != c + ".verdict"]
            if metric:
                r[metric[0]] = float(pd.to_numeric(g[metric[0]], errors="coerce").mean())
            r[c + ".holds"] = float((g[c + ".verdict"] == "holds").mean())
        if "train_seconds" in g:
            r["train_seconds"] = float(g["train_seconds"].mean())
        rows.append(r)
    return pd.DataFrame(rows)
