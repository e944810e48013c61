import json
import math

import pandas as pd
import pytest
import torch
from helpers import DATA

from mechinterp_modadd import ConfigError, all_pairs, labels, load_checkpoint
from mechinterp_modadd.cli import main
from mechinterp_modadd.data import random_split
from mechinterp_modadd.training import PRESETS, TrainConfig, checkpoint_path, preset, train


def test_presets_match_the_paper():
    assert set(PRESETS) == {"standard", "grokking", "quad_random", "quad_single_freq", "relu_single_freq",
                            "lottery_sgd", "gromov", "nanda", "nanda_small"}
    g = preset("grokking")
    assert (g.lr, g.weight_decay, g.train_fraction, g.optimizer) == (1e-4, 2.0, 0.75, "adamw")
    q = preset("quad_single_freq", p=13)
    assert (q.optimizer, q.lr, q.init, q.init_scale, q.activation, q.p) == ("sgd", 0.1, "single_freq", 0.02, "quad", 13)
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("nope")


@pytest.mark.parametrize("frac", [1.0, 0.6])
def test_symmetric_objective_equals_full_grid(frac):
    """The engine's metrics, taken over the p(p + 1)/2 unordered pairs with their weights, equal
    cross-entropy and accuracy over all p^2 ordered pairs of each split."""
    cfg = preset("grokking", p=13, d_mlp=64, steps=0, train_fraction=frac, split_seed=4)
    res = train(cfg, progress=False, device="cpu")
    m = res.metrics.iloc[0]
    split = random_split(13, frac, seed=4)
    P = all_pairs(13)
    with torch.no_grad():
        logits = res.model(P).double()
    y = labels(P, 13)
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    tr = split.train_mask
    assert m["train_loss"] == pytest.approx(float(ce[tr].mean()), rel=1e-6, abs=1e-9)
    assert m["train_accuracy"] == pytest.approx(float((logits.argmax(-1) == y)[tr].double().mean()))
    if frac < 1:
        assert m["test_loss"] == pytest.approx(float(ce[~tr].mean()), rel=1e-6, abs=1e-9)
        assert m["test_accuracy"] == pytest.approx(float((logits.argmax(-1) == y)[~tr].double().mean()))
    else:
        assert math.isnan(m["test_loss"])


def test_small_standard_run_reaches_full_accuracy(small_run):
    assert small_run.metrics["train_accuracy"].iloc[-1] == 1.0
    assert list(small_run.metrics.columns[:6]) == ["step", "train_loss", "test_loss", "train_accuracy",
                                                   "test_accuracy", "param_norm"]


@pytest.mark.slow
def test_p13_standard_preset_reaches_accuracy_one():
    res = train(preset("standard", p=13), progress=False)  # 5,000 steps, 512 neurons
    assert res.metrics["train_accuracy"].iloc[-1] == 1.0


def test_same_seed_same_bits_other_seed_differs():
    cfg = preset("grokking", p=11, d_mlp=64, steps=60)
    a, b = train(cfg, progress=False), train(cfg, progress=False)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    pd.testing.assert_frame_equal(a.metrics, b.metrics)
    c = train(cfg.replace(seed=1), progress=False)
    assert not torch.equal(a.model.mlp.W_in, c.model.mlp.W_in)


@pytest.mark.parametrize("name", ["grokking", "quad_single_freq"])
def test_resumed_run_is_bit_identical(tmp_path, name):
    cfg = preset(name, p=11, d_mlp=64, steps=50, save_every=20)
    full = train(cfg, tmp_path / "full", progress=False)
    # a "killed" run: it stopped after step 20 (its last checkpoint was at step 20)
    train(cfg.replace(steps=30), tmp_path / "part", progress=False)
    (tmp_path / "part" / "resume.safetensors").unlink()
    # simulate the kill after the checkpoint at 20: rebuild resume state by rerunning to 20
    train(cfg.replace(steps=20), tmp_path / "part2", progress=False)
    resumed = train(cfg, tmp_path / "part2", resume=True, progress=False)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    pd.testing.assert_frame_equal(full.metrics, resumed.metrics)
    on_disk = pd.read_csv(tmp_path / "part2" / "metrics.csv")
    pd.testing.assert_frame_equal(on_disk, pd.read_csv(tmp_path / "full" / "metrics.csv"))
    for step in (0, 20, 40, 50):
        a = load_checkpoint(checkpoint_path(tmp_path / "full", step)).model
        b = load_checkpoint(checkpoint_path(tmp_path / "part2", step)).model
        assert torch.equal(a.mlp.W_in, b.mlp.W_in)


