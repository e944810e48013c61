"""The decoupled flow: invariants, the phase attractor, scaling of take-off, the race and contour."""

from __future__ import annotations

import math

import pytest
import torch

from mechinterp_modadd.analysis.ode import (
    flow_derivatives,
    flow_race,
    integrate_flow,
    lottery_contour,
    phase_alignment_attractor,
    take_off_time,
)
from mechinterp_modadd.errors import InputError
from mechinterp_modadd.fourier import neuron_spectrum, wrap
from mechinterp_modadd.model import ModAddMLP
from mechinterp_modadd.training import preset, train

P = 23


def _random_states(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    alpha = 0.005 + 0.02 * torch.rand(n, generator=g, dtype=torch.float64)
    beta = 0.001 + 0.02 * torch.rand(n, generator=g, dtype=torch.float64)
    phi = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    psi = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    return alpha, phi, beta, psi


def test_complex_form_matches_the_polar_equations():
    """The integrator's a' = 2p conj(a) b, b' = p a^2 is the polar flow of docs/science.md section 4."""
    alpha, phi, beta, psi = _random_states(16)
    dt = 1e-6
    traj = integrate_flow(alpha, phi, beta, psi, P, dt, n_out=2, h=0.001)
    da, dphi, db, dpsi = flow_derivatives(alpha, phi, beta, psi, P)
    fd = lambda x: (x[1] - x[0]) / dt  # noqa: E731
    assert torch.allclose(fd(traj.alpha), da, rtol=1e-4, atol=1e-9)
    assert torch.allclose(fd(traj.beta), db, rtol=1e-4, atol=1e-9)
    assert torch.allclose(wrap(traj.phi[1] - traj.phi[0]) / dt, dphi, rtol=1e-4, atol=1e-7)
    assert torch.allclose(wrap(traj.psi[1] - traj.psi[0]) / dt, dpsi, rtol=1e-4, atol=1e-7)


def test_invariant_alpha2_minus_2beta2_is_conserved():
    alpha, phi, beta, psi = _random_states(64)
    traj = integrate_flow(alpha, phi, beta, psi, P, 20.0, cap=1.0)
    assert traj.blown_up.all()  # every state grew ~50-fold before freezing
    inv = traj.invariant
    rel = ((inv - inv[0]).abs() / inv[0].abs().clamp_min(1e-12)).max()
    assert rel < 1e-6
    # and the second invariant alpha^2 beta sin D of the complex form
    c2 = traj.alpha**2 * traj.beta * torch.sin(traj.D)
    assert ((c2 - c2[0]).abs().max() / (traj.alpha[0] ** 2 * traj.beta[0]).max()) < 1e-6
    # a deliberately coarse step breaks conservation: the check can fail
    coarse = integrate_flow(alpha, phi, beta, psi, P, 20.0, cap=1.0, h=0.2)
    inv_c = coarse.invariant
    assert ((inv_c - inv_c[0]).abs() / inv_c[0].abs().clamp_min(1e-12)).max() > 1e-6


def test_phase_alignment_attractor_and_pi_repeller():
    d0 = torch.tensor([-3.1, -2.0, -1.0, -0.1, 0.1, 1.0, 2.0, 3.1])
    m = torch.full_like(d0, 0.01)
    t_off = take_off_time(m, 0 * m, m, -d0, P, factor=1000.0)
    assert torch.isfinite(t_off).all()
    traj = integrate_flow(m, 0 * m, m, -d0, P, float(t_off.max()) * 1.01, cap=10.0)
    assert traj.blown_up.all()
    assert traj.D[-1].abs().max() < 1e-3  # D -> 0 from every D(0) != pi
    # larger misalignment takes longer to take off (symmetric in the sign of D)
    assert torch.allclose(t_off[:4].flip(0), t_off[4:], rtol=1e-6)
    assert (t_off[4:].diff() > 0).all()
    # D(0) = pi stays at pi (equal magnitudes: alpha^2 < 2 beta^2, the frequency dies)
    pi_traj = integrate_flow(0.01, 0.0, 0.01, -math.pi, P, float(t_off.max()))
    assert (pi_traj.D.abs() - math.pi).abs().max() < 1e-6
    assert pi_traj.alpha[-1] < 0.1 * pi_traj.alpha[0]  # shrinks instead of growing
    # the attractor helper agrees
    att = phase_alignment_attractor(P, [0.5, 2.5, math.pi])
    assert att.D[-1, 0].abs() < 0.5 * 0.5 and att.D[-1, 1].abs() < 2.5
    assert (att.D[:, 2].abs() - math.pi).abs().max() < 1e-6


def test_doubling_the_scale_halves_the_take_off_time():
    alpha, phi, beta, psi = _random_states(32, seed=1)
    t1 = take_off_time(alpha, phi, beta, psi, P)
    t2 = take_off_time(2 * alpha, phi, 2 * beta, psi, P)
    assert torch.isfinite(t1).all()
    ratio = t1 / t2
    assert ((ratio - 2).abs() < 0.2).all()  # within 10 %
    # the time scale is ~1 / (p * scale): a larger p is faster by the same factor
    t3 = take_off_time(alpha, phi, beta, psi, 2 * P)
    assert ((t1 / t3 - 2).abs() < 0.2).all()


def test_flow_race_picks_aligned_large_frequency():
    # one neuron, three frequencies: (large, aligned) beats (large, misaligned) and (small, aligned)
    alpha = torch.tensor([[0.010, 0.012, 0.004]], dtype=torch.float64)
    beta = alpha.clone()
    phi = torch.zeros_like(alpha)
    psi = -torch.tensor([[0.2, 2.5, 0.0]], dtype=torch.float64)  # D = 2 phi - psi
    race = flow_race(alpha, phi, beta, psi, P)
    assert race.winner.tolist() == [1]
    # make the misaligned one well aligned: it has the largest magnitude and now wins
    race2 = flow_race(alpha, phi, beta, torch.tensor([[0.2, 0.1, 0.0]]), P)
    assert race2.winner.tolist() == [2]
    with pytest.raises(InputError):
        flow_race(alpha[0], phi[0], beta[0], psi[0], P)


def test_lottery_contour_winners_at_large_magnitude_small_d():
    c = lottery_contour(P, magnitudes=torch.linspace(0.01, 0.02, 6), d0=torch.linspace(0, 2 * math.pi, 13))
    fb = c.final_beta
    assert fb.shape == (6, 13)
    i_pi = 6  # d0 = pi
    assert fb[-1, 0] == fb.max()  # largest magnitude, D = 0
    assert (fb[:, i_pi] < fb[:, 0]).all()
    assert (fb[:, i_pi] <= c.magnitudes).all()  # nothing grows near D = pi
    assert (fb[:, 0].diff() > 0).all()  # at D = 0, larger tickets end larger
    assert len(c.to_frame()) == 78


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="magnitudes"):
        integrate_flow(-1.0, 0.0, 1.0, 0.0, P, 1.0)
    with pytest.raises(InputError, match="t_end"):
        integrate_flow(1.0, 0.0, 1.0, 0.0, P, -1.0)
    with pytest.raises(InputError, match="step h"):
        take_off_time(1.0, 0.0, 1.0, 0.0, P, h=1.0)


def test_single_frequency_quad_neuron_stays_single_frequency():
    """Real trainer, quad_single_freq preset: every neuron keeps its one frequency (share >= 0.99)
    while its magnitudes grow and its phases align; a random init (same trainer) is not single-frequency."""
    cfg = preset("quad_single_freq", p=11, d_mlp=40, steps=3000, seed=0)
    res = train(cfg, progress=False)
    s0 = neuron_spectrum(ModAddMLP(cfg.model_config(), seed=0))
    s1 = neuron_spectrum(res.model)
    assert s1.share.min() >= 0.99
    assert torch.equal(s1.frequency, s0.frequency)
    assert s1.alpha_star.max() > 3 * s0.alpha_star.max()  # it really trained
    assert s1.d.abs().mean() < 0.5 * s0.d.abs().mean()  # phases aligned
    rnd = train(preset("quad_random", p=11, d_mlp=40, steps=500, seed=0), progress=False)
    assert neuron_spectrum(rnd.model).share.min() < 0.99
