"""Phase alignment and phase symmetry (numbers, statistics, verdicts both ways) and the phase perturbations."""

import math
from functools import lru_cache

import pytest
import torch
from helpers import DATA, load_reference

from mechinterp_modadd import ModAddMLP, ModelConfig, load_checkpoint
from mechinterp_modadd.analysis.idealised import idealised_network
from mechinterp_modadd.analysis.perturb import (
    concentrate_phases,
    harmonic_numbers,
    misalign_phases,
    remove_frequencies,
    rotate_neurons,
)
from mechinterp_modadd.analysis.phases import (
    phase_alignment,
    phase_moments,
    phase_symmetry,
    random_phase_baseline,
    rayleigh_p_value,
)
from mechinterp_modadd.errors import ConfigError
from mechinterp_modadd.fourier import neuron_spectrum, wrap

OURS = DATA / "standard_p23" / "checkpoints"

# the reference checkpoints' README (also docs/science.md section 9): mean |D|, mean |sin D|,
# phase moments mean over k for iota = 1..4
README = {
    "standard_relu_p23": (0.085, 0.085, [0.102, 0.105, 0.037, 0.062]),
    "grokking_relu_p23": (0.045, 0.045, [0.061, 0.054, 0.019, 0.040]),
    "quad_random_p23": (0.086, 0.085, [0.117, 0.149, 0.151, 0.146]),
    "quad_single_freq_p23": (0.308, 0.197, [0.110, 0.131, 0.130, 0.155]),
}
TRAINED = ["standard_relu_p23", "grokking_relu_p23"]


@lru_cache(maxsize=16)
def ref_model(run, name="final.pth"):
    return load_reference(run, name)


@lru_cache(maxsize=4)
def ours(step=5000):
    return load_checkpoint(OURS / f"step_{step:06d}.safetensors").model


@pytest.mark.parametrize("run", sorted(README))
def test_numbers_match_reference_readme(run):
    s = neuron_spectrum(ref_model(run))
    abs_d, abs_sin, moments = README[run]
    a = phase_alignment(s)
    assert round(a.mean_abs_d, 3) == abs_d
    assert round(a.mean_abs_sin_d, 3) == abs_sin
    assert [round(v, 3) for v in phase_symmetry(s).mean_moments] == moments


# -------------------------------------------------------------------------------- statistics
def test_random_phase_baseline_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    for n in (10, 40):
        ph = 2 * math.pi * torch.rand(20000, n, generator=g, dtype=torch.float64)
        mc = float(torch.exp(1j * ph).mean(1).abs().mean())
        assert abs(mc / random_phase_baseline(n) - 1) < 0.04
    assert math.isnan(random_phase_baseline(0))
    t = random_phase_baseline(torch.tensor([0, 4]))
    assert math.isnan(float(t[0])) and abs(float(t[1]) - math.sqrt(math.pi) / 4) < 1e-15


def test_rayleigh_p_value_is_calibrated_and_detects_concentration():
    g = torch.Generator().manual_seed(1)
    n = 25
    ph = 2 * math.pi * torch.rand(4000, n, generator=g, dtype=torch.float64)
    r = torch.exp(1j * ph).mean(1).abs()
    pv = rayleigh_p_value(torch.full_like(r, n), r)
    assert 0.035 < float((pv < 0.05).double().mean()) < 0.065  # uniform phases: 5 % below 0.05
    conc = rayleigh_p_value(torch.tensor(25.0), torch.tensor(0.8))
    assert float(conc) < 1e-6
    assert math.isnan(float(rayleigh_p_value(torch.tensor(0.0), torch.tensor(0.0))))


def test_phase_moments_of_equally_spaced_phases():
    # N equally spaced phases: |m_iota| = 1 when N divides iota, else 0
    N = 4
    phi = 0.3 + 2 * math.pi * torch.arange(N, dtype=torch.float64) / N
    n, mom = phase_moments(phi, torch.zeros(N, dtype=torch.long), 2, (1, 2, 3, 4, 8))
    assert n.tolist() == [4.0, 0.0]
    torch.testing.assert_close(mom[0], torch.tensor([0, 0, 0, 1, 1], dtype=torch.float64), atol=1e-12, rtol=0)
    assert torch.isnan(mom[1]).all()


