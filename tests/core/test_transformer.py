"""The transformer family's model: TransformerLens names and hooks, the training path, seeds,
input checks, and transformer_lens.patching on it."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformer_lens import ActivationCache
from transformer_lens.patching import generic_activation_patch, get_act_patch_resid_pre
from transformer_lens.utilities import get_act_name

from mechinterp_modadd.errors import ConfigError, InputError
from mechinterp_modadd.transformer import ModAddTransformer, TransformerConfig, all_pair_tokens

SMALL = TransformerConfig(p=7, d_model=16, n_heads=2, d_head=8, d_mlp=24)

TL_HOOKS = {
    "hook_embed": (3, 16), "hook_pos_embed": (3, 16), "blocks.0.hook_resid_pre": (3, 16),
    "blocks.0.attn.hook_q": (3, 2, 8), "blocks.0.attn.hook_k": (3, 2, 8), "blocks.0.attn.hook_v": (3, 2, 8),
    "blocks.0.attn.hook_attn_scores": (2, 3, 3), "blocks.0.attn.hook_pattern": (2, 3, 3),
    "blocks.0.attn.hook_z": (3, 2, 8), "blocks.0.hook_attn_out": (3, 16), "blocks.0.hook_resid_mid": (3, 16),
    "blocks.0.mlp.hook_pre": (3, 24), "blocks.0.mlp.hook_post": (3, 24), "blocks.0.hook_mlp_out": (3, 16),
    "blocks.0.hook_resid_post": (3, 16),
}


@pytest.fixture()
def model():
    return ModAddTransformer(SMALL, seed=1).eval()


def test_defaults_are_nandas():
    c = TransformerConfig(p=113)
    assert (c.d_model, c.n_heads, c.d_head, c.d_mlp, c.act_fn) == (128, 4, 32, 512, "relu")
    assert (c.d_vocab, c.d_vocab_out, c.n_ctx, c.n_layers) == (114, 113, 3, 1)


def test_state_dict_has_hooked_transformer_names_and_shapes(model):
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "embed.W_E": (8, 16), "pos_embed.W_pos": (3, 16),
        "blocks.0.attn.W_Q": (2, 16, 8), "blocks.0.attn.W_K": (2, 16, 8), "blocks.0.attn.W_V": (2, 16, 8),
        "blocks.0.attn.W_O": (2, 8, 16), "blocks.0.attn.b_Q": (2, 8), "blocks.0.attn.b_K": (2, 8),
        "blocks.0.attn.b_V": (2, 8), "blocks.0.attn.b_O": (16,),
        "blocks.0.mlp.W_in": (16, 24), "blocks.0.mlp.b_in": (24,), "blocks.0.mlp.W_out": (24, 16),
        "blocks.0.mlp.b_out": (16,), "unembed.W_U": (16, 7), "unembed.b_U": (7,),
    }
    # biases are frozen at zero: buffers, not parameters
    assert all(not name.split(".")[-1].startswith("b_") for name, _ in model.named_parameters())
    assert all(float(v.abs().max()) == 0 for k, v in model.state_dict().items() if k.split(".")[-1].startswith("b_"))


def test_run_with_cache_has_transformer_lens_hooks(model):
    tokens = all_pair_tokens(7)
    logits, cache = model.run_with_cache(tokens)
    assert isinstance(cache, ActivationCache)
    assert {k: tuple(v.shape[1:]) for k, v in cache.items()} == TL_HOOKS
    assert logits.shape == (49, 7)
    assert cache[get_act_name("pattern", 0)] is cache["blocks.0.attn.hook_pattern"]
    assert cache["post", 0] is cache["blocks.0.mlp.hook_post"]
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert torch.allclose(pattern.sum(-1), torch.ones(()))
    assert float(pattern[:, :, 0, 1:].abs().max()) == 0.0  # causal: position 0 sees itself only
    # the logits are the residual stream at '=' through W_U
    resid = cache["blocks.0.hook_resid_post"][:, -1]
    assert torch.allclose(resid @ model.W_U, logits, atol=1e-6)
    # pairs [b, 2] get '=' appended; all_positions gives TransformerLens's [b, 3, p]
    assert torch.equal(model(tokens[:, :2]), logits)
    assert torch.allclose(model(tokens, all_positions=True)[:, -1], logits, atol=1e-6)


def test_forward_last_matches_the_hooked_forward():
    m = ModAddTransformer(TransformerConfig(p=11, d_model=32, n_heads=4, d_head=8, d_mlp=40), seed=0)
    tokens = all_pair_tokens(11)
    assert torch.allclose(m.forward_last(tokens), m(tokens), atol=1e-5, rtol=1e-5)
    assert torch.equal(m(tokens, last_only=True), m.forward_last(tokens))


def test_hooks_change_the_output(model):
    tokens = all_pair_tokens(7)[:5]
    clean = model(tokens)

    def zero_mlp(act, hook):
        return torch.zeros_like(act)

    patched = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_mlp_out", zero_mlp)])
    assert not torch.allclose(patched, clean)
    assert torch.equal(model(tokens), clean)  # hooks removed afterwards


def test_seed_reproduces_bit_for_bit_and_differs_across_seeds():
    a, b, c = (ModAddTransformer(SMALL, seed=s) for s in (5, 5, 6))
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values(),
                               strict=True):
        assert torch.equal(va, vb), k
        if not k.split(".")[-1].startswith("b_"):
            assert not torch.equal(va, vc), k
    # Nanda's scales: N(0, 1) / sqrt(d_model), W_U / sqrt(d_vocab)
    big = ModAddTransformer(TransformerConfig(p=113), seed=0).requires_grad_(False)
    assert abs(float(big.W_E.std()) * 128 ** 0.5 - 1) < 0.02
    assert abs(float(big.W_U.std()) * 114 ** 0.5 - 1) < 0.05


def test_generic_activation_patch_matches_a_hand_patch(model):
    tokens = all_pair_tokens(7)
    clean, corrupt = tokens[:6], tokens[10:16]
    _, clean_cache = model.run_with_cache(clean)
    answers = (clean[:, 0] + clean[:, 1]) % 7

    def metric(logits):
        return logits.gather(1, answers[:, None]).mean()

    index_df = pd.DataFrame({"layer": [0, 0, 0], "pos": [0, 1, 2]})

    def patch_pos(corrupted_act, index, clean_act):
        corrupted_act[:, index[1]] = clean_act[:, index[1]]
        return corrupted_act

    result = generic_activation_patch(model, corrupt, clean_cache, metric, patch_pos, "resid_pre",
                                      index_df=index_df)
    for i, pos in enumerate((0, 1, 2)):
        def hand(act, hook, pos=pos):
            act = act.clone()
            act[:, pos] = clean_cache["blocks.0.hook_resid_pre"][:, pos]
            return act
        expected = metric(model.run_with_hooks(corrupt, fwd_hooks=[("blocks.0.hook_resid_pre", hand)]))
        assert float(result[i]) == pytest.approx(float(expected), abs=1e-6)
    # patching every position restores the clean answer exactly
    grid = get_act_patch_resid_pre(model, corrupt, clean_cache, metric)
    assert grid.shape == (1, 3)
    # position 2 is '=' in both runs and the residual at pos 2 is identical, so patching it changes nothing
    assert float(grid[0, 2]) == pytest.approx(float(metric(model(corrupt))), abs=1e-6)


@pytest.mark.parametrize("bad, match", [
    ({"p": 7, "d_model": 0}, "d_model"),
    ({"p": 7, "act_fn": "tanh"}, "act_fn"),
    ({"p": 2}, "p must be"),
    ({"p": 7, "n_layer": 2}, "unknown transformer config keys"),
    ({"d_model": 8}, "needs the key 'p'"),
])
def test_bad_configs_name_the_field(bad, match):
    with pytest.raises(ConfigError, match=match):
        TransformerConfig.from_dict(bad)


@pytest.mark.parametrize("tokens, match", [
    (torch.tensor([[1, 2, 3, 4]]), r"\[batch, 3\]"),
    (torch.tensor([[1.0, 2.0]]), "integers"),
    (torch.tensor([[1, 7, 7]]), "0 <= x, y < 7"),
    (torch.tensor([[1, 2, 3]]), "0 <= x, y < 7"),
])
def test_bad_tokens_are_input_errors(model, tokens, match):
    with pytest.raises(InputError, match=match):
        model(tokens)


def test_cfg_is_read_only_and_carries_device(model):
    assert model.cfg.device == torch.device("cpu") and model.cfg.dtype == torch.float32
    assert model.cfg == SMALL
    with pytest.raises(AttributeError, match="read-only"):
        model.cfg.p = 11
