"""A folder is one run: mixtures are refused naming the first odd file; activations are not swapped
silently (recorded in our checkpoints, in the name of the authors' folders)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mechinterp_modadd.checkpoint import load_checkpoint
from mechinterp_modadd.errors import CheckpointError
from mechinterp_modadd.model import ModAddMLP, ModelConfig
from mechinterp_modadd.series import authors_folder_name, load_run
from mechinterp_modadd.training import checkpoint_path, preset, train


@pytest.fixture(scope="module")
def quad_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "quad"
    train(preset("quad_random", p=7, d_mlp=8, steps=2, save_every=1), out, progress=False)
    return out


@pytest.fixture(scope="module")
def other_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("others")
    train(preset("quad_random", p=11, d_mlp=8, steps=1), root / "p11", progress=False)
    train(preset("quad_random", p=7, d_mlp=8, steps=1, seed=3), root / "seed3", progress=False)
    train(preset("standard", p=7, d_mlp=8, steps=1), root / "relu", progress=False)
    return root


@pytest.mark.parametrize("other,key", [("p11", "p = 11"), ("seed3", "run_id"), ("relu", "activation = 'relu'")])
def test_mixed_folder_names_first_odd_file(quad_run, other_runs, tmp_path, other, key):
    mixed = tmp_path / "mixed"
    shutil.copytree(quad_run, mixed)
    odd = mixed / "checkpoints" / "step_000001.safetensors"
    odd.write_bytes(checkpoint_path(other_runs / other, 1).read_bytes())
    with pytest.raises(CheckpointError, match=f"step_000001.safetensors: {key}.*one run"):
        load_run(mixed)


def test_old_folders_without_run_id_still_load(quad_run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(quad_run, old)
    cfg = json.loads((old / "config.json").read_text())
    del cfg["run_id"]
    (old / "config.json").write_text(json.dumps(cfg))
    for f in (old / "checkpoints").iterdir():
        with safe_open(str(f), framework="pt") as g:
            meta = {k: v for k, v in (g.metadata() or {}).items() if k != "run_id"}
            tensors = {k: g.get_tensor(k) for k in g.keys()}
        save_file(tensors, str(f), metadata=meta)
    s = load_run(old)
    assert s.steps == [0, 1, 2] and s.model(2).cfg.p == 7


def test_contradicting_activation_is_refused_unless_forced(quad_run):
    ck = checkpoint_path(quad_run, 2)
    with pytest.raises(CheckpointError, match="records activation 'quad'.*'relu' contradicts.*--force"):
        load_checkpoint(ck, activation="relu")
    assert load_checkpoint(ck, activation="x^2").model.activation == "quad"  # same activation, alias
    assert load_checkpoint(ck, activation="relu", force=True).model.activation == "relu"
    with pytest.raises(CheckpointError, match="records activation 'quad'"):
        load_run(quad_run, activation="relu")
    assert load_run(quad_run, activation="relu", force=True).model(2).activation == "relu"


def _authors_run(path, p=7, d_mlp=8, odd_p=None):
    path.mkdir(parents=True)
    for i, step in enumerate([0, 1, 2]):
        q = odd_p if (odd_p and step == 1) else p
        m = ModAddMLP(ModelConfig(p=q, d_mlp=d_mlp, activation="quad"), seed=i)
        torch.save({"model": dict(m.state_dict()), "epoch": step}, path / f"{step}.pth")
    return path


def test_authors_folder_name_gives_the_activation(tmp_path):
    assert authors_folder_name("p_23_dmlp_512_ReLU_random_scale_0.1_decay_2.0_08180102") == {
        "p": 23, "d_mlp": 512, "activation": "relu", "token": "ReLU"}
    assert authors_folder_name("quad_random_p23") is None
    run = _authors_run(tmp_path / "p_7_dmlp_8_Quad_random_scale_0.1_decay_0.0_01010101")
    s = load_run(run)
    assert s.activation == "quad" and s.model(2).activation == "quad"
    with pytest.raises(CheckpointError, match="folder name says activation 'Quad'.*'relu' contradicts"):
        load_run(run, activation="relu")
    assert load_run(run, activation="relu", force=True).activation == "relu"
    wrong = _authors_run(tmp_path / "p_11_dmlp_8_Quad_random_x")
    with pytest.raises(CheckpointError, match=r"0.pth: p = 7, but the folder name has p = 11"):
        load_run(wrong)


def test_authors_folder_with_mixed_p(tmp_path):
    run = _authors_run(tmp_path / "mixed", odd_p=11)
    with pytest.raises(CheckpointError, match=r"1.pth: p = 11, but 0.pth has p = 7"):
        load_run(run, activation="quad")


def test_authors_file_in_a_named_folder_gets_the_activation(tmp_path):
    run = _authors_run(tmp_path / "p_7_dmlp_8_Quad_random_scale_0.1")
    assert load_checkpoint(run / "2.pth").model.activation == "quad"
    with pytest.raises(CheckpointError, match="folder name says activation 'Quad'"):
        load_checkpoint(run / "2.pth", activation="relu")
    assert load_checkpoint(run / "2.pth", activation="relu", force=True).model.activation == "relu"