# ------------------------------------------------------------------------------- phase alignment
def test_alignment_holds_on_idealised_and_trained_fails_when_misaligned(small_model):
    ideal = phase_alignment(idealised_network(13, 5, phases="random"))
    assert ideal.holds and ideal.mean_abs_sin_d < 1e-9 and ideal.fraction_aligned == 1.0
    assert phase_alignment(small_model).holds
    broken = phase_alignment(misalign_phases(small_model, seed=3))
    assert not broken.holds and broken.mean_abs_sin_d > 0.45


def test_alignment_requires_d_near_zero_not_pi():
    # D = pi everywhere: |sin D| = 0 but no neuron is aligned
    m = idealised_network(11, 4)
    pi = torch.full((m.cfg.d_mlp,), math.pi, dtype=torch.float64)
    flipped = rotate_neurons(m, pi, rotate_input=False, output_factor=1.0)
    r = phase_alignment(flipped)
    assert r.mean_abs_sin_d < 1e-9 and r.fraction_aligned == 0.0 and not r.holds


@pytest.mark.parametrize("run", TRAINED + ["quad_single_freq_p23"])
def test_alignment_holds_on_trained_references(run):
    assert phase_alignment(ref_model(run)).holds


@pytest.mark.parametrize("run", sorted(README))
def test_alignment_fails_at_every_reference_step0(run):
    r = phase_alignment(ref_model(run, "0.pth"))
    assert not r.holds and r.mean_abs_sin_d > 0.5


def test_alignment_on_our_run():
    assert phase_alignment(ours()).holds
    assert not phase_alignment(ours(0)).holds


# -------------------------------------------------------------------------------- phase symmetry
def test_symmetry_of_idealised_networks():
    eq = phase_symmetry(idealised_network(13, 8))
    assert eq.holds and max(max(r["moments"]) for r in eq.per_frequency) < 1e-12
    assert [r["n"] for r in eq.per_frequency] == [8] * 6
    same = phase_symmetry(idealised_network(13, 8, phases=torch.zeros(6, 8)))  # every phase equal
    assert not same.holds and same.corrected_p < 1e-3


def test_symmetry_both_ways_on_small_trained(small_model):
    assert phase_symmetry(small_model).holds
    r = phase_symmetry(concentrate_phases(small_model, arc_width=0.5))
    assert not r.holds and min(r.mean_moments) > 0.8


@pytest.mark.parametrize("run", TRAINED)
def test_symmetry_both_ways_on_trained_references(run):
    m = ref_model(run)
    assert phase_symmetry(m).holds
    for width in (0.5, 1.0):
        assert not phase_symmetry(concentrate_phases(m, arc_width=width)).holds


def test_symmetry_on_our_run():
    assert phase_symmetry(ours()).holds
    assert not phase_symmetry(concentrate_phases(ours())).holds


def test_symmetry_json_shape(small_model):
    d = phase_symmetry(small_model).to_dict()
    assert len(d["per_frequency"]) == 6
    for r in d["per_frequency"]:
        assert set(r) >= {"k", "n", "moments"} and len(r["moments"]) == 4
    assert list(phase_symmetry(small_model).per_frequency_frame().columns[:6]) == ["k", "n", "m1", "m2", "m3", "m4"]


def test_symmetry_rejects_bad_arguments():
    m = idealised_network(7, 3)
    with pytest.raises(ConfigError):
        phase_symmetry(m, orders=[0])
    with pytest.raises(ConfigError):
        phase_symmetry(m, alpha=2.0)


