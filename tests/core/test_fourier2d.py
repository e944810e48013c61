"""2D Fourier analysis: against torch.fft.fft2 (1e-10) and on activations with known answers."""

import math

import pytest
import torch

from mechinterp_modadd.errors import InputError
from mechinterp_modadd.fourier import fourier_basis
from mechinterp_modadd.fourier2d import fourier2d, frequency_mask, frequency_terms, term_labels

P = 13
K = (P - 1) // 2


def grid(p=P):
    x, y = torch.meshgrid(torch.arange(p, dtype=torch.float64), torch.arange(p, dtype=torch.float64), indexing="ij")
    return x, y


def w(k, p=P):
    return 2 * math.pi * k / p


def random_tables(n=5, p=P, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p * p, n, generator=g, dtype=torch.float64)


def test_parseval_and_inverse():
    a = random_tables()
    f = fourier2d(a)
    assert torch.allclose((f.coef**2).sum((1, 2)), (a**2).sum(0), atol=1e-10)
    rebuilt = f.project(range(1, K + 1), constant=True)
    # with every frequency and the constant, only the cross terms k != k' are missing
    cross = a - rebuilt
    assert torch.allclose(a.mean(0), rebuilt.mean(0), atol=1e-12)
    B = fourier_basis(P)
    full = torch.einsum("ax,nab,by->nxy", B, f.coef, B)
    assert torch.allclose(full.reshape(a.shape[1], -1).T, a, atol=1e-10)
    assert cross.abs().max() > 1e-3  # random tables have cross-frequency terms


def test_against_fft2():
    a = random_tables(n=4, seed=1)
    f = fourier2d(a)
    F = torch.fft.fft2(a.T.reshape(-1, P, P))  # [n, p, p], F[k1, k2]
    sq = f.coef**2
    for k1 in range(1, K + 1):
        # (k1, 0) block: two coefficients
        e = sq[:, 2 * k1 - 1, 0] + sq[:, 2 * k1, 0]
        assert torch.allclose(e, 2 * F[:, k1, 0].abs() ** 2 / P**2, atol=1e-10)
        e = sq[:, 0, 2 * k1 - 1] + sq[:, 0, 2 * k1]
        assert torch.allclose(e, 2 * F[:, 0, k1].abs() ** 2 / P**2, atol=1e-10)
        for k2 in range(1, K + 1):
            blk = sq[:, 2 * k1 - 1:2 * k1 + 1, 2 * k2 - 1:2 * k2 + 1].sum((1, 2))
            want = 2 * (F[:, k1, k2].abs() ** 2 + F[:, k1, -k2].abs() ** 2) / P**2
            assert torch.allclose(blk, want, atol=1e-10)
        # the sum and difference planes
        sd = f.sum_difference(k1)
        assert torch.allclose(sd[:, 0] ** 2 + sd[:, 1] ** 2, 2 * F[:, k1, k1].abs() ** 2 / P**2, atol=1e-10)
        assert torch.allclose(sd[:, 2] ** 2 + sd[:, 3] ** 2, 2 * F[:, k1, -k1].abs() ** 2 / P**2, atol=1e-10)
        # frequency energy = linear + same-frequency products
        e_k = (2 * (F[:, k1, 0].abs() ** 2 + F[:, 0, k1].abs() ** 2 + F[:, k1, k1].abs() ** 2
                    + F[:, k1, -k1].abs() ** 2) / P**2)
        assert torch.allclose(f.energy[:, k1 - 1], e_k, atol=1e-10)
    var = (a.T.reshape(-1, P, P) - a.T.reshape(-1, P, P).mean((1, 2), keepdim=True)).pow(2).sum((1, 2))
    assert torch.allclose(f.variance, var, atol=1e-10)


