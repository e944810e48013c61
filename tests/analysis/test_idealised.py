"""The idealised network against the closed form of docs/science.md 3.6, and its diagnosis."""

import math

import pytest
import torch

from mechinterp_modadd.analysis.base import all_pair_logits
from mechinterp_modadd.analysis.idealised import closed_form_logits, idealised_network, idealised_phases
from mechinterp_modadd.diagnose import diagnose
from mechinterp_modadd.errors import ConfigError

# the six claims of the diagnostics issue (other claims, e.g. majority_vote, have their own tests)
CLAIMS = ["single_frequency", "phase_alignment", "phase_symmetry", "frequency_diversification",
          "magnitude_homogeneity", "flawed_indicator"]


@pytest.mark.parametrize("p", [5, 7, 11, 13, 23])
@pytest.mark.parametrize("n", [3, 5, 6, 8])
def test_logits_equal_closed_form(p, n):
    alpha, beta = 0.8, 1.7
    m = idealised_network(p, n, alpha=alpha, beta=beta)
    got = all_pair_logits(m)
    want = closed_form_logits(p, n, vote_weight=alpha**2 * beta)
    assert float((got - want).abs().max()) < 1e-9


def test_worked_example_p23_x3_y7():
    p, n, a = 23, 5, 1.0
    unit = a * n / 2
    want = torch.full((p,), -1.0, dtype=torch.float64)
    want[10], want[6], want[14] = 10.5, 4.75, 4.75
    torch.testing.assert_close(closed_form_logits(p, n, a, x=3, y=7) / unit, want, atol=1e-12, rtol=0)
    m = idealised_network(p, n)
    with torch.no_grad():
        logits = m(torch.tensor([[3, 7]])).double()[0]
    assert float((logits / unit - want).abs().max()) < 1e-9


def test_offset_phases_also_match():
    m = idealised_network(13, 5, phases=idealised_phases(6, 5, "equal", offset=0.37))
    assert float((all_pair_logits(m) - closed_form_logits(13, 5)).abs().max()) < 1e-9


@pytest.mark.parametrize("n", [1, 2, 4])
def test_closed_form_fails_for_n_in_1_2_4(n):
    # the noise terms sum e^{2 i phi}, e^{4 i phi} do not cancel for N = 1, 2, 4 equally spaced phases
    p = 13
    diff = float((all_pair_logits(idealised_network(p, n)) - closed_form_logits(p, n)).abs().max())
    assert diff > 0.1


def test_random_phases_differ_from_closed_form_but_keep_the_peak():
    p, n = 23, 40
    m = idealised_network(p, n, phases="random", seed=1)
    logits = all_pair_logits(m)
    assert float((logits - closed_form_logits(p, n)).abs().max()) > 1e-3
    pairs = torch.cartesian_prod(torch.arange(p), torch.arange(p))
    acc = float((logits.argmax(1) == pairs.sum(1) % p).double().mean())
    assert acc == 1.0


def test_every_claim_holds_on_the_idealised_quad_network():
    dg = diagnose(idealised_network(23, 8), claims=CLAIMS)
    assert dg.holds_all, dg.to_text(details=True)
    assert abs(dg["flawed_indicator"].ghost_ratio - 0.5) < 1e-9
    assert dg.accuracy == 1.0 and dg["magnitude_homogeneity"].cv < 1e-12


def test_frequency_subsets_break_diversification_only():
    dg = diagnose(idealised_network(23, 8, freqs=[1, 2, 3]), claims=CLAIMS)
    assert not dg["frequency_diversification"].holds
    assert dg["single_frequency"].holds and dg["phase_alignment"].holds and dg["phase_symmetry"].holds


def test_builder_validates():
    with pytest.raises(ConfigError):
        idealised_network(13, 0)
    with pytest.raises(ConfigError):
        idealised_network(13, 3, freqs=[7])
    with pytest.raises(ConfigError):
        idealised_phases(2, 3, "spiral")
    assert math.isclose(float(idealised_phases(1, 4)[0, 1]), math.pi / 2)
