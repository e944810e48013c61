"""The real Fourier basis of Z_p and the per-neuron decomposition every analysis reads.

Conventions (docs/science.md section 2), used everywhere in the package:

- w_k = 2 pi k / p for k = 1..K, K = (p - 1) // 2.
- Orthonormal basis rows: the constant 1/sqrt(p), then for each k the unit-norm cos(w_k j) and
  sin(w_k j); even p adds a final unit-norm cos(pi j) row.
- For a vector w over Z_p: c_k = <w, cos_k>, s_k = <w, sin_k>; magnitude
  sqrt(2/p) sqrt(c_k^2 + s_k^2) and phase atan2(-s_k, c_k), so w[j] ~ magnitude cos(w_k j + phase).
- Frequencies are 1-based in every result; 0 means DC.

All arithmetic here is float64, whatever the model's dtype and device, and the results live on the
CPU. One batched projection decomposes every neuron at once (no Python loop over neurons); that
product runs on :func:`~mechinterp_modadd.runtime.compute_device` (an analysis's ``device=``; the
CPU by default), the magnitudes and phases on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from .errors import ConfigError, InputError
from .forward import weights64
from .runtime import compute_device, takes_device

__all__ = [
    "fourier_basis",
    "basis_labels",
    "wrap",
    "frequency_coefficients",
    "magnitude_phase",
    "FREQUENCY_RULES",
    "NeuronSpectrum",
    "neuron_spectrum",
    "spectrum_from_weights",
    "spectrum_of",
    "harmonic_family",
]


@lru_cache(maxsize=32)
def _basis_np(p: int) -> np.ndarray:
    j = np.arange(p, dtype=np.float64)
    rows = [np.full(p, 1.0 / math.sqrt(p))]
    for k in range(1, (p - 1) // 2 + 1):
        w = 2 * math.pi * k * j / p
        for r in (np.cos(w), np.sin(w)):
            rows.append(r / np.linalg.norm(r))
    if p % 2 == 0:
        r = np.cos(math.pi * j)
        rows.append(r / np.linalg.norm(r))
    b = np.stack(rows)
    b.setflags(write=False)
    return b


def fourier_basis(p: int) -> Float[Tensor, "p p"]:
    """The orthonormal real Fourier basis of Z_p as rows (float64): Const, cos1, sin1, cos2, ..."""
    if not isinstance(p, int) or p < 2:
        raise InputError(f"p must be an integer >= 2, got {p!r}")
    return torch.from_numpy(_basis_np(p).copy())


def basis_labels(p: int) -> list[str]:
    """Names of the basis rows: ``Const, cos 1, sin 1, ...`` (and ``cos p/2`` for even p)."""
    out = ["Const"]
    for k in range(1, (p - 1) // 2 + 1):
        out += [f"cos {k}", f"sin {k}"]
    if p % 2 == 0:
        out.append(f"cos {p // 2}")
    return out


def wrap(v: Tensor | np.ndarray | float) -> Tensor | np.ndarray | float:
    """Wrap angles to [-pi, pi): (v + pi) mod 2 pi - pi."""
    if isinstance(v, Tensor):
        return torch.remainder(v + math.pi, 2 * math.pi) - math.pi
    return np.mod(np.asarray(v, dtype=np.float64) + math.pi, 2 * math.pi) - math.pi


def frequency_coefficients(
    w: Float[Tensor, "... p"],
) -> tuple[Float[Tensor, "..."], Float[Tensor, "... K"], Float[Tensor, "... K"]]:
    """Project vectors over Z_p on the basis: (DC coefficient, c_k, s_k), k = 1..K, float64."""
    w = torch.as_tensor(w).detach().to("cpu", torch.float64)
    p = w.shape[-1]
    dev = compute_device()  # the one product runs there (the CPU unless an analysis says otherwise)
    coef = (w.to(dev) @ fourier_basis(p).T.to(dev)).cpu()  # [..., p]
    K = (p - 1) // 2
    return coef[..., 0], coef[..., 1 : 2 * K + 1 : 2], coef[..., 2 : 2 * K + 2 : 2]


def magnitude_phase(c: Tensor, s: Tensor, p: int) -> tuple[Tensor, Tensor]:
    """Cosine amplitude sqrt(2/p) sqrt(c^2 + s^2) and phase atan2(-s, c)."""
    return math.sqrt(2.0 / p) * torch.sqrt(c * c + s * s), torch.atan2(-s, c)


@lru_cache(maxsize=64)
def _family_np(p: int, max_harmonic: int) -> np.ndarray:
    K = (p - 1) // 2
    fam = np.zeros((K, K), dtype=bool)  # fam[k-1, q-1]: q is r*k folded, r = 1..max_harmonic
    for k in range(1, K + 1):
        for r in range(1, max_harmonic + 1):
            q = (r * k) % p
            q = min(q, p - q)
            if 1 <= q <= K:
                fam[k - 1, q - 1] = True
    return fam


def harmonic_family(p: int, max_harmonic: int = 5) -> Tensor:
    """Boolean [K, K]: row k-1 marks k and its harmonics r*k (r <= max_harmonic) folded into 1..K."""
    return torch.from_numpy(_family_np(p, max_harmonic).copy())


#: Dominant-frequency rules of :class:`NeuronSpectrum` (see :attr:`NeuronSpectrum.frequency`).
FREQUENCY_RULES: tuple[str, ...] = ("energy", "coefficient")


@dataclass(frozen=True)
class NeuronSpectrum:
    """Per-neuron, per-frequency Fourier decomposition of a model (float64, CPU).

    Indexing is [neuron, k - 1] for k = 1..K. ``alpha``/``phi`` describe theta_m (row m of the
    effective input weights), ``beta``/``psi`` describe xi_m (column m of W_out).

    ``rule`` picks the dominant frequency k*_m that every ``*_star`` quantity is read at
    (docs/science.md section 8 compares the two rules and the two IPRs):

    - ``"energy"`` (default, ours): k* = argmax over k >= 1 of the input energy c_k^2 + s_k^2
      (a frequency, whatever the phase; never 0);
    - ``"coefficient"`` (the paper authors' notebooks): the argmax of |a_i| over the 2K + 1
      coefficients a = (Const, cos 1, sin 1, ..., cos K, sin K) of theta_m, mapped to its
      frequency (Const -> 0, cos k and sin k -> k). k* = 0 is possible (a neuron whose largest
      coefficient is its mean); the ``*_star`` quantities of such a neuron are NaN. On the
      authors' standard_relu_p23 final checkpoint it gives 43 42 54 43 35 61 56 41 46 50 41
      neurons for k = 1..11 against 43 42 54 43 35 59 55 41 46 53 41 with ours: a neuron whose
      energy is split between cos and sin at k* can lose to a single larger coefficient elsewhere.
    """

    p: int
    alpha: Float[Tensor, "d_mlp K"]
    phi: Float[Tensor, "d_mlp K"]
    beta: Float[Tensor, "d_mlp K"]
    psi: Float[Tensor, "d_mlp K"]
    in_energy: Float[Tensor, "d_mlp K"]   # c_k^2 + s_k^2 of theta
    out_energy: Float[Tensor, "d_mlp K"]  # c_k^2 + s_k^2 of xi
    in_dc: Float[Tensor, "d_mlp"]
    out_dc: Float[Tensor, "d_mlp"]
    rule: str = "energy"

    def __post_init__(self) -> None:
        if self.rule not in FREQUENCY_RULES:
            raise ConfigError(f"frequency rule must be one of {', '.join(FREQUENCY_RULES)}; got {self.rule!r}")

    def with_rule(self, rule: str) -> NeuronSpectrum:
        """The same decomposition read with another dominant-frequency rule."""
        return replace(self, rule=rule)

    @property
    def K(self) -> int:
        return (self.p - 1) // 2

    @property
    def d_mlp(self) -> int:
        return self.alpha.shape[0]

    @property
    def frequency(self) -> Tensor:
        """Dominant frequency k* per neuron, by :attr:`rule`: ``"energy"``: argmax over k >= 1 of
        c_k^2 + s_k^2 of theta (1..K); ``"coefficient"``: the frequency of the largest |a_i| among
        theta's 2K + 1 coefficients (0..K, 0 = the constant term)."""
        if self.rule == "coefficient":
            return (self.coefficients_in.abs().argmax(dim=1) + 1) // 2
        return self.in_energy.argmax(dim=1) + 1

    def _at_kstar(self, t: Tensor) -> Tensor:
        k = self.frequency
        vals = t.gather(1, (k - 1).clamp(min=0)[:, None])[:, 0]
        return torch.where(k >= 1, vals, torch.full_like(vals, math.nan))

    def _coefficients(self, mag: Tensor, phase: Tensor, dc: Tensor) -> Tensor:
        # invert magnitude_phase: c_k = sqrt(p/2) mag cos(phase), s_k = -sqrt(p/2) mag sin(phase)
        r = math.sqrt(self.p / 2.0) * mag
        out = torch.empty(mag.shape[0], 2 * self.K + 1, dtype=torch.float64)
        out[:, 0] = dc
        out[:, 1::2] = r * torch.cos(phase)
        out[:, 2::2] = -r * torch.sin(phase)
        return out

    @property
    def coefficients_in(self) -> Float[Tensor, "d_mlp coef"]:
        """theta's coefficients on the basis rows Const, cos 1, sin 1, ..., cos K, sin K ([M, 2K + 1];
        the cos(pi j) row of even p is not part of the spectrum)."""
        return self._coefficients(self.alpha, self.phi, self.in_dc)

    @property
    def coefficients_out(self) -> Float[Tensor, "d_mlp coef"]:
        """xi's coefficients on the same rows as :attr:`coefficients_in`."""
        return self._coefficients(self.beta, self.psi, self.out_dc)

    @staticmethod
    def _coef_ipr(a: Tensor) -> Tensor:
        a2 = a * a
        tot = a2.sum(1)
        return (a2 * a2).sum(1) / torch.where(tot > 0, tot * tot, torch.ones_like(tot))

    @property
    def coefficient_ipr_in(self) -> Tensor:
        """Per-coefficient IPR of theta (the authors' measure): sum_i a_i^4 / (sum_i a_i^2)^2 over the
        2K + 1 coefficients, constant included. A pure cosine at one frequency with phase phi scores
        cos^4 phi + sin^4 phi, between 1/2 and 1, so the value depends on the phase as well as on
        how concentrated the spectrum is; :attr:`ipr_in` (per frequency) scores it 1 at any phase."""
        return self._coef_ipr(self.coefficients_in)

    @property
    def coefficient_ipr_out(self) -> Tensor:
        """Per-coefficient IPR of xi (see :attr:`coefficient_ipr_in`)."""
        return self._coef_ipr(self.coefficients_out)

    @property
    def coefficient_ipr(self) -> Tensor:
        """Per-coefficient IPR of theta and xi averaged (the second, phase-dependent measure
        beside :attr:`ipr`)."""
        return 0.5 * (self.coefficient_ipr_in + self.coefficient_ipr_out)

    @property
    def alpha_star(self) -> Tensor:
        """alpha_m at k*_m."""
        return self._at_kstar(self.alpha)

    @property
    def beta_star(self) -> Tensor:
        return self._at_kstar(self.beta)

    @property
    def phi_star(self) -> Tensor:
        return self._at_kstar(self.phi)

    @property
    def psi_star(self) -> Tensor:
        return self._at_kstar(self.psi)

    @property
    def d(self) -> Tensor:
        """wrap(psi - 2 phi) at k* (0 when the neuron is phase-aligned)."""
        return wrap(self.psi_star - 2 * self.phi_star)

    @property
    def share(self) -> Tensor:
        """Energy at k* over all non-DC input energy."""
        tot = self.in_energy.sum(1)
        return self._at_kstar(self.in_energy) / torch.where(tot > 0, tot, torch.ones_like(tot))

    def family_share(self, max_harmonic: int = 5) -> Tensor:
        """Energy at k* and its harmonics r k* (r = 2..max_harmonic, folded) over non-DC energy."""
        fam = harmonic_family(self.p, max_harmonic).to(torch.float64)  # [K, K]
        mask = fam[self.frequency - 1]  # [M, K]
        tot = self.in_energy.sum(1)
        return (self.in_energy * mask).sum(1) / torch.where(tot > 0, tot, torch.ones_like(tot))

    @staticmethod
    def _ipr(e: Tensor) -> Tensor:
        tot = e.sum(1)
        return (e * e).sum(1) / torch.where(tot > 0, tot * tot, torch.ones_like(tot))

    @property
    def ipr_in(self) -> Tensor:
        """Frequency IPR of theta: sum_k E_k^2 / (sum_k E_k)^2 (1 = one frequency, ~1/K = spread)."""
        return self._ipr(self.in_energy)

    @property
    def ipr_out(self) -> Tensor:
        return self._ipr(self.out_energy)

    @property
    def ipr(self) -> Tensor:
        """Per-neuron IPR of W_in and W_out averaged."""
        return 0.5 * (self.ipr_in + self.ipr_out)

    @property
    def vote_weight(self) -> Tensor:
        """alpha^2 beta at k*: the weight of the neuron's vote (docs/science.md 3.5)."""
        return self.alpha_star**2 * self.beta_star

    def counts(self, include_dc: bool = False) -> Tensor:
        """Neurons per dominant frequency, n_1..n_K (``include_dc``: n_0..n_K; n_0 is non-zero only
        under the ``"coefficient"`` rule)."""
        n = torch.bincount(self.frequency, minlength=self.K + 1)
        return n if include_dc else n[1:]

    def to_frame(self):  # -> pandas.DataFrame
        """One row per neuron: frequency, share, family_share, ipr, coefficient_ipr, alpha, beta, phi,
        psi, d."""
        import pandas as pd

        return pd.DataFrame(
            {
                "frequency": self.frequency.numpy(),
                "share": self.share.numpy(),
                "family_share": self.family_share().numpy(),
                "ipr": self.ipr.numpy(),
                "coefficient_ipr": self.coefficient_ipr.numpy(),
                "alpha": self.alpha_star.numpy(),
                "beta": self.beta_star.numpy(),
                "phi": self.phi_star.numpy(),
                "psi": self.psi_star.numpy(),
                "d": self.d.numpy(),
            }
        )


def spectrum_from_weights(
    theta: Float[Tensor, "d_mlp p"], xi: Float[Tensor, "d_mlp p"], rule: str = "energy"
) -> NeuronSpectrum:
    """Decompose input weights theta (rows) and output weights xi (rows = columns of W_out);
    ``rule`` is the dominant-frequency rule (:data:`FREQUENCY_RULES`)."""
    theta = torch.as_tensor(theta).detach().to("cpu", torch.float64)
    xi = torch.as_tensor(xi).detach().to("cpu", torch.float64)
    if theta.ndim != 2 or theta.shape != xi.shape:
        raise InputError(
            f"theta and xi must both be [d_mlp, p]; got {tuple(theta.shape)} and {tuple(xi.shape)}"
        )
    p = theta.shape[1]
    if p % 2 == 0:
        raise InputError(f"weights over Z_p with p = {p} (even): the frequency k = p/2 has no sine and no phase, "
                         f"so the per-frequency decomposition would leave it out; use an odd p")
    both = torch.stack([theta, xi])  # [2, M, p]
    dc, c, s = frequency_coefficients(both)
    mag, ph = magnitude_phase(c, s, p)
    energy = c * c + s * s
    return NeuronSpectrum(
        p=p, alpha=mag[0], phi=ph[0], beta=mag[1], psi=ph[1],
        in_energy=energy[0], out_energy=energy[1], in_dc=dc[0], out_dc=dc[1], rule=rule,
    )


@takes_device
def neuron_spectrum(model, rule: str = "energy") -> NeuronSpectrum:
    """Decompose a :class:`~mechinterp_modadd.model.ModAddMLP` (learned embeddings folded in).

    ``rule="energy"`` (default) takes k* = argmax_k (c_k^2 + s_k^2); ``rule="coefficient"`` is the
    paper authors' rule, the frequency of theta's largest single coefficient, constant included
    (k* = 0 possible); see :class:`NeuronSpectrum`.
    """
    w = weights64(model)
    return spectrum_from_weights(w.theta, w.xi, rule=rule)


def spectrum_of(obj) -> NeuronSpectrum:
    """The :class:`NeuronSpectrum` of a model, or the spectrum itself if one is given."""
    if isinstance(obj, NeuronSpectrum):
        return obj
    if hasattr(obj, "effective_W_in") and hasattr(obj, "mlp"):
        return neuron_spectrum(obj)
    raise ConfigError(f"expected a ModAddMLP or a NeuronSpectrum, got {type(obj).__name__}")
