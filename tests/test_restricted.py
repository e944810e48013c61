"""Restricted and excluded loss (Nanda et al.): constructed logits, the idealised network, a trained run."""

from __future__ import annotations

import math

import pytest
import torch

from mechinterp_modadd.analysis.grokking import measures_of_model
from mechinterp_modadd.analysis.idealised import closed_form_logits, idealised_network
from mechinterp_modadd.analysis.restricted import (
    key_direction_part,
    key_frequencies,
    restricted_excluded_logits,
    restricted_loss,
)
from mechinterp_modadd.data import all_pairs, random_split
from mechinterp_modadd.errors import InputError
from mechinterp_modadd.fourier import neuron_spectrum
from mechinterp_modadd.model import ModAddMLP, ModelConfig


def _xyz(p: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pr = all_pairs(p).double()
    z = torch.arange(p, dtype=torch.float64)[None, :]
    return pr[:, :1], pr[:, 1:], z


@pytest.mark.parametrize("p, keys", [(11, [1, 3, 4]), (13, list(range(1, 7))), (7, [2])])
def test_pure_key_logits_restricted_equals_full_excluded_is_log_p(p, keys):
    x, y, z = _xyz(p)
    g = torch.Generator().manual_seed(p)
    amps, phases = torch.rand(len(keys), generator=g) * 5 + 1, torch.rand(len(keys), generator=g) * 6
    L = sum(float(a) * torch.cos(2 * math.pi * k * (x + y - z) / p + float(ph))
            for k, a, ph in zip(keys, amps, phases, strict=True))
    R, E = restricted_excluded_logits(L, p, keys)
    assert torch.allclose(R, L, atol=1e-10) and E.abs().max() < 1e-10
    res = restricted_loss(L, p, keys, random_split(p, 0.6, 0).train_mask)
    assert res.restricted_loss == pytest.approx(res.full_loss, rel=1e-12)
    assert res.excluded_loss == pytest.approx(math.log(p), rel=1e-12)
    # a key missing from the list: its term survives in E and is dropped from R
    if len(keys) > 1:
        R2, E2 = restricted_excluded_logits(L, p, keys[1:])
        assert E2.abs().max() > 0.5 and not torch.allclose(R2, L, atol=1e-3)


def test_non_key_directions_are_excluded_from_the_projection():
    p = 11
    x, y, z = _xyz(p)
    # functions of x alone, of (x - y), and of (2x - z): no x + y component
    w = 2 * math.pi / p
    L = torch.cos(w * 2 * x) + torch.sin(w * (x - y)) + torch.cos(w * (2 * x - z))
    L = L.expand(p * p, p)
    assert key_direction_part(L, p, range(1, 6)).abs().max() < 1e-12
    # the per-output constant is kept by R and not part of P
    c = torch.arange(p, dtype=torch.float64)[None, :].expand(p * p, p)
    R, E = restricted_excluded_logits(c, p, range(1, 6))
    assert torch.allclose(R, c) and torch.allclose(E, c)


@pytest.mark.parametrize("p, N", [(11, 6), (13, 5)])
def test_idealised_network_matches_its_closed_form(p, N):
    model = idealised_network(p, N)  # Quad, all K frequencies, equally spaced phases, a = 1
    L = torch.as_tensor(model(all_pairs(p))).double()
    assert torch.allclose(L, closed_form_logits(p, N), atol=1e-9)
    K = (p - 1) // 2
    assert key_frequencies(neuron_spectrum(model)) == list(range(1, K + 1))
    R, E = restricted_excluded_logits(L, p, range(1, K + 1))
    x, y, z = _xyz(p)
    ind = lambda m: ((m - z) % p == 0).double()  # noqa: E731
    aN2 = N / 2
    assert torch.allclose(R, aN2 * ((p / 2) * ind(x + y) - 0.5), atol=1e-9)  # no ghosts in R
    assert torch.allclose(E, aN2 * (-0.5 + (p / 4) * (ind(2 * x) + ind(2 * y))), atol=1e-9)  # ghosts in E
    res = restricted_loss(L, p, range(1, K + 1))
    assert res.restricted_loss == pytest.approx(math.log1p((p - 1) * math.exp(-N * p / 4)), rel=1e-9)
    diag = (x == y).reshape(-1)
    ce_off = math.log(p - 2 + 2 * math.exp(N * p / 8))
    ce_diag = math.log1p((p - 1) * math.exp(-N * p / 4))
    expected = (ce_off * int((~diag).sum()) + ce_diag * int(diag.sum())) / (p * p)
    assert res.excluded_loss == pytest.approx(expected, rel=1e-9)
    assert res.excluded_loss > math.log(p) > res.restricted_loss and res.holds


def test_untrained_network_fails_and_measures_have_the_columns():
    p = 11
    model = ModAddMLP(ModelConfig(p=p, d_mlp=64), seed=0)
    L = torch.as_tensor(model(all_pairs(p))).double()
    res = restricted_loss(L, p, key_frequencies(neuron_spectrum(model)))
    assert not res.holds  # random init: the key directions predict nothing
    m = measures_of_model(model, random_split(p, 0.75, 0), keys=[1, 2])
    assert math.isfinite(m["restricted_loss"]) and math.isfinite(m["excluded_loss"])


def test_bad_inputs():
    L = torch.zeros(49, 7)
    with pytest.raises(InputError, match="1..3"):
        key_direction_part(L, 7, [4])
    with pytest.raises(InputError, match="shape"):
        key_direction_part(torch.zeros(48, 7), 7, [1])
    with pytest.raises(InputError, match="train_mask"):
        restricted_loss(L, 7, [1], torch.ones(49))
