"""The decoupled 4-variable flow of one (neuron, frequency) pair (docs/science.md section 4).

At small initialisation the softmax is near uniform, neurons decouple and Fourier orthogonality
decouples frequencies. Under Quad and the summed loss each (neuron m, frequency k) follows

    alpha' = 2 p alpha beta cos D          beta' = p alpha^2 cos D
    phi'   = -2 p beta sin D               psi'  = p (alpha^2 / beta) sin D,     D = 2 phi - psi

so D' = -p (4 beta + alpha^2 / beta) sin D (D = 0 attracts, D = pi repels) and alpha^2 - 2 beta^2
is conserved.

**Why we integrate in complex form.** With a = alpha e^{i phi} and b = beta e^{i psi} the same flow
is the polynomial system

    a' = 2 p conj(a) b,        b' = p a^2,

(check: a' e^{-i phi} = alpha' + i alpha phi' = 2 p alpha beta e^{-iD}, and
b' e^{-i psi} = beta' + i beta psi' = p alpha^2 e^{iD}). The polar form has the term alpha^2 / beta,
which is stiff when the output magnitude beta is small (common at random init); the complex form
has no singularity, so a plain RK4 step is accurate everywhere. A state whose beta passes through
zero simply has psi jump by pi, which the polar equations cannot express (see below).

**Step size.** Classic RK4 with a state-dependent step dt = h / (p r), r = max(|a|, |b|) (the
fastest local rate of the system is about p r), default ``h = 0.01``: about 100 steps per natural
time unit 1/(p r). Because the flow blows up in finite time, a fixed dt would be either wasteful
early or inaccurate late; with this rule the relative error per step stays ~h^5. At h = 0.01 the
invariant alpha^2 - 2 beta^2 is kept to ~1e-8 relative through a 100-fold growth.

**Homogeneity.** If (a, b) solves the flow then (c a(ct), c b(ct)) does too, so scaling the initial
magnitudes by c divides every time (alignment, take-off) by c: the time scale is 1 / (p * scale).

**D = pi.** D(0) = pi is invariant while beta > 0: the magnitudes shrink (cos D = -1). If
alpha(0)^2 < 2 beta(0)^2 (e.g. equal initial magnitudes) alpha decays to 0 and D stays at pi for
ever (the frequency dies). If alpha(0)^2 > 2 beta(0)^2, beta reaches 0 in finite time, psi flips
by pi, D becomes 0 and the frequency then grows.

All arithmetic is float64 (complex128), vectorised over any batch shape of states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from ..errors import InputError
from ..fourier import wrap

__all__ = [
    "flow_derivatives",
    "FlowTrajectory",
    "integrate_flow",
    "take_off_time",
    "flow_race",
    "FlowRace",
    "phase_alignment_attractor",
    "LotteryContour",
    "lottery_contour",
    "DEFAULT_H",
]

#: default RK4 step in units of the local time scale 1 / (p max(|a|, |b|)).
DEFAULT_H = 0.01


def _as64(x) -> Tensor:
    return torch.as_tensor(x, dtype=torch.float64).detach().cpu()


def _to_complex(alpha, phi, beta, psi) -> tuple[np.ndarray, np.ndarray]:
    alpha, phi, beta, psi = torch.broadcast_tensors(_as64(alpha), _as64(phi), _as64(beta), _as64(psi))
    if (alpha < 0).any() or (beta < 0).any():
        raise InputError("magnitudes alpha and beta must be >= 0")
    if not all(torch.isfinite(t).all() for t in (alpha, phi, beta, psi)):
        raise InputError("initial state contains NaN or inf")
    al, ph, be, ps = (t.numpy() for t in (alpha, phi, beta, psi))
    return al * np.exp(1j * ph), be * np.exp(1j * ps)


# The stepping loops use numpy: single-threaded ufuncs on small arrays avoid torch's per-op
# overhead and its OpenMP thread contention on busy machines (measured 100x slower there).
def _rhs(a: np.ndarray, b: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    return 2 * p * np.conj(a) * b, p * a * a


def _rk4(a: np.ndarray, b: np.ndarray, dt, p: float) -> tuple[np.ndarray, np.ndarray]:
    k1a, k1b = _rhs(a, b, p)
    k2a, k2b = _rhs(a + 0.5 * dt * k1a, b + 0.5 * dt * k1b, p)
    k3a, k3b = _rhs(a + 0.5 * dt * k2a, b + 0.5 * dt * k2b, p)
    k4a, k4b = _rhs(a + dt * k3a, b + dt * k3b, p)
    return (a + dt / 6 * (k1a + 2 * k2a + 2 * k3a + k4a),
            b + dt / 6 * (k1b + 2 * k2b + 2 * k3b + k4b))


def _rate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(a), np.abs(b))


def _norm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(a.real**2 + a.imag**2 + b.real**2 + b.imag**2)


def _check_p_h(p: int, h: float) -> None:
    if not (isinstance(p, (int, float)) and p > 0):
        raise InputError(f"p must be positive, got {p!r}")
    if not (0 < h <= 0.2):
        raise InputError(f"RK4 step h must be in (0, 0.2] (units of 1/(p r)), got {h!r}")


def flow_derivatives(
    alpha: Tensor, phi: Tensor, beta: Tensor, psi: Tensor, p: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The polar right-hand side (alpha', phi', beta', psi') of the decoupled flow, D = 2 phi - psi.

    alpha' = 2 p alpha beta cos D, beta' = p alpha^2 cos D, phi' = -2 p beta sin D,
    psi' = p alpha^2 / beta sin D (undefined at beta = 0; the integrator uses the complex form).
    """
    alpha, phi, beta, psi = (_as64(t) for t in (alpha, phi, beta, psi))
    D = 2 * phi - psi
    return (2 * p * alpha * beta * torch.cos(D), -2 * p * beta * torch.sin(D),
            p * alpha**2 * torch.cos(D), p * alpha**2 / beta * torch.sin(D))


