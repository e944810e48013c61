"""Which neurons an experiment keeps: seeded random subsets and the selectors of ``analysis.ablation``.

Seeding rule (so that one claim sentence prints one number everywhere): every batch of random
draws has its own generator, derived from the user's ``seed`` and a label naming the batch
(e.g. ``("random", n_kept)`` or ``("matched", order)``) by :func:`generator`. The draws of the
random halves are therefore the same whether an experiment measures only keep = 0.5 (the quick
check in ``diagnose``) or the whole curve (``modadd ablate``), and the matched halves of order
iota do not depend on which other orders are measured.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from ..ablation import (
    frequency_groups,
    half_circle_selection,
    neuron_mask,
    neurons_by_frequency,
    neurons_by_phase,
)

__all__ = ["generator", "random_subsets", "random_within_groups", "frequency_groups", "half_circle_selection",
           "neuron_mask", "neurons_by_frequency", "neurons_by_phase"]


def generator(seed: int, *label: object) -> torch.Generator:
    """A ``torch.Generator`` seeded from ``seed`` and ``label`` (SHA-256 of their text, 63 bits).

    With no label the generator is seeded by ``seed`` itself.
    """
    if not label:
        return torch.Generator().manual_seed(int(seed))
    text = "/".join(str(v) for v in (int(seed), *label))
    return torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1)


def random_subsets(n_draws: int, n_total: int, n_keep: int, g: torch.Generator) -> Tensor:
    """[n_draws, n_total] boolean masks, each with n_keep uniformly chosen True entries."""
    if n_draws == 0 or n_total == 0:
        return torch.zeros(n_draws, n_total, dtype=torch.bool)
    ranks = torch.rand(n_draws, n_total, generator=g, dtype=torch.float64).argsort(dim=1).argsort(dim=1)
    return ranks < n_keep


def random_within_groups(n_draws: int, group: Tensor, n_keep: Tensor, g: torch.Generator) -> Tensor:
    """[n_draws, M] boolean masks keeping, in every group c, n_keep[c] uniformly chosen neurons
    (``group`` [M] holds 0-based group ids)."""
    M = group.shape[0]
    keys = torch.rand(n_draws, M, generator=g, dtype=torch.float64) + 2.0 * group.double()[None]
    order = keys.argsort(dim=1)  # grouped by id, random order inside each group
    pos = torch.empty_like(order)
    pos.scatter_(1, order, torch.arange(M).expand(n_draws, M).contiguous())
    counts = torch.bincount(group, minlength=n_keep.shape[0])
    starts = torch.cumsum(counts, 0) - counts
    return (pos - starts[group]) < n_keep[group]
