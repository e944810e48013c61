"""TransformerLens utilities work on ModAddMLP unchanged: ActivationCache, get_act_name aliases,
the config fields they read, and generic_activation_patch against a hand-made patch."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from transformer_lens import ActivationCache
from transformer_lens.config.transformer_lens_config import TransformerLensConfig
from transformer_lens.patching import generic_activation_patch
from transformer_lens.utilities import get_act_name

from mechinterp_modadd import ConfigError, ModAddMLP, ModelConfig, all_pairs, labels
from mechinterp_modadd.tlens import HookedConfig


@pytest.fixture()
def model():
    return ModAddMLP(ModelConfig(p=7, d_mlp=12), seed=3).eval()


def test_run_with_cache_is_an_activation_cache(model):
    pairs = all_pairs(7)
    logits, cache = model.run_with_cache(pairs)
    assert isinstance(cache, ActivationCache)
    assert sorted(cache.keys()) == ["hook_embed", "hook_logits", "mlp.hook_post", "mlp.hook_pre"]
    post = cache["mlp.hook_post"]
    for key in (get_act_name("post", 0), ("post", 0), ("post", -1), "post0"):
        assert cache[key] is post
    assert cache[get_act_name("pre", 0)] is cache["mlp.hook_pre"]
    assert cache[get_act_name("embed")] is cache["hook_embed"]
    assert "blocks.0.mlp.hook_post" in cache and "blocks.0.hook_resid_pre" not in cache
    with pytest.raises(KeyError, match="not in the cache"):
        cache["blocks.0.hook_resid_pre"]


def test_names_filter_accepts_aliases(model):
    pairs = all_pairs(7)
    _, by_alias = model.run_with_cache(pairs, names_filter="blocks.0.mlp.hook_post")
    _, by_list = model.run_with_cache(pairs, names_filter=["blocks.0.mlp.hook_pre", "hook_logits"])
    _, by_fn = model.run_with_cache(pairs, names_filter=lambda n: n == "blocks.0.mlp.hook_post")
    assert list(by_alias.keys()) == ["mlp.hook_post"] == list(by_fn.keys())
    assert sorted(by_list.keys()) == ["hook_logits", "mlp.hook_pre"]


def test_hooks_by_alias_reach_our_points_once(model):
    pairs = all_pairs(7)
    seen = []

    def record(act, hook):
        seen.append(hook.name)
        return act * 0

    out = model.run_with_hooks(pairs, fwd_hooks=[(get_act_name("post", 0), record)])
    assert seen == ["mlp.hook_post"]  # our name, called once
    assert torch.count_nonzero(out) == 0
    assert set(model.hook_dict) == {"hook_embed", "mlp.hook_pre", "mlp.hook_post", "hook_logits"}
    assert all(len(hp._forward_hooks) == 0 for hp in model.hook_dict.values())


def test_cfg_carries_transformer_lens_fields(model):
    cfg = model.cfg
    for f in dataclasses.fields(TransformerLensConfig):
        assert hasattr(cfg, f.name), f.name
    assert (cfg.n_layers, cfg.d_vocab, cfg.d_vocab_out, cfg.d_mlp, cfg.d_model, cfg.n_ctx) == (1, 7, 7, 12, 7, 2)
    assert cfg.act_fn == "relu" and cfg.device == "cpu" and cfg.dtype == torch.float32
    assert model.double().cfg.dtype == torch.float64
    # still our strict config underneath
    assert cfg == ModelConfig(p=7, d_mlp=12) and cfg.to_dict() == ModelConfig(p=7, d_mlp=12).to_dict()
    assert isinstance(cfg.config, ModelConfig) and cfg.K == 3
    with pytest.raises(ConfigError, match="read-only"):
        cfg.p = 11
    with pytest.raises(ConfigError, match="ModelConfig"):
        model.cfg = {"p": 7}
    model.set_activation("quad")
    assert model.cfg.act_fn == "quad" and model.cfg.activation == "quad"
    model.set_activation(lambda x: x.abs())
    assert model.cfg.act_fn == "custom"
    assert isinstance(ModAddMLP(model.cfg, seed=None).cfg, HookedConfig)


def test_generic_activation_patch_matches_hand_patch(model):
    p = 7
    pairs = all_pairs(p)
    clean = pairs[:16]
    corrupted = torch.stack([clean[:, 0], (clean[:, 1] + 3) % p], dim=1)
    y = labels(clean, p)
    _, clean_cache = model.run_with_cache(clean)

    def metric(logits):
        return logits.log_softmax(-1).gather(1, y[:, None]).mean()

    def set_neuron(corrupted_act, index, clean_act):
        corrupted_act[:, index[1]] = clean_act[:, index[1]]
        return corrupted_act

    index_df = pd.DataFrame({"layer": 0, "neuron": range(model.cfg.d_mlp)})
    tl = generic_activation_patch(model, corrupted, clean_cache, metric, set_neuron, "post", index_df=index_df)

    clean_post = clean_cache["mlp.hook_post"]
    hand = []
    for m in range(model.cfg.d_mlp):
        def hook(act, hook, m=m):
            act = act.clone()
            act[:, m] = clean_post[:, m]
            return act

        hand.append(metric(model.run_with_hooks(corrupted, fwd_hooks=[("mlp.hook_post", hook)])))
    hand = torch.stack(hand).detach()
    torch.testing.assert_close(tl, hand)
    # the patch does something: it differs from the unpatched corrupted run
    assert not torch.allclose(tl, metric(model(corrupted)).detach().expand_as(tl))