@dataclass
class FlowTrajectory:
    """States of many (neuron, frequency) flows on a common time grid.

    ``alpha``, ``phi``, ``beta``, ``psi`` have shape [T, *S] (S = the batch shape of the initial
    state). States whose magnitude max(alpha, beta) exceeded ``cap`` are frozen at the first step
    beyond it; ``blown_up`` marks them and ``t_cap`` [*S] gives the time they crossed (inf if not).
    """

    p: int
    t: Float[Tensor, "T"]
    alpha: Tensor
    phi: Tensor
    beta: Tensor
    psi: Tensor
    t_cap: Tensor
    cap: float
    h: float

    @property
    def D(self) -> Tensor:
        """wrap(2 phi - psi), in [-pi, pi)."""
        return wrap(2 * self.phi - self.psi)

    @property
    def blown_up(self) -> Tensor:
        return torch.isfinite(self.t_cap)

    @property
    def invariant(self) -> Tensor:
        """alpha^2 - 2 beta^2 (conserved by the flow) [T, *S]."""
        return self.alpha**2 - 2 * self.beta**2

    def to_frame(self, index: tuple[int, ...] | int = ()) -> pd.DataFrame:
        """One state's trajectory: columns t, alpha, beta, phi, psi, D, two_phi (wrapped 2 phi)."""
        idx = (slice(None),) + ((index,) if isinstance(index, int) else tuple(index))
        return pd.DataFrame({
            "t": self.t.numpy(),
            "alpha": self.alpha[idx].numpy(), "beta": self.beta[idx].numpy(),
            "phi": self.phi[idx].numpy(), "psi": wrap(self.psi[idx]).numpy(),
            "two_phi": wrap(2 * self.phi[idx]).numpy(), "D": self.D[idx].numpy(),
        })


