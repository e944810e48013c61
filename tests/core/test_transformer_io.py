"""Foreign transformer checkpoints (written by tests/foreign_transformers.py, not our trainer) load
with the same logits; every bad file or config is one CheckpointError/ConfigError line."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from foreign_transformers import write_hooked_transformer, write_nanda

from mechinterp_modadd.errors import CheckpointError, ConfigError
from mechinterp_modadd.transformer import all_pair_tokens
from mechinterp_modadd.transformer_io import layout_of, load_transformer, transformer_from_state_dict


@pytest.mark.parametrize("wrap", ["cfg", "bare", "checkpoints"])
def test_hooked_transformer_layout_loads_with_the_same_logits(tmp_path, wrap):
    path = tmp_path / "ht.pt"
    ref = write_hooked_transformer(path, wrap=wrap)
    loaded = load_transformer(path)
    assert loaded.layout == "hooked_transformer"
    assert loaded.config_source == ("file" if wrap == "cfg" else "weights")
    cfg = loaded.model.cfg
    assert (cfg.p, cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp) == (7, 16, 2, 8, 24)
    assert torch.allclose(loaded.model(all_pair_tokens(7)), ref, atol=1e-5)
    if wrap == "checkpoints":
        assert loaded.meta["epoch"] == 5
        first = load_transformer(path, index=0)
        assert torch.allclose(first.model(all_pair_tokens(7)), ref, atol=1e-5)


def test_hooked_transformer_without_biases_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "ht.pt"
    ref = write_hooked_transformer(path, wrap="bare", biases=False)
    sd = torch.load(path, weights_only=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "ht.safetensors"))
    loaded = load_transformer(tmp_path / "ht.safetensors")
    assert torch.allclose(loaded.model(all_pair_tokens(7)), ref, atol=1e-5)


def test_nanda_layout_loads_with_the_same_logits(tmp_path):
    path = tmp_path / "nanda.pth"
    ref = write_nanda(path)
    loaded = load_transformer(path)
    assert loaded.layout == "nanda"
    assert loaded.meta == {"train_loss": 0.5, "test_loss": 1.5, "epoch": 5}
    m = loaded.model
    assert (m.cfg.p, m.cfg.d_model, m.cfg.n_heads, m.cfg.d_head, m.cfg.d_mlp) == (7, 16, 2, 8, 24)
    assert float(m.blocks[0].mlp.b_in.abs().max()) > 0  # his trained MLP biases are kept
    assert torch.allclose(m(all_pair_tokens(7)), ref, atol=1e-5)


def test_config_file_sets_act_fn_and_must_agree_with_the_shapes(tmp_path):
    path = tmp_path / "ht.pt"
    write_hooked_transformer(path, wrap="bare")
    (tmp_path / "gelu.json").write_text(json.dumps({"p": 7, "d_model": 16, "n_heads": 2, "d_head": 8,
                                                    "d_mlp": 24, "act_fn": "gelu"}))
    assert load_transformer(path, tmp_path / "gelu.json").model.cfg.act_fn == "gelu"
    (tmp_path / "tl.json").write_text(json.dumps({"n_layers": 1, "d_vocab": 8, "d_vocab_out": 7, "d_model": 16,
                                                  "act_fn": "gelu", "seed": 3, "normalization_type": None}))
    assert load_transformer(path, tmp_path / "tl.json").model.cfg.act_fn == "gelu"
    (tmp_path / "wrong.json").write_text(json.dumps({"p": 7, "d_mlp": 32}))
    with pytest.raises(CheckpointError, match=r"says d_mlp = 32 but the weights have d_mlp = 24"):
        load_transformer(path, tmp_path / "wrong.json")


@pytest.mark.parametrize("cfg, match", [
    ({"n_layers": 2, "d_model": 16}, "n_layers = 2"),
    ({"n_layers": 1, "d_model": 16, "normalization_type": "LN"}, "no LayerNorm"),
    ({"d_vocab": 9, "d_vocab_out": 7}, "d_vocab = d_vocab_out"),
    ({"d_model": 16, "act_fn": "solu_ln"}, "act_fn"),
    ({"p": 7, "heads": 2}, "unknown transformer config keys"),
    ({"foo": 1}, "not a transformer config"),
])
def test_bad_configs_are_one_line(tmp_path, cfg, match):
    path = tmp_path / "ht.pt"
    write_hooked_transformer(path, wrap="bare")
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=match):
        load_transformer(path, tmp_path / "c.json")


def _sd(tmp_path):
    path = tmp_path / "ht.pt"
    write_hooked_transformer(path, wrap="bare")
    return torch.load(path, weights_only=True)


def test_missing_extra_and_misshaped_keys_are_named(tmp_path):
    sd = _sd(tmp_path)
    missing = {k: v for k, v in sd.items() if k != "blocks.0.mlp.W_out"}
    with pytest.raises(CheckpointError, match=r"x\.pt: .*missing blocks\.0\.mlp\.W_out"):
        transformer_from_state_dict(missing, where="x.pt")
    extra = dict(sd, **{"blocks.0.ln1.w": torch.ones(16), "blocks.1.mlp.W_in": torch.ones(16, 24)})
    with pytest.raises(CheckpointError, match=r"unexpected blocks\.0\.ln1\.w, blocks\.1\.mlp\.W_in .*LayerNorm"):
        transformer_from_state_dict(extra, where="x.pt")
    bad = dict(sd, **{"blocks.0.attn.W_K": torch.ones(2, 16, 5)})
    with pytest.raises(CheckpointError, match=r"'blocks\.0\.attn\.W_K' has shape \(2, 16, 5\), expected \(2, 16, 8\)"):
        transformer_from_state_dict(bad, where="x.pt")
    nan = dict(sd, **{"unembed.W_U": torch.full((16, 7), float("nan"))})
    with pytest.raises(CheckpointError, match=r"unembed\.W_U' has 112 NaN"):
        transformer_from_state_dict(nan, where="x.pt")
    assert layout_of({"mlp.W_in": torch.ones(3, 3)}) is None


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_unsafe_or_unreadable_files_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_transformer(tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_transformer(tmp_path / "absent.pt")
    torch.save({"weights": {"a": torch.ones(2)}, "step": 3}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="no state dict found"):
        load_transformer(tmp_path / "odd.pt")
