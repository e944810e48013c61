"""Checkpoint series: our run folders, the authors' folders, lazy loading and track()."""

from __future__ import annotations

import gzip
import json
import shutil

import pandas as pd
import pytest
import torch
from helpers import REFERENCE, reference_path

from mechinterp_modadd.checkpoint import load_checkpoint
from mechinterp_modadd.cli import main
from mechinterp_modadd.data import mirror_partitions, random_split
from mechinterp_modadd.errors import CheckpointError, InputError
from mechinterp_modadd.model import ModAddMLP, ModelConfig
from mechinterp_modadd.series import load_run, track
from mechinterp_modadd.training import checkpoint_path, preset, train


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "grok7"
    cfg = preset("grokking", p=7, d_mlp=32, steps=20, lr=1e-3, save_every=5, seed=1)
    res = train(cfg, out, progress=False)
    return out, res


def test_own_folder_steps_split_metrics(own_run):
    out, res = own_run
    s = load_run(out)
    assert s.source_format == "modadd"
    assert s.steps == [0, 5, 10, 15, 20]
    assert s.has_step0 and s.last_step == 20 and s.final_step is None
    assert torch.equal(s.split.train_mask, res.split.train_mask)
    assert s.has_test
    assert s.metrics is not None and len(s.metrics) == 21
    assert s.config["train"]["p"] == 7
    # the model at the last step is the trainer's final model
    for a, b in zip(s.model(20).parameters(), res.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert s.p == 7 and len(s) == 5


def test_own_folder_gz_metrics_and_activation_swap(own_run, tmp_path):
    out, _ = own_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with open(copy / "metrics.csv", "rb") as f, gzip.open(copy / "metrics.csv.gz", "wb") as g:
        g.write(f.read())
    (copy / "metrics.csv").unlink()
    (copy / "resume.safetensors").unlink()
    s = load_run(copy, activation="abs", force=True)
    assert len(s.metrics) == 21
    assert s.model(0).activation == "abs"


def test_lazy_loading_and_cache_limit(own_run):
    out, _ = own_run
    s = load_run(out, cache_size=2)
    assert len(s._models) == 0  # nothing loaded by load_run
    for _, _m in s:
        assert len(s._models) <= 2
    m = s.model(20)
    assert s.model(20) is m  # cached
    s.model(0)
    s.model(5)
    assert 20 not in s._models  # evicted (LRU)


def test_track_scalar_dict_and_two_argument_functions(own_run):
    out, res = own_run
    s = load_run(out)
    df = track(s, {"norm": lambda m: float(torch.sqrt(sum((q.double() ** 2).sum() for q in m.parameters()))),
                   "w": lambda m: {"in": float(m.mlp.W_in.abs().sum()), "out": float(m.mlp.W_out.abs().sum())},
                   "step_x2": lambda m, step: 2 * step}, progress=False)
    assert list(df.index) == [0, 5, 10, 15, 20] and df.index.name == "step"
    assert list(df.columns) == ["norm", "w.in", "w.out", "step_x2"]
    assert df["step_x2"].tolist() == [0, 10, 20, 30, 40]
    # the trainer's recorded norm equals the recomputed one (row t = checkpoint t)
    rec = res.metrics.set_index("step").loc[df.index, "param_norm"]
    assert (df["norm"] - rec).abs().max() < 1e-4
    sub = track(s, {"n": lambda m: 1.0}, progress=False, steps=[5, 15])
    assert list(sub.index) == [5, 15]
    with pytest.raises(InputError, match="no checkpoint at step 3"):
        track(s, {"n": lambda m: 1.0}, progress=False, steps=[3])
    with pytest.raises(InputError, match="returned"):
        track(s, {"bad": lambda m: m.mlp.W_in}, progress=False)


# --------------------------------------------------------------------------- authors' format
def _authors_folder(path, p=7, d_mlp=16, steps=(0, 2, 10), final_epoch=12, split=True):
    path.mkdir(parents=True, exist_ok=True)
    models = {}
    for i, s in enumerate(list(steps) + ["final"]):
        m = ModAddMLP(ModelConfig(p=p, d_mlp=d_mlp, activation="quad"), seed=i)
        sd = {k: v.clone() for k, v in m.state_dict().items()}
        sd["mlp.basis"] = torch.eye(p)
        obj = {"model": sd, "train_loss": 1.0, "epoch": s if s != "final" else final_epoch}
        if s == "final":
            obj["train_losses"] = [3.0, 2.0, 1.0]
            obj["param_norms"] = [1.0, 1.1, 1.2]
            if final_epoch is None:
                del obj["epoch"]
        torch.save(obj, path / f"{s}.pth")
        models[s] = m
    if split:
        sp = random_split(p, 0.75, seed=3)
        torch.save([tuple(map(int, xy)) for xy in sp.train_pairs.tolist()], path / "train_data.pth")
        torch.save([tuple(map(int, xy)) for xy in sp.test_pairs.tolist()], path / "test_data.pth")
        return models, sp
    return models, None


def test_authors_folder_order_final_and_split(tmp_path):
    models, sp = _authors_folder(tmp_path / "a")
    with pytest.raises(CheckpointError, match="activation"):
        load_run(tmp_path / "a")
    s = load_run(tmp_path / "a", activation="quad")
    assert s.source_format == "authors_pth"
    assert s.steps == [0, 2, 10, 12]  # numeric order, final.pth at its epoch
    assert s.final_step == 12 and s.file(12).name == "final.pth"
    assert torch.equal(s.split.train_mask, sp.train_mask)
    assert list(s.metrics["train_loss"]) == [3.0, 2.0, 1.0]
    for step, key in ((0, 0), (2, 2), (10, 10), (12, "final")):
        assert torch.equal(s.model(step).mlp.W_out, models[key].mlp.W_out)


def test_authors_final_without_epoch_and_no_split(tmp_path):
    _authors_folder(tmp_path / "b", final_epoch=None, split=False)
    s = load_run(tmp_path / "b", activation="quad")
    assert s.steps == [0, 2, 10, 11] and s.final_step == 11
    assert s.split is None and not s.has_test


def test_authors_inconsistent_split_is_named(tmp_path):
    _, sp = _authors_folder(tmp_path / "c")
    torch.save([tuple(sp.test_pairs[0].tolist())], tmp_path / "c" / "test_data.pth")  # misses most pairs
    with pytest.raises(CheckpointError, match="miss"):
        load_run(tmp_path / "c", activation="quad")
    torch.save("not pairs", tmp_path / "c" / "train_data.pth")
    with pytest.raises(CheckpointError, match="train_data.pth"):
        load_run(tmp_path / "c", activation="quad")


def test_authors_full_data_folder_has_no_test_set(tmp_path):
    # the authors' trainer at training fraction 1 writes all pairs to both train_data and test_data
    _authors_folder(tmp_path / "full", split=False)
    pairs = [tuple(map(int, xy)) for xy in random_split(7, 1.0, seed=0).train_pairs.tolist()]
    assert len(pairs) == 49
    torch.save(pairs, tmp_path / "full" / "train_data.pth")
    torch.save(list(reversed(pairs)), tmp_path / "full" / "test_data.pth")
    s = load_run(tmp_path / "full", activation="quad")
    assert s.split.train_fraction == 1.0 and not s.has_test
    out = tmp_path / "track.json"
    assert main(["track", str(tmp_path / "full"), "--activation", "quad", "--quiet", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["test_accuracy"] is None and len(doc["train_accuracy"]) == len(doc["steps"]) == 4
    # a partial train file whose pairs reappear in the test file is still refused
    torch.save(pairs[:40], tmp_path / "full" / "train_data.pth")
    with pytest.raises(CheckpointError, match="also in train_data.pth"):
        load_run(tmp_path / "full", activation="quad")


def test_bad_folders(tmp_path):
    with pytest.raises(CheckpointError, match="no such run folder"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a run folder"):
        load_run(tmp_path / "empty")
    (tmp_path / "own" / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="no checkpoints"):
        load_run(tmp_path / "own")
    f = tmp_path / "file.pth"
    f.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="is a file"):
        load_run(f)


# ------------------------------------------------------------------------------- reference
def test_reference_grokking_folder():
    path = reference_path("grokking_relu_p23", "0.pth").parent
    s = load_run(path, activation="relu")
    assert len(s) == 51 and s.steps[:3] == [0, 1000, 2000] and s.steps[-2:] == [49000, 50000]
    assert s.final_step == 50000
    assert int(s.split.train_mask.sum()) == 396 and int(s.split.test_mask.sum()) == 133
    assert mirror_partitions(s.split).counts() == {"test_mirrored": 94, "test_unseen": 39,
                                                   "train_both_orders": 302, "train_one_order": 94}
    ref = load_checkpoint(path / "final.pth", activation="relu").model
    assert torch.equal(s.model(50000).mlp.W_in, ref.mlp.W_in)


def test_reference_quad_folder_has_no_split():
    path = reference_path("quad_random_p23", "0.pth").parent
    s = load_run(path, activation="quad")
    assert len(s) == 51 and s.steps[1] == 200 and s.final_step == 10000 and s.split is None
    assert isinstance(s.metrics, pd.DataFrame) and len(s.metrics) == 10000


def test_reference_root_exists_or_skips():
    if not REFERENCE.exists():
        pytest.skip("reference checkpoints not available")
    assert (REFERENCE / "grokking_relu_p23").is_dir()


def test_checkpoint_path_matches_loader(own_run):
    out, _ = own_run
    s = load_run(out)
    assert s.file(5) == checkpoint_path(out, 5)
