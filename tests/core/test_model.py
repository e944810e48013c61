import math

import pytest
import torch

from mechinterp_modadd import ConfigError, InputError, ModAddMLP, ModelConfig, all_pairs, labels
from mechinterp_modadd.fourier import neuron_spectrum
from mechinterp_modadd.model import default_d_mlp


def test_hook_points_carry_what_they_claim():
    m = ModAddMLP(ModelConfig(p=7, d_mlp=16), seed=0)
    pairs = all_pairs(7)
    logits, cache = m.run_with_cache(pairs)
    W_in = m.mlp.W_in.detach()
    expect_pre = W_in[:, pairs[:, 0]].T + W_in[:, pairs[:, 1]].T
    torch.testing.assert_close(cache["mlp.hook_pre"], expect_pre)
    torch.testing.assert_close(cache["mlp.hook_post"], torch.relu(expect_pre))
    torch.testing.assert_close(cache["hook_logits"], logits)
    assert cache["hook_embed"].shape == (49, 2, 7)
    assert torch.equal(cache["hook_embed"].argmax(-1), pairs)


def test_zero_ablation_hook_changes_logits_and_is_removed_even_on_error():
    m = ModAddMLP(ModelConfig(p=7, d_mlp=16), seed=0)
    pairs = all_pairs(7)
    clean = m(pairs)

    def zero_first(act, hook):
        act[:, :8] = 0
        return act

    ablated = m.run_with_hooks(pairs, fwd_hooks=[("mlp.hook_post", zero_first)])
    assert not torch.allclose(clean, ablated)
    torch.testing.assert_close(m(pairs), clean)

    def boom(act, hook):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        with m.hooks(fwd_hooks=[("mlp.hook_pre", boom)]):
            m(pairs)
    torch.testing.assert_close(m(pairs), clean)
    assert all(len(hp._forward_hooks) == 0 for hp in m.hook_dict.values())


def test_tokens_are_validated():
    m = ModAddMLP(ModelConfig(p=7, d_mlp=4), seed=0)
    with pytest.raises(InputError, match=r"\[0, 7\)"):
        m(torch.tensor([[0, 7]]))
    with pytest.raises(InputError, match="shape"):
        m(torch.tensor([0, 1, 2]))
    with pytest.raises(InputError, match="integer"):
        m(torch.tensor([[0.0, 1.0]]))


def test_activation_swap_and_callable():
    m = ModAddMLP(ModelConfig(p=7, d_mlp=8), seed=1)
    pairs = all_pairs(7)
    m.set_activation("quad")
    _, cache = m.run_with_cache(pairs)
    torch.testing.assert_close(cache["mlp.hook_post"], cache["mlp.hook_pre"] ** 2)
    assert m.cfg.activation == "quad"
    m.set_activation(lambda x: 3 * x)
    _, cache = m.run_with_cache(pairs)
    torch.testing.assert_close(cache["mlp.hook_post"], 3 * cache["mlp.hook_pre"])
    with pytest.raises(ConfigError, match="unknown activation"):
        m.set_activation("swishy")


def test_learned_embedding_folds_into_W_in():
    m = ModAddMLP(ModelConfig(p=7, d_mlp=8, embedding="learned", d_model=5), seed=0)
    pairs = all_pairs(7)
    theta = m.effective_W_in().detach()
    expect = torch.relu(theta[:, pairs[:, 0]].T + theta[:, pairs[:, 1]].T) @ m.mlp.W_out.detach().T
    torch.testing.assert_close(m(pairs).detach(), expect, rtol=1e-5, atol=1e-6)


def test_random_init_scale_and_seed():
    cfg = ModelConfig(p=23, d_mlp=512, init_scale=0.1)
    a, b = ModAddMLP(cfg, seed=3), ModAddMLP(cfg, seed=3)
    assert torch.equal(a.mlp.W_in, b.mlp.W_in)
    std = float(a.mlp.W_in.detach().std())
    assert abs(std - 0.1 / math.sqrt(23)) < 0.003


def test_single_freq_init_is_one_frequency_per_neuron_round_robin():
    cfg = ModelConfig(p=23, d_mlp=110, init="single_freq", init_scale=0.02)
    m = ModAddMLP(cfg, seed=0)
    s = neuron_spectrum(m)
    assert float(s.share.min()) > 1 - 1e-6
    assert s.counts().tolist() == [10] * 11
    # magnitudes start equal (scale * cosine amplitude), phases spread
    torch.testing.assert_close(s.alpha_star, torch.full((110,), 0.02, dtype=torch.float64), atol=1e-6, rtol=0)
    torch.testing.assert_close(s.beta_star, torch.full((110,), 0.02, dtype=torch.float64), atol=1e-6, rtol=0)
    assert float(s.phi_star.std()) > 1.0


def test_config_errors():
    with pytest.raises(ConfigError):
        ModelConfig(p=2)
    with pytest.raises(ConfigError):
        ModelConfig(p=7, embedding="learned")
    with pytest.raises(ConfigError):
        ModelConfig(p=7, init="zeros")
    assert default_d_mlp(23) == 512 and default_d_mlp(97) == math.ceil(512 * 97 * 97 / 529)


def test_labels_helper_matches_forward_shape():
    m = ModAddMLP(ModelConfig(p=5, d_mlp=4), seed=0)
    P = all_pairs(5)
    assert m(P).shape == (25, 5) and labels(P, 5).shape == (25,)
