"""``RunDynamics``: everything computed about one training run, once, for ``track`` and ``report``.

:func:`run_dynamics` reads a run folder (a :class:`~mechinterp_modadd.series.RunSeries`) and
computes the progress measures at every checkpoint, the grokking stages, the lottery predictor
table (when step 0 is present) and, with ``figures=True``, what the dynamics figures draw: the
W_in spectra at the first checkpoint and the stage boundaries, the frequency race of one neuron,
and one decoupled flow with the lottery contour at the run's p. The JSON document
(:meth:`RunDynamics.to_dict`, schema ``track``) and the pages
(:mod:`mechinterp_modadd.pages.dynamics`) render this one object.

JSON contract (``modadd track --json``; other tools read it; keep these names): ``steps`` and, as
lists aligned with it, ``train_accuracy``, ``test_accuracy``, ``train_loss``, ``test_loss``,
``mean_abs_sin_d``, ``ipr``, ``param_norm``, ``test_mirrored_accuracy``, ``test_unseen_accuracy``,
``train_both_orders_accuracy``, ``train_one_order_accuracy``, ``restricted_loss`` (test pairs;
all pairs for a full-data run), ``excluded_loss`` (partition lists, and the test lists, are null
when the run holds out no test pairs); ``key_frequencies`` (those of the last checkpoint, used
by the restricted / excluded loss at every step); ``stages`` = [end of stage I, end of stage II]
(null where not reached); ``lottery`` (null without step 0) with the success rates
``argmin_abs_d0``, ``argmax_alpha0``, ``argmax_alpha_beta_cos_d0``, ``flow`` and ``chance``.
Extra keys: ``restricted_loss_all`` (all pairs), ``restricted`` (the restricted-loss verdict at
the last checkpoint: ``verdict`` holds / fails / undetermined, ``reason``, ``keys``, ``key_rule``
and its losses), ``run``, ``source_format``, ``final_step``, ``stage_rule``, ``partition_counts``,
``race`` ({neuron, winner} or null), ``snapshot_steps`` and ``flow`` (the demonstration flow's
initial state and time, or null) when the figure data was computed. ``modadd track`` adds, for a
transformer run, ``transformer_views``: ``embedding_spectra`` (step -> the embedding's Fourier
spectrum, at the first and last checkpoints) and ``attention`` (the attention at ``=`` at the last,
its per-head summaries).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .errors import InputError
from .fourier import NeuronSpectrum

__all__ = ["RunDynamics", "FlowDemo", "run_dynamics", "LIST_KEYS", "TEST_KEYS", "FLOW_DEMO"]

#: Per-checkpoint lists of the JSON document, aligned with ``steps``.
LIST_KEYS = ["train_accuracy", "test_accuracy", "train_loss", "test_loss", "mean_abs_sin_d", "ipr", "param_norm",
             "test_mirrored_accuracy", "test_unseen_accuracy", "train_both_orders_accuracy",
             "train_one_order_accuracy", "restricted_loss", "restricted_loss_all", "excluded_loss"]
#: Lists that are null for a run without held-out pairs.
TEST_KEYS = {"test_accuracy", "test_loss", "test_mirrored_accuracy", "test_unseen_accuracy",
             "train_both_orders_accuracy", "train_one_order_accuracy"}
#: The demonstration flow of the report: alpha(0) = m0, phi(0) = 0, beta(0) = m0 / 2, psi(0) = -2.5
#: (so D(0) = 2.5 rad), integrated to 1.02 x the time r takes to grow 20-fold, capped at 20 m0.
FLOW_DEMO = {"alpha0": 0.015, "phi0": 0.0, "beta0": 0.0075, "psi0": -2.5, "take_off_factor": 20.0}


def _num(v: Any) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class FlowDemo:
    """One (neuron, frequency) flow of the decoupled ODE and the lottery contour at the run's p."""

    params: dict[str, float]
    t_end: float
    trajectory: Any  # analysis.ode.FlowTrajectory
    contour: Any  # analysis.ode.LotteryContour

    @property
    def d0(self) -> float:
        """The initial misalignment D(0) = 2 phi(0) - psi(0) (rad)."""
        return 2 * self.params["phi0"] - self.params["psi0"]


