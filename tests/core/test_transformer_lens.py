"""TransformerLens utilities work on ModAddMLP unchanged: ActivationCache, get_act_name aliases,
the config fields they read, and generic_activation_patch against a hand-made patch; what does not
apply to a one-hidden-layer MLP (positions, the residual stream) is refused in one sentence.

The model is loaded from a checkpoint as a user would (no ``.eval()``: ``load_checkpoint`` returns
it in eval mode, which TransformerLens's patching requires)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch
from transformer_lens import ActivationCache
from transformer_lens.config.transformer_lens_config import TransformerLensConfig
from transformer_lens.patching import generic_activation_patch, layer_pos_patch_setter
from transformer_lens.utilities import get_act_name

from mechinterp_modadd import ConfigError, ModAddMLP, ModelConfig, all_pairs, labels
from mechinterp_modadd.checkpoint import load_checkpoint, save_checkpoint
from mechinterp_modadd.tlens import RESIDUAL_HELPERS, HookedConfig


@pytest.fixture()
def model(tmp_path):
    save_checkpoint(ModAddMLP(ModelConfig(p=7, d_mlp=12), seed=3), tmp_path / "m.safetensors", step=0)
    return load_checkpoint(tmp_path / "m.safetensors").model


def test_loaded_models_are_in_eval_mode(model, tmp_path):
    assert model.training is False and not any(m.training for m in model.modules())
    fresh = ModAddMLP(ModelConfig(p=7, d_mlp=12), seed=3)
    assert fresh.training  # a constructed model follows PyTorch's default, as a HookedTransformer(cfg) does
    with pytest.raises(ValueError, match="evaluation mode"):  # which TransformerLens's patching refuses
        generic_activation_patch(fresh, all_pairs(7)[:4], fresh.run_with_cache(all_pairs(7)[:4])[1],
                                 lambda logits: logits.sum(), lambda a, i, c: a, "post",
                                 index_df=pd.DataFrame({"layer": [0], "neuron": [0]}))


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


def test_hook_dict_answers_to_aliases_and_lists_each_point_once(model):
    hd = model.hook_dict
    assert hd[get_act_name("post", 0)] is hd["mlp.hook_post"] is model.mlp.hook_post
    assert hd[get_act_name("pre", 0)] is model.mlp.hook_pre
    assert get_act_name("post", 0) in hd and hd.get("blocks.0.mlp.hook_post") is model.mlp.hook_post
    assert "blocks.0.hook_resid_pre" not in hd and hd.get("blocks.0.hook_resid_pre") is None
    with pytest.raises(KeyError):
        hd["blocks.0.hook_resid_pre"]
    assert len(hd) == 4 and len(list(hd.items())) == 4
    # a hook added through a name filter reaches each point once (no double call through an alias)
    calls = []
    model.run_with_hooks(all_pairs(7)[:3], fwd_hooks=[(lambda n: True, lambda a, hook: calls.append(hook.name))])
    assert sorted(calls) == sorted(hd)


def test_pos_slice_is_refused_in_one_sentence(model):
    x8 = all_pairs(7)[:8]
    _, whole = model.run_with_cache(x8)
    assert whole["post", 0].shape == (8, 12)
    for bad in (-1, 0, slice(0, 1), [0, 1]):
        with pytest.raises(ConfigError) as e:
            model.run_with_cache(x8, pos_slice=bad)
        msg = str(e.value)
        assert "no position axis" in msg and "\n" not in msg and "pos_slice" in msg
    with pytest.raises(ConfigError, match="no position axis"):
        model.get_caching_hooks(pos_slice=-1)
    _, same = model.run_with_cache(x8, pos_slice=None)  # the default still works
    torch.testing.assert_close(same["post", 0], whole["post", 0])


def test_position_patch_setters_are_refused_where_there_is_no_position(model):
    pairs = all_pairs(7)[:8]
    corrupted = torch.stack([pairs[:, 0], (pairs[:, 1] + 1) % 7], dim=1)
    _, clean_cache = model.run_with_cache(pairs)
    for act in ("post", "pre"):
        with pytest.raises(ConfigError) as e:
            generic_activation_patch(model, corrupted, clean_cache, lambda lg: lg.sum(), layer_pos_patch_setter,
                                     act, index_axis_names=["layer", "pos"])
        msg = str(e.value)
        assert "layer_pos_patch_setter" in msg and "no position axis" in msg and "index_df" in msg
        assert "\n" not in msg
    # a setter of the user's own on the same grid is not second-guessed (only TransformerLens's own position
    # setters are refused), and the per-neuron patch works: test_generic_activation_patch_matches_hand_patch
    own = generic_activation_patch(model, corrupted, clean_cache, lambda lg: lg.sum(),
                                   lambda a, index, c: a, "post", index_axis_names=["layer", "pos"])
    assert own.shape == (1, 2)


def test_sliced_caches_keep_the_aliases(model):
    x8 = all_pairs(7)[:8]
    _, cache = model.run_with_cache(x8)
    sliced = cache.apply_slice_to_batch_dim(slice(0, 5))
    assert sliced[("post", 0)].shape == (5, 12)
    torch.testing.assert_close(sliced["blocks.0.mlp.hook_post"], cache["mlp.hook_post"][:5])
    one = cache.apply_slice_to_batch_dim(3)  # an int slice drops the batch axis, as in TransformerLens
    assert one["post0"].shape == (12,) and one.has_batch_dim is False
    _, single = model.run_with_cache(x8[:1], remove_batch_dim=True)
    assert single["pre", 0].shape == (12,)
    assert cache.to("cpu")["post", 0] is not None


@pytest.mark.parametrize("helper", RESIDUAL_HELPERS)
def test_residual_stream_helpers_are_refused_with_what_the_mlp_has_instead(model, helper):
    x = all_pairs(7)[:6]
    logits, cache = model.run_with_cache(x)
    with pytest.raises(ConfigError) as e:
        getattr(cache, helper)(layer=1) if helper != "logit_lens" else cache.logit_lens()
    msg = str(e.value)
    assert msg.startswith(f"cache.{helper}(): ") and "no residual stream" in msg and "\n" not in msg
    # what the sentence says is true: the per-neuron terms sum to the logits
    terms = cache["post", 0][:, :, None] * model.W_out.T[None]  # [batch, neuron, p]
    torch.testing.assert_close(terms.sum(1), logits.detach(), rtol=1e-5, atol=1e-5)


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