def integrate_flow(
    alpha0, phi0, beta0, psi0, p: int, t_end: float, *, n_out: int = 201, h: float = DEFAULT_H,
    cap: float | None = None, max_steps: int = 1_000_000,
) -> FlowTrajectory:
    """Integrate the decoupled flow for a batch of states on the grid linspace(0, t_end, n_out).

    Between output times RK4 takes steps dt = min(remaining, h / (p r_max)), r_max the largest
    max(|a|, |b|) among states not yet capped, so every state is resolved at least as finely as
    the module docstring says. States with max(alpha, beta) > ``cap`` (default: 1e3 times the
    largest initial magnitude) are frozen, which stops the finite-time blow-up from stalling
    the others.

    Args:
        alpha0, phi0, beta0, psi0: initial magnitudes and phases, any broadcastable shapes.
        p: the modulus (it only sets the time unit).
        t_end: final time (ODE units).
    """
    _check_p_h(p, h)
    if not (t_end > 0 and math.isfinite(t_end)):
        raise InputError(f"t_end must be a positive finite time, got {t_end!r}")
    if n_out < 2:
        raise InputError(f"n_out must be >= 2, got {n_out}")
    a, b = _to_complex(alpha0, phi0, beta0, psi0)
    r0 = float(_rate(a, b).max()) if a.size else 0.0
    if r0 <= 0:
        raise InputError("all initial magnitudes are zero; the flow stays at rest")
    cap = 1e3 * r0 if cap is None else float(cap)
    t_grid = np.linspace(0.0, float(t_end), n_out)
    out_a = np.empty((n_out,) + a.shape, dtype=np.complex128)
    out_b = np.empty_like(out_a)
    out_a[0], out_b[0] = a, b
    t_cap = np.full(a.shape, np.inf)
    live = _rate(a, b) <= cap
    t_cap[~live] = 0.0
    t, steps = 0.0, 0
    for j in range(1, n_out):
        target = float(t_grid[j])
        while t < target and live.any():
            r = float(_rate(a, b)[live].max())
            dt = min(target - t, h / (p * max(r, 1e-300)))
            na, nb = _rk4(a, b, dt, p)
            a = np.where(live, na, a)
            b = np.where(live, nb, b)
            t += dt
            steps += 1
            crossed = live & (_rate(a, b) > cap)
            t_cap[crossed] = t
            live &= ~crossed
            if steps > max_steps:
                raise InputError(f"integrate_flow needed more than {max_steps} RK4 steps; lower t_end or cap")
        out_a[j], out_b[j] = a, b
    T = torch.from_numpy
    return FlowTrajectory(p=int(p), t=T(t_grid), alpha=T(np.abs(out_a)), phi=T(np.angle(out_a)),
                          beta=T(np.abs(out_b)), psi=T(np.angle(out_b)), t_cap=T(t_cap), cap=cap, h=h)


def _take_off(a: np.ndarray, b: np.ndarray, thr: np.ndarray, p: float, h: float, t_limit: np.ndarray,
              max_steps: int, horizon: float | None = None) -> Tensor:
    """Per-state clocks and steps; with ``horizon``, rows (the last axis is a neuron's frequencies)
    stop once their states' clocks pass ``horizon`` times the row's first crossing time."""
    r0 = _norm(a, b)
    out = np.full(a.shape, np.inf)
    t = np.zeros(a.shape)
    done = r0 >= thr
    out[done] = 0.0
    live = ~done & (r0 > 0)
    log_thr = np.log(np.where(thr > 0, thr, 1.0))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(max_steps):
            if not live.any():
                break
            dt = np.where(live, h / (p * np.maximum(_rate(a, b), 1e-300)), 0.0)
            na, nb = _rk4(a, b, dt, p)
            rn = _norm(na, nb)
            crossed = live & (rn >= thr)
            if crossed.any():
                # linear interpolation of log r inside the last step: sub-step accuracy at no cost
                lp = np.log(_norm(a, b))
                frac = np.clip((log_thr - lp) / (np.log(rn) - lp), 0.0, 1.0)
                out[crossed] = (t + frac * dt)[crossed]
            a, b = np.where(live, na, a), np.where(live, nb, b)
            t += dt
            live &= ~crossed & (t < t_limit)
            if horizon is not None:
                live &= t < horizon * out.min(axis=-1, keepdims=True)
    return torch.from_numpy(out)