@dataclass
class RunDynamics:
    """The run-level result shared by ``modadd track`` and ``modadd report`` (see the module docstring).

    Attributes:
        run, source_format, final_step, description: from the run folder.
        p, has_test: the modulus, and whether the run holds out test pairs.
        measures: progress measures indexed by step (columns of :data:`LIST_KEYS` and more).
        stages: :class:`~mechinterp_modadd.analysis.grokking.Stages`.
        key_frequencies: the last checkpoint's key frequencies (restricted / excluded loss).
        restricted: :class:`~mechinterp_modadd.analysis.restricted.RestrictedLoss` of the last
            checkpoint with those keys (its verdict may be "undetermined").
        lottery: :class:`~mechinterp_modadd.analysis.lottery.LotteryResult` or None (no step 0).
        partition_counts: pairs per mirror partition (None without test pairs).
        snapshots: W_in spectra at the first checkpoint and the stage boundaries (figure data).
        final_spectrum: the spectrum of the last checkpoint (orders the snapshot rows).
        race: :class:`~mechinterp_modadd.analysis.lottery.FrequencyRace` of one neuron.
        flow: :class:`FlowDemo`.
        family: the run's network family; ``undefined``: run-level claims with no definition on
            it, name -> reason (e.g. ``lottery_ticket`` on ``concat_mlp``).
    """

    run: str
    source_format: str
    final_step: int | None
    description: str
    p: int
    has_test: bool
    measures: pd.DataFrame
    stages: Any
    key_frequencies: list[int]
    lottery: Any = None
    restricted: Any = None
    partition_counts: dict[str, int] | None = None
    snapshots: dict[int, NeuronSpectrum] | None = None
    final_spectrum: NeuronSpectrum | None = None
    race: Any = None
    flow: FlowDemo | None = None
    family: str = "mlp"
    undefined: dict[str, str] = field(default_factory=dict)

    @property
    def steps(self) -> list[int]:
        return [int(s) for s in self.measures.index]

    def to_frame(self) -> pd.DataFrame:
        """The progress measures, one row per checkpoint."""
        return self.measures

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of the module docstring (schema ``track``, without its stamp)."""
        doc: dict[str, Any] = {"run": self.run, "family": self.family, "source_format": self.source_format,
                               "final_step": self.final_step, "steps": self.steps}
        for k in LIST_KEYS:
            doc[k] = None if (k in TEST_KEYS and not self.has_test) else [_num(v) for v in self.measures[k]]
        doc["key_frequencies"] = [int(k) for k in self.key_frequencies]
        if self.restricted is not None:
            r = self.restricted
            doc["restricted"] = {"verdict": r.verdict, "reason": r.reason, "keys": [int(k) for k in r.keys],
                                 "key_rule": r.key_rule, "eval_pairs": r.eval_pairs,
                                 "restricted_loss": _num(r.restricted_loss),
                                 "restricted_loss_all": _num(r.restricted_loss_all),
                                 "excluded_loss": _num(r.excluded_loss), "train_loss": _num(r.train_loss)}
        st = self.stages
        doc["stages"] = [st.end_stage1, st.end_stage2]
        doc["stage_rule"] = (f"end of stage I: first checkpoint with train accuracy >= {st.train_threshold}; "
                             f"end of stage II: first later checkpoint with test accuracy >= {st.test_threshold}")
        doc["lottery"] = None if self.lottery is None else {k: _num(v) for k, v in self.lottery.rates().items()}
        if self.undefined:  # run-level claims with no definition on this family, and why
            doc["undefined_claims"] = dict(self.undefined)
        if self.lottery is not None:
            t = self.lottery.to_frame()
            doc["lottery_x_chance"] = {str(k): _num(v) for k, v in zip(t["predictor"], t["x_chance"], strict=True)}
        if self.partition_counts is not None:
            doc["partition_counts"] = dict(self.partition_counts)
        doc["race"] = None if self.race is None else {"neuron": int(self.race.neuron), "winner": int(self.race.winner)}
        doc["snapshot_steps"] = None if self.snapshots is None else [int(s) for s in self.snapshots]
        doc["flow"] = None if self.flow is None else {**self.flow.params, "t_end": _num(self.flow.t_end),
                                                      "contour_t_end": _num(self.flow.contour.t_end)}
        return doc

    def to_json(self, path: str | os.PathLike | None = None, indent: int | None = 1) -> str:
        """The JSON text, stamped with schema ``track``; also written atomically to ``path`` when given."""
        from .schemas import stamp, write_json

        if path is not None:
            write_json(path, self.to_dict(), "track", indent=indent)
        return json.dumps(stamp(self.to_dict(), "track"), indent=indent, allow_nan=False)


def _flow_demo(p: int) -> FlowDemo:
    from .analysis.ode import integrate_flow, lottery_contour, take_off_time

    f = FLOW_DEMO
    t_end = float(take_off_time(f["alpha0"], f["phi0"], f["beta0"], f["psi0"], p,
                                factor=f["take_off_factor"])) * 1.02
    traj = integrate_flow(f["alpha0"], f["phi0"], f["beta0"], f["psi0"], p, t_end, cap=20 * f["alpha0"])
    return FlowDemo(params=dict(f), t_end=t_end, trajectory=traj, contour=lottery_contour(p))


def run_dynamics(series, *, neuron: int | None = None, figures: bool = True, progress: bool = False,
                 keys: Any = None) -> RunDynamics:
    """Compute the :class:`RunDynamics` of ``series`` (a :class:`~mechinterp_modadd.series.RunSeries`).

    ``figures=False`` computes only what the JSON's required keys need (measures, stages, lottery);
    ``neuron`` picks the neuron of the frequency race (default: the largest alpha at k* at the last
    checkpoint); ``keys`` chooses the key frequencies of the restricted / excluded loss (a list,
    ``"norm"`` (default), ``"norm:N"`` or ``"vote"``; see
    :func:`~mechinterp_modadd.analysis.restricted.resolve_keys`).
    """
    from .analysis.claims import run_claims
    from .analysis.grokking import progress_measures, restricted_verdict
    from .analysis.lottery import frequency_race
    from .data import mirror_partitions

    measures = progress_measures(series, progress=progress, keys=keys)
    restricted = restricted_verdict(series, keys)
    run = run_claims(series, measures)  # every registered run-level claim (analysis.claims)
    undefined = {name: r.reason for name, r in run.items() if r is not None and not getattr(r, "defined", True)}
    stages, lottery = run["grokking_stages"], run["lottery_ticket"]
    lottery = None if "lottery_ticket" in undefined else lottery
    final = series.spectrum(series.last_step)
    dyn = RunDynamics(run=str(series.path), source_format=series.source_format, final_step=series.final_step,
                      description=series.describe(), p=int(series.p), has_test=bool(series.has_test),
                      measures=measures, stages=stages, key_frequencies=list(restricted.keys), lottery=lottery,
                      restricted=restricted,
                      partition_counts=mirror_partitions(series.split).counts() if series.has_test else None,
                      family=series.family, undefined=undefined)
    if neuron is not None and not 0 <= neuron < final.d_mlp:
        raise InputError(f"--neuron {neuron} out of range [0, {final.d_mlp})")
    if not figures:
        return dyn
    snap = [s for s in [series.first_step, stages.end_stage1, stages.end_stage2] if s is not None]
    snap = list(dict.fromkeys(snap))
    if series.last_step not in snap and len(snap) < 3:
        snap.append(series.last_step)
    dyn.snapshots = {s: series.spectrum(s) for s in snap}
    dyn.final_spectrum = final
    dyn.race = frequency_race(series, int(final.alpha_star.argmax()) if neuron is None else neuron)
    dyn.flow = _flow_demo(series.p)
    return dyn
