import math

import pytest
import torch

from mechinterp_modadd.errors import ConfigError
from mechinterp_modadd.fourier import (
    basis_labels,
    fourier_basis,
    frequency_coefficients,
    harmonic_family,
    neuron_spectrum,
    spectrum_from_weights,
    wrap,
)


@pytest.mark.parametrize("p", [5, 7, 8, 11, 13, 23, 97])
def test_basis_is_orthonormal_and_ordered(p):
    B = fourier_basis(p)
    torch.testing.assert_close(B @ B.T, torch.eye(p, dtype=torch.float64), atol=1e-12, rtol=0)
    assert len(basis_labels(p)) == p
    j = torch.arange(p, dtype=torch.float64)
    torch.testing.assert_close(B[0], torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64))
    c1 = torch.cos(2 * math.pi * j / p)
    torch.testing.assert_close(B[1], c1 / c1.norm())
    s1 = torch.sin(2 * math.pi * j / p)
    torch.testing.assert_close(B[2], s1 / s1.norm())


@pytest.mark.parametrize("p", [7, 11, 13, 23])
def test_parseval(p):
    w = torch.randn(10, p, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    dc, c, s = frequency_coefficients(w)
    torch.testing.assert_close(dc**2 + (c**2 + s**2).sum(-1), (w**2).sum(-1))


@pytest.mark.parametrize("p", [7, 11, 13, 23, 31])
def test_planted_neuron_recovered_exactly(p):
    K = (p - 1) // 2
    j = torch.arange(p, dtype=torch.float64)
    g = torch.Generator().manual_seed(p)
    M = 3 * K
    k = torch.arange(M) % K + 1
    a = 0.1 + torch.rand(M, generator=g, dtype=torch.float64)
    b = 0.1 + torch.rand(M, generator=g, dtype=torch.float64)
    phi = (torch.rand(M, generator=g, dtype=torch.float64) * 2 - 1) * math.pi
    psi = wrap(2 * phi)
    w = 2 * math.pi * k[:, None].double() * j / p
    theta = a[:, None] * torch.cos(w + phi[:, None]) + 0.3  # DC offset must not matter
    xi = b[:, None] * torch.cos(w + psi[:, None])
    s = spectrum_from_weights(theta, xi)
    assert torch.equal(s.frequency, k)
    torch.testing.assert_close(s.alpha_star, a)
    torch.testing.assert_close(s.beta_star, b)
    torch.testing.assert_close(wrap(s.phi_star - phi), torch.zeros(M, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(s.d, torch.zeros(M, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(s.share, torch.ones(M, dtype=torch.float64))
    torch.testing.assert_close(s.ipr, torch.ones(M, dtype=torch.float64))


def test_ipr_of_spread_energy_is_one_over_K():
    p, K = 13, 6
    j = torch.arange(p, dtype=torch.float64)
    theta = sum(torch.cos(2 * math.pi * k * j / p) for k in range(1, K + 1))[None]
    s = spectrum_from_weights(theta, theta)
    assert abs(float(s.ipr_in[0]) - 1 / K) < 1e-12
    assert abs(float(s.share[0]) - 1 / K) < 1e-12


def test_harmonic_family_folds_mod_p():
    fam = harmonic_family(23)
    # k = 7: 2k = 14 -> 9, 3k = 21 -> 2, 4k = 28 -> 5, 5k = 35 -> 12 -> 11
    assert sorted((fam[6].nonzero()[:, 0] + 1).tolist()) == [2, 5, 7, 9, 11]


def test_wrap_range():
    v = torch.linspace(-20, 20, 1001)
    w = wrap(v)
    assert float(w.min()) >= -math.pi and float(w.max()) < math.pi
    torch.testing.assert_close(torch.cos(w), torch.cos(v), atol=1e-5, rtol=0)
    assert float(wrap(math.pi)) == pytest.approx(-math.pi)


# ------------------------------------------------------------------ the authors' coefficient rule
def _cos_rows(p, ks, phases, amps):
    j = torch.arange(p, dtype=torch.float64)
    return torch.stack([a * torch.cos(2 * math.pi * k * j / p + ph) for k, ph, a in zip(ks, phases, amps, strict=True)])


def test_coefficients_match_the_basis_projection():
    g = torch.Generator().manual_seed(0)
    theta, xi = torch.randn(6, 13, generator=g, dtype=torch.float64), torch.randn(6, 13, generator=g,
                                                                                    dtype=torch.float64)
    s = spectrum_from_weights(theta, xi)
    B = fourier_basis(13)
    torch.testing.assert_close(s.coefficients_in, theta @ B.T)
    torch.testing.assert_close(s.coefficients_out, xi @ B.T)


def test_coefficient_rule_can_pick_dc_and_differs_from_energy():
    p = 11
    # neuron 0: energy at k = 3 split evenly between cos and sin (phase pi/4), a slightly larger
    # single coefficient at k = 5 -> energy rule says 3, coefficient rule says 5;
    # neuron 1: a large constant -> coefficient rule says 0 (DC), energy rule a frequency
    theta = _cos_rows(p, [3, 2], [math.pi / 4, 0.0], [1.0, 0.1]) + _cos_rows(p, [5, 5], [0.0, 0.0], [0.8, 0.05])
    theta[1] += 5.0
    s = spectrum_from_weights(theta, theta, rule="coefficient")
    e = s.with_rule("energy")
    assert e.frequency.tolist() == [3, 2] and s.frequency.tolist() == [5, 0]
    assert s.counts(include_dc=True).tolist() == [1, 0, 0, 0, 0, 1] and s.counts().tolist() == [0, 0, 0, 0, 1]
    assert math.isnan(float(s.alpha_star[1])) and math.isnan(float(s.d[1]))
    assert not math.isnan(float(e.alpha_star[1]))
    with pytest.raises(ConfigError, match="frequency rule"):
        s.with_rule("loudest")


@pytest.mark.parametrize("phase", [0.0, 0.3, math.pi / 4, 1.2])
def test_coefficient_ipr_depends_on_phase_frequency_ipr_does_not(phase):
    p = 13
    theta = _cos_rows(p, [4], [phase], [1.0])
    s = spectrum_from_weights(theta, theta)
    expected = math.cos(phase) ** 4 + math.sin(phase) ** 4
    assert float(s.coefficient_ipr_in[0]) == pytest.approx(expected, abs=1e-12)
    assert float(s.ipr_in[0]) == pytest.approx(1.0, abs=1e-12)
    # the constant term counts as one coefficient: a constant vector scores 1, a mix of constant and
    # one cosine coefficient of equal size scores 1/2
    const = torch.ones(1, p, dtype=torch.float64)
    assert float(spectrum_from_weights(const, const).coefficient_ipr_in[0]) == pytest.approx(1.0)
    mix = const / math.sqrt(p) + _cos_rows(p, [2], [0.0], [math.sqrt(2 / p)])
    assert float(spectrum_from_weights(mix, mix).coefficient_ipr_in[0]) == pytest.approx(0.5)


def test_coefficient_rule_reproduces_the_authors_counts():
    from helpers import load_reference

    model = load_reference("standard_relu_p23")
    coef = neuron_spectrum(model, rule="coefficient")
    assert coef.counts().tolist() == [43, 42, 54, 43, 35, 61, 56, 41, 46, 50, 41]
    assert int(coef.counts(include_dc=True)[0]) == 0
    # ours differs on k = 6, 7, 10 (see the NeuronSpectrum docstring)
    assert neuron_spectrum(model).counts().tolist() == [43, 42, 54, 43, 35, 59, 55, 41, 46, 53, 41]
