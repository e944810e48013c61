"""Sweeps: spec parsing and bad specs, local vs Ray, resume after SIGKILL, Ray workers that cannot see
the driver's folder (a second Ray node in a mount namespace), the executor's choices (private Ray, bad
--address, no Ray installed), the storage location, the three pages' aggregation."""

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
    AUTHORS_PRIMES,
    SweepTable,
    bootstrap_mean_ci,
    claims_over_seeds,
    distribution_summary,
    grokking_phase,
    lottery_summary,
    lottery_verdicts,
    primes_summary,
    primes_vs_authors,
    run_distributions,
    run_region,
    seed_verdict,
    wilson_interval,
)
from mechinterp_modadd.cli import main
from mechinterp_modadd.errors import InputError, ModAddError
from mechinterp_modadd.sweeps import SpecError, executors, group_batches, parse_spec, preset_spec, run_sweep
from mechinterp_modadd.sweeps.runner import SCRATCH_ENV, TIMING_COLUMNS, install_run, run_files
from mechinterp_modadd.sweeps.storage import RunStore, spec_key

ROOT = Path(__file__).resolve().parents[2]

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
    assert "exactly one of SPEC.toml and --preset" in err and "no such sweep spec" in err
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


def test_wilson_interval_and_seed_verdicts():
    lo, hi = wilson_interval(3, 6)
    assert lo == pytest.approx(0.1876, abs=1e-4) and hi == pytest.approx(0.8124, abs=1e-4)
    assert wilson_interval(6, 6)[1] == 1.0 and wilson_interval(0, 6)[0] == 0.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(InputError):
        wilson_interval(7, 6)
    # the six AdamW seeds straddle the 0.8 threshold; the six SGD seeds clear it; a low arm fails
    adamw = [0.812, 0.801, 0.789, 0.809, 0.764, 0.758]
    d = seed_verdict(adamw, 0.8)
    assert d["verdict"] == "within seed spread" and d["share_holding"] == 0.5 and d["ci_low"] < 0.8 < d["ci_high"]
    assert seed_verdict([0.928, 0.922, 0.924, 0.934, 0.896, 0.932], 0.8)["verdict"] == "holds"
    assert seed_verdict([0.3, 0.35, 0.31], 0.8)["verdict"] == "fails"
    assert seed_verdict([9000, 11000], 10000, higher_holds=False)["verdict"] == "within seed spread"
    assert seed_verdict([], 0.8)["verdict"] == "undefined"


def test_lottery_preset_aggregation_on_a_tiny_grid(tmp_path, capsys):
    spec = preset_spec("lottery", p=[5], seed="0-2", steps=[30], save_every=[30])
    assert spec.page == "lottery" and len(spec.runs) == 9
    assert {(r.config.preset, r.config.optimizer, r.config.lr) for r in spec.runs} == {
        ("quad_random", "adamw", 5e-5), ("lottery_sgd", "sgd", 0.1), ("standard", "adamw", 5e-5)}
    table = run_sweep(spec, tmp_path / "lot", executor="local", progress=False)
    s = lottery_summary(table)
    assert list(s["preset"].unique()) == ["quad_random", "lottery_sgd", "standard"]
    v = lottery_verdicts(table)
    assert len(v) == 3 and set(v["optimizer"]) == {"adamw", "sgd"} and (v["n_seeds"] == 3).all()
    assert set(v["verdict"]) <= {"holds", "fails", "within seed spread"}
    assert set(s["predictor"]) == {"argmin_abs_d0", "argmax_alpha0", "argmax_alpha_beta_cos_d0", "flow"}
    assert (s["n_seeds"] == 3).all() and (s["chance"] == 0.5).all()
    assert ((s["ci_low"] <= s["success_rate"]) & (s["success_rate"] <= s["ci_high"])).all()
    assert main(["report", str(tmp_path / "lot"), "--out", str(tmp_path / "lot.html")]) == 0
    html = (tmp_path / "lot.html").read_text()
    assert "bootstrap" in html and "argmin_abs_d0" in html and "Wilson" in html and "lottery_sgd" in html
    # track on the sweep folder: the lottery claim per arm over seeds; diagnose needs claim verdicts
    assert main(["track", str(tmp_path / "lot"), "--quiet"]) == 0
    assert "sweep folder, 9 runs" in capsys.readouterr().out
    assert main(["diagnose", str(tmp_path / "lot")]) == 2
    assert "diagnose" in capsys.readouterr().err


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
    assert primes_vs_authors(table).empty  # p = 3, 5: nothing the authors published to compare with
    assert "No p of this sweep" in (tmp_path / "pr.html").read_text()


