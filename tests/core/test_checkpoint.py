import json
import struct

import pytest
import torch
from helpers import REFERENCE_ACTIVATION, reference_path

from mechinterp_modadd import (
    CheckpointError,
    ModAddMLP,
    ModelConfig,
    all_pairs,
    labels,
    load_checkpoint,
    save_checkpoint,
)
from mechinterp_modadd.checkpoint import checkpoint_bytes


@pytest.fixture
def model():
    return ModAddMLP(ModelConfig(p=7, d_mlp=8, activation="quad"), seed=0)


def test_round_trip_is_exact(tmp_path, model):
    path = save_checkpoint(model, tmp_path / "m.safetensors", step=12, metrics={"loss": 0.5})
    ck = load_checkpoint(path)
    assert ck.step == 12 and ck.metrics == {"loss": 0.5}
    assert ck.model.cfg == model.cfg
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model.state_dict()[k], v)
    assert not list(tmp_path.glob(".*tmp")), "atomic write left a temp file"


def test_learned_embedding_round_trip(tmp_path):
    m = ModAddMLP(ModelConfig(p=7, d_mlp=8, embedding="learned", d_model=4), seed=0)
    ck = load_checkpoint(save_checkpoint(m, tmp_path / "e.safetensors"))
    assert torch.equal(ck.model.embed.W_E, m.embed.W_E)


def test_activation_override_on_load(tmp_path, model):
    ck = load_checkpoint(save_checkpoint(model, tmp_path / "m.safetensors"), activation="abs", force=True)
    assert ck.model.cfg.activation == "abs"


def _write_raw(path, tensors, meta):
    from safetensors.torch import save_file
    save_file(tensors, str(path), metadata=meta)


def _meta(cfg):
    return {"format": "mechinterp_modadd.checkpoint/1", "config": json.dumps(cfg), "step": "0", "metrics": "{}"}


def test_missing_key(tmp_path):
    p = tmp_path / "x.safetensors"
    _write_raw(p, {"mlp.W_in": torch.zeros(8, 7)}, _meta({"p": 7, "d_mlp": 8}))
    with pytest.raises(CheckpointError, match=r"x.safetensors.*missing key 'mlp.W_out'.*\(7, 8\)"):
        load_checkpoint(p)


def test_wrong_shape(tmp_path):
    p = tmp_path / "x.safetensors"
    _write_raw(p, {"mlp.W_in": torch.zeros(8, 7), "mlp.W_out": torch.zeros(7, 9)}, _meta({"p": 7, "d_mlp": 8}))
    with pytest.raises(CheckpointError, match=r"'mlp.W_out' has shape \(7, 9\), expected \(7, 8\)"):
        load_checkpoint(p)


def test_nan_weights(tmp_path, model):
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["mlp.W_in"][0, 0] = float("nan")
    p = tmp_path / "x.safetensors"
    _write_raw(p, sd, _meta(model.cfg.to_dict()))
    with pytest.raises(CheckpointError, match=r"'mlp.W_in' has 1 NaN/inf"):
        load_checkpoint(p)


def test_p_mismatch(tmp_path, model):
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="p mismatch.*p = 7.*p = 23"):
        load_checkpoint(path, p=23)


@pytest.mark.parametrize("cut", [4, 20, 200])
def test_truncated_file(tmp_path, model, cut):
    data = checkpoint_bytes(model)
    p = tmp_path / "t.safetensors"
    p.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="t.safetensors"):
        load_checkpoint(p)


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="notes.txt"):
        load_checkpoint(p)
    # a valid safetensors file that is not ours
    q = tmp_path / "other.safetensors"
    _write_raw(q, {"w": torch.zeros(2)}, {"format": "pt"})
    with pytest.raises(CheckpointError, match="not a mechinterp_modadd checkpoint"):
        load_checkpoint(q)
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_bad_json_config(tmp_path, model):
    sd = model.state_dict()
    p = tmp_path / "x.safetensors"
    _write_raw(p, dict(sd), {"format": "mechinterp_modadd.checkpoint/1", "config": "{not json"})
    with pytest.raises(CheckpointError, match="'config'"):
        load_checkpoint(p)
    header = struct.unpack("<Q", p.read_bytes()[:8])[0]
    assert header > 0


def test_authors_format(tmp_path):
    sd = {"mlp.W_in": torch.randn(8, 7), "mlp.W_out": torch.randn(7, 8), "mlp.basis": torch.eye(7)}
    p = tmp_path / "100.pth"
    torch.save({"model": sd, "train_loss": 1.5, "epoch": 100}, p)
    with pytest.raises(CheckpointError, match="do not record the activation"):
        load_checkpoint(p)
    ck = load_checkpoint(p, activation="relu")
    assert ck.step == 100 and ck.metrics["train_loss"] == 1.5 and ck.source_format == "authors_pth"
    assert torch.equal(ck.model.mlp.W_in, sd["mlp.W_in"])
    # missing W_out
    torch.save({"model": {"mlp.W_in": torch.randn(8, 7)}}, p)
    with pytest.raises(CheckpointError, match="W_out"):
        load_checkpoint(p, activation="relu")
    # not a dict with 'model'
    torch.save([1, 2, 3], p)
    with pytest.raises(CheckpointError, match="'model'"):
        load_checkpoint(p, activation="relu")


class Payload:
    """An arbitrary class: unpickling it would run code from the file's author."""


def test_authors_file_with_arbitrary_objects_is_refused(tmp_path):
    p = tmp_path / "evil.pth"
    torch.save({"model": {}, "payload": Payload()}, p)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(p, activation="relu")


def test_reference_standard_relu_loads_and_is_perfect():
    path = reference_path("standard_relu_p23")
    ck = load_checkpoint(path, activation=REFERENCE_ACTIVATION["standard_relu_p23"])
    P = all_pairs(23)
    with torch.no_grad():
        acc = (ck.model(P).argmax(-1) == labels(P, 23)).float().mean()
    assert float(acc) == 1.0
    assert ck.model.cfg.d_mlp == 512 and ck.step == 10000


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    import os

    from mechinterp_modadd.checkpoint import atomic_write_text

    path = atomic_write_text(tmp_path / "a.txt", "hello")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
