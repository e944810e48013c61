"""2D Fourier analysis over the p x p input grid, for any activation tensor.

This is how the TransformerLens community reads a modular-addition neuron: tabulate its activation
on every pair (x, y), expand that p x p table in the real 2D Fourier basis, and ask how much of its
variance one frequency explains. It needs nothing but activations, so it applies to every network
family alike (:mod:`mechinterp_modadd.neurons` gives the activations of any supported model).

Conventions (those of :mod:`mechinterp_modadd.fourier`, extended to two variables):

- Activations are ``[p*p, n]`` (or ``[p*p]``): row ``x * p + y`` is the pair (x, y), the order of
  :func:`mechinterp_modadd.data.all_pairs`; column j is one neuron (or any other series).
- The basis is the tensor product of the 1D orthonormal real basis b_0 = 1/sqrt(p),
  b_{2k-1} = sqrt(2/p) cos(w_k j), b_{2k} = sqrt(2/p) sin(w_k j) (w_k = 2 pi k / p, k = 1..K,
  K = (p - 1) // 2): the p^2 functions b_a(x) b_b(y) are orthonormal over the grid. A table A has
  coefficients ``C[a, b] = sum_{x,y} b_a(x) b_b(y) A[x, y]`` and ``A = sum_{a,b} C[a, b] b_a(x) b_b(y)``.
- ``C[0, 0]`` is the constant (sqrt(p^2) times the mean); the rest of ``sum C^2`` is the variance
  (times p^2): Parseval, ``sum_{a,b} C[a, b]^2 = sum_{x,y} A[x, y]^2``.
- **The terms of frequency k** are the eight functions of (x, y) built from frequency k alone:
  cos/sin w_k x (linear in x), cos/sin w_k y (linear in y) and the four products
  cos/sin w_k x * cos/sin w_k y. The products span the same plane as the sum and difference
  directions cos/sin w_k (x + y) and cos/sin w_k (x - y) (:meth:`Fourier2D.sum_difference`), so the
  frequency-k block contains the neuron's "x + y" wave whichever way it is written. Cross products at
  two different frequencies k != k' belong to no single frequency.
- **Fraction of variance explained by frequency k** (:attr:`Fourier2D.fraction`): the energy of the
  eight terms of k over the energy of all non-constant terms. A neuron that is exactly a function of
  frequency k (e.g. sigma(cos(w_k x + a) + cos(w_k y + b)) for a quadratic sigma) scores 1; a
  random table about 8 / (p^2 - 1) per k.
- **Key frequencies**, two rules: :meth:`Fourier2D.key_frequencies_by_vote` (ours: every neuron votes
  for its best frequency with a weight, a frequency is key when its share of the votes is at least
  ``min_share`` = 1 / (2K), as :func:`mechinterp_modadd.analysis.restricted.key_frequencies` does with
  the paper's vote weight alpha^2 beta) and :meth:`Fourier2D.key_frequencies_top` (Nanda et al.'s: the
  k frequencies with the largest summed energy over neurons, i.e. the largest norm of the projection
  of all activations onto the frequency).
- :meth:`Fourier2D.project` rebuilds the activations from chosen frequencies only (the projection
  onto a frequency); :meth:`Fourier2D.grid` gives a neuron's coefficients as a p x p table for the
  heat maps of :mod:`mechinterp_modadd.plots.fourier2d`.

The relation to the complex DFT (tested against ``torch.fft.fft2`` to 1e-10): with
F = fft2(A) (F[k1, k2] = sum A[x, y] e^{-i (w_k1 x + w_k2 y)}), the energy of the block of
(k1, k2) (1 <= k1, k2 <= K, four coefficients) is 2 (|F[k1, k2]|^2 + |F[k1, -k2]|^2) / p^2, that of
(k1, 0) is 2 |F[k1, 0]|^2 / p^2, and the energy on the sum plane cos/sin w_k (x + y) is
2 |F[k, k]|^2 / p^2 (the difference plane: 2 |F[k, -k]|^2 / p^2).

All arithmetic is float64 on the CPU. Even p is refused (its cos(pi j) row has no phase partner;
see :func:`mechinterp_modadd.model.check_modulus`).

Example:
    >>> import math, torch
    >>> from mechinterp_modadd.fourier2d import fourier2d
    >>> p = 11
    >>> x, y = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    >>> a = torch.cos(2 * math.pi * 3 * (x + y) / p).reshape(-1, 1).double()
    >>> f = fourier2d(a)
    >>> int(f.best_frequency[0]), round(float(f.best_fraction[0]), 6)
    (3, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
from jaxtyping import Float
from torch import Tensor

from .errors import InputError
from .fourier import basis_labels, fourier_basis

__all__ = [
    "Fourier2D",
    "fourier2d",
    "frequency_terms",
    "frequency_mask",
    "term_labels",
    "grid_of",
]


def _check_p_from_rows(rows: int) -> int:
    p = math.isqrt(rows)
    if p * p != rows or p < 3:
        raise InputError(f"activations must have p*p rows (one per pair (x, y), x major) with p >= 3; "
                         f"got {rows} rows")
    if p % 2 == 0:
        raise InputError(f"activations over a {p} x {p} grid: p = {p} is even, its frequency p/2 has no "
                         f"sine (no phase); the 2D Fourier analysis needs an odd p")
    return p


def grid_of(acts: Tensor) -> tuple[Tensor, int]:
    """``acts`` ([p*p] or [p*p, n], x major) as a float64 CPU tensor [n, p, p] and p."""
    a = torch.as_tensor(acts).detach().to("cpu", torch.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise InputError(f"activations must be [p*p] or [p*p, n]; got shape {tuple(a.shape)}")
    p = _check_p_from_rows(a.shape[0])
    return a.T.reshape(a.shape[1], p, p), p


def frequency_terms(p: int, k: int) -> list[tuple[int, int]]:
    """The (row, column) indices of the 2D coefficients of frequency ``k`` (1..K): the linear terms
    (cos k x, sin k x, cos k y, sin k y) and the four products of frequency k in x and in y."""
    K = (p - 1) // 2
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= K:
        raise InputError(f"frequency k must be an integer in 1..{K} for p = {p}, got {k!r}")
    c, s = 2 * k - 1, 2 * k
    return [(c, 0), (s, 0), (0, c), (0, s), (c, c), (c, s), (s, c), (s, s)]


def frequency_mask(p: int, ks: Sequence[int], constant: bool = False) -> Tensor:
    """Boolean [p, p] over the 2D coefficients: the terms of the frequencies ``ks`` (and the
    constant when ``constant``)."""
    m = torch.zeros(p, p, dtype=torch.bool)
    for k in ks:
        for a, b in frequency_terms(p, int(k)):
            m[a, b] = True
    if constant:
        m[0, 0] = True
    return m


def term_labels(p: int) -> list[list[str]]:
    """Names of the 2D basis functions, ``labels[a][b]``, e.g. ``"cos 3 x * sin 3 y"``,
    ``"cos 2 x"`` (constant in y), ``"Const"``."""
    one = basis_labels(p)
    out = []
    for a, la in enumerate(one):
        row = []
        for b, lb in enumerate(one):
            if a == 0 and b == 0:
                row.append("Const")
            elif b == 0:
                row.append(f"{la} x")
            elif a == 0:
                row.append(f"{lb} y")
            else:
                row.append(f"{la} x * {lb} y")
        out.append(row)
    return out


@dataclass(frozen=True)
class Fourier2D:
    """The 2D real Fourier coefficients of n activation tables over the p x p grid (float64, CPU).

    ``coef[j, a, b]`` is table j's coefficient on b_a(x) b_b(y) (module docstring). Everything else
    is read from it:

    - :attr:`variance` [n]: the non-constant energy sum_{(a,b) != (0,0)} C^2 (= p^2 times the
      variance of the table);
    - :attr:`energy` [n, K]: the energy of the eight terms of each frequency k = 1..K;
    - :attr:`fraction` [n, K]: energy / variance, the fraction of variance explained by frequency k
      (0 for a constant table);
    - :attr:`best_frequency` [n] (1-based) and :attr:`best_fraction` [n]: the argmax and max of
      ``fraction``;
    - :attr:`linear_fraction` / :attr:`product_fraction` [n, K]: the part of ``fraction`` in the
      linear terms (functions of x alone or y alone) and in the products.
    """

    p: int
    coef: Float[Tensor, "n p p"]

    @property
    def K(self) -> int:
        return (self.p - 1) // 2

    @property
    def n(self) -> int:
        return self.coef.shape[0]

    @cached_property
    def _sq(self) -> Tensor:
        return self.coef * self.coef

    @cached_property
    def variance(self) -> Float[Tensor, "n"]:
        """Non-constant energy of each table (p^2 times its variance over the grid)."""
        return self._sq.sum((1, 2)) - self._sq[:, 0, 0]

    def _blocks(self) -> tuple[Tensor, Tensor]:
        K, sq = self.K, self._sq
        c = torch.arange(1, 2 * K, 2)
        s = c + 1
        lin = sq[:, c, 0] + sq[:, s, 0] + sq[:, 0, c] + sq[:, 0, s]
        prod = sq[:, c, c] + sq[:, c, s] + sq[:, s, c] + sq[:, s, s]
        return lin, prod

    def _frac(self, e: Tensor) -> Tensor:
        v = self.variance[:, None]
        return torch.where(v > 0, e / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(e))

    @cached_property
    def energy(self) -> Float[Tensor, "n K"]:
        """Energy of the eight terms of frequency k, k = 1..K (column k - 1)."""
        lin, prod = self._blocks()
        return lin + prod

    @cached_property
    def fraction(self) -> Float[Tensor, "n K"]:
        """Fraction of each table's variance explained by frequency k (column k - 1)."""
        return self._frac(self.energy)

    @property
    def linear_fraction(self) -> Float[Tensor, "n K"]:
        """The part of :attr:`fraction` in cos/sin w_k x and cos/sin w_k y."""
        return self._frac(self._blocks()[0])

    @property
    def product_fraction(self) -> Float[Tensor, "n K"]:
        """The part of :attr:`fraction` in the products (the x + y and x - y waves)."""
        return self._frac(self._blocks()[1])

    @property
    def best_frequency(self) -> Tensor:
        """1-based frequency explaining the most variance, per table."""
        return self.fraction.argmax(dim=1) + 1

    @property
    def best_fraction(self) -> Float[Tensor, "n"]:
        """The largest fraction of variance one frequency explains, per table."""
        return self.fraction.max(dim=1).values

    def summary(self) -> dict[str, float]:
        """``{"median", "p10"}`` of :attr:`best_fraction` over the tables (the numbers ``diagnose``
        prints; linear interpolation between order statistics, as numpy's defaults)."""
        b = self.best_fraction
        return {"median": float(b.quantile(0.5)), "p10": float(b.quantile(0.1))}

    def sum_difference(self, k: int) -> Float[Tensor, "n 4"]:
        """Coefficients on the unit-norm cos w_k (x + y), sin w_k (x + y), cos w_k (x - y),
        sin w_k (x - y) (their squares sum to the product energy of k)."""
        frequency_terms(self.p, k)
        c, s = 2 * k - 1, 2 * k
        cc, cs, sc, ss = self.coef[:, c, c], self.coef[:, c, s], self.coef[:, s, c], self.coef[:, s, s]
        r = 1.0 / math.sqrt(2.0)
        return torch.stack([(cc - ss) * r, (sc + cs) * r, (cc + ss) * r, (sc - cs) * r], dim=1)

    def linear(self, k: int) -> Float[Tensor, "n 4"]:
        """Coefficients on cos w_k x, sin w_k x, cos w_k y, sin w_k y (the unit-norm basis functions)."""
        frequency_terms(self.p, k)
        c, s = 2 * k - 1, 2 * k
        return torch.stack([self.coef[:, c, 0], self.coef[:, s, 0], self.coef[:, 0, c], self.coef[:, 0, s]], dim=1)

    def grid(self, j: int = 0, *, energy: bool = False) -> Float[Tensor, "p p"]:
        """Table j's coefficients as a p x p grid (rows: x basis Const, cos 1, sin 1, ...; columns:
        y basis); ``energy`` squares them."""
        g = self.coef[j]
        return g * g if energy else g.clone()

    def key_frequencies_top(self, k: int) -> list[int]:
        """The ``k`` frequencies with the largest energy summed over the tables (the norm of the
        projection of all activations onto each frequency), largest first (Nanda et al.'s rule)."""
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.K:
            raise InputError(f"the number of key frequencies must be in 1..{self.K}, got {k!r}")
        tot = self.energy.sum(0)
        return [int(i) + 1 for i in torch.argsort(tot, descending=True, stable=True)[:k]]

    def vote_share(self, weights: Tensor | None = None) -> Float[Tensor, "K"]:
        """Share of the votes per frequency: table j votes for :attr:`best_frequency` with weight
        ``weights[j]`` (default: its energy at that frequency); zeros when no table has weight."""
        w = self.energy.gather(1, (self.best_frequency - 1)[:, None])[:, 0] if weights is None else \
            torch.as_tensor(weights).detach().to("cpu", torch.float64)
        if w.shape != (self.n,):
            raise InputError(f"weights must have shape [{self.n}] (one per table), got {tuple(w.shape)}")
        per_k = torch.zeros(self.K, dtype=torch.float64).index_add_(0, self.best_frequency - 1, w)
        total = float(per_k.sum())
        return per_k / total if total > 0 else per_k

    def key_frequencies_by_vote(self, weights: Tensor | None = None, min_share: float | None = None) -> list[int]:
        """Frequencies whose :meth:`vote_share` is at least ``min_share`` (default 1 / (2K)), in
        increasing order; every frequency when no table has any weight."""
        share_min = 1.0 / (2 * self.K) if min_share is None else float(min_share)
        if not 0.0 <= share_min <= 1.0:
            raise InputError(f"min_share must be in [0, 1], got {min_share!r}")
        share = self.vote_share(weights)
        if not float(share.sum()) > 0:
            return list(range(1, self.K + 1))
        return [k + 1 for k in range(self.K) if float(share[k]) >= share_min]

    def project(self, ks: Sequence[int], *, constant: bool = False) -> Float[Tensor, "pp n"]:
        """The tables rebuilt from the terms of the frequencies ``ks`` only (plus the constant when
        ``constant``), as [p*p, n] in ``all_pairs`` order: the projection onto those frequencies."""
        mask = frequency_mask(self.p, list(ks), constant).to(torch.float64)
        B = fourier_basis(self.p)
        out = torch.einsum("ax,nab,by->nxy", B, self.coef * mask, B)
        return out.reshape(self.n, -1).T.contiguous()


def fourier2d(acts: Float[Tensor, "pp n"] | Float[Tensor, "pp"]) -> Fourier2D:
    """The 2D real Fourier coefficients of activation tables [p*p, n] (or one table [p*p]) over the
    all-pairs grid (x major); see the module docstring for the basis and what is read from it."""
    grid, p = grid_of(acts)
    B = fourier_basis(p)
    coef = torch.einsum("ax,nxy,by->nab", B, grid, B)
    return Fourier2D(p=p, coef=coef)
