"""The ablation API: hook factories, the context manager, selectors and the batched fast path."""

from __future__ import annotations

import math

import pytest
import torch

from mechinterp_modadd.analysis.ablation import (
    ablated,
    ablation_hooks,
    activation_table,
    frequency_groups,
    half_circle_selection,
    mean_ablation_hook,
    neuron_mask,
    neuron_means,
    neurons_by_frequency,
    neurons_by_phase,
    swapped_activation,
    unordered_pairs,
    zero_ablation_hook,
)
from mechinterp_modadd.analysis.base import accuracy_and_loss, all_pair_logits
from mechinterp_modadd.analysis.idealised import idealised_network
from mechinterp_modadd.data import all_pairs
from mechinterp_modadd.errors import InputError
from mechinterp_modadd.fourier import neuron_spectrum
from mechinterp_modadd.model import ModAddMLP, ModelConfig


def _n_hooks(model) -> int:
    return sum(len(hp._forward_hooks) for hp in model.hook_dict.values())


@pytest.fixture(scope="module")
def model64(small_model):
    """The small trained model in float64 (a copy; the session fixture stays untouched)."""
    m = ModAddMLP(small_model.cfg, seed=None).double()
    m.load_state_dict({k: v.double() for k, v in small_model.state_dict().items()})
    return m


# ---------------------------------------------------------------------------------- masks
def test_neuron_mask_forms_and_errors():
    assert neuron_mask(5, [0, 3]).tolist() == [True, False, False, True, False]
    assert neuron_mask(5, 2).tolist() == [False, False, True, False, False]
    assert neuron_mask(5, torch.tensor([], dtype=torch.long)).sum() == 0
    b = torch.tensor([True, False, True, False, False])
    assert torch.equal(neuron_mask(5, b), b)
    with pytest.raises(InputError, match=r"\[0, 5\)"):
        neuron_mask(5, [5])
    with pytest.raises(InputError, match="shape"):
        neuron_mask(5, torch.ones(4, dtype=torch.bool))
    with pytest.raises(InputError, match="integers"):
        neuron_mask(5, torch.tensor([0.5]))


def test_bad_hook_point_and_mode(model64):
    with pytest.raises(InputError, match="hook point"):
        ablation_hooks(model64, [0], hook_point="hook_logits")
    with pytest.raises(InputError, match="mode"):
        ablation_hooks(model64, [0], mode="resample")


# ------------------------------------------------------------------------- hook lifecycle
def test_context_manager_ablates_and_removes_hooks(model64):
    tokens = all_pairs(model64.cfg.p)
    before = model64(tokens)
    state = {k: v.clone() for k, v in model64.state_dict().items()}
    with ablated(model64, [0, 1, 2]) as m:
        assert m is model64
        assert _n_hooks(model64) == 1
        _, cache = model64.run_with_cache(tokens, names_filter="mlp.hook_post")
        assert torch.all(cache["mlp.hook_post"][:, :3] == 0)
        inside = model64(tokens)
    assert not torch.allclose(inside, before)
    assert _n_hooks(model64) == 0
    assert torch.equal(model64(tokens), before)
    for k, v in model64.state_dict().items():  # weights never edited
        assert torch.equal(v, state[k])


def test_hooks_removed_after_exception(model64):
    tokens = all_pairs(model64.cfg.p)
    before = model64(tokens)
    with pytest.raises(RuntimeError, match="boom"):
        with ablated(model64, list(range(10)), mode="mean", hook_point=["pre", "post"]):
            assert _n_hooks(model64) == 2
            raise RuntimeError("boom")
    assert _n_hooks(model64) == 0
    assert torch.equal(model64(tokens), before)


def test_run_with_hooks_factories(model64):
    tokens = all_pairs(model64.cfg.p)
    d = model64.cfg.d_mlp
    logits = model64.run_with_hooks(tokens, fwd_hooks=[("mlp.hook_post", zero_ablation_hook(range(d), d))])
    assert torch.allclose(logits, torch.zeros_like(logits))  # no vote left
    assert _n_hooks(model64) == 0
    means = neuron_means(model64)
    logits = model64.run_with_hooks(tokens, fwd_hooks=[("mlp.hook_post", mean_ablation_hook(range(d), means))])
    assert torch.allclose(logits, logits[:1].expand_as(logits))  # every pair gets the same logits
    assert _n_hooks(model64) == 0


def test_swapped_activation_restored_even_after_exception(model64):
    tokens = all_pairs(model64.cfg.p)
    before = model64(tokens)
    with pytest.raises(ValueError):
        with swapped_activation(model64, "identity"):
            assert model64.activation == "identity"
            raise ValueError
    assert model64.activation == "relu" and model64.cfg.activation == "relu"
    assert torch.equal(model64(tokens), before)