# ----------------------------------------------------------------------------------- perturbations
def test_harmonic_numbers_fold_mod_p():
    H = harmonic_numbers(23)
    # k = 7: 2k = 14 -> -9, 3k = 21 -> -2, 4k = 28 -> 5, 5k = 35 -> 12 -> -11
    assert [int(H[6, q - 1]) for q in (7, 9, 2, 5, 11)] == [1, -2, -3, 4, -5]
    assert (H != 0).all()  # p prime: every q is a multiple of every k
    assert int((harmonic_numbers(23, harmonics=False) != 0).sum()) == 11


def test_integer_rotation_is_a_cyclic_translation(small_model):
    # delta = w_k* s with integer s: theta'[j] = theta[j + s], xi'[j] = xi[j + 2s], exactly
    m = small_model.double()
    p = m.cfg.p
    k = neuron_spectrum(m).frequency
    s = torch.arange(m.cfg.d_mlp) % p
    out = rotate_neurons(m, 2 * math.pi * k.double() * s.double() / p)
    theta, xi = m.mlp.W_in.detach(), m.mlp.W_out.detach().T
    j = torch.arange(p)
    want_theta = torch.stack([theta[i, (j + s[i]) % p] for i in range(len(s))])
    want_xi = torch.stack([xi[i, (j + 2 * s[i]) % p] for i in range(len(s))])
    torch.testing.assert_close(out.mlp.W_in.detach(), want_theta, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.mlp.W_out.detach().T, want_xi, atol=1e-12, rtol=0)


@pytest.mark.parametrize("harmonics", [True, False])
def test_concentrate_phases_keeps_everything_but_symmetry(small_model, harmonics):
    m = small_model.double()
    s0 = neuron_spectrum(m)
    c = concentrate_phases(m, arc_width=0.4, center=1.0, harmonics=harmonics)
    s1 = neuron_spectrum(c)
    assert torch.equal(s0.frequency, s1.frequency)
    torch.testing.assert_close(s1.alpha, s0.alpha, atol=1e-12, rtol=0)
    torch.testing.assert_close(s1.beta, s0.beta, atol=1e-12, rtol=0)
    torch.testing.assert_close(wrap(s1.d - s0.d), torch.zeros_like(s0.d), atol=1e-9, rtol=0)
    dev = wrap(s1.phi_star - 1.0).abs()
    assert float(dev.max()) <= 0.2 + 1e-9  # inside the arc [center - w/2, center + w/2]
    assert torch.equal(small_model.mlp.W_in, small_model.mlp.W_in)  # the input model is untouched


def test_full_circle_spreads_phases_evenly(small_model):
    c = concentrate_phases(small_model.double(), arc_width=2 * math.pi)
    r = phase_symmetry(c)
    assert r.holds and max(r.mean_moments) < 1e-9


def test_perturbations_validate_arguments(small_model):
    with pytest.raises(ConfigError):
        concentrate_phases(small_model, arc_width=7.0)
    with pytest.raises(ConfigError):
        remove_frequencies(small_model, [0])
    with pytest.raises(ConfigError, match="every neuron"):
        remove_frequencies(small_model, range(1, 7))
    with pytest.raises(ConfigError, match="one angle per neuron"):
        rotate_neurons(small_model, torch.zeros(3))


def test_perturbations_keep_activation_and_handle_learned_embeddings():
    m = ModAddMLP(ModelConfig(p=11, d_mlp=40, embedding="learned", d_model=16, activation="quad"), seed=0)
    theta0 = m.effective_W_in().detach().double()
    c = concentrate_phases(m, 0.5)
    assert c.cfg.embedding == "one_hot" and c.activation == "quad"
    r = remove_frequencies(m, [1])
    assert r.cfg.embedding == "learned" and r.activation == "quad"
    keep = neuron_spectrum(m).frequency != 1
    torch.testing.assert_close(r.effective_W_in().detach().double(), theta0[keep], atol=1e-5, rtol=0)
    mis = misalign_phases(m)
    torch.testing.assert_close(mis.effective_W_in().detach().double(), theta0, atol=1e-6, rtol=0)