def test_primes_preset_uses_the_width_rule_and_compares_with_the_authors():
    spec = preset_spec("primes")
    widths = {r.config.p: r.config.model_config().d_mlp for r in spec.runs}
    assert widths[23] == 512 and widths[29] == 814 and widths[31] == 931 and widths[47] == 2139
    assert {r.config.model_config().d_mlp for r in preset_spec("primes", d_mlp=[512]).runs} == {512}
    # constructed rows: ours exactly the authors' numbers at p = 29, twice their loss at p = 31, and p = 37
    rows = []
    for p, f in ((29, 1.0), (31, 2.0), (37, 1.0)):
        a = AUTHORS_PRIMES.get(p, AUTHORS_PRIMES[29])
        rows.append({"preset": "standard", "p": p, "d_mlp": a["d_mlp"], "seed": 0, "full_step": a["full_step"],
                     "final_train_loss": f * a["loss_5000"], "final_param_norm": a["norm_5000"], "ipr": a["ipr"]})
    cmp = primes_vs_authors(SweepTable.from_rows(rows)).set_index("p")
    assert list(cmp.index) == [29, 31]
    assert cmp.loc[29, ["full_step_ratio", "loss_5000_ratio", "norm_5000_ratio", "ipr_ratio"]].tolist() == [1, 1, 1, 1]
    assert cmp.loc[31, "loss_5000_ratio"] == pytest.approx(2.0) and cmp.loc[31, "d_mlp_authors"] == 931


