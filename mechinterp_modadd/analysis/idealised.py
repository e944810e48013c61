"""The idealised network: the ground truth for the majority-vote mechanism (docs/science.md 3.6, 3.8).

Each frequency k in a chosen set gets N neurons with phases phi_{k,n}; neuron (k, n) has
``theta[j] = alpha cos(w_k j + phi)`` and ``xi[j] = beta cos(w_k j + 2 phi)`` (psi = 2 phi). With
sigma = x^2, all K frequencies and N equally spaced phases (N not in {1, 2, 4}) its logits are
exactly the closed form

    f(x, y)[j] = (a N / 2) [ -1 + (p/2) 1(x + y = j) + (p/4) (1(2x = j) + 1(2y = j)) ]  (mod p)

with vote weight a = alpha^2 beta: a correct peak plus two half-height "ghost" peaks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from ..data import all_pairs
from ..errors import ConfigError
from ..model import ModAddMLP, ModelConfig

__all__ = ["idealised_network", "idealised_phases", "closed_form_logits"]


def idealised_phases(
    n_freqs: int, n_per_freq: int, phases: str | Tensor = "equal", seed: int = 0, offset: float = 0.0
) -> Float[Tensor, "n_freqs n_per_freq"]:
    """Phases phi [n_freqs, N]: ``"equal"`` (offset + 2 pi n / N), ``"random"`` (uniform, seeded)
    or a given tensor (broadcast to the shape)."""
    if isinstance(phases, str):
        if phases == "equal":
            n = torch.arange(n_per_freq, dtype=torch.float64)
            return (offset + 2 * math.pi * n / n_per_freq).expand(n_freqs, n_per_freq).clone()
        if phases == "random":
            g = torch.Generator().manual_seed(int(seed))
            return 2 * math.pi * torch.rand(n_freqs, n_per_freq, generator=g, dtype=torch.float64)
        raise ConfigError(f"phases must be 'equal', 'random' or a tensor, got {phases!r}")
    t = torch.as_tensor(phases, dtype=torch.float64)
    try:
        return t.expand(n_freqs, n_per_freq).clone() if t.ndim < 2 or t.shape[0] == 1 else \
            t.reshape(n_freqs, n_per_freq).clone()
    except RuntimeError:
        raise ConfigError(f"phases of shape {tuple(t.shape)} do not fit [{n_freqs}, {n_per_freq}]") from None


def idealised_network(
    p: int,
    n_per_freq: int,
    *,
    freqs: Sequence[int] | None = None,
    phases: str | Tensor = "equal",
    activation: str = "quad",
    alpha: float = 1.0,
    beta: float = 1.0,
    seed: int = 0,
) -> ModAddMLP:
    """A float64 :class:`ModAddMLP` built by hand (no training), neurons ordered by frequency.

    Args:
        p: modulus.
        n_per_freq: neurons per frequency N.
        freqs: 1-based frequencies to include (default all k = 1..K).
        phases: ``"equal"``, ``"random"`` or a tensor [len(freqs), N] of input phases phi.
        activation: any registered activation (the closed form holds for ``"quad"``).
        alpha, beta: input and output magnitudes (vote weight a = alpha^2 beta).
    """
    K = (p - 1) // 2
    freqs = list(range(1, K + 1)) if freqs is None else [int(k) for k in freqs]
    if not freqs or any(not 1 <= k <= K for k in freqs):
        raise ConfigError(f"freqs must be a non-empty subset of 1..{K}, got {freqs}")
    if n_per_freq < 1:
        raise ConfigError(f"n_per_freq must be >= 1, got {n_per_freq}")
    phi = idealised_phases(len(freqs), n_per_freq, phases, seed)  # [F, N]
    k = torch.tensor(freqs, dtype=torch.float64)[:, None, None]  # [F, 1, 1]
    j = torch.arange(p, dtype=torch.float64)[None, None, :]
    w = 2 * math.pi * k * j / p
    theta = alpha * torch.cos(w + phi[..., None])  # [F, N, p]
    xi = beta * torch.cos(w + 2 * phi[..., None])
    M = len(freqs) * n_per_freq
    model = ModAddMLP(ModelConfig(p=p, d_mlp=M, activation=activation, init_scale=1.0), seed=None)
    model = model.double()
    with torch.no_grad():
        model.mlp.W_in.copy_(theta.reshape(M, p))
        model.mlp.W_out.copy_(xi.reshape(M, p).T)
    return model


def closed_form_logits(p: int, n_per_freq: int, vote_weight: float = 1.0,
                       x: int | None = None, y: int | None = None) -> Tensor:
    """The closed form of docs/science.md 3.6 (Quad, all K frequencies, symmetric phases).

    Returns [p] logits for one (x, y), or [p*p, p] for all pairs in ``all_pairs`` order.
    """
    if x is not None and y is not None:
        pairs = torch.tensor([[x, y]])
    else:
        pairs = all_pairs(p)
    j = torch.arange(p)[None, :]
    xs, ys = pairs[:, :1], pairs[:, 1:]
    ind = lambda m: ((m - j) % p == 0).double()  # noqa: E731
    out = 0.5 * vote_weight * n_per_freq * (-1 + (p / 2) * ind(xs + ys) + (p / 4) * (ind(2 * xs) + ind(2 * ys)))
    return out[0] if x is not None and y is not None else out
