"""Single frequency, frequency diversification and magnitude homogeneity: numbers and verdicts both ways."""

import math
from functools import lru_cache

import pytest
import torch
from helpers import DATA, load_reference

from mechinterp_modadd import ModAddMLP, ModelConfig, load_checkpoint
from mechinterp_modadd.analysis.features import (
    coefficient_of_variation,
    frequency_diversification,
    magnitude_homogeneity,
    single_frequency,
    spectrum_of,
)
from mechinterp_modadd.analysis.idealised import idealised_network
from mechinterp_modadd.analysis.perturb import remove_frequencies, rescale_votes
from mechinterp_modadd.errors import ConfigError
from mechinterp_modadd.fourier import neuron_spectrum

OURS = DATA / "standard_p23" / "checkpoints"

# the reference checkpoints' README (also docs/science.md section 9), measured independently on the final checkpoints
README = {
    "standard_relu_p23": dict(counts=[43, 42, 54, 43, 35, 59, 55, 41, 46, 53, 41], share=0.812, family=0.909,
                              ipr=0.721, cv=0.27),
    "grokking_relu_p23": dict(counts=[48, 46, 52, 47, 39, 45, 48, 49, 50, 49, 39], share=0.892, family=0.964,
                              ipr=0.850, cv=0.12),
    "quad_random_p23": dict(counts=[39, 40, 47, 43, 46, 54, 50, 47, 50, 45, 51], share=0.509, family=0.708,
                            ipr=0.334, cv=6.63),
    "quad_single_freq_p23": dict(counts=[47, 47, 47, 46, 46, 47, 46, 46, 46, 47, 47], share=0.994, family=1.000,
                                 ipr=0.994, cv=2.18),
}
RANDOM_INIT_STEP0 = ["standard_relu_p23", "grokking_relu_p23", "quad_random_p23"]


@lru_cache(maxsize=16)
def ref_spectrum(run, name="final.pth"):
    return neuron_spectrum(load_reference(run, name))


@lru_cache(maxsize=4)
def ours(step=5000):
    return load_checkpoint(OURS / f"step_{step:06d}.safetensors").model


@pytest.mark.parametrize("run", sorted(README))
def test_numbers_match_reference_readme(run):
    s = ref_spectrum(run)
    want = README[run]
    assert frequency_diversification(s).counts == want["counts"]
    sf = single_frequency(s)
    assert round(sf.mean_share, 3) == want["share"]
    assert round(sf.mean_family_share, 3) == want["family"]
    assert round(sf.mean_ipr, 3) == want["ipr"]
    assert round(magnitude_homogeneity(s).cv, 2) == want["cv"]


# ------------------------------------------------------------------------------ single frequency
def test_single_frequency_holds_on_idealised_and_fails_on_random_init():
    ideal = single_frequency(idealised_network(13, 5))
    assert ideal.holds and ideal.fraction_single == 1.0 and abs(ideal.mean_ipr - 1) < 1e-12
    init = single_frequency(ModAddMLP(ModelConfig(p=13, d_mlp=128), seed=0))
    assert not init.holds and init.fraction_single < 0.2


def test_single_frequency_holds_on_small_trained(small_model):
    r = single_frequency(small_model)
    assert r.holds and r.fraction_single > 0.9


@pytest.mark.parametrize("run", ["standard_relu_p23", "grokking_relu_p23", "quad_single_freq_p23"])
def test_single_frequency_holds_on_trained_references(run):
    r = single_frequency(ref_spectrum(run))
    assert r.holds, r.details()


def test_single_frequency_on_quad_random_fails_honestly():
    r = single_frequency(ref_spectrum("quad_random_p23"))
    assert not r.holds and r.fraction_single < 0.4


def test_single_frequency_on_our_run():
    assert single_frequency(ours()).holds
    assert not single_frequency(ours(0)).holds


@pytest.mark.parametrize("run", RANDOM_INIT_STEP0)
def test_single_frequency_fails_at_step0_random_init(run):
    r = single_frequency(ref_spectrum(run, "0.pth"))
    assert not r.holds and r.fraction_single < 0.05


def test_single_frequency_step0_of_single_freq_init_is_single_by_construction():
    # that init plants one frequency per neuron; the claim is about the weights, so it holds (documented)
    r = single_frequency(ref_spectrum("quad_single_freq_p23", "0.pth"))
    assert r.holds and r.mean_share > 0.999


def test_family_share_is_needed_for_relu():
    # the README's point: ReLU leaks into harmonics, so purity 0.9 on k* alone calls most neurons impure
    s = ref_spectrum("standard_relu_p23")
    assert float((s.share >= 0.9).double().mean()) < 0.25
    assert float((s.family_share() >= 0.9).double().mean()) > 0.7


