import math

import pytest
import torch

from mechinterp_modadd.fourier import (
    basis_labels,
    fourier_basis,
    frequency_coefficients,
    harmonic_family,
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
