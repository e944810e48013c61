"""Figure data of one model: the few numbers the pages draw that are not claim results.

The presentation layer (:mod:`mechinterp_modadd.plots`, :mod:`mechinterp_modadd.pages`) never
computes; what a figure needs beyond a claim result is computed here, once, and stored on the
:class:`~mechinterp_modadd.diagnose.Diagnosis`:

- :class:`NeuronSample`: |Fourier coefficients| of W_in rows (theta_m) and W_out columns (xi_m) of
  a seeded sample of neurons, sorted by (k*, phi), each row divided by its largest entry;
- :class:`CosineFits`: theta_m[j] of a few neurons with their fit DC / sqrt(p) + alpha cos(w_k* j + phi);
- :class:`LogitSlice`: the centred logits f(x, y)[j] - mean_j f(x, y)[j] for one x, every y.

All arithmetic in float64 on CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..forward import weights64
from ..fourier import NeuronSpectrum, basis_labels, fourier_basis
from ..runtime import takes_device

__all__ = ["NeuronSample", "CosineFits", "LogitSlice", "sample_neurons", "neuron_sample", "cosine_fits",
           "logit_slice", "input_output_weights"]


def input_output_weights(model) -> tuple[Tensor, Tensor]:
    """theta [d_mlp, p] (effective W_in rows) and xi [d_mlp, p] (W_out columns), float64 on CPU.
    For a concatenated-input MLP (family ``concat_mlp``) theta is u, the weights reading x; for a
    transformer (family ``transformer``) theta is u, the main effect of x on the pre-activation at
    ``=``, and xi the neuron's direction W_out W_U (:mod:`~mechinterp_modadd.analysis.transformer_claims`)."""
    from ..families.concat_mlp import ConcatMLP
    from ..transformer import ModAddTransformer

    if isinstance(model, ConcatMLP):
        return model.W_x.detach().to("cpu", torch.float64), model.W_out.detach().to("cpu", torch.float64).T
    if isinstance(model, ModAddTransformer):
        from ..families import neuron_view
        from .transformer_claims import effective_inputs

        view = neuron_view(model)
        return effective_inputs(view)[0], view.W
    w64 = weights64(model)
    return w64.theta, w64.xi


def sample_neurons(spectrum: NeuronSpectrum, n: int = 48, seed: int = 0) -> np.ndarray:
    """Indices of up to ``n`` neurons (a seeded sample without replacement), sorted by k* then phi."""
    M = spectrum.d_mlp
    rng = np.random.default_rng(seed)
    idx = np.arange(M) if M <= n else rng.choice(M, size=n, replace=False)
    k = spectrum.frequency.numpy()[idx]
    phi = spectrum.phi_star.numpy()[idx]
    return idx[np.lexsort((phi, k))]


@dataclass(frozen=True)
class NeuronSample:
    """|Fourier coefficients| of a sample of neurons, rows relative to their largest entry.

    Attributes:
        neurons: [n] neuron indices, sorted by (k*, phi*).
        frequency: [n] their k* (1-based).
        labels: [p] basis labels (``const``, ``cos 1``, ``sin 1``, ...).
        in_coef, out_coef: [n, p] |B theta_m| / max and |B xi_m| / max (B the Fourier basis).
    """

    neurons: np.ndarray
    frequency: np.ndarray
    labels: list[str]
    in_coef: np.ndarray
    out_coef: np.ndarray


@takes_device
def neuron_sample(model, spectrum: NeuronSpectrum, n_neurons: int = 48, seed: int = 0) -> NeuronSample:
    """The :class:`NeuronSample` of ``model`` (``spectrum`` is its spectrum)."""
    theta, xi = input_output_weights(model)
    idx = sample_neurons(spectrum, n_neurons, seed)
    B = fourier_basis(spectrum.p)

    def rel(w: Tensor) -> np.ndarray:
        coef = (w[idx] @ B.T).abs()
        return (coef / coef.amax(dim=1, keepdim=True).clamp(min=1e-300)).numpy()

    return NeuronSample(neurons=idx, frequency=spectrum.frequency.numpy()[idx], labels=basis_labels(spectrum.p),
                        in_coef=rel(theta), out_coef=rel(xi))


@dataclass(frozen=True)
class CosineFits:
    """Input weights of a few neurons and their single-cosine fits.

    Attributes:
        neurons, frequency, share, alpha, phi, dc: [n] per neuron (dc is the DC coefficient / sqrt(p),
            the mean of theta_m).
        theta: [n, p] the weights theta_m[j].
    """

    p: int
    neurons: np.ndarray
    frequency: np.ndarray
    share: np.ndarray
    alpha: np.ndarray
    phi: np.ndarray
    dc: np.ndarray
    theta: np.ndarray

    def fit(self, i: int, j: np.ndarray) -> np.ndarray:
        """The fitted curve of the i-th neuron at (real) positions ``j``: dc + alpha cos(2 pi k j / p + phi)."""
        return self.dc[i] + self.alpha[i] * np.cos(2 * np.pi * self.frequency[i] * j / self.p + self.phi[i])


@takes_device
def cosine_fits(model, spectrum: NeuronSpectrum, neurons: Sequence[int] | None = None, n: int = 4,
                seed: int = 0) -> CosineFits:
    """:class:`CosineFits` of ``neurons`` (default: a seeded sample of ``n``)."""
    theta, _ = input_output_weights(model)
    idx = np.asarray(list(neurons) if neurons is not None else list(sample_neurons(spectrum, n, seed)), dtype=int)
    s = spectrum
    return CosineFits(p=s.p, neurons=idx, frequency=s.frequency.numpy()[idx], share=s.share.numpy()[idx],
                      alpha=s.alpha_star.numpy()[idx], phi=s.phi_star.numpy()[idx],
                      dc=s.in_dc.numpy()[idx] / math.sqrt(s.p), theta=theta.numpy()[idx])


@dataclass(frozen=True)
class LogitSlice:
    """Centred logits for one x: ``centred[y, j] = f(x, y)[j] - mean_j f(x, y)[j]``."""

    p: int
    x: int
    centred: np.ndarray


def logit_slice(logits: Tensor, p: int, x: int = 3) -> LogitSlice:
    """The :class:`LogitSlice` of all-pairs logits [p*p, p] (``all_pairs`` order) at ``x``."""
    L = torch.as_tensor(logits, dtype=torch.float64).reshape(p, p, p)[x]
    return LogitSlice(p=p, x=x, centred=(L - L.mean(dim=1, keepdim=True)).numpy())