def take_off_time(
    alpha0, phi0, beta0, psi0, p: int, threshold=None, *, factor: float = 100.0, h: float = DEFAULT_H,
    t_max: float | Tensor | None = None, max_steps: int = 200_000,
) -> Tensor:
    """Time at which each state's magnitude r = sqrt(alpha^2 + beta^2) first exceeds ``threshold``.

    Every state runs on its own clock with its own RK4 step h / (p max(|a|, |b|)) (vectorised), so
    states with very different scales cost the same number of steps. ``threshold`` (broadcastable
    to the states) defaults to ``factor`` times the state's initial r. Because the Quad flow
    blows up in finite time, the result barely depends on the factor once it is large.

    A state that has not crossed by ``t_max`` gets ``inf``. Default ``t_max``: 100 natural time
    units 1 / (p r(0)) of that state; an aligned state takes off within about one unit. A state
    that starts exactly at D = pi with alpha^2 < 2 beta^2 dies in exact arithmetic, but D = pi is an
    unstable equilibrium: the ~1e-16 rounding of the initial phase grows once alpha has decayed, so
    within a long ``t_max`` such a state can still report a finite (late) take-off time. Use
    :func:`integrate_flow` to watch it die.
    """
    _check_p_h(p, h)
    a, b = _to_complex(alpha0, phi0, beta0, psi0)
    r0 = _norm(a, b)
    thr = factor * r0 if threshold is None else np.broadcast_to(_as64(threshold).numpy(), a.shape)
    if t_max is None:
        t_limit = 100.0 / (p * np.maximum(r0, 1e-300))
    else:
        t_limit = np.broadcast_to(_as64(t_max).numpy(), a.shape)
    return _take_off(a, b, thr, p, h, t_limit, max_steps)


@dataclass
class FlowRace:
    """The decoupled flow integrated for every (neuron, frequency) of a model's initial weights.

    ``take_off`` [M, K]: time at which sqrt(alpha^2 + beta^2) of frequency k of neuron m reaches
    ``factor`` times the neuron's largest initial magnitude over k (``inf``: not within the
    horizon); ``winner`` [M]: the 1-based frequency that gets there first (the flow's prediction
    of the neuron's final frequency).
    """

    take_off: Tensor
    winner: Tensor
    factor: float
    h: float


def flow_race(
    alpha0: Float[Tensor, "M K"], phi0: Float[Tensor, "M K"], beta0: Float[Tensor, "M K"],
    psi0: Float[Tensor, "M K"], p: int, *, factor: float = 100.0, h: float = DEFAULT_H,
    horizon: float = 2.0, max_steps: int = 200_000,
) -> FlowRace:
    """Predict each neuron's winning frequency: the k whose decoupled flow blows up first.

    All frequencies of a neuron share one absolute threshold, ``factor * max_k r_k(0)`` with
    r = sqrt(alpha^2 + beta^2), so a frequency that starts tiny must really grow to win. To save
    time a neuron's other frequencies are followed only until ``horizon`` times the winner's
    take-off time; those still below the threshold then get ``inf`` in ``take_off``.
    """
    alpha0, phi0, beta0, psi0 = (_as64(t) for t in (alpha0, phi0, beta0, psi0))
    if alpha0.ndim != 2:
        raise InputError(f"flow_race expects [neurons, K] tensors, got shape {tuple(alpha0.shape)}")
    _check_p_h(p, h)
    a, b = _to_complex(alpha0, phi0, beta0, psi0)
    r0 = torch.sqrt(alpha0**2 + beta0**2)
    rmax = r0.max(dim=1, keepdim=True).values
    if (rmax <= 0).any():
        raise InputError("a neuron has all-zero initial weights; its race is undefined")
    thr = np.broadcast_to((factor * rmax).numpy(), a.shape)
    t_limit = np.broadcast_to((1000.0 / (p * rmax)).numpy(), a.shape)
    t = _take_off(a, b, thr, p, h, t_limit, max_steps, horizon=horizon)
    return FlowRace(take_off=t, winner=t.argmin(dim=1) + 1, factor=factor, h=h)