def test_single_frequency_rejects_bad_thresholds_and_inputs():
    with pytest.raises(ConfigError):
        single_frequency(idealised_network(7, 3), family_threshold=1.5)
    with pytest.raises(ConfigError, match="ModAddMLP or a NeuronSpectrum"):
        spectrum_of("model.pth")


# ----------------------------------------------------------------------- frequency diversification
def test_diversification_holds_on_idealised_and_fails_without_frequencies():
    r = frequency_diversification(idealised_network(13, 4))
    assert r.holds and r.counts == [4] * 6 and r.balance == 1.0 and abs(r.entropy - 1) < 1e-12
    sub = frequency_diversification(idealised_network(13, 4, freqs=[1, 2, 3]))
    assert not sub.holds and sub.missing == [4, 5, 6] and sub.coverage == 0.5


def test_diversification_both_ways_on_small_trained(small_model):
    assert frequency_diversification(small_model).holds
    broken = remove_frequencies(small_model, [1, 4])
    r = frequency_diversification(broken)
    assert not r.holds and r.missing == [1, 4] and r.counts[0] == 0
    assert broken.cfg.d_mlp == small_model.cfg.d_mlp - sum(frequency_diversification(small_model).counts[k - 1]
                                                           for k in (1, 4))


@pytest.mark.parametrize("run", sorted(README))
def test_diversification_holds_on_reference_finals_and_fails_after_removal(run):
    model = load_reference(run)
    assert frequency_diversification(model).holds
    assert not frequency_diversification(remove_frequencies(model, [2, 7, 11])).holds


def test_diversification_on_our_run():
    assert frequency_diversification(ours()).holds
    assert not frequency_diversification(remove_frequencies(ours(), [3])).holds


def test_vote_share_sums_to_one(small_model):
    r = frequency_diversification(small_model)
    assert abs(sum(r.vote_share) - 1) < 1e-12 and len(r.vote_share) == 6


# -------------------------------------------------------------------------- magnitude homogeneity
def test_coefficient_of_variation():
    assert coefficient_of_variation(torch.tensor([2.0, 2.0, 2.0])) == 0.0
    v = torch.tensor([1.0, 3.0], dtype=torch.float64)
    assert abs(coefficient_of_variation(v) - 0.5) < 1e-15
    assert coefficient_of_variation(torch.tensor([-1.0, 1.0])) == math.inf


def test_homogeneity_holds_on_idealised_and_fails_when_votes_rescaled():
    m = idealised_network(11, 4, alpha=0.7, beta=1.3)
    r = magnitude_homogeneity(m)
    assert r.holds and r.cv < 1e-12 and abs(r.mean_vote - 0.7**2 * 1.3) < 1e-12
    broken = magnitude_homogeneity(rescale_votes(m, log_sd=1.0))
    assert not broken.holds and broken.cv > 0.8


def test_homogeneity_both_ways_on_small_trained(small_model):
    assert magnitude_homogeneity(small_model).holds
    assert not magnitude_homogeneity(rescale_votes(small_model)).holds


@pytest.mark.parametrize("run", ["standard_relu_p23", "grokking_relu_p23"])
def test_homogeneity_holds_on_trained_relu_references(run):
    assert magnitude_homogeneity(ref_spectrum(run)).holds


@pytest.mark.parametrize("run", ["quad_random_p23", "quad_single_freq_p23"])
def test_homogeneity_fails_honestly_where_few_neurons_carry_the_function(run):
    r = magnitude_homogeneity(ref_spectrum(run))
    assert not r.holds and r.cv > 2


@pytest.mark.parametrize("run", sorted(README))
def test_homogeneity_fails_at_every_reference_step0(run):
    assert not magnitude_homogeneity(ref_spectrum(run, "0.pth")).holds


def test_homogeneity_single_freq_init_fails_through_unaligned_votes():
    # equal magnitudes by construction (cv = 0) but random D: the aligned votes are not homogeneous
    r = magnitude_homogeneity(ref_spectrum("quad_single_freq_p23", "0.pth"))
    assert r.cv < 1e-3 and r.cv_aligned > 5 and not r.holds


def test_homogeneity_on_our_run():
    assert magnitude_homogeneity(ours()).holds
    assert not magnitude_homogeneity(ours(0)).holds


def test_spectrum_and_model_give_the_same_result(small_model):
    a = magnitude_homogeneity(small_model).to_dict()
    b = magnitude_homogeneity(spectrum_of(neuron_spectrum(small_model))).to_dict()
    assert a == b