@pytest.mark.slow
def test_sigkill_of_a_ray_worker_is_retried_and_gives_the_same_table(tmp_path):
    """Kill the Ray worker process that is training a batch (its pid is in the lock JSON of the batch
    folder, which Ray workers keep in their own scratch folder, never in the driver's): Ray retries
    the task, the retry starts the batch afresh, and the sweep ends in the same command with the same
    table as an uninterrupted in-process sweep."""
    pytest.importorskip("ray")
    text = TINY.replace("steps = 40", "steps = 4000").replace("save_every = 20", "save_every = 2000")
    ref = run_sweep(parse_spec(text, "long.toml"), tmp_path / "ref", executor="local", progress=False)
    spec_file = tmp_path / "long.toml"
    spec_file.write_text(text)
    out = tmp_path / "ray"
    scratch = tmp_path / "scratch"  # the private Ray's workers inherit the driver's environment
    env = {**os.environ, "PYTHONPATH": str(ROOT), SCRATCH_ENV: str(scratch)}
    cmd = [sys.executable, "-m", "mechinterp_modadd", "sweep", str(spec_file), "--out", str(out), "--workers", "2",
           "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.time() + 300
    while killed is None and time.time() < deadline and proc.poll() is None:
        assert not any((out / ".work").glob("*/.modadd.lock*"))  # never in the driver's folder
        for lock in scratch.glob("*/.modadd.lock.json") if scratch.is_dir() else []:
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
    assert not any(scratch.iterdir())  # the retry and the other batches cleaned their scratch folders


# ------------------------------------------------------------------- executors, storage, clusters
SMALL = TINY.replace("p = [5, 7]", "p = 5").replace('seed = "0-1"', "seed = 0")  # two runs


def test_bad_address_fails_fast_in_one_line_before_writing(tmp_path, capsys):
    (tmp_path / "t.toml").write_text(SMALL)
    for address, needle in [("127.0.0.1:1", "no Ray cluster answers there"),
                            ("not an address", "expected auto, HOST:PORT or ray://HOST:PORT")]:
        t0 = time.perf_counter()
        assert main(["sweep", str(tmp_path / "t.toml"), "--out", str(tmp_path / "o"), "--address", address]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1, err
        assert time.perf_counter() - t0 < 60  # no minute-long retry loop of Ray's (a loose bound: a busy machine)
        assert not (tmp_path / "o").exists()  # nothing written, not even sweep.json
    assert main(["sweep", str(tmp_path / "t.toml"), "--out", str(tmp_path / "o"), "--executor", "local",
                 "--storage", str(tmp_path / "s")]) == 2
    assert "--storage is where Ray workers put finished runs" in capsys.readouterr().err


def test_without_ray_the_default_runs_locally_with_a_note(tmp_path, monkeypatch, capsys):
    from mechinterp_modadd.errors import ModAddWarning

    monkeypatch.setattr(executors, "_ray_importable", lambda: False)
    with pytest.warns(ModAddWarning, match=r"Ray is not installed \(pip install 'mechinterp_modadd\[sweep\]'\)"):
        table = run_sweep(parse_spec(SMALL), tmp_path / "o", progress=False)  # the default executor
    assert table.n_complete == 2
    # on the command line the note is one line on stderr, and the sweep succeeds
    (tmp_path / "s.toml").write_text(SMALL)
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning: Ray is not installed" in err and "--executor local" in err, err
    (tmp_path / "a_file").write_text("x")  # a refused sweep says only why it was refused: one line, no note
    assert main(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "a_file"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file" in err and "warning" not in err, err
    # asking for Ray explicitly is an error naming the extra by its package name
    for kw in ({"executor": "ray"}, {"address": "auto"}, {"storage": str(tmp_path / "s")}):
        with pytest.raises(ModAddError, match=r"not installed: pip install 'mechinterp_modadd\[sweep\]'"):
            run_sweep(parse_spec(SMALL), tmp_path / "o2", progress=False, **kw)
    assert not (tmp_path / "o2").exists()


def test_run_store_keeps_runs_complete_or_absent():
    pytest.importorskip("fsspec")
    store = RunStore("memory://modadd-test-store", spec_key({"name": "x"}))
    assert store.complete_names() == set() and not store.is_complete("a")
    store.put_run("a", {"metrics.csv": b"step\n0\n", "checkpoints/step_000000.safetensors": b"w",
                        "sweep_row.json": b"{}"})
    store.fs.pipe_file(f"{store.root}/b/metrics.csv", b"partial")  # a worker killed before its row: not complete
    assert store.complete_names() == {"a"} and store.is_complete("a") and not store.is_complete("b")
    assert store.get_run("a") == {"checkpoints/step_000000.safetensors": b"w", "metrics.csv": b"step\n0\n",
                                  "sweep_row.json": b"{}"}
    import pickle

    again = pickle.loads(pickle.dumps(store))  # what Ray ships to a worker: the URI, not an open file system
    assert again.is_complete("a") and again.root == store.root
    assert spec_key({"a": 1, "b": 2}) == spec_key({"b": 2, "a": 1}) != spec_key({"a": 1, "b": 3})


def test_install_run_refuses_incomplete_or_escaping_runs(tmp_path):
    with pytest.raises(ModAddError, match="without its sweep_row.json"):
        install_run(tmp_path, "r", {"metrics.csv": b""})
    with pytest.raises(ModAddError, match="leaves the run folder"):
        install_run(tmp_path, "r", {"sweep_row.json": b"{}", "../../evil": b""})
    assert not (tmp_path / "runs" / "r").exists() and not (tmp_path.parent / "evil").exists()
    assert install_run(tmp_path, "r", {"sweep_row.json": b"{}", "checkpoints/a": b"1"})
    assert (tmp_path / "runs" / "r" / "checkpoints" / "a").read_bytes() == b"1"
    assert not install_run(tmp_path, "r", {"sweep_row.json": b"{}"})  # the first copy is kept


def test_the_driver_copies_runs_from_the_storage_instead_of_training(tiny_local, tmp_path, monkeypatch):
    """Runs complete in the storage (left by a killed driver, or by another one) are copied into DIR,
    byte for byte, and not trained again: no Ray is even started."""
    pytest.importorskip("fsspec")
    ref_out, ref = tiny_local
    spec = parse_spec(TINY, "tiny.toml")
    store = RunStore(str(tmp_path / "storage"), spec_key(spec.to_dict()))
    for r in spec.runs:
        store.put_run(r.name, run_files(ref_out / "runs" / r.name))

    def no_ray(*a, **k):
        raise AssertionError("Ray was started although every run was in the storage")

    monkeypatch.setattr(executors, "_ray_connect", no_ray)
    monkeypatch.setattr(executors, "_ray_importable", lambda: True)
    table = run_sweep(spec, tmp_path / "out", executor="ray", storage=str(tmp_path / "storage"), progress=False)
    _same_table(table.to_frame(), ref.to_frame())
    for r in spec.runs:
        assert run_files(tmp_path / "out" / "runs" / r.name) == run_files(ref_out / "runs" / r.name)
    assert not (tmp_path / "out" / ".work").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mount_namespace(hide: Path) -> list[str] | None:
    """An ``unshare`` prefix whose processes see an empty tmpfs at ``hide`` (root: a mount namespace;
    otherwise a user namespace too), or None where the system allows neither."""
    import shutil

    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-m", "--propagation", "private"],
                   ["unshare", "-r", "-m", "--propagation", "private"]):
        probe = subprocess.run([*prefix, "sh", "-c", f"mount -t tmpfs tmpfs '{hide}' && test ! -e '{hide}/.probe'"],
                               capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` stops the Ray processes it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_ray_workers_that_cannot_see_the_driver_folder(tiny_local, tmp_path):
    """A Ray cluster on one machine as on several without a shared disk: a head node with no CPUs and
    a second node started in a mount namespace where the driver's folder is an empty tmpfs, with another
    working directory. Every task runs on that blind node; the runs come back through the object store
    (or through --storage, a folder both see) and the driver's DIR holds the same table as --executor
    local. Before the blind node joins, a sweep without --address must not join the machine's cluster
    (RAY_ADDRESS points at it; joining a cluster without CPUs would hang there)."""
    pytest.importorskip("ray")
    import shutil
    import tempfile

    ref_out, _ = tiny_local
    driver_side = tmp_path / "driver"  # the blind node sees an empty folder here
    driver_side.mkdir()
    (driver_side / ".probe").write_text("the driver's folder")
    prefix = _mount_namespace(driver_side)
    if prefix is None:
        pytest.skip("no mount namespace here (unshare -m and unshare -rm both refused): cannot hide a folder")
    shared = tmp_path / "shared"  # --storage: outside the hidden folder, seen by both nodes
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(TINY)
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    temp = tempfile.mkdtemp(prefix="mr", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    procs = []

    def sweep(out: Path, *args: str, extra_env: dict | None = None) -> None:
        res = subprocess.run([sys.executable, "-m", "mechinterp_modadd", "sweep", str(spec_file), "--out", str(out),
                              "--quiet", *args], env={**env, **(extra_env or {})}, capture_output=True, text=True,
                             timeout=480)
        assert res.returncode == 0, res.stderr[-3000:]
        _same_table(pd.read_csv(out / "results.csv"), pd.read_csv(ref_out / "results.csv"))

    try:
        head = subprocess.Popen([ray_bin, "start", "--head", f"--port={port}", "--num-cpus=0", f"--temp-dir={temp}",
                                 "--include-dashboard=false", "--block"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(head)
        probe = ("import os, ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
                 "f = ray.remote(num_cpus=1)(lambda p: (os.path.exists(p), os.getcwd()))\n"
                 "print(ray.get(f.remote(sys.argv[2]), timeout=120)[0])")
        deadline = time.time() + 120
        while subprocess.run([sys.executable, "-c", "import ray, sys; ray.init(address=sys.argv[1], "
                              "logging_level='ERROR'); ray.shutdown()", address], env=env,
                             capture_output=True).returncode != 0:
            assert time.time() < deadline and head.poll() is None, "the head node did not start"
            time.sleep(2)
        # 1. the machine runs a cluster (RAY_ADDRESS names it): the default sweep starts its own private Ray
        sweep(driver_side / "private", "--workers", "2", extra_env={"RAY_ADDRESS": address})

        # 2. the blind node: empty tmpfs over the driver's folder, another working directory, its own scratch
        blind_env = {**env, SCRATCH_ENV: str(driver_side / "scratch")}
        blind = subprocess.Popen([*prefix, "sh", "-c", f"mount -t tmpfs tmpfs '{driver_side}' && cd '{driver_side}' && "
                                  f"exec '{ray_bin}' start --address={address} --num-cpus=2 --block"],
                                 env=blind_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        procs.append(blind)
        seen = subprocess.run([sys.executable, "-c", probe, address, str(driver_side / ".probe")], env=env,
                              capture_output=True, text=True, timeout=300)
        assert seen.stdout.strip().splitlines()[-1:] == ["False"], seen.stderr[-2000:]  # the workers are blind

        # 3. through the object store, and 4. through a storage location both nodes see
        sweep(driver_side / "joined", "--address", address)
        sweep(driver_side / "stored", "--address", address, "--storage", str(shared))
        key = spec_key(parse_spec(TINY).to_dict())
        assert sorted(p.name for p in (shared / key / "runs").iterdir()) == \
            sorted(p.name for p in (driver_side / "stored" / "runs").iterdir())
        assert not any((driver_side / "scratch").glob("*"))  # the driver side never had a scratch folder
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_remote_batch_trains_in_its_scratch_folder_and_hands_runs_back(tmp_path, monkeypatch):
    """What a Ray task runs, called in-process: nothing is written outside the scratch folder, which is
    empty afterwards; the runs come back as files (or go to the storage, where a retry skips them)."""
    pytest.importorskip("fsspec")
    from mechinterp_modadd.sweeps.runner import ROW_FILE, run_batch, run_batch_remote

    scratch = tmp_path / "scratch"
    monkeypatch.setenv(SCRATCH_ENV, str(scratch))
    monkeypatch.chdir(tmp_path)
    spec = parse_spec(SMALL)
    back = run_batch_remote(spec.runs, spec.analyses, tag="t")
    assert [n for n, _ in back] == [r.name for r in spec.runs]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scratch"] and not any(scratch.iterdir())
    files = dict(back)[spec.runs[0].name]
    assert ROW_FILE in files and "metrics.csv" in files and "config.json" in files
    assert any(k.startswith("checkpoints/step_") for k in files) and not any(k.startswith(".") for k in files)
    # installed by the driver, the row is the one the local executor writes (timings aside)
    for name, f in back:
        install_run(tmp_path / "remote", name, f)
    run_batch(spec.runs, tmp_path / "local", spec.analyses)
    for r in spec.runs:
        a, b = (json.loads((tmp_path / d / "runs" / r.name / ROW_FILE).read_text()) for d in ("remote", "local"))
        assert {k: v for k, v in a.items() if k not in TIMING_COLUMNS} == \
            {k: v for k, v in b.items() if k not in TIMING_COLUMNS}
    # through a storage location: the runs land there, and a retried task has nothing left to do
    store = RunStore("memory://modadd-remote-batch", spec_key(spec.to_dict()))
    assert run_batch_remote(spec.runs, spec.analyses, store=store) == [(r.name, None) for r in spec.runs]
    assert store.complete_names() == {r.name for r in spec.runs}
    assert run_batch_remote(spec.runs, spec.analyses, store=store) == []


def test_claims_and_run_numbers_over_seeds_on_constructed_rows():
    rows = [{"preset": "grokking", "p": 23, "seed": s, "train_fraction": 0.75, "fit_step": 1000 + 10 * s,
             "grok_step": None if s == 3 else 9000 + 500 * s, "end_stage1": 1000, "end_stage2": None,
             "single_frequency.fraction_single": 0.9 - 0.3 * (s == 2), "single_frequency.verdict":
             "fails" if s == 2 else "holds", "flawed_indicator.ghost_ratio": math.nan,
             "flawed_indicator.verdict": "n/a"} for s in range(4)]
    table = SweepTable.from_rows(rows)
    c = claims_over_seeds(table).set_index("claim")
    assert c.loc["single_frequency", "over_seeds"] == "holds on 3 of 4"
    assert c.loc["single_frequency", "share_holding"] == 0.75 and c.loc["single_frequency", "median"] == 0.9
    assert c.loc["flawed_indicator", "over_seeds"] == "n/a" and c.loc["flawed_indicator", "n_na"] == 4
    d = run_distributions(table)
    assert set(d) == {"fit_step", "grok_step", "end_stage1"}  # no end_stage2 anywhere, no lottery columns
    g = d["grok_step"].iloc[0]
    assert g["n_seeds"] == 3 and g["n_missing"] == 1 and g["median"] == 9500
    thr = distribution_summary(table, "grok_step", 10000, higher_holds=False).iloc[0]
    assert thr["share_holding"] == 0.75  # 9000, 9500, 10000 of four runs (the one that never grokked: not)
    with pytest.raises(InputError, match="diagnose"):
        claims_over_seeds(SweepTable.from_rows([{"p": 5, "seed": 0}]))


def test_track_and_diagnose_on_a_batch_folder_of_seeds(tmp_path, capsys):
    from mechinterp_modadd.sweeps.seeds import folder_kind, seed_table
    from mechinterp_modadd.training import preset, train_many

    out = tmp_path / "batch"
    train_many([preset("quad_random", p=5, d_mlp=8, steps=40, save_every=40, lr=1e-2, seed=s) for s in range(3)],
               out, progress=False)
    assert folder_kind(out) == "batch" and folder_kind(tmp_path) is None and folder_kind(out / "runs.csv") is None
    table = seed_table(out, ["lottery"], progress=False)
    assert table.n_complete == 3 and table.frame["lottery.flow"].notna().all()
    assert main(["track", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "batch folder, 3 runs" in text and "lottery claim" in text and "Wilson" in text
    assert main(["diagnose", str(out)]) == 0
    text = capsys.readouterr().out
    assert "each claim over seeds" in text and "single_frequency" in text
    assert main(["track", str(out), "--json", str(tmp_path / "x.json")]) == 2
    assert "apply to one run" in capsys.readouterr().err
    with pytest.raises(InputError, match="neither a sweep folder"):
        seed_table(tmp_path, ["lottery"])
