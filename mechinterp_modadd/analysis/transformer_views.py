"""Nanda et al.'s own views of the one-layer transformer: the embedding's Fourier spectrum and the
attention patterns as functions of (x, y).

**Embedding spectrum** (:func:`embedding_spectrum`). The number rows of the embedding,
``E = W_E[:p]`` [p, d_model], are projected on the orthonormal real Fourier basis of Z_p along the
token axis (``F = B E``, rows Const, cos 1, sin 1, ...). The norm of frequency k is
``n_k = sqrt(|F_cos k|^2 + |F_sin k|^2)`` (Euclidean norms over d_model), k = 1..K. Nanda et al.
found a trained embedding sparse in this basis: a few key frequencies carry nearly all of it. We
report the norms, their Gini coefficient ``G = sum_{i,j} |n_i - n_j| / (2 K sum_i n_i)`` (0: all
equal; (K - 1)/K: one frequency), and the embedding's key frequencies: the fewest frequencies, by
decreasing norm, whose squared norms reach ``energy_share`` (default 0.9) of sum_k n_k^2.

Claim ``embedding_sparse``: holds when those key frequencies are at most ``max_fraction`` (default
one half) of the K frequencies. A random embedding spreads its energy evenly (it needs about 90 %
of the frequencies to reach 90 % of the energy), so the claim fails at initialisation.

**Attention patterns** (:func:`attention_patterns`). The pattern of each head at the ``=`` position
over the three sources (x, y, =), on all p^2 inputs: ``pattern[h, s]`` is a [p, p] grid over
(x, y). Summaries per head: the mean weight on each source, and the 2D Fourier analysis of the
weight on x as a function of (x, y) (mean removed): its best frequency and the share of its
variance that frequency's terms explain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from ..fourier import fourier_basis
from .base import ClaimResult, Result, Thresholds, to_jsonable

__all__ = ["EmbeddingSpectrum", "EmbeddingThresholds", "embedding_spectrum", "AttentionPatterns",
           "attention_patterns", "gini", "run_views", "run_views_text",
           "transformer_run_views"]


def gini(x: Tensor) -> float:
    """Gini coefficient of non-negative values: sum |x_i - x_j| / (2 n sum x) (0 for all equal)."""
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    total = float(x.sum())
    if x.numel() == 0 or total <= 0:
        return float("nan")
    return float((x[:, None] - x[None, :]).abs().sum() / (2 * x.numel() * total))


@dataclass(frozen=True)
class EmbeddingThresholds(Thresholds):
    energy_share: float = 0.9
    max_fraction: float = 0.5


@dataclass
class EmbeddingSpectrum(ClaimResult):
    """Fourier spectrum of the embedding (module docstring: norms n_k, Gini, key frequencies).

    ``holds``: the key frequencies (fewest reaching ``energy_share`` of the energy) are at most
    ``max_fraction`` of the K frequencies.
    """

    p: int = 0
    norms: list[float] | None = None
    const_norm: float = 0.0
    gini: float = 0.0
    key_frequencies: list[int] | None = None
    key_energy_share: float = 0.0
    n_keys: int = 0
    claim: ClassVar[str] = "embedding_sparse"
    key_metric: ClassVar[str] = "gini"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"k": list(range(1, len(self.norms or []) + 1)), "norm": self.norms,
                             "key": [k in (self.key_frequencies or []) for k in range(1, len(self.norms or []) + 1)]})

    def summary(self) -> str:
        return (f"{self.claim}: {self.n_keys} of {len(self.norms or [])} frequencies carry "
                f"{self.key_energy_share:.1%} of the embedding (keys {self.key_frequencies}), Gini {self.gini:.3f} "
                f"-> {'holds' if self.holds else 'fails'}")


def embedding_spectrum(W_E: Float[Tensor, "d_vocab d_model"], p: int, *, energy_share: float = 0.9,
                       max_fraction: float = 0.5) -> EmbeddingSpectrum:
    """The :class:`EmbeddingSpectrum` of the first ``p`` rows of ``W_E`` (the numbers; ``=`` is dropped)."""
    E = torch.as_tensor(W_E).detach().to("cpu", torch.float64)[:p]
    F = fourier_basis(p) @ E  # [p, d_model]: Const, cos 1, sin 1, ...
    K = (p - 1) // 2
    sq = F[1:2 * K + 1].pow(2).sum(-1).reshape(K, 2).sum(-1)  # [K]
    norms = sq.sqrt()
    order = torch.argsort(sq, descending=True, stable=True)
    cum = torch.cumsum(sq[order], 0) / sq.sum().clamp_min(1e-300)
    n_keys = int((cum < energy_share).sum()) + 1
    n_keys = min(n_keys, K)
    keys = sorted(int(k) + 1 for k in order[:n_keys])
    th = EmbeddingThresholds(energy_share=energy_share, max_fraction=max_fraction)
    return EmbeddingSpectrum(
        holds=n_keys <= max_fraction * K, thresholds=th, p=p, norms=norms.tolist(),
        const_norm=float(F[0].norm()), gini=gini(norms), key_frequencies=keys,
        key_energy_share=float(cum[n_keys - 1]), n_keys=n_keys)


@dataclass
class AttentionPatterns(Result):
    """Attention at ``=`` on all inputs (module docstring).

    Attributes:
        p, n_heads: sizes.
        pattern: [n_heads, 3, p, p]: weight of head h on source s (x, y, =) at input (x, y).
        mean_weight: [n_heads, 3]: its mean over the inputs.
        x_best_frequency: [n_heads]: best 2D frequency of the weight on x (mean removed).
        x_best_fraction: [n_heads]: share of that weight's variance the best frequency explains.
    """

    p: int
    n_heads: int
    pattern: Tensor
    mean_weight: Tensor
    x_best_frequency: list[int]
    x_best_fraction: list[float]
    sources: ClassVar[tuple[str, str, str]] = ("x", "y", "=")

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"p": self.p, "n_heads": self.n_heads, "mean_weight": self.mean_weight,
                            "x_best_frequency": self.x_best_frequency, "x_best_fraction": self.x_best_fraction})

    def summary(self) -> str:
        """One line: the mean weight of each head on x, y and ``=`` (the paper's heads attend to x and y)."""
        heads = "; ".join(f"head {h}: " + " ".join(f"{s} {float(self.mean_weight[h, i]):.2f}"
                                                  for i, s in enumerate(self.sources))
                          for h in range(self.n_heads))
        return f"attention at '=' (mean weight on x, y, =): {heads}"

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for h in range(self.n_heads):
            means = {f"mean_to_{s}": float(self.mean_weight[h, i]) for i, s in enumerate(self.sources)}
            rows.append({"head": h, **means, "x_best_frequency": self.x_best_frequency[h],
                         "x_best_fraction": self.x_best_fraction[h]})
        return pd.DataFrame(rows)


def _best_2d_frequency(grid: Tensor, p: int) -> tuple[int, float]:
    """Best frequency k and its share of the variance of a [p, p] grid (mean removed): the energy of
    the 2D Fourier terms whose x and y frequencies are both in {0, k}, not both 0."""
    B = fourier_basis(p)
    F = B @ (grid - grid.mean()) @ B.T
    K = (p - 1) // 2
    total = float(F.pow(2).sum())
    if total <= 0:
        return 0, 0.0
    best, share = 0, 0.0
    for k in range(1, K + 1):
        idx = torch.tensor([0, 2 * k - 1, 2 * k])
        e = float(F[idx][:, idx].pow(2).sum())
        if e / total > share:
            best, share = k, e / total
    return best, share


def attention_patterns(pattern_at_eq: Float[Tensor, "pp heads 3"], p: int) -> AttentionPatterns:
    """:class:`AttentionPatterns` from the patterns of the ``=`` query on all p^2 inputs (row x*p+y),
    i.e. ``cache["blocks.0.attn.hook_pattern"][:, :, -1, :]`` of a run on ``all_pair_tokens(p)``."""
    a = torch.as_tensor(pattern_at_eq).detach().to("cpu", torch.float64)
    n_heads = a.shape[1]
    grid = a.permute(1, 2, 0).reshape(n_heads, 3, p, p)
    best = [_best_2d_frequency(grid[h, 0], p) for h in range(n_heads)]
    return AttentionPatterns(p=p, n_heads=n_heads, pattern=grid, mean_weight=grid.mean((-1, -2)),
                             x_best_frequency=[b[0] for b in best], x_best_fraction=[b[1] for b in best])


def transformer_run_views(models: list[tuple[int | None, Any]]
                          ) -> tuple[dict[int, EmbeddingSpectrum], AttentionPatterns]:
    """Nanda et al.'s views of transformers ``[(step, model), ...]`` in step order: the embedding's
    Fourier spectrum of each (step -> result; a step of None counts as 0) and the attention at
    ``=`` of the last."""
    from ..transformer import all_pair_tokens

    spectra = {}
    for step, model in models:
        spectra[0 if step is None else int(step)] = embedding_spectrum(model.W_E, model.cfg.p)
    model = models[-1][1]
    with torch.no_grad():
        _, cache = model.run_with_cache(all_pair_tokens(model.cfg.p, device=model.cfg.device),
                                        names_filter="blocks.0.attn.hook_pattern")
    return spectra, attention_patterns(cache["blocks.0.attn.hook_pattern"][:, :, -1, :], model.cfg.p)


def run_views(series: Any) -> tuple[dict[int, EmbeddingSpectrum], AttentionPatterns]:
    """:func:`transformer_run_views` of a run (a :class:`~mechinterp_modadd.series.RunSeries`) at
    its first and last checkpoints."""
    steps = list(dict.fromkeys((series.first_step, series.last_step)))
    return transformer_run_views([(s, series.model(s)) for s in steps])


def run_views_text(series: Any, views: tuple[dict[int, EmbeddingSpectrum], AttentionPatterns] | None = None
                   ) -> list[str]:
    """Lines for ``modadd track`` on a transformer run: :func:`run_views` (computed unless given)."""
    spectra, att = run_views(series) if views is None else views
    lines = [f"step {step}: {spec.summary()}" for step, spec in spectra.items()]
    lines.append(f"step {series.last_step}: {att.summary()}")
    return lines
