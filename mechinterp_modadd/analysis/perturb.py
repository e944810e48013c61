"""Models broken on purpose: each removes one property of the mechanism and keeps the others.

Used by the tests (every claim check must fail where its property is absent) and the tutorials.
Every function returns a *new* model (float64 arithmetic, cast back to the input's dtype, same
activation); the input model is never modified.

- :func:`concentrate_phases` squeezes each frequency group's phases into a narrow arc, keeping
  every neuron's frequency content, magnitudes and psi - 2 phi: only phase symmetry is broken.
- :func:`remove_frequencies` drops all neurons of some frequencies: only diversification is broken.
- :func:`misalign_phases` rotates each neuron's output phase by a random angle: only alignment
  psi = 2 phi is broken.
- :func:`rescale_votes` multiplies each neuron's output weights by a log-normal factor: only
  magnitude homogeneity is broken.

Phase rotations are exact rotations in the Fourier domain. A neuron with dominant frequency k*
whose input phase moves by delta has each input component at q rotated by r_q delta and each
output component at q by 2 r_q delta, where r_q is the harmonic number of q: the r of smallest
|r| (1 <= |r| <= K) with r k* = q (mod p), negative when the multiple folds (r k* = -q mod p,
since cos(w_{p-q} j + a) = cos(w_q j - a) on integer j). For delta = w_{k*} s with integer s this
is exactly the cyclic translation theta'[j] = theta[j + s], xi'[j] = xi[j + 2s], under which the
neuron still votes for the correct class (x + y + 2s against j + 2s); for other delta it is the
same rotation on k* and on its harmonics, so ReLU's harmonic leaks move with their fundamental.
Components that are not multiples of k* (only possible for non-prime p) and the DC are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..forward import weights64
from ..fourier import fourier_basis, spectrum_from_weights
from ..model import ModAddMLP

__all__ = [
    "harmonic_numbers",
    "rotate_neurons",
    "concentrate_phases",
    "remove_frequencies",
    "misalign_phases",
    "rescale_votes",
]


@lru_cache(maxsize=64)
def _harmonic_np(p: int, harmonics: bool) -> np.ndarray:
    K = (p - 1) // 2
    H = np.zeros((K, K), dtype=np.int64)  # H[k-1, q-1] = signed harmonic number of q for fundamental k
    for k in range(1, K + 1):
        if not harmonics:
            H[k - 1, k - 1] = 1
            continue
        for r in range(1, K + 1):
            q = (r * k) % p
            if q == 0:
                continue
            sign = 1
            if q > K:
                q, sign = p - q, -1
            if 1 <= q <= K and H[k - 1, q - 1] == 0:
                H[k - 1, q - 1] = sign * r
    return H


def harmonic_numbers(p: int, harmonics: bool = True) -> Tensor:
    """Signed harmonic numbers [K, K]: entry [k-1, q-1] is the r of smallest |r| with r k = +-q (mod p).

    Negative when the multiple folds (r k = -q mod p); 0 when q is not a multiple of k (non-prime p).
    With ``harmonics=False`` only the diagonal (q = k, r = 1) is set.
    """
    return torch.from_numpy(_harmonic_np(p, bool(harmonics)).copy())


def _rotate(w: Tensor, angle: Tensor) -> Tensor:
    """Rotate each component q of each row of w (over Z_p) by angle[m, q-1] (phase increases)."""
    p = w.shape[1]
    K = (p - 1) // 2
    B = fourier_basis(p)
    coef = w @ B.T
    c, s = coef[:, 1 : 2 * K + 1 : 2], coef[:, 2 : 2 * K + 2 : 2]
    # phase = atan2(-s, c) = arg(c - i s); multiply by e^{i angle}
    cos_a, sin_a = torch.cos(angle), torch.sin(angle)
    c2 = c * cos_a + s * sin_a
    s2 = s * cos_a - c * sin_a
    coef = coef.clone()
    coef[:, 1 : 2 * K + 1 : 2] = c2
    coef[:, 2 : 2 * K + 2 : 2] = s2
    return coef @ B


def _rebuild(model: ModAddMLP, theta: Tensor | None, xi: Tensor, keep: Tensor | None = None) -> ModAddMLP:
    """A new model with input weights theta (None: keep the original input side) and output rows xi."""
    dtype = model.mlp.W_in.dtype
    cfg = model.cfg
    M = xi.shape[0]
    if theta is not None and cfg.embedding != "one_hot":
        cfg = cfg.replace(embedding="one_hot", d_model=None)  # the rotated theta is stored directly
    cfg = cfg.replace(d_mlp=M)
    new = ModAddMLP(cfg, seed=None).to(dtype)
    new.set_activation(model.activation)
    with torch.no_grad():
        if theta is not None:
            new.mlp.W_in.copy_(theta.to(dtype))
        else:
            W_in = model.mlp.W_in.detach()
            new.mlp.W_in.copy_(W_in if keep is None else W_in[keep])
            if model.embed is not None:
                new.embed.W_E.copy_(model.embed.W_E.detach())
        new.mlp.W_out.copy_(xi.T.to(dtype))
    return new


def rotate_neurons(model: ModAddMLP, delta: Tensor, *, harmonics: bool = True,
                   rotate_input: bool = True, output_factor: float = 2.0) -> ModAddMLP:
    """Rotate neuron m's input phase by delta_m and its output phase by output_factor * delta_m.

    Every component q is rotated by r_q delta (input) and r_q output_factor delta (output), r_q its
    signed harmonic number relative to the neuron's k* (module docstring); with ``harmonics=False``
    only the k* component moves. output_factor = 2 keeps psi - 2 phi at every frequency.
    With ``rotate_input=False`` only the output side moves (psi shifts by output_factor * delta).
    """
    w = weights64(model)
    theta, xi = w.theta, w.xi
    delta = torch.as_tensor(delta, dtype=torch.float64)
    if delta.shape != (theta.shape[0],):
        raise ConfigError(f"delta must have one angle per neuron ({theta.shape[0]}), got shape {tuple(delta.shape)}")
    kstar = spectrum_from_weights(theta, xi).frequency
    H = harmonic_numbers(model.cfg.p, harmonics).to(torch.float64)[kstar - 1]  # [M, K]
    new_theta = _rotate(theta, H * delta[:, None]) if rotate_input else None
    new_xi = _rotate(xi, H * (output_factor * delta)[:, None])
    return _rebuild(model, new_theta, new_xi)


def concentrate_phases(model: ModAddMLP, arc_width: float = 0.5, center: float = 0.0, *,
                       harmonics: bool = True) -> ModAddMLP:
    """Break phase symmetry: within each frequency group put phi (at k*) in an arc of ``arc_width`` rad.

    The group's neurons keep their phase order and are placed at equally spaced points
    center + arc_width ((rank + 1/2) / n_k - 1/2). Each neuron is rotated by delta_m = target_m - phi_m
    with :func:`rotate_neurons` (input by delta, output by 2 delta, k* and all its harmonics when
    ``harmonics``), so frequencies, magnitudes and psi - 2 phi are unchanged (to rounding) and only
    the symmetry of the phases is gone. ``arc_width = 2 pi`` instead spreads each group's phases
    equally around the circle. Learned embeddings are folded into a one-hot model.
    """
    if not (0 <= arc_width <= 2 * math.pi):
        raise ConfigError(f"arc_width must be in [0, 2 pi], got {arc_width}")
    w = weights64(model)
    theta, xi = w.theta, w.xi
    s = spectrum_from_weights(theta, xi)
    k, phi = s.frequency, s.phi_star
    # rank of each neuron's phase inside its group: sort by (k, phi)
    order = torch.argsort(k.to(torch.float64) * 10.0 + (phi + math.pi) / (2 * math.pi), stable=True)
    n = torch.bincount(k - 1, minlength=s.K)
    start = torch.cumsum(n, 0) - n
    rank = torch.empty_like(k)
    rank[order] = torch.arange(len(k)) - start[k[order] - 1]
    nk = n[k - 1].to(torch.float64)
    target = center + arc_width * ((rank.to(torch.float64) + 0.5) / nk - 0.5)
    return rotate_neurons(model, target - phi, harmonics=harmonics)


def remove_frequencies(model: ModAddMLP, ks: Iterable[int]) -> ModAddMLP:
    """A smaller model without the neurons whose dominant frequency k* is in ``ks`` (1-based)."""
    ks = sorted({int(k) for k in ks})
    K = model.cfg.K
    if not ks or any(not 1 <= k <= K for k in ks):
        raise ConfigError(f"ks must be a non-empty subset of 1..{K}, got {ks}")
    w = weights64(model)
    theta, xi = w.theta, w.xi
    kstar = spectrum_from_weights(theta, xi).frequency
    keep = ~torch.isin(kstar, torch.tensor(ks))
    if not keep.any():
        raise ConfigError(f"removing frequencies {ks} would remove every neuron")
    return _rebuild(model, None, xi[keep], keep=keep)


def misalign_phases(model: ModAddMLP, seed: int = 0) -> ModAddMLP:
    """Break phase alignment: rotate each neuron's output by a uniform random angle (seeded).

    psi moves by delta_m ~ U[0, 2 pi) at k* (its harmonics by the matching multiples); theta,
    magnitudes and frequencies are untouched, so D = psi - 2 phi becomes uniformly random.
    """
    g = torch.Generator().manual_seed(int(seed))
    delta = 2 * math.pi * torch.rand(model.cfg.d_mlp, generator=g, dtype=torch.float64)
    return rotate_neurons(model, delta, rotate_input=False, output_factor=1.0)


def rescale_votes(model: ModAddMLP, log_sd: float = 1.5, seed: int = 0) -> ModAddMLP:
    """Break magnitude homogeneity: multiply each xi_m by exp(log_sd * N(0, 1)) (seeded).

    The vote weight alpha^2 beta is multiplied by the same factor; phases and frequencies are kept.
    """
    if log_sd < 0:
        raise ConfigError(f"log_sd must be >= 0, got {log_sd}")
    g = torch.Generator().manual_seed(int(seed))
    xi = weights64(model).xi
    f = torch.exp(log_sd * torch.randn(xi.shape[0], generator=g, dtype=torch.float64))
    return _rebuild(model, None, xi * f[:, None])
