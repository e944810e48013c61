"""The one forward pass (mechinterp_modadd.forward): streaming, scales, hooks, the trainer's pass."""

from __future__ import annotations

import pytest
import torch

from mechinterp_modadd.analysis.ablation import ablated, neuron_means
from mechinterp_modadd.data import all_pairs
from mechinterp_modadd.errors import InputError
from mechinterp_modadd.forward import (
    CHUNK_SHARE,
    Weights64,
    all_pair_logits,
    bytes_per_pair,
    chunk_size,
    hidden,
    input_logits,
    logits,
    pair_chunks,
    pair_inputs,
    unordered_pairs,
    weights64,
)
from mechinterp_modadd.model import ModAddMLP, ModelConfig


@pytest.fixture(scope="module")
def model64():
    return ModAddMLP(ModelConfig(p=11, d_mlp=24), seed=3).double()


def test_logits_equal_the_model_and_do_not_depend_on_the_chunking(model64):
    p = 11
    ref = model64(all_pairs(p))
    whole = logits(model64)
    five = 5 * bytes_per_pair(24, p) / CHUNK_SHARE  # a budget of 5 pairs a chunk: 25 chunks
    tiny = logits(model64, max_memory=five)
    assert len(list(pair_chunks(p * p, 24, p, max_memory=five))) == 25
    assert torch.allclose(whole, ref, atol=1e-12) and torch.equal(whole, tiny)
    pre, post = hidden(model64, max_memory=7 * bytes_per_pair(24, p) / CHUNK_SHARE)
    assert torch.allclose(post @ model64.W_out.T, ref, atol=1e-12)
    assert torch.equal(post, torch.relu(pre))


def test_weights64_is_float64_and_folds_a_learned_embedding():
    m = ModAddMLP(ModelConfig(p=7, d_mlp=10, embedding="learned", d_model=5), seed=1)
    w = weights64(m)
    assert w.theta.dtype == torch.float64 and w.theta.shape == (10, 7) and (w.p, w.d_mlp) == (7, 10)
    assert torch.allclose(w.theta, (m.W_in.double() @ m.W_E.double()))
    assert torch.allclose(logits(m), m(all_pairs(7)).double(), atol=1e-5)
    assert weights64(w) is w and isinstance(weights64(w, activation="quad"), Weights64)
    # a swapped activation only for the pass
    assert torch.allclose(logits(m, activation="quad"), hidden(w, activation="quad")[1] @ w.W_out.T)
    assert m.activation == "relu"


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_scales_equal_hook_ablation_without_editing_weights(model64, mode):
    g = torch.Generator().manual_seed(0)
    keep = torch.rand(3, 24, generator=g) < 0.5
    before = {k: v.clone() for k, v in model64.state_dict().items()}
    fill = neuron_means(model64) if mode == "mean" else None
    nine = 9 * bytes_per_pair(24 * 3, 11, 3) / CHUNK_SHARE  # 9 pairs a chunk
    batched = logits(model64, scale=keep.double(), fill=fill, max_memory=nine)
    assert batched.shape == (3, 121, 11)
    for b in range(3):
        with ablated(model64, ~keep[b], mode=mode):
            ref = model64(all_pairs(11))
        assert torch.allclose(batched[b], ref, atol=1e-12)
        assert torch.allclose(logits(model64, scale=keep[b].double(), fill=fill), ref, atol=1e-12)
    assert all(torch.equal(v, before[k]) for k, v in model64.state_dict().items())
    with pytest.raises(InputError, match=r"scale must have shape \[24\]"):
        logits(model64, scale=torch.ones(5))


def test_all_pair_logits_apply_hooks_only_when_asked(model64):
    with ablated(model64, [0, 1, 2]):
        hooked = all_pair_logits(model64)
        plain = all_pair_logits(model64, hooks=False)
        ref = model64(all_pairs(11))
    assert torch.allclose(hooked, ref, atol=1e-12)
    assert torch.allclose(plain, logits(model64), atol=0) and not torch.allclose(plain, hooked)
    with pytest.raises(InputError, match="needs the model"):
        logits(weights64(model64), hooks=True)


def test_input_logits_is_the_trainers_differentiable_pass():
    m = ModAddMLP(ModelConfig(p=7, d_mlp=12), seed=0)
    pairs, w = unordered_pairs(7)
    assert pairs.shape == (28, 2) and float(w.sum()) == 49
    out = input_logits(m, pair_inputs(pairs, 7))
    assert out.dtype == torch.float32 and out.requires_grad
    assert torch.allclose(out, m(pairs), atol=1e-6)
    out.sum().backward()
    assert m.W_in.grad is not None


def test_chunks_follow_the_memory_budget(model64):
    from mechinterp_modadd.memory import memory_budget

    per = bytes_per_pair(24, 11)
    assert chunk_size(121, per, 10 * per / CHUNK_SHARE) == 10
    with memory_budget("100MB"):  # what --max-memory sets: a chunk of 1 MB items holds 25 of them
        assert chunk_size(10**6, 10**6) == 25
        assert len(list(pair_chunks(100, 10**6 // 24, 1))) == 4
    assert chunk_size(121, per, "1G") == 121 and chunk_size(121, 10**12, "1G") == 1
    with pytest.raises(InputError, match="max_memory"):
        chunk_size(121, per, 0)


def test_bad_pairs_are_named(model64):
    with pytest.raises(InputError, match=r"\[0, 11\)"):
        logits(model64, torch.tensor([[0, 11]]))
