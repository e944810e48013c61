"""The ablation experiments of the majority vote: random ablation curve, frequency groups dropped
or kept alone, phase-biased halves against matched random halves.

All accuracies, losses and margins are over all p^2 pairs (computed on the p(p+1)/2 unordered
pairs with multiplicities, exact because f(x, y) = f(y, x)); ablated forward passes are batched
(:class:`~mechinterp_modadd.analysis.ablation.ActivationTable`). Random draws follow the seeding
rule of :mod:`.selectors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...errors import InputError
from ...fourier import NeuronSpectrum, neuron_spectrum
from ...runtime import compute_device, takes_device
from ..ablation import ActivationTable, activation_table, frequency_groups, half_circle_selection
from ..base import Result, to_jsonable
from ..sampling import PairSample
from .selectors import generator, random_subsets, random_within_groups

__all__ = ["DEFAULT_KEEP_FRACTIONS", "RandomAblationResult", "FrequencyGroupResult", "PhaseBiasedResult",
           "random_ablation", "frequency_group_ablation", "phase_biased_ablation"]

#: keep fractions of the random ablation curve
DEFAULT_KEEP_FRACTIONS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.1, 0.05)


def lookup(rows: pd.DataFrame, key_col: str, key: Any, value_col: str) -> float:
    """``value_col`` of the row whose ``key_col`` equals ``key`` (InputError naming what was measured)."""
    r = rows[rows[key_col] == key]
    if r.empty:
        raise InputError(f"{key_col} {key!r} was not measured; measured {list(rows[key_col])}")
    return float(r[value_col].iloc[0])


def table_of(model, table: ActivationTable | None) -> ActivationTable:
    """``table``, or the exact activation table of ``model`` when None."""
    return activation_table(model) if table is None else table


# ================================================================ random ablation curve
def with_ci(df: pd.DataFrame, col: str, sample: PairSample | None, prefix: str = "") -> pd.DataFrame:
    """Add ``{prefix}ci_low`` / ``{prefix}ci_high`` (95 % interval of ``col``) when ``sample`` is a sample."""
    if sample is None or sample.exact or df.empty:
        return df
    lo, hi = sample.interval(torch.tensor(df[col].to_numpy(dtype=float)))
    df[f"{prefix}ci_low"], df[f"{prefix}ci_high"] = lo.numpy(), hi.numpy()
    return df


def json_ci(entries: list[dict[str, Any]], frame: pd.DataFrame, key: str, prefix: str = "") -> list[dict[str, Any]]:
    """Put [ci_low, ci_high] of ``frame`` under ``key`` in each entry, when the frame has them."""
    if f"{prefix}ci_low" in frame:
        for entry, lo, hi in zip(entries, frame[f"{prefix}ci_low"], frame[f"{prefix}ci_high"], strict=True):
            entry[key] = [float(lo), float(hi)]
    return entries


@dataclass
class RandomAblationResult(Result):
    """Random ablation curve: keep ``round(f * d_mlp)`` uniformly random neurons (zero-ablate or
    mean-ablate the rest) for each keep fraction f, ``draws`` seeded draws each.

    ``rows``: one per (keep, draw) with n_kept, accuracy, loss, margin (mean over pairs of the
    correct logit minus the best other logit).
    """

    rows: pd.DataFrame
    mode: str
    seed: int
    sample: PairSample | None = None

    def to_frame(self) -> pd.DataFrame:
        return self.rows.copy()

    def summary(self) -> pd.DataFrame:
        """Per keep fraction: accuracy mean/min/max, loss mean, margin mean; on a sample of pairs
        also ``ci_low`` / ``ci_high``, the 95 % interval of accuracy_mean."""
        g = self.rows.groupby("keep", sort=False)
        out = pd.DataFrame({
            "keep": list(g.groups.keys()),
            "n_kept": g["n_kept"].first().to_numpy(),
            "accuracy_mean": g["accuracy"].mean().to_numpy(),
            "accuracy_min": g["accuracy"].min().to_numpy(),
            "accuracy_max": g["accuracy"].max().to_numpy(),
            "loss_mean": g["loss"].mean().to_numpy(),
            "margin_mean": g["margin"].mean().to_numpy(),
        })
        return with_ci(out, "accuracy_mean", self.sample)

    def accuracy_at(self, keep: float) -> float:
        """Mean accuracy at keep fraction ``keep``."""
        r = self.rows[np.isclose(self.rows["keep"], keep)]
        if r.empty:
            raise InputError(f"keep fraction {keep} was not measured; measured {sorted(set(self.rows['keep']))}")
        return float(r["accuracy"].mean())

    def summary_records(self) -> list[dict[str, Any]]:
        """The ``random`` list of the ``modadd ablate`` JSON: keep, accuracy mean/min/max, margin mean."""
        cols = ["keep", "accuracy_mean", "accuracy_min", "accuracy_max", "margin_mean"]
        s = self.summary()
        return json_ci(to_jsonable(s[cols].to_dict(orient="records")), s, "accuracy_ci")

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"mode": self.mode, "seed": self.seed, "summary": self.summary(), "rows": self.rows})


@takes_device
def random_ablation(model, keep: Sequence[float] = DEFAULT_KEEP_FRACTIONS, *, draws: int = 10, seed: int = 0,
                    mode: str = "zero", hook_point: str = "mlp.hook_post",
                    table: ActivationTable | None = None, metrics: str = "all") -> RandomAblationResult:
    """Accuracy, loss and mean margin when only a random fraction of the neurons is kept.

    All draws of all fractions run as one batch of keep masks (see ``ActivationTable.evaluate``).
    The draws of each fraction f come from their own generator, ``generator(seed, "random", f)``,
    so the keep = 0.5 draws are the same whatever other fractions are measured.
    """
    if draws < 1:
        raise InputError(f"draws must be >= 1, got {draws}")
    keep = [float(f) for f in keep]
    if not keep or any(not 0 < f <= 1 for f in keep):
        raise InputError(f"keep fractions must lie in (0, 1], got {keep}")
    tab = table_of(model, table)
    M = tab.d_mlp
    counts = [max(1, round(f * M)) for f in keep]
    masks = torch.cat([random_subsets(draws, M, n, generator(seed, "random", f"{f:.6g}"))
                       for f, n in zip(keep, counts, strict=True)])
    ev = tab.evaluate(masks, mode, hook_point, metrics=metrics)
    rows = pd.DataFrame({
        "keep": np.repeat(keep, draws),
        "draw": np.tile(np.arange(draws), len(keep)),
        "n_kept": np.repeat(counts, draws),
        "accuracy": ev.accuracy.numpy(),
        "loss": ev.loss.numpy(),
        "margin": ev.margin.numpy(),
    })
    return RandomAblationResult(rows=rows, mode=mode, seed=seed, sample=tab.sample)


# ================================================================ frequency groups
@dataclass
class FrequencyGroupResult(Result):
    """Per frequency group N_k (neurons with dominant frequency k): accuracy, loss and margin when
    the group alone is ablated (``drop_*``) and when only that group is kept (``keep_*``).
    Groups with no neuron are listed with n = 0 (dropping them changes nothing; keeping them
    alone keeps no neuron)."""

    rows: pd.DataFrame
    mode: str
    sample: PairSample | None = None

    def to_frame(self) -> pd.DataFrame:
        return self.rows.copy()

    @property
    def min_drop_accuracy(self) -> float:
        r = self.rows[self.rows["n"] > 0]
        return float(r["drop_accuracy"].min()) if len(r) else float("nan")

    @property
    def max_keep_accuracy(self) -> float:
        r = self.rows[self.rows["n"] > 0]
        return float(r["keep_accuracy"].max()) if len(r) else float("nan")

    @property
    def best_keep_group(self) -> int:
        r = self.rows[self.rows["n"] > 0]
        return int(r.loc[r["keep_accuracy"].idxmax(), "k"]) if len(r) else 0

    def to_dict(self) -> dict[str, Any]:
        """``drop_group`` / ``keep_group`` (k and accuracy, the ``modadd ablate`` JSON lists), the
        mode and every row."""
        return {"mode": self.mode, **self.group_records(), "rows": to_jsonable(self.rows)}

    def group_records(self) -> dict[str, list[dict[str, Any]]]:
        out = {
            "drop_group": [{"k": int(r.k), "accuracy": float(r.drop_accuracy)} for r in self.rows.itertuples()],
            "keep_group": [{"k": int(r.k), "accuracy": float(r.keep_accuracy)} for r in self.rows.itertuples()],
        }
        if self.sample is not None and not self.sample.exact:
            for key, col in (("drop_group", "drop_accuracy"), ("keep_group", "keep_accuracy")):
                lo, hi = self.sample.interval(torch.tensor(self.rows[col].to_numpy(dtype=float)))
                for entry, a, b in zip(out[key], lo.tolist(), hi.tolist(), strict=True):
                    entry["accuracy_ci"] = [a, b]
        return out


@takes_device
def frequency_group_ablation(model, *, mode: str = "zero", hook_point: str = "mlp.hook_post",
                             spectrum: NeuronSpectrum | None = None,
                             table: ActivationTable | None = None, metrics: str = "all") -> FrequencyGroupResult:
    """Drop each frequency group alone, and keep each group alone (2K ablations in one batch)."""
    sp = neuron_spectrum(model) if spectrum is None else spectrum
    table = table_of(model, table)
    tab = table.on(compute_device())  # the group products and their scores run there
    groups = frequency_groups(sp)
    K = len(groups)
    evs = []
    step = tab.group_chunk(max((len(v) for v in groups.values()), default=0))
    full = None
    for i in range(0, K, step):
        contrib, base = tab.group_logits(list(groups.values())[i:i + step], mode, hook_point)
        if full is None:
            full = tab.logits(torch.ones(1, tab.d_mlp, dtype=torch.bool), mode, hook_point)[0]
        evs.append((tab.score(full - contrib, metrics), tab.score(contrib + base, metrics)))
    drop = [torch.cat([getattr(e[0], f) for e in evs]) for f in ("accuracy", "loss", "margin")]
    keep = [torch.cat([getattr(e[1], f) for e in evs]) for f in ("accuracy", "loss", "margin")]
    ev = type(evs[0][0])(*(torch.cat([a, b]).cpu() for a, b in zip(drop, keep, strict=True)))
    rows = pd.DataFrame({
        "k": list(groups.keys()),
        "n": [len(v) for v in groups.values()],
        "drop_accuracy": ev.accuracy[:K].numpy(),
        "drop_loss": ev.loss[:K].numpy(),
        "drop_margin": ev.margin[:K].numpy(),
        "keep_accuracy": ev.accuracy[K:].numpy(),
        "keep_loss": ev.loss[K:].numpy(),
        "keep_margin": ev.margin[K:].numpy(),
    })
    return FrequencyGroupResult(rows=rows, mode=mode, sample=table.sample)


# ================================================================ phase-biased ablation
@dataclass
class PhaseBiasedResult(Result):
    """The causal test of phase symmetry.

    For each order iota: in each frequency group keep the neurons whose iota * phi* lies in one
    half circle [a, a + pi) (a on a grid of ``n_grid`` values, kept count closest to half the
    group; see :func:`~mechinterp_modadd.analysis.ablation.half_circle_selection`), ablate the
    rest, and compare with ``draws`` size-matched random subsets drawn inside the same groups.
    ``difference`` = matched random accuracy (mean over draws) minus phase-biased accuracy: a
    large positive difference means the cancellation of the order-iota noise term needed the
    symmetric phases.
    """

    rows: pd.DataFrame
    draws: int
    seed: int
    mode: str
    sample: PairSample | None = None

    def to_frame(self) -> pd.DataFrame:
        """The rows; on a sample of pairs also ``ci_low`` / ``ci_high`` (95 % interval of the
        phase-biased accuracy) and ``matched_ci_low`` / ``matched_ci_high``."""
        out = with_ci(self.rows.copy(), "accuracy", self.sample)
        return with_ci(out, "matched_random_accuracy", self.sample, prefix="matched_")

    def difference(self, order: int) -> float:
        return lookup(self.rows, "order", order, "difference")

    def order_records(self) -> list[dict[str, Any]]:
        """The ``phase_biased`` list of the ``modadd ablate`` JSON: order, accuracy, matched random."""
        out = [{"order": int(r.order), "accuracy": float(r.accuracy),
                "matched_random_accuracy": float(r.matched_random_accuracy)} for r in self.rows.itertuples()]
        f = self.to_frame()
        return json_ci(json_ci(out, f, "accuracy_ci"), f, "matched_random_accuracy_ci", prefix="matched_")

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"draws": self.draws, "seed": self.seed, "mode": self.mode, "rows": self.rows})


@takes_device
def phase_biased_ablation(model, orders: Sequence[int] = (1, 2, 3, 4), *, draws: int = 20, n_grid: int = 72,
                          seed: int = 0, mode: str = "zero", hook_point: str = "mlp.hook_post",
                          spectrum: NeuronSpectrum | None = None,
                          table: ActivationTable | None = None, metrics: str = "all") -> PhaseBiasedResult:
    """Phase-biased halves against size-matched random halves, for each order iota (one batch).

    The matched draws of order iota come from ``generator(seed, "matched", iota)``, so they do not
    depend on which other orders are measured."""
    if draws < 1:
        raise InputError(f"draws must be >= 1, got {draws}")
    orders = [int(o) for o in orders]
    if not orders or any(o < 1 for o in orders):
        raise InputError(f"orders must be positive integers, got {orders}")
    sp = neuron_spectrum(model) if spectrum is None else spectrum
    tab = table_of(model, table)
    group = sp.frequency - 1
    masks = []
    for o in orders:
        keep, _ = half_circle_selection(sp, o, n_grid)
        n_keep = torch.bincount(group[keep], minlength=sp.K)
        masks += [keep[None], random_within_groups(draws, group, n_keep, generator(seed, "matched", o))]
    ev = tab.evaluate(torch.cat(masks), mode, hook_point, metrics=metrics)
    acc = ev.accuracy.reshape(len(orders), 1 + draws)
    rows = pd.DataFrame({
        "order": orders,
        "n_kept": [int(m.sum()) for m in masks[0::2]],
        "accuracy": acc[:, 0].numpy(),
        "loss": ev.loss.reshape(len(orders), 1 + draws)[:, 0].numpy(),
        "matched_random_accuracy": acc[:, 1:].mean(1).numpy(),
        "matched_random_min": acc[:, 1:].amin(1).numpy(),
        "matched_random_max": acc[:, 1:].amax(1).numpy(),
    })
    rows["difference"] = rows["matched_random_accuracy"] - rows["accuracy"]
    return PhaseBiasedResult(rows=rows, draws=draws, seed=seed, mode=mode, sample=tab.sample)


# ================================================================ activation swap
