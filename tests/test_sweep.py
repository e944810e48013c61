"""Sweeps: spec parsing and bad specs, local vs Ray, resume after SIGKILL, the three pages' aggregation."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mechinterp_modadd.analysis.sweep import (
    SweepTable,
    bootstrap_mean_ci,
    grokking_phase,
    lottery_summary,
    primes_summary,
    run_region,
)
from mechinterp_modadd.cli import main
from mechinterp_modadd.sweeps import SpecError, group_batches, parse_spec, preset_spec, run_sweep
from mechinterp_modadd.sweeps.runner import TIMING_COLUMNS

ROOT = Path(__file__).resolve().parents[1]

TINY = """
name = "tiny"
analyses = ["diagnose", "lottery", "progress"]
[grid]
preset = "grokking"
p = [5, 7]
d_mlp = 12
weight_decay = [0.0, 1.0]
train_fraction = 0.6
seed = "0-1"
steps = 40
save_every = 20
"""


def _same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    drop = [c for c in TIMING_COLUMNS if c in a]
    pd.testing.assert_frame_equal(a.drop(columns=drop), b.drop(columns=drop), check_exact=True)


# ------------------------------------------------------------------------------- spec parsing
def test_spec_expands_the_grid_in_order_and_groups_by_shape():
    spec = parse_spec(TINY, "tiny.toml")
    assert len(spec.runs) == 2 * 2 * 2
    assert [r.config.p for r in spec.runs] == [5, 5, 5, 5, 7, 7, 7, 7]
    assert [r.config.seed for r in spec.runs[:4]] == [0, 1, 0, 1]
    assert len({r.name for r in spec.runs}) == 8
    batches = group_batches(spec.runs, max_batch=3)
    assert [len(b) for b in batches] == [2, 2, 2, 2]  # two batches per shape, dealt round-robin
    assert [r.name for r in batches[0]] == [spec.runs[0].name, spec.runs[2].name]
    assert all(len({r.shape for r in b}) == 1 for b in batches)
    assert sorted(r.name for b in batches for r in b) == sorted(r.name for r in spec.runs)
    # as many batches as a multiple of the workers (here 3 per shape), never more than the runs
    assert [len(b) for b in group_batches(spec.runs, max_batch=16, workers=3)] == [2, 1, 1, 2, 1, 1]
    assert len(group_batches(spec.runs, max_batch=16, workers=8)) == 8
    assert parse_spec(spec.to_toml()).to_dict() == spec.to_dict()  # --print-spec round trip
    rule = parse_spec('[grid]\np = 29\nd_mlp = "rule"')
    assert rule.runs[0].config.model_config().d_mlp == math.ceil(512 * 29 * 29 / 529)


def test_optimizer_grid_keys():
    """optimizer, betas and momentum are grid axes; run names of configs at their defaults are the
    names they had before these keys (and TrainConfig.family) existed."""
    spec = parse_spec('[grid]\npreset = "quad_single_freq"\np = 7\noptimizer = "sgd"\nmomentum = [0.0, 0.9]')
    assert [r.config.momentum for r in spec.runs] == [0.0, 0.9]
    assert spec.runs[0].name == "quad_single_freq_p7_seed0_3041a472"  # as before the new keys
    adam = parse_spec('[grid]\npreset = "standard"\np = 7\nbetas = [[0.9, 0.98], [0.8, 0.99]]\nseed = [0, 1]')
    assert [r.config.betas for r in adam.runs] == [(0.9, 0.98), (0.9, 0.98), (0.8, 0.99), (0.8, 0.99)]
    assert adam.runs[0].name == "standard_p7_seed0_8a6ecef0" and len({r.name for r in adam.runs}) == 4
    assert parse_spec(adam.to_toml()).to_dict() == adam.to_dict()
    one = parse_spec('[grid]\npreset = "standard"\np = 7\nbetas = [0.9, 0.999]\noptimizer = "adamw"')
    assert [r.config.betas for r in one.runs] == [(0.9, 0.999)]
    sgd = parse_spec('[grid]\npreset = "standard"\np = 7\noptimizer = "sgd"\nlr = 0.1')
    assert sgd.runs[0].config.optimizer == "sgd"


@pytest.mark.parametrize("text, needle", [
    ("[grid]\nseeds = [1]", "grid.seeds: unknown key"),
    ("colour = 1\n[grid]\np = 5", "colour: unknown key"),
    ("[grid]\nseed = []", "grid.seed: empty list"),
    ("[grid]\nlr = []", "grid.lr: empty list"),
    ("name = 'x'", "grid: missing [grid]"),
    ("[grid]\np = 6", "grid.p: p must be odd"),
    ("[grid]\ntrain_fraction = 1.5", "grid.train_fraction: must be in (0, 1]"),
    ("[grid]\nstop_accuracy = 0", "grid.stop_accuracy: must be in (0, 1]"),
    ("[grid]\nstop_window = 0", "grid.stop_window: must be >= 1"),
    ("[grid]\npreset = 'nope'", "grid.preset: unknown preset"),
    ("[grid]\nseed = '5-2'", "grid.seed: empty range"),
    ("[grid]\np = 3\ntrain_fraction = 0.01", "impossible combination (p = 3, train_fraction = 0.01)"),
    ("page = 'grokking'\n[grid]\npreset = 'standard'", "page: the grokking page needs runs with train_fraction < 1"),
    ("page = 'lottery'\nanalyses = ['diagnose']\n[grid]\np = 5", "page: the lottery page needs"),
    ("analyses = ['everything']\n[grid]\np = 5", "analyses: expected a list"),
    ("[grid\np = 5", "not valid TOML"),
    ("[grid]\nmomentum = 0.9", "impossible combination (preset = standard, p = 23, momentum = 0.9"),
    ("[grid]\nbetas = [0.9]", "grid.betas: must be a pair of numbers in [0, 1)"),
    ("[grid]\nmomentum = 1.5", "grid.momentum: must be in [0, 1)"),
    ("[grid]\noptimizer = 'lion'", "optimizer must be one of"),
])
def test_bad_specs_give_one_clear_line(text, needle):
    with pytest.raises(SpecError) as e:
        parse_spec(text, "bad.toml")
    msg = str(e.value)
    assert msg.startswith("bad.toml: ") and needle in msg and "\n" not in msg


def test_cli_bad_inputs_exit_2(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text("[grid]\nseed = []")
    assert main(["sweep", str(f), "--out", str(tmp_path / "o"), "--executor", "local"]) == 2
    assert "grid.seed: empty list" in capsys.readouterr().err
    assert main(["sweep", "--out", str(tmp_path / "o")]) == 2
    assert main(["sweep", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")]) == 2
    assert main(["sweep", "--preset", "nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "exactly one of SPEC.toml and --preset" in err and "cannot read the sweep spec" in err
    assert "unknown sweep preset 'nope'" in err
    assert main(["sweep", "--preset", "grokking", "--print-spec"]) == 0
    assert "weight_decay = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0]" in capsys.readouterr().out
    # --set replaces grid keys of a preset or a spec file (values in TOML); bad ones are one line, exit 2
    assert main(["sweep", "--preset", "grokking", "--set", "steps=50000", "--set", 'seed="0-9"', "--print-spec"]) == 0
    out = capsys.readouterr().out
    assert "steps = [50000]" in out and "seed = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in out
    (tmp_path / "t.toml").write_text(TINY)
    assert main(["sweep", str(tmp_path / "t.toml"), "--set", "p=[11]", "--print-spec"]) == 0
    assert "p = [11]" in capsys.readouterr().out
    for bad, needle in [("steps", "expected KEY=VALUE"), ("steps=fifty", "is not a TOML value"),
                        ("colour=1", "grid.colour: unknown key"), ("steps=0", "grid.steps: must be >= 1")]:
        assert main(["sweep", "--preset", "grokking", "--set", bad, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------- running and resume
@pytest.fixture(scope="module")
def tiny_local(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "local"
    table = run_sweep(parse_spec(TINY, "tiny.toml"), out, executor="local", progress=False)
    return out, table


def test_local_sweep_writes_complete_runs_and_the_table(tiny_local):
    out, table = tiny_local
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 8 and table.n_complete == 8
    assert (out / "results.parquet").is_file()
    from mechinterp_modadd.schemas import validate

    doc = json.loads((out / "results.json").read_text())
    validate(doc, "sweep")
    assert doc["n_complete"] == 8 and [r["name"] for r in doc["rows"]] == list(df["name"])
    assert doc["rows"][0]["grok_step"] is None and isinstance(doc["rows"][0]["end_stage1"], (int, type(None)))
    for col in ("final_test_accuracy", "grok_step", "end_stage1", "restricted_loss", "excluded_loss",
                "single_frequency.verdict", "majority_vote.half_accuracy", "lottery.flow", "lottery.chance"):
        assert col in df
    assert set(df["single_frequency.verdict"]) <= {"holds", "fails"}
    assert df["grok_step"].isna().all()  # 40 steps: nothing generalises
    for name in df["name"]:
        assert (out / "runs" / name / "checkpoints" / "step_000000.safetensors").is_file()
    assert not (out / ".work").exists()
    # rerunning trains nothing and changes nothing
    before = {n: (out / "runs" / n / "sweep_row.json").stat().st_mtime_ns for n in df["name"]}
    again = run_sweep(parse_spec(TINY, "tiny.toml"), out, executor="local", progress=False)
    _same_table(again.to_frame(), table.to_frame())
    assert before == {n: (out / "runs" / n / "sweep_row.json").stat().st_mtime_ns for n in df["name"]}


def test_changed_spec_for_an_existing_folder_is_refused(tiny_local):
    out, _ = tiny_local
    with pytest.raises(SpecError, match=r"different spec \(grid\.seed: \[0, 1\] -> \[0, 1, 2\]\)"):
        run_sweep(parse_spec(TINY.replace('"0-1"', '"0-2"')), out, executor="local", progress=False)


def test_sigkill_mid_sweep_then_rerun_gives_the_same_table(tiny_local, tmp_path):
    ref_out, ref = tiny_local
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(TINY)
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "mechinterp_modadd", "sweep", str(spec_file), "--out", str(out), "--executor",
           "local", "--quiet"]
    # kill as soon as the first run folder appears (the p = 5 batch completes before the p = 7 one)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        runs = out / "runs"
        if runs.is_dir() and any(runs.iterdir()):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    done = sorted(p.name for p in (out / "runs").iterdir())
    assert 0 < len(done) < 8
    assert all((out / "runs" / n / "sweep_row.json").is_file() for n in done)  # complete or absent
    stamp = {n: (out / "runs" / n / "sweep_row.json").stat().st_mtime_ns for n in done}
    table = run_sweep(parse_spec(TINY, "tiny.toml"), out, executor="local", progress=False)
    assert stamp == {n: (out / "runs" / n / "sweep_row.json").stat().st_mtime_ns for n in done}  # not retrained
    _same_table(table.to_frame(), ref.to_frame())
    _same_table(pd.read_csv(out / "results.csv"), pd.read_csv(ref_out / "results.csv"))


@pytest.mark.slow
def test_local_ray_gives_the_same_table(tiny_local, tmp_path):
    pytest.importorskip("ray")
    ref_out, _ = tiny_local
    out = tmp_path / "ray"
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(TINY)
    assert main(["sweep", str(spec_file), "--out", str(out), "--workers", "2", "--quiet"]) == 0
    _same_table(pd.read_csv(out / "results.csv"), pd.read_csv(ref_out / "results.csv"))


# ------------------------------------------------------------------------------ aggregation
def test_bootstrap_interval_and_regions():
    m, lo, hi = bootstrap_mean_ci([0.2, 0.4, 0.6, 0.8])
    assert m == pytest.approx(0.5) and 0.2 <= lo < 0.5 < hi <= 0.8
    assert bootstrap_mean_ci([0.3]) == (0.3, 0.3, 0.3)
    assert run_region(None, None) == "confusion"
    assert run_region(1000, None) == "memorisation only"
    assert run_region(1000, 1800) == "comprehension"
    assert run_region(1000, 9600) == "grokking"


def test_lottery_preset_aggregation_on_a_tiny_grid(tmp_path):
    spec = preset_spec("lottery", p=[5], seed="0-2", steps=[30], save_every=[30])
    assert spec.page == "lottery" and len(spec.runs) == 6
    table = run_sweep(spec, tmp_path / "lot", executor="local", progress=False)
    s = lottery_summary(table)
    assert list(s["preset"].unique()) == ["quad_random", "standard"]
    assert set(s["predictor"]) == {"argmin_abs_d0", "argmax_alpha0", "argmax_alpha_beta_cos_d0", "flow"}
    assert (s["n_seeds"] == 3).all() and (s["chance"] == 0.5).all()
    assert ((s["ci_low"] <= s["success_rate"]) & (s["success_rate"] <= s["ci_high"])).all()
    assert main(["report", str(tmp_path / "lot"), "--out", str(tmp_path / "lot.html")]) == 0
    html = (tmp_path / "lot.html").read_text()
    assert "bootstrap" in html and "argmin_abs_d0" in html


def test_grokking_phase_on_constructed_rows_and_a_tiny_grid(tmp_path):
    rows = []
    for wd, tf, fit, grok in [(0.0, 0.5, 500, None), (2.0, 0.75, 800, 9600), (2.0, 0.9, 700, 1000),
                              (0.0, 0.75, None, None)]:
        for seed in range(3):
            rows.append({"weight_decay": wd, "train_fraction": tf, "seed": seed, "fit_step": fit,
                         "grok_step": grok, "final_test_accuracy": 0.5 if grok is None else 0.99})
    ph = grokking_phase(SweepTable.from_rows(rows))
    region = {(r.weight_decay, r.train_fraction): r.region for r in ph.itertuples()}
    assert region == {(0.0, 0.5): "memorisation only", (0.0, 0.75): "confusion", (2.0, 0.75): "grokking",
                      (2.0, 0.9): "comprehension"}
    assert ph.set_index(["weight_decay", "train_fraction"]).loc[(2.0, 0.75), "median_grok_step"] == 9600
    spec = preset_spec("grokking", p=[5], weight_decay=[0.0, 2.0], train_fraction=[0.6, 0.8], seed="0-1",
                       steps=[40], save_every=[40])
    table = run_sweep(spec, tmp_path / "grok", executor="local", progress=False)
    ph = grokking_phase(table)
    assert len(ph) == 4 and (ph["n_seeds"] == 2).all()
    assert main(["report", str(tmp_path / "grok"), "--out", str(tmp_path / "grok.html")]) == 0
    assert "the paper" in (tmp_path / "grok.html").read_text()
    assert (table.frame["steps_done"] == 40).all()  # the preset's stop window (500) never comes up


def test_early_stop_in_a_sweep(tmp_path):
    # a threshold these tiny runs reach: the runs that hold it for 20 steps end there, the others run on
    spec = preset_spec("grokking", p=[5], weight_decay=[0.0, 2.0], train_fraction=[0.6, 0.8], seed="0-1",
                       steps=[400], save_every=[400], lr=[1e-2], stop_window=[20], stop_accuracy=[0.5])
    table = run_sweep(spec, tmp_path / "stop", executor="local", progress=False)
    df = table.frame
    early = df[df["steps_done"] < 400]
    assert 0 < len(early) < len(df)
    assert (early["steps_done"] % 20 == 0).all()
    assert (early["final_test_accuracy"] >= 0.5).all() and (early["final_train_accuracy"] >= 0.5).all()
    for r in early.itertuples():
        m = pd.read_csv(tmp_path / "stop" / "runs" / r.name / "metrics.csv")
        assert int(m["step"].iloc[-1]) == r.steps_done
    assert main(["report", str(tmp_path / "stop"), "--out", str(tmp_path / "stop.html")]) == 0
    assert "ends early once its train and test accuracy held &gt;= 0.5 for 20 steps" in \
        (tmp_path / "stop.html").read_text()


def test_primes_preset_aggregation_on_a_tiny_grid(tmp_path):
    spec = preset_spec("primes", p=[3, 5], d_mlp=[8], steps=[30], save_every=[30])
    table = run_sweep(spec, tmp_path / "pr", executor="local", progress=False)
    s = primes_summary(table)
    assert list(s["p"]) == [3, 5] and "single_frequency.holds" in s and "train_seconds" in s
    assert s["single_frequency.holds"].between(0, 1).all()
    assert main(["report", str(tmp_path / "pr"), "--out", str(tmp_path / "pr.html")]) == 0


@pytest.mark.slow
def test_sigkill_of_a_ray_worker_is_retried_and_gives_the_same_table(tmp_path):
    """Kill the Ray worker process that is training a batch (its pid is in the batch folder's lock):
    Ray retries the task, the retry starts the batch afresh, and the sweep ends in the same command
    with the same table as an uninterrupted in-process sweep."""
    pytest.importorskip("ray")
    text = TINY.replace("steps = 40", "steps = 4000").replace("save_every = 20", "save_every = 2000")
    ref = run_sweep(parse_spec(text, "long.toml"), tmp_path / "ref", executor="local", progress=False)
    spec_file = tmp_path / "long.toml"
    spec_file.write_text(text)
    out = tmp_path / "ray"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "mechinterp_modadd", "sweep", str(spec_file), "--out", str(out), "--workers", "2",
           "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.time() + 300
    while killed is None and time.time() < deadline and proc.poll() is None:
        for lock in (out / ".work").glob("*/.modadd.lock") if (out / ".work").is_dir() else []:
            try:
                pid = json.loads(lock.read_text())["pid"]
            except (OSError, ValueError, KeyError):
                continue  # being written or already removed
            if pid != proc.pid:
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=600)
    assert killed is not None, "no batch was caught training (the sweep ended first)"
    assert proc.returncode == 0, err[-2000:]
    assert ref.n_complete == 8
    _same_table(pd.read_csv(out / "results.csv"), pd.read_csv(tmp_path / "ref" / "results.csv"))
