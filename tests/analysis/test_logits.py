"""The flawed indicator: ghost ratio exact on the idealised network, README numbers, verdicts both ways."""

from functools import lru_cache

import pytest
import torch
from helpers import DATA, load_reference

from mechinterp_modadd import load_checkpoint
from mechinterp_modadd.analysis.base import all_pair_logits
from mechinterp_modadd.analysis.idealised import closed_form_logits, idealised_network
from mechinterp_modadd.analysis.logits import flawed_indicator, ghost_parts
from mechinterp_modadd.analysis.perturb import concentrate_phases, misalign_phases
from mechinterp_modadd.errors import InputError

OURS = DATA / "standard_p23" / "checkpoints"
README_GHOST = {"standard_relu_p23": 0.145, "grokking_relu_p23": 0.103, "quad_random_p23": 0.358,
                "quad_single_freq_p23": 0.362}


@lru_cache(maxsize=16)
def ref_model(run, name="final.pth"):
    return load_reference(run, name)


def test_ghost_ratio_is_one_half_for_the_quad_closed_form():
    for p, n in ((11, 3), (13, 8), (23, 5)):
        r = flawed_indicator(idealised_network(p, n))
        assert abs(r.ghost_ratio - 0.5) < 1e-9 and abs(r.ratio_of_means - 0.5) < 1e-9
        # centred closed form (units a N / 2): correct p/2 - c, ghosts p/4 - c, others -c with c = 1/2 + ... ;
        # differences are exact: correct - other = p/2, ghost - other = p/4
        unit = n / 2
        assert abs((r.mean_correct - r.mean_other) / unit - p / 2) < 1e-9
        assert abs((r.mean_ghost - r.mean_other) / unit - p / 4) < 1e-9
        assert r.holds and r.fraction_correct_above_ghosts == 1.0 and r.n_pairs == p * p - p


def test_logits_or_model_input_agree():
    m = idealised_network(13, 5)
    a = flawed_indicator(m).to_dict()
    b = flawed_indicator(all_pair_logits(m), 13).to_dict()
    assert a == b
    torch.testing.assert_close(ghost_parts(closed_form_logits(13, 5), 13)["correct"],
                               ghost_parts(all_pair_logits(m), 13)["correct"], atol=1e-9, rtol=0)


def test_eligible_pairs_are_those_with_three_distinct_classes():
    p = 7
    g = ghost_parts(torch.zeros(p * p, p, dtype=torch.float64), p)
    assert int(g["eligible"].sum()) == p * p - p  # x != y (p odd)
    assert not bool(g["eligible"][3 * p + 3])


@pytest.mark.parametrize("run", sorted(README_GHOST))
def test_ghost_ratio_matches_reference_readme_and_holds(run):
    r = flawed_indicator(ref_model(run))
    assert round(r.ghost_ratio, 3) == README_GHOST[run]
    assert r.holds


@pytest.mark.parametrize("run", sorted(README_GHOST))
def test_flawed_indicator_fails_at_every_reference_step0(run):
    r = flawed_indicator(ref_model(run, "0.pth"))
    assert not r.holds and r.fraction_correct_above_ghosts < 0.5


def test_relu_ghosts_are_lower_than_quad():
    assert flawed_indicator(ref_model("standard_relu_p23")).ghost_ratio < 0.25 < \
        flawed_indicator(ref_model("quad_single_freq_p23")).ghost_ratio


def test_both_ways_on_small_trained(small_model):
    assert flawed_indicator(small_model).holds
    assert not flawed_indicator(concentrate_phases(small_model)).holds
    assert not flawed_indicator(misalign_phases(small_model)).holds


def test_our_run():
    r = flawed_indicator(load_checkpoint(OURS / "step_005000.safetensors").model)
    assert r.holds and 0.1 < r.ghost_ratio < 0.3
    assert not flawed_indicator(load_checkpoint(OURS / "step_000000.safetensors").model).holds


def test_input_errors():
    with pytest.raises(InputError, match="needs p"):
        flawed_indicator(torch.zeros(49, 7))
    with pytest.raises(InputError, match=r"\[49, 7\]"):
        flawed_indicator(torch.zeros(10, 7), 7)
    with pytest.raises(InputError, match="p >= 5"):
        ghost_parts(torch.zeros(9, 3), 3)