def phase_alignment_attractor(
    p: int, d0: Tensor | np.ndarray | list[float], magnitude: float = 0.01, t_end: float | None = None,
    n_out: int = 201, h: float = DEFAULT_H,
) -> FlowTrajectory:
    """D(t) from many initial misalignments D(0) at equal initial magnitudes (phi0 = 0, psi0 = -D0).

    Shows the attractor at D = 0 and the repeller at D = pi. ``t_end`` defaults to 0.9 times the
    take-off time of the aligned state (so the magnitudes are still finite for all states).
    """
    d0 = _as64(d0).reshape(-1)
    m = torch.full_like(d0, float(magnitude))
    if t_end is None:
        t_end = 0.9 * float(take_off_time(magnitude, 0.0, magnitude, 0.0, p, h=h))
    return integrate_flow(m, torch.zeros_like(d0), m, -d0, p, t_end, n_out=n_out, h=h)


@dataclass
class LotteryContour:
    """Final beta of the decoupled flow over a grid of initial magnitude and initial D.

    ``final_beta`` [n_magnitudes, n_d]: beta at time ``t_end`` (capped at ``cap``) from
    alpha(0) = beta(0) = magnitude, D(0) = d0 (phi0 = 0, psi0 = -d0). Winners: large magnitude,
    small |D|; near D = pi nothing grows.
    """

    p: int
    magnitudes: Tensor
    d0: Tensor
    final_beta: Tensor
    t_end: float
    cap: float

    def to_frame(self) -> pd.DataFrame:
        M, Dg = torch.meshgrid(self.magnitudes, self.d0, indexing="ij")
        return pd.DataFrame({"magnitude": M.reshape(-1).numpy(), "d0": Dg.reshape(-1).numpy(),
                             "final_beta": self.final_beta.reshape(-1).numpy()})


def lottery_contour(
    p: int, magnitudes: Tensor | np.ndarray | list[float] | None = None,
    d0: Tensor | np.ndarray | list[float] | None = None, t_end: float | None = None,
    h: float = DEFAULT_H, cap_factor: float = 100.0,
) -> LotteryContour:
    """The paper's lottery contour: final beta over initial magnitude x initial D.

    Defaults: magnitudes linspace(0.01, 0.02, 41), D(0) linspace(0, 2 pi, 73) and ``t_end`` equal
    to the take-off time (r reaching 10x its start) of the best ticket (largest magnitude, D = 0),
    so only the best-placed tickets have grown when the picture is taken. Betas are capped at
    ``cap_factor`` times the largest initial magnitude.
    """
    mags = _as64(torch.linspace(0.01, 0.02, 41) if magnitudes is None else magnitudes).reshape(-1)
    ds = _as64(torch.linspace(0, 2 * math.pi, 73) if d0 is None else d0).reshape(-1)
    if (mags <= 0).any():
        raise InputError("initial magnitudes must be positive")
    if t_end is None:
        m = float(mags.max())
        t_end = float(take_off_time(m, 0.0, m, 0.0, p, factor=10.0, h=h))
    M, Dg = torch.meshgrid(mags, ds, indexing="ij")
    cap = cap_factor * float(mags.max())
    traj = integrate_flow(M, torch.zeros_like(M), M, -Dg, p, t_end, n_out=2, h=h, cap=cap)
    return LotteryContour(p=int(p), magnitudes=mags, d0=ds, final_beta=traj.beta[-1], t_end=t_end, cap=cap)
