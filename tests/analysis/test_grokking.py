"""Grokking: progress measures, mirror-partition bookkeeping, stage detection, `modadd track`."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import reference_path

from mechinterp_modadd.analysis.base import all_pair_logits
from mechinterp_modadd.analysis.grokking import (
    PROGRESS_COLUMNS,
    _logits64,
    detect_stages,
    grokking_stages,
    measures_of_model,
    progress_measures,
)
from mechinterp_modadd.analysis.idealised import idealised_network
from mechinterp_modadd.cli import main
from mechinterp_modadd.data import mirror_partitions, random_split
from mechinterp_modadd.errors import InputError
from mechinterp_modadd.forward import CHUNK_SHARE, bytes_per_pair
from mechinterp_modadd.model import ModAddMLP, ModelConfig
from mechinterp_modadd.series import load_run
from mechinterp_modadd.training import preset, train

CONTRACT_LISTS = ["train_accuracy", "test_accuracy", "train_loss", "test_loss", "mean_abs_sin_d", "ipr",
                  "param_norm", "test_mirrored_accuracy", "test_unseen_accuracy", "train_both_orders_accuracy",
                  "train_one_order_accuracy"]
LOTTERY_KEYS = {"argmin_abs_d0", "argmax_alpha0", "argmax_alpha_beta_cos_d0", "flow", "chance"}


# ------------------------------------------------------------------------ partition bookkeeping
@pytest.mark.parametrize("p,seed", [(7, 0), (11, 3), (13, 5)])
def test_partition_bookkeeping(p, seed):
    split = random_split(p, 0.75, seed)
    parts = mirror_partitions(split)
    masks = [parts.test_mirrored, parts.test_unseen, parts.train_both_orders, parts.train_one_order]
    assert torch.equal(sum(m.long() for m in masks), torch.ones(p * p, dtype=torch.long))  # a partition
    assert torch.equal(parts.test_mirrored | parts.test_unseen, split.test_mask)
    # the mirror of a test_mirrored pair is a train_one_order pair, and vice versa
    mirror = lambda m: m.reshape(p, p).T.reshape(-1)  # noqa: E731
    assert torch.equal(mirror(parts.test_mirrored), parts.train_one_order)
    assert torch.equal(mirror(parts.train_both_orders), parts.train_both_orders)
    assert torch.equal(mirror(parts.test_unseen), parts.test_unseen)
    # any model is symmetric in (x, y): those two partitions always have equal accuracy
    model = ModAddMLP(ModelConfig(p=p, d_mlp=24), seed=seed)
    m = measures_of_model(model, split)
    assert m["test_mirrored_accuracy"] == m["train_one_order_accuracy"]
    n_test = int(split.test_mask.sum())
    mixed = (m["test_mirrored_accuracy"] * int(parts.test_mirrored.sum())
             + m["test_unseen_accuracy"] * int(parts.test_unseen.sum())) / n_test
    assert mixed == pytest.approx(m["test_accuracy"])


def test_measures_on_idealised_and_full_data():
    model = idealised_network(11, 8)
    split = random_split(11, 0.75, 0)
    m = measures_of_model(model, split)
    assert set(m) == set(PROGRESS_COLUMNS)
    for c in ("train_accuracy", "test_accuracy", "test_mirrored_accuracy", "test_unseen_accuracy",
              "train_both_orders_accuracy", "train_one_order_accuracy"):
        assert m[c] == 1.0
    assert m["ipr"] == pytest.approx(1.0) and m["mean_abs_sin_d"] < 1e-9
    full = measures_of_model(model, None)
    assert math.isnan(full["test_accuracy"]) and math.isnan(full["test_unseen_accuracy"])
    assert full["train_accuracy"] == 1.0
    with pytest.raises(InputError):
        measures_of_model(model, random_split(7, 0.75, 0))


def test_float64_logits_match_the_model():
    model = ModAddMLP(ModelConfig(p=11, d_mlp=40, activation="relu"), seed=2)
    a = _logits64(model, max_memory=17 * bytes_per_pair(40, 11) / CHUNK_SHARE)  # 17 pairs a chunk
    b = all_pair_logits(model)
    assert torch.allclose(a, b, atol=1e-5)


# ------------------------------------------------------------------------------ stage detection
def _synthetic(end1=20, end2=60, plateau=0.7, n=101):
    steps = np.arange(n) * 10
    t = np.arange(n)
    train = 1 / (1 + np.exp(-(t - end1 + 3)))  # crosses 0.95 at t = end1
    gen = 1 / (1 + np.exp(-(t - end2 + 3)))
    test = np.where(t < end1, 0.0, plateau) + (1 - plateau) * gen
    return steps, train, test


def test_detect_stages_on_synthetic_curves():
    steps, train, test = _synthetic()
    e1, e2 = detect_stages(steps, train, test)
    assert e1 == 200 and train[20] >= 0.95 > train[19]
    assert e2 == int(steps[np.nonzero(test >= 0.95)[0][0]])
    assert 500 <= e2 <= 600
    # never generalises: only stage I ends
    steps, train, _ = _synthetic()
    assert detect_stages(steps, train, np.full(len(steps), 0.7)) == (200, None)
    # never memorises: nothing
    assert detect_stages(steps, np.full(len(steps), 0.5), np.full(len(steps), 0.99)) == (None, None)
    # test accuracy already high before memorisation ends does not count for stage II
    e1, e2 = detect_stages([0, 1, 2, 3], [0.1, 0.99, 1, 1], [0.99, 0.5, 0.6, 0.96])
    assert (e1, e2) == (1, 3)
    with pytest.raises(InputError, match="increasing"):
        detect_stages([0, 2, 1], [1, 1, 1], [1, 1, 1])
    with pytest.raises(InputError, match="length"):
        detect_stages([0, 1], [1, 1, 1], [1, 1, 1])


def test_grokking_stages_verdict_both_ways():
    steps, train, test = _synthetic()
    frame = pd.DataFrame({"train_accuracy": train, "test_accuracy": test,
                          "ipr": np.linspace(0.2, 0.9, len(steps))}, index=steps)
    good = grokking_stages(frame)
    assert good.holds and good.boundaries == [200, good.end_stage2]
    assert good.stage_of(100) == 1 and good.stage_of(300) == 2 and good.stage_of(990) == 3
    flat = grokking_stages(frame.assign(ipr=0.3))  # generalises without sparser features
    assert not flat.holds
    stuck = grokking_stages(frame.assign(test_accuracy=0.7))
    assert not stuck.holds and stuck.end_stage2 is None


# ---------------------------------------------------------------------------------- reference
@pytest.fixture(scope="module")
def reference_measures():
    path = reference_path("grokking_relu_p23", "0.pth").parent
    series = load_run(path, activation="relu")
    return series, progress_measures(series, progress=False)


def test_reference_grokking_partitions_and_plateau(reference_measures):
    series, m = reference_measures
    # common pairs are learned first, rare ones pushed to 0
    assert m.loc[1000, "train_both_orders_accuracy"] >= 0.95
    assert m.loc[1000, "train_one_order_accuracy"] == 0.0
    stages = grokking_stages(m)
    assert stages.end_stage1 == 2000 and stages.end_stage2 == 11000
    assert stages.holds
    # after stage I and up to step 4000: test accuracy is exactly the mirrored fraction 94/133
    for s in [s for s in m.index if stages.end_stage1 < s <= 4000]:
        assert m.loc[s, "test_accuracy"] == pytest.approx(94 / 133, abs=1e-12)
        assert m.loc[s, "test_unseen_accuracy"] == 0.0
        assert m.loc[s, "test_mirrored_accuracy"] == 1.0
    # IPR rises at every checkpoint
    assert (np.diff(m["ipr"].to_numpy()) > 0).all()
    assert m["test_accuracy"].iloc[-1] == pytest.approx(0.9774, abs=5e-4)
    # our norm is recomputed from the weights: equal to the stored one at step 0 (same weights)
    assert m.loc[0, "param_norm"] == pytest.approx(series.metrics["param_norm"].iloc[0], rel=1e-6)


# ------------------------------------------------------------------------- tiny grokking run
@pytest.fixture(scope="module")
def tiny_grok(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "grok13"
    cfg = preset("grokking", p=13, d_mlp=128, lr=2e-3, weight_decay=1.0, steps=4000, save_every=200, seed=0)
    train(cfg, out, progress=False, checkpoint_steps=[25, 50, 75, 100, 150])
    return out


def test_tiny_grokking_run_stage_one(tiny_grok):
    series = load_run(tiny_grok)
    m = progress_measures(series, progress=False)
    counts = mirror_partitions(series.split).counts()
    # pairs present in both orders are learned before the rare ones (which sit at 0)
    early = m.loc[75]
    assert early["train_both_orders_accuracy"] >= 0.9 and early["train_one_order_accuracy"] == 0.0
    stages = grokking_stages(m)
    assert stages.end_stage1 is not None and stages.end_stage1 <= 200
    # memorised plateau: test accuracy = mirrored fraction, truly unseen pairs all wrong
    frac = counts["test_mirrored"] / (counts["test_mirrored"] + counts["test_unseen"])
    assert m.loc[400, "test_accuracy"] == pytest.approx(frac)
    assert m.loc[400, "test_unseen_accuracy"] == 0.0
    # weight decay then starts generalising to unseen pairs while the features sharpen
    assert m["test_unseen_accuracy"].iloc[-1] > 0.0
    assert m["ipr"].iloc[-1] > m.loc[400, "ipr"] > m["ipr"].iloc[0]


def test_track_cli_json_contract(tiny_grok, tmp_path, capsys):
    out = tmp_path / "t.json"
    html = tmp_path / "t.html"
    assert main(["track", str(tiny_grok), "--json", str(out), "--html", str(html), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    n = len(doc["steps"])
    assert doc["steps"][:3] == [0, 25, 50] and doc["steps"][-1] == 4000
    for k in CONTRACT_LISTS:
        assert isinstance(doc[k], list) and len(doc[k]) == n, k
    assert len(doc["stages"]) == 2 and isinstance(doc["stages"][0], int)
    assert set(doc["lottery"]) == LOTTERY_KEYS
    assert doc["lottery"]["chance"] == pytest.approx(1 / 6)
    assert html.stat().st_size > 100_000 and b"plotly" in html.read_bytes()[:5_000_000]
    printed = capsys.readouterr().out
    assert "stages: end of stage I" in printed and "flow" in printed


def test_track_cli_full_data_run_without_step0(tmp_path):
    run = tmp_path / "std7"
    train(preset("standard", p=7, d_mlp=24, steps=30, lr=1e-3, save_every=10, seed=0), run, progress=False)
    (run / "checkpoints" / "step_000000.safetensors").unlink()
    out = tmp_path / "s.json"
    assert main(["track", str(run), "--json", str(out), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    assert doc["steps"] == [10, 20, 30]
    assert doc["lottery"] is None
    for k in ("test_accuracy", "test_loss", "test_mirrored_accuracy", "test_unseen_accuracy",
              "train_both_orders_accuracy", "train_one_order_accuracy"):
        assert doc[k] is None
    assert len(doc["train_accuracy"]) == 3 and doc["stages"][1] is None


def test_track_cli_errors_are_clean(tmp_path, capsys):
    assert main(["track", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
