"""Batched multi-run training (train_many): equivalence with train(), run folders, resume, memory."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from mechinterp_modadd import ConfigError, load_checkpoint
from mechinterp_modadd.cli import main
from mechinterp_modadd.layout import checkpoint_path
from mechinterp_modadd.training import preset, train, train_many
from mechinterp_modadd.training.estimate import cache_runs, chunk_size, run_bytes

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _mixed_configs(steps: int, p: int = 11, d_mlp: int = 32):
    """Runs that differ in everything a batch may vary (seed, lr, wd, init scale/kind, split)."""
    base = preset("grokking", p=p, d_mlp=d_mlp, steps=steps, save_every=max(steps // 2, 1))
    return [
        base,
        base.replace(seed=1, lr=3e-3, weight_decay=0.5),
        base.replace(seed=2, init_scale=0.3, train_fraction=0.5, split_seed=7),
        base.replace(seed=3, init="single_freq", init_scale=0.05, weight_decay=0.0, train_fraction=1.0),
        base.replace(seed=4, warmup_steps=0, lr=1e-3),
    ]


def _losses_close(a: pd.Series, b: pd.Series, rel: float) -> float:
    a, b = a.to_numpy(), b.to_numpy()
    worst = float(np.max(np.abs(a - b) / np.abs(b)))
    assert worst <= rel, worst
    return worst


def test_batched_runs_match_single_runs(tmp_path):
    cfgs = _mixed_configs(steps=1000)
    res = train_many(cfgs, tmp_path / "batch", progress=False)
    assert len(res) == 5 and res.configs == cfgs
    for cfg, folder in zip(cfgs, res.runs, strict=True):
        alone = train(cfg, tmp_path / ("alone_" + folder.name), progress=False, device="cpu")
        w_batch = load_file(checkpoint_path(folder, 0))
        w_alone = load_file(checkpoint_path(alone.run_dir, 0))
        for k in w_alone:  # step 0: bit-identical
            assert torch.equal(w_batch[k], w_alone[k]), (folder.name, k)
        m = pd.read_csv(folder / "metrics.csv")
        assert list(m.columns) == list(pd.read_csv(alone.run_dir / "metrics.csv").columns)
        assert len(m) == 1001
        _losses_close(m["train_loss"], alone.metrics["train_loss"], 1e-6)  # every one of 1,000 steps
        assert np.array_equal(m["lr"].to_numpy(), alone.metrics["lr"].to_numpy())
        # the same files, readable by every command's loader
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in alone.run_dir.iterdir())
        config, config_alone = (json.loads((f / "config.json").read_text()) for f in (folder, alone.run_dir))
        assert len(config.pop("run_id")) == 32 and len(config_alone.pop("run_id")) == 32  # each run its own id
        assert config == config_alone
        assert (folder / "split.json").read_text() == (alone.run_dir / "split.json").read_text()
        ck = load_checkpoint(checkpoint_path(folder, 1000))
        assert ck.step == 1000 and ck.model.cfg == cfg.model_config()


@pytest.mark.parametrize("name", ["quad_single_freq", "relu_single_freq"])
def test_sgd_batches_match_single_runs(tmp_path, name):
    """The SGD presets: a batch of runs (differing in seed, lr, weight decay) saves checkpoints and
    resume state like train() and follows the same losses."""
    base = preset(name, p=11, d_mlp=32, steps=200, save_every=100)
    cfgs = [base, base.replace(seed=1, lr=base.lr / 2), base.replace(seed=2, weight_decay=1e-3)]
    res = train_many(cfgs, tmp_path / "batch", progress=False)
    for cfg, folder in zip(cfgs, res.runs, strict=True):
        alone = train(cfg, tmp_path / ("alone_" + folder.name), progress=False, device="cpu")
        _losses_close(pd.read_csv(folder / "metrics.csv")["train_loss"], alone.metrics["train_loss"], 1e-6)
        # bit-identical on the development machine; to rounding wherever a BLAS differs
        torch.testing.assert_close(load_checkpoint(checkpoint_path(folder, 200)).model.mlp.W_out,
                                   alone.model.mlp.W_out, rtol=1e-4, atol=1e-7)
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in alone.run_dir.iterdir())


def test_sgd_batch_that_shrinks_follows_each_run_alone(tmp_path):
    """An early stop drops one run of an SGD batch mid-way; the others go on with their own lr and
    weight decay (the per-run SGD factors follow the shrinking batch)."""
    base = preset("quad_single_freq", p=11, d_mlp=32, steps=600, save_every=300, stop_accuracy=0.4,
                  stop_window=100)
    cfgs = [base, base.replace(seed=1, lr=0.02), base.replace(seed=2, weight_decay=1e-3),
            base.replace(seed=3, lr=0.2)]
    res = train_many(cfgs, tmp_path / "b", progress=False)
    done = sorted(res.table["steps_done"])  # here: seed 2 stops at step 400, the others train on
    assert done[0] < 600 and done[-1] == 600
    for cfg, folder in zip(cfgs, res.runs, strict=True):
        alone = train(cfg, tmp_path / ("alone_" + folder.name), progress=False, device="cpu")
        m = pd.read_csv(folder / "metrics.csv")
        assert len(m) == len(alone.metrics)
        _losses_close(m["train_loss"], alone.metrics["train_loss"], 1e-6)
        last = int(m["step"].iloc[-1])
        torch.testing.assert_close(load_checkpoint(checkpoint_path(folder, last)).model.mlp.W_in,
                                   alone.model.mlp.W_in, rtol=1e-4, atol=1e-7)


def test_runs_csv_lists_every_run(tmp_path):
    cfgs = _mixed_configs(steps=20)
    res = train_many(cfgs, tmp_path, progress=False)
    tab = pd.read_csv(tmp_path / "runs.csv")
    assert list(tab.columns[:8]) == ["folder", "status", "steps_done", "train_loss", "test_loss",
                                     "train_accuracy", "test_accuracy", "param_norm"]
    assert list(tab["folder"]) == [f.name for f in res.runs]
    assert (tab["status"] == "ok").all() and (tab["steps_done"] == 20).all()
    assert list(tab["config.seed"]) == [0, 1, 2, 3, 4]
    for f, row in zip(res.runs, tab.itertuples(), strict=True):
        last = pd.read_csv(f / "metrics.csv").iloc[-1]
        assert row.train_accuracy == pytest.approx(last["train_accuracy"], rel=0, abs=0)
    assert np.isnan(tab.loc[3, "test_loss"])  # full-data run: no test set
    assert not np.isnan(tab.loc[2, "test_loss"])


def test_batch_resume_is_bit_identical(tmp_path):
    cfgs = [preset("grokking", p=11, d_mlp=32, steps=40, save_every=10, seed=s) for s in range(3)]
    full = train_many(cfgs, tmp_path / "full", progress=False)
    train_many([c.replace(steps=20) for c in cfgs], tmp_path / "part", progress=False)
    resumed = train_many(cfgs, tmp_path / "part", progress=False, resume=True)
    for a, b in zip(full.runs, resumed.runs, strict=True):
        wa, wb = load_file(checkpoint_path(a, 40)), load_file(checkpoint_path(b, 40))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        pd.testing.assert_frame_equal(pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv"))
    # a finished batch resumes to a no-op; a batch folder continues alone with train()
    again = train_many(cfgs, tmp_path / "part", progress=False, resume=True)
    assert list(again.table["steps_done"]) == [40, 40, 40]
    assert list(again.table["train_loss"]) == list(resumed.table["train_loss"])
    more = train(cfgs[0].replace(steps=45), resumed.runs[0], resume=True, progress=False)
    assert int(more.metrics["step"].iloc[-1]) == 45
    with pytest.raises(ConfigError, match="not empty"):
        train_many(cfgs, tmp_path / "full", progress=False)


def test_bad_batches_are_refused(tmp_path):
    a = preset("standard", p=11, d_mlp=32, steps=5)
    with pytest.raises(ConfigError, match="differs"):
        train_many([a, a.replace(p=13)], tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match="d_mlp"):
        train_many([a, a.replace(d_mlp=16)], tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match="share the folder"):
        train_many([a, a], tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match="at least one"):
        train_many([], tmp_path / "x", progress=False)
    with pytest.raises(ConfigError, match="max_memory"):
        train_many([a], tmp_path / "y", progress=False, max_memory=1000)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_chunks_fit_the_memory_budget():
    cpu, gpu_like = torch.device("cpu"), torch.device("meta")  # "meta": any non-CPU device
    for p, d_mlp, budget in [(23, 512, 50 * 10**6), (23, 512, 2 * 10**9), (97, 1024, 2 * 10**9)]:
        for dev in (cpu, gpu_like):
            s = chunk_size(run_bytes(p, d_mlp, 5001), 4096, dev, budget, cache_runs(p, d_mlp))
            assert 1 <= s < 4096 and s * run_bytes(p, d_mlp, 5001) <= budget
    per_run = run_bytes(23, 512, 5001)
    assert chunk_size(per_run, 4096, gpu_like, 10**12, cache_runs(23, 512)) == 4096  # no cache cap off the CPU
    assert chunk_size(per_run, 4096, cpu, 10**12, cache_runs(23, 512)) <= 64  # the CPU cap: activations in cache
    assert chunk_size(per_run, 4096, cpu, 10**12, None) == 4096  # a family without a cache budget
    with pytest.raises(ConfigError, match="max_memory"):
        chunk_size(run_bytes(97, 1024, 5001), 4096, cpu, 50 * 10**6)


def test_several_chunks_give_the_same_runs(tmp_path):
    cfgs = [preset("standard", p=11, d_mlp=32, steps=30, seed=s) for s in range(4)]
    one = train_many(cfgs, tmp_path / "one", progress=False)
    per_run = run_bytes(11, 32, 31)
    many = train_many(cfgs, tmp_path / "many", progress=False, max_memory=per_run * 2)  # chunks of 2
    for a, b in zip(one.runs, many.runs, strict=True):
        _losses_close(pd.read_csv(a / "metrics.csv")["train_loss"], pd.read_csv(b / "metrics.csv")["train_loss"], 1e-6)


def _engine_on(device, cfgs):
    """Train ``cfgs`` as one chunk of the stacked engine on ``device``; their metric rows and weights."""
    from mechinterp_modadd.training.loop import RunState, prepare_run, train_chunk

    runs = [RunState(i, c, None) for i, c in enumerate(cfgs)]
    for r in runs:
        prepare_run(r, None)

    class Bar:
        def update(self, n):
            pass

    train_chunk(runs, device, Bar(), flush_seconds=float("inf"))
    return [(r.rows, r.model()) for r in runs]


def test_gpu_engine_keeps_to_its_device_and_reads_the_host_only_at_checkpoints():
    """The engine a GPU runs, on the stand-in device of fake_device (which raises on any operation
    that mixes devices and counts the operations that would make the host wait for a GPU): the
    same bits as on the CPU, and the same number of host reads for 40 steps as for 120, i.e.
    none per step (reads happen at the checkpoints and when the stacked weights are first made)."""
    import fake_device

    def run(steps):
        cfgs = [c.replace(steps=steps, save_every=steps) for c in _mixed_configs(steps)[:3]]
        fake_device.SYNCS.clear()
        with fake_device.other_device():
            out = _engine_on(fake_device.DEVICE, cfgs)
        return out, sum(fake_device.SYNCS.values()), fake_device.SEEN["bmm"]

    (dev40, syncs40, bmm40), (_, syncs120, _) = run(40), run(120)
    assert bmm40 >= 4 * 40  # the products ran on the device, every step
    assert syncs40 == syncs120, fake_device.SYNCS
    cfgs = [c.replace(steps=40, save_every=40) for c in _mixed_configs(40)[:3]]
    for (rows_d, model_d), (rows_c, model_c) in zip(dev40, _engine_on(torch.device("cpu"), cfgs), strict=True):
        for col in ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "param_norm"):
            assert np.array_equal(rows_d[col], rows_c[col], equal_nan=True), col
        assert torch.equal(model_d.mlp.W_in, model_c.mlp.W_in) and torch.equal(model_d.mlp.W_out, model_c.mlp.W_out)


def test_cli_trains_the_cartesian_product(tmp_path, capsys):
    out = tmp_path / "grid"
    rc = main(["train", "--preset", "standard", "--p", "11", "--d-mlp", "16", "--steps", "10",
               "--seed", "0-2", "--lr", "1e-3", "2e-3", "--out", str(out), "--quiet", "--device", "cpu"])
    assert rc == 0
    tab = pd.read_csv(out / "runs.csv")
    assert len(tab) == 6 and sorted(set(tab["config.seed"])) == [0, 1, 2]
    assert sorted(set(tab["config.lr"])) == [1e-3, 2e-3]
    assert "6 runs" in capsys.readouterr().out
    rc = main(["train", "--preset", "standard", "--p", "11", "--d-mlp", "16", "--steps", "12",
               "--seed", "0-2", "--lr", "1e-3", "2e-3", "--out", str(out), "--quiet", "--resume"])
    assert rc == 0 and (pd.read_csv(out / "runs.csv")["steps_done"] == 12).all()


@pytest.mark.parametrize("argv,flag", [
    (["--seed", "5-2"], "--seed"), (["--seed", "x"], "--seed"), (["--lr", "fast"], "--lr"),
    (["--device", "tpu"], "--device"), (["--threads", "0"], "--threads"),
])
def test_cli_bad_values_name_the_flag(tmp_path, capsys, argv, flag):
    with pytest.raises(SystemExit) as e:
        main(["train", "--preset", "standard", "--out", str(tmp_path / "z"), *argv])
    assert e.value.code == 2 and flag in capsys.readouterr().err


def test_cli_small_budget_and_cuda_errors(tmp_path, capsys):
    rc = main(["train", "--preset", "standard", "--p", "11", "--d-mlp", "16", "--steps", "2", "--seed", "0-3",
               "--out", str(tmp_path / "a"), "--max-memory", "50MB", "--quiet"])
    assert rc == 0  # 50 MB holds all four runs of this size: one chunk
    if not torch.cuda.is_available():
        rc = main(["train", "--preset", "standard", "--p", "11", "--steps", "2", "--out", str(tmp_path / "b"),
                   "--device", "cuda"])
        assert rc == 2 and "CUDA" in capsys.readouterr().err


@pytest.mark.slow
def test_standard_p23_batched_ends_like_alone(tmp_path):
    from mechinterp_modadd.fourier import neuron_spectrum

    cfgs = [preset("standard", p=23, seed=s) for s in (0, 1)]
    res = train_many(cfgs, tmp_path / "b", progress=False)
    for cfg, folder in zip(cfgs, res.runs, strict=True):
        alone = train(cfg, progress=False, device="cpu")
        batched = load_checkpoint(checkpoint_path(folder, 5000)).model
        m = pd.read_csv(folder / "metrics.csv")
        assert m["train_accuracy"].iloc[-1] == alone.metrics["train_accuracy"].iloc[-1]
        _losses_close(m["train_loss"].iloc[:1001], alone.metrics["train_loss"].iloc[:1001], 1e-6)
        assert torch.equal(neuron_spectrum(alone.model).frequency, neuron_spectrum(batched).frequency)


@needs_cuda
def test_cuda_single_run_matches_cpu(tmp_path):
    cfg = preset("grokking", p=11, d_mlp=32, steps=200, save_every=100)
    gpu = train(cfg, tmp_path / "g", progress=False, device="cuda")
    cpu = train(cfg, tmp_path / "c", progress=False, device="cpu")
    assert gpu.model.mlp.W_in.device.type == "cuda"
    _losses_close(gpu.metrics["train_loss"].iloc[:200], cpu.metrics["train_loss"].iloc[:200], 1e-5)
    assert load_checkpoint(checkpoint_path(tmp_path / "g", 200)).model.mlp.W_in.device.type == "cpu"


@needs_cuda
def test_cuda_batch_matches_cpu_batch(tmp_path):
    cfgs = _mixed_configs(steps=100)
    g = train_many(cfgs, tmp_path / "g", progress=False, device="cuda")
    c = train_many(cfgs, tmp_path / "c", progress=False, device="cpu")
    for a, b in zip(g.runs, c.runs, strict=True):
        _losses_close(pd.read_csv(a / "metrics.csv")["train_loss"], pd.read_csv(b / "metrics.csv")["train_loss"], 1e-5)


# ------------------------------------------------------------------------------ early stop
def test_stop_rule_on_constructed_metrics():
    from mechinterp_modadd.training.objective import stop_rule_met

    cfg = preset("grokking", p=11, d_mlp=8, steps=1000, stop_accuracy=0.99, stop_window=100)
    tr = np.ones(1001)
    te = np.full(1001, 0.5)
    te[150:] = 1.0
    assert not stop_rule_met(cfg, tr, te, 200)  # step 149 is still below: the window 100..200 fails
    assert stop_rule_met(cfg, tr, te, 300)
    assert not stop_rule_met(cfg, tr, te, 250)  # not a multiple of the window
    assert not stop_rule_met(cfg.replace(stop_accuracy=None), tr, te, 300)  # off by default
    tr[260] = 0.98
    assert not stop_rule_met(cfg, tr, te, 300)  # train accuracy counts too
    assert stop_rule_met(cfg, np.ones(1001), np.full(1001, np.nan), 100)  # no test set: train alone
    with pytest.raises(ConfigError, match="stop_accuracy"):
        cfg.replace(stop_accuracy=1.5)
    with pytest.raises(ConfigError, match="stop_window"):
        cfg.replace(stop_window=0)


def test_early_stop_is_the_same_in_a_batch_as_alone(tmp_path):
    from mechinterp_modadd.training.objective import stop_rule_met

    base = preset("grokking", p=11, d_mlp=64, steps=1000, save_every=1000, lr=1e-2, weight_decay=2.0,
                  train_fraction=0.9, stop_accuracy=0.75, stop_window=100)
    cfgs = [base.replace(seed=s) for s in range(4)] + [base.replace(seed=9, stop_accuracy=None)]
    res = train_many(cfgs, tmp_path / "batch", progress=False)
    done = list(res.table["steps_done"])
    assert done[4] == 1000  # no early stop: the whole budget
    assert any(d < 1000 for d in done) and any(d == 1000 for d in done[:4])  # the rule both fires and not
    for cfg, folder, d in zip(cfgs, res.runs, done, strict=True):
        m = pd.read_csv(folder / "metrics.csv")
        assert int(m["step"].iloc[-1]) == d
        assert (folder / "checkpoints" / f"step_{d:06d}.safetensors").is_file()  # the stop step is saved
        tr, te = m["train_accuracy"].to_numpy(), m["test_accuracy"].to_numpy()
        fired = [t for t in range(0, d + 1, 100) if stop_rule_met(cfg, tr, te, t)]
        assert fired == ([d] if d < 1000 else [])  # it stopped at the first step the rule allowed
        alone = train(cfg, tmp_path / ("alone_" + folder.name), progress=False, device="cpu")
        assert len(alone.metrics) == d + 1
        _losses_close(m["train_loss"], alone.metrics["train_loss"], 1e-6)
    # resuming a batch (or one run) whose runs stopped trains nothing more
    again = train_many(cfgs, tmp_path / "batch", progress=False, resume=True)
    assert list(again.table["steps_done"]) == done
    stopped = done.index(min(done))
    more = train(cfgs[stopped], res.runs[stopped], resume=True, progress=False)
    assert int(more.metrics["step"].iloc[-1]) == done[stopped]


def test_train_cli_early_stop(tmp_path, capsys):
    out = tmp_path / "grid"
    assert main(["train", "--preset", "grokking", "--p", "11", "--d-mlp", "64", "--lr", "0.01", "--weight-decay", "2",
                 "--train-fraction", "0.9", "--steps", "1000", "--seed", "0-3", "--stop-accuracy", "0.75",
                 "--stop-window", "100", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    tab = pd.read_csv(out / "runs.csv")
    n_stopped = int((tab["steps_done"] < 1000).sum())
    assert 0 < n_stopped < 4 and f"{n_stopped} runs stopped early" in printed
    assert (tab["config.stop_accuracy"] == 0.75).all() and (tab["config.stop_window"] == 100).all()