def test_resume_after_kill_mid_interval(tmp_path):
    """Kill between checkpoints: resume restarts from the last checkpoint and ends identical."""
    cfg = preset("standard", p=11, d_mlp=32, steps=40, save_every=15)
    full = train(cfg, tmp_path / "full", progress=False)

    class Kill(Exception):
        pass

    from mechinterp_modadd.training.stack import Stack

    orig = Stack.update

    def killing_update(self, t):
        if t == 37:
            raise Kill()
        return orig(self, t)

    Stack.update = killing_update
    try:
        with pytest.raises(Kill):
            train(cfg, tmp_path / "run", progress=False)
    finally:
        Stack.update = orig
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["steps"] == 40
    resumed = train(cfg, tmp_path / "run", resume=True, progress=False)
    assert torch.equal(full.model.mlp.W_out, resumed.model.mlp.W_out)
    pd.testing.assert_frame_equal(full.metrics, resumed.metrics)


def test_refuses_to_overwrite_and_checks_resume_config(tmp_path):
    cfg = preset("standard", p=7, d_mlp=8, steps=3)
    train(cfg, tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="lr"):
        train(cfg.replace(lr=1.0), tmp_path / "r", resume=True, progress=False)


def test_cli_train_writes_a_run_folder(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = main(["train", "--preset", "quad_random", "--p", "7", "--d-mlp", "16", "--steps", "25",
               "--save-every", "10", "--out", str(out), "--quiet"])
    assert rc == 0
    assert "run folder" in capsys.readouterr().out
    files = sorted(x.name for x in (out / "checkpoints").iterdir())
    assert files == ["step_000000.safetensors", "step_000010.safetensors", "step_000020.safetensors",
                     "step_000025.safetensors"]
    df = pd.read_csv(out / "metrics.csv")
    assert len(df) == 26 and df["step"].tolist() == list(range(26))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["activation"] == "quad"
    rc = main(["train", "--preset", "quad_random", "--p", "7", "--out", str(out), "--quiet"])
    assert rc == 2  # refuses to overwrite, with a clear error instead of a traceback


@pytest.mark.parametrize("argv,needle", [
    (["--momentum", "0.9"], "momentum = 0.9 is a hyper-parameter of optimizer sgd, not of 'adamw' (--momentum"),
    (["--optimizer", "sgd", "--betas", "0.9,0.99"], "betas = (0.9, 0.99) is a hyper-parameter of optimizer adamw"),
    (["--optimizer", "lion"], "optimizer must be one of 'adamw', 'sgd'"),
    (["--optimizer", "sgd", "--momentum", "1.5"], "momentum must be in [0, 1)"),
])
def test_cli_optimizer_flags_refused_in_one_line(tmp_path, capsys, argv, needle):
    rc = main(["train", "--preset", "standard", "--p", "7", "--d-mlp", "8", "--steps", "3", "--quiet",
               "--out", str(tmp_path / "r"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_cli_betas_flag_is_parsed(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--preset", "standard", "--betas", "0.9", "--out", str(tmp_path / "r")])
    assert e.value.code == 2 and "--betas" in capsys.readouterr().err


def test_cli_optimizer_and_its_hyper_parameters(tmp_path):
    out = tmp_path / "m"
    assert main(["train", "--preset", "standard", "--p", "7", "--d-mlp", "8", "--steps", "4", "--quiet",
                 "--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9", "--out", str(out)]) == 0
    train_cfg = json.loads((out / "config.json").read_text())["train"]
    assert (train_cfg["optimizer"], train_cfg["momentum"], train_cfg["family"]) == ("sgd", 0.9, "mlp")
    out2 = tmp_path / "b"
    assert main(["train", "--preset", "standard", "--p", "7", "--d-mlp", "8", "--steps", "4", "--quiet",
                 "--betas", "0.8,0.99", "--out", str(out2)]) == 0
    assert json.loads((out2 / "config.json").read_text())["train"]["betas"] == [0.8, 0.99]


def test_configs_written_before_family_and_momentum_read_as_mlp():
    saved = json.loads((DATA / "standard_p23" / "config.json").read_text())["train"]
    assert "family" not in saved and "momentum" not in saved  # written before the keys existed
    cfg = TrainConfig.from_dict(saved)
    assert (cfg.family, cfg.momentum) == ("mlp", 0.0)
    with pytest.raises(ConfigError, match="family"):
        TrainConfig.from_dict({**saved, "family": "not a name"})