# ------------------------------------------------------------- fast path == hook path
@pytest.mark.parametrize("mode", ["zero", "mean"])
@pytest.mark.parametrize("hook_point", ["mlp.hook_post", "mlp.hook_pre"])
def test_fast_path_equals_hooks(model64, mode, hook_point):
    p, d = model64.cfg.p, model64.cfg.d_mlp
    g = torch.Generator().manual_seed(1)
    keep = torch.rand(3, d, generator=g) < 0.5
    tab = activation_table(model64)
    fast = tab.logits(keep, mode, hook_point)  # [3, P, p]
    idx = tab.pairs[:, 0] * p + tab.pairs[:, 1]
    ev = tab.evaluate(keep, mode, hook_point)
    for b in range(3):
        with ablated(model64, ~keep[b], mode=mode, hook_point=hook_point):
            slow = all_pair_logits(model64)
        assert torch.allclose(fast[b], slow[idx], atol=1e-10, rtol=1e-10)
        acc, loss = accuracy_and_loss(slow, p)
        assert ev.accuracy[b].item() == pytest.approx(acc, abs=1e-12)
        assert ev.loss[b].item() == pytest.approx(loss, rel=1e-9)
        y = all_pairs(p).sum(1) % p
        correct = slow.gather(1, y[:, None])[:, 0]
        other = slow.scatter(1, y[:, None], float("-inf")).amax(1)
        assert ev.margin[b].item() == pytest.approx(float((correct - other).mean()), rel=1e-9)


def test_accuracy_only_metrics_and_group_logits(model64):
    tab = activation_table(model64)
    g = torch.Generator().manual_seed(2)
    keep = torch.rand(5, tab.d_mlp, generator=g) < 0.3
    full = tab.evaluate(keep)
    quick = tab.evaluate(keep, metrics="accuracy")
    assert torch.equal(full.accuracy, quick.accuracy)
    assert torch.isnan(quick.loss).all()
    groups = list(frequency_groups(model64).values())
    contrib, base = tab.group_logits(groups)
    for i, idx in enumerate(groups):
        assert torch.allclose(contrib[i] + base, tab.logits(neuron_mask(tab.d_mlp, idx))[0], atol=1e-10)


def test_unordered_pairs_give_all_pairs_metrics(model64):
    p = model64.cfg.p
    pairs, w = unordered_pairs(p)
    assert pairs.shape[0] == p * (p + 1) // 2 and w.sum() == p * p
    tab = activation_table(model64)
    ev = tab.evaluate(torch.ones(1, tab.d_mlp, dtype=torch.bool))
    acc, loss = accuracy_and_loss(all_pair_logits(model64), p)
    assert ev.accuracy.item() == pytest.approx(acc) and ev.loss.item() == pytest.approx(loss, rel=1e-9)
    sample = activation_table(model64, max_pairs=20, seed=3)
    assert sample.pairs.shape[0] == 20 and not sample.exact and tab.exact


def test_ties_count_as_wrong():
    m = ModAddMLP(ModelConfig(p=5, d_mlp=4), seed=None)  # all-zero weights: every logit ties
    tab = activation_table(m)
    ev = tab.evaluate(torch.ones(1, 4, dtype=torch.bool))
    assert ev.accuracy.item() == 0.0
    assert tab.evaluate(torch.ones(1, 4, dtype=torch.bool), metrics="accuracy").accuracy.item() == 0.0
    assert ev.loss.item() == pytest.approx(math.log(5))


# ------------------------------------------------------------------------------ selectors
def test_frequency_selectors_partition_neurons(small_model):
    sp = neuron_spectrum(small_model)
    groups = frequency_groups(sp)
    assert list(groups) == list(range(1, sp.K + 1))
    allidx = torch.cat(list(groups.values())).sort().values
    assert torch.equal(allidx, torch.arange(sp.d_mlp))
    k = int(sp.frequency[0])
    assert torch.equal(neurons_by_frequency(small_model, k), groups[k])
    both = neurons_by_frequency(sp, [1, 2])
    assert len(both) == len(groups[1]) + len(groups[2])
    with pytest.raises(InputError, match="1..6"):
        neurons_by_frequency(sp, [0])


def test_phase_selectors_on_idealised_network():
    # p = 11, 8 equally spaced phases per frequency: phi = 2 pi n / 8
    m = idealised_network(11, 8)
    sp = neuron_spectrum(m)
    start = -math.pi / 8  # halfway between two phases, so rounding cannot move one across the edge
    idx = neurons_by_phase(sp, start=start, width=math.pi, ks=[3])
    rel = torch.remainder(sp.phi_star[idx] - start, 2 * math.pi)
    assert len(idx) == 4 and torch.all(rel < math.pi)
    assert torch.all(sp.frequency[idx] == 3)
    assert len(neurons_by_phase(sp, start=start, width=math.pi)) == 4 * 5
    # order 2: 2 phi takes 4 distinct values twice; a half circle [-pi/4, 3pi/4) holds two of them
    assert len(neurons_by_phase(sp, start=-math.pi / 4, width=math.pi, order=2, ks=1)) == 4
    keep, chosen = half_circle_selection(sp, order=1)
    assert set(chosen) == set(range(1, 6))
    for k, idx in frequency_groups(sp).items():
        kept = keep[idx]
        assert int(kept.sum()) == 4
        ang = torch.remainder(sp.phi_star[idx][kept] - chosen[k], 2 * math.pi)
        assert torch.all(ang < math.pi)
        # the kept half is maximally one-sided: its mean resultant is far from 0
        assert abs(torch.exp(1j * sp.phi_star[idx][kept]).mean()) > 0.6
    with pytest.raises(InputError):
        neurons_by_phase(sp, 0.0, width=0.0)