def test_known_tables():
    x, y = grid()
    cols = [
        torch.cos(w(3) * (x + y) + 0.4),                                   # sum wave at k = 3
        torch.cos(w(2) * x + 1.0) + torch.cos(w(2) * y - 0.3),             # linear at k = 2
        (torch.cos(w(5) * x + 0.2) + torch.cos(w(5) * y + 0.9)) ** 2,      # quad neuron at k = 5
        torch.cos(w(1) * (x - y)),                                         # difference wave at k = 1
        torch.cos(w(4) * x) + 0.5 * torch.cos(w(6) * y),                   # two frequencies: 0.8 / 0.2
        torch.full_like(x, 2.0),                                           # constant: nothing to explain
    ]
    a = torch.stack([c.reshape(-1) for c in cols], 1)
    f = fourier2d(a)
    assert f.best_frequency[:4].tolist() == [3, 2, 5, 1]
    assert torch.allclose(f.best_fraction[[0, 1, 3]], torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert f.fraction[4, 3].item() == pytest.approx(0.8, abs=1e-12)
    assert f.fraction[4, 5].item() == pytest.approx(0.2, abs=1e-12)
    assert f.fraction[5].abs().max().item() == 0.0 and f.variance[5].item() == pytest.approx(0.0, abs=1e-10)
    # sum wave: all its energy on the sum plane; difference wave: on the difference plane
    sd = f.sum_difference(3)[0]
    assert (sd[0] ** 2 + sd[1] ** 2).item() == pytest.approx(float(f.variance[0]), rel=1e-12)
    sd = f.sum_difference(1)[3]
    assert (sd[2] ** 2 + sd[3] ** 2).item() == pytest.approx(float(f.variance[3]), rel=1e-12)
    # linear neuron: product part zero, linear part one
    assert f.linear_fraction[1, 1].item() == pytest.approx(1.0, abs=1e-12)
    assert f.product_fraction[1, 1].item() == pytest.approx(0.0, abs=1e-12)
    # quad neuron: (c_x + c_y)^2 = c_x^2 + c_y^2 + 2 c_x c_y; c^2 = 1/2 + cos(2 .)/2, so the
    # frequency-5 part is 2 c_x c_y (variance 2^2 * p^2 / 4) and 10 -> 3 holds the squares
    # (two cos(2 .)/2 terms, variance 2 * p^2 / 8): fraction 1 / (1 + 1/4) = 0.8
    assert f.fraction[2, 4].item() == pytest.approx(0.8, abs=1e-12)
    assert f.fraction[2, 2].item() == pytest.approx(0.2, abs=1e-12)


def test_random_tables_spread():
    f = fourier2d(random_tables(n=200, seed=3))
    # a random table spreads its variance: about 8 / (p^2 - 1) per frequency
    assert abs(float(f.fraction.mean()) - 8 / (P * P - 1)) < 0.01
    assert float(f.best_fraction.max()) < 0.3


def test_key_frequencies_and_projection():
    x, y = grid()
    cols = []
    for j in range(12):
        k = 2 if j < 8 else 5
        cols.append((1.0 + j) * torch.cos(w(k) * (x + y) + 0.3 * j).reshape(-1))
    a = torch.stack(cols, 1)
    f = fourier2d(a)
    assert f.key_frequencies_top(2) == [5, 2]  # energies 446 against 204 (times p^2 / 2)
    assert f.key_frequencies_top(1) == [5]
    assert f.key_frequencies_by_vote() == [2, 5]
    share = f.vote_share()
    assert share.sum().item() == pytest.approx(1.0)
    assert f.key_frequencies_by_vote(min_share=0.5) == [5]  # share of k = 5: 446 / 650
    proj = f.project([2])
    assert torch.allclose(proj[:, :8], a[:, :8], atol=1e-10)
    assert proj[:, 8:].abs().max() < 1e-10
    with pytest.raises(InputError):
        f.key_frequencies_top(K + 1)
    with pytest.raises(InputError):
        f.vote_share(torch.ones(3))
    # no weight at all: every frequency is key
    assert fourier2d(torch.zeros(P * P, 2, dtype=torch.float64)).key_frequencies_by_vote() == list(range(1, K + 1))


def test_summary_and_labels():
    f = fourier2d(random_tables(n=11, seed=4))
    s = f.summary()
    b = f.best_fraction
    assert s["median"] == pytest.approx(float(b.median()))
    assert s["p10"] <= s["median"]
    lab = term_labels(P)
    assert lab[0][0] == "Const" and lab[1][0] == "cos 1 x" and lab[0][2] == "sin 1 y"
    assert lab[3][4] == "cos 2 x * sin 2 y"
    assert len(frequency_terms(P, 1)) == 8
    assert int(frequency_mask(P, [1, 2]).sum()) == 16
    assert torch.equal(f.grid(2, energy=True), f.coef[2] ** 2)


def test_bad_input():
    with pytest.raises(InputError, match="p\\*p rows"):
        fourier2d(torch.zeros(10, 2))
    with pytest.raises(InputError, match="even"):
        fourier2d(torch.zeros(16, 2))
    with pytest.raises(InputError, match="frequency k"):
        frequency_terms(P, 0)
    with pytest.raises(InputError, match="shape"):
        fourier2d(torch.zeros(P * P, 2, 2))


def test_figures_render_the_decomposition():
    from mechinterp_modadd.plots.fourier2d import (
        activation_heatmap,
        coefficient_heatmap,
        fraction_histogram,
        frequency_energy_bars,
    )

    a = random_tables(n=3)
    f = fourier2d(a)
    fig = coefficient_heatmap(f, 1)
    assert fig.data[0].z.shape == (P, P) and abs(fig.data[0].z - f.coef[1].numpy()).max() == 0
    assert coefficient_heatmap(f, 1, energy=True).data[0].z.min() >= 0
    assert activation_heatmap(a, P, 2).data[0].z.shape == (P, P)
    h = fraction_histogram({"a": f, "b": f})
    assert len(h.data) == 2 and "median" in h.data[0].name
    bars = frequency_energy_bars(f, key=[2])
    assert list(bars.data[0].x) == list(range(1, K + 1)) and bars.data[0].marker.color[1] == "#d62728"


def test_shipped_standard_run_numbers():
    """The 2D Fourier fractions `modadd diagnose` prints for the shipped checkpoint (docs/science.md
    section 10.1): pre median 0.824, 10th percentile 0.502; post 0.771 / 0.419."""
    from pathlib import Path

    import mechinterp_modadd
    from mechinterp_modadd.checkpoint import load_checkpoint
    from mechinterp_modadd.diagnose import fourier2d_summary

    ck = load_checkpoint(Path(mechinterp_modadd.__file__).parent / "_data" / "standard_p23_step_005000.safetensors")
    s = fourier2d_summary(ck.model)
    assert (round(s.pre["median"], 3), round(s.pre["p10"], 3)) == (0.824, 0.502)
    assert (round(s.post["median"], 3), round(s.post["p10"], 3)) == (0.771, 0.419)
    assert s.n_neurons == 512 and not s.sampled
