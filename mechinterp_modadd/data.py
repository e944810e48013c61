"""The modular-addition data set: all pairs of Z_p x Z_p, labels, splits and mirror partitions.

Pairs are always listed in one fixed order, x major and y minor: index ``i = x * p + y``. Every
mask and split below is a boolean vector over that order, so results computed on "all pairs"
can be sliced by any partition without re-running the model.

The network is symmetric in (x, y) (both inputs share the embedding and are summed), so a test
pair whose mirror (y, x) is in the training set is right for free once training is fitted. The
grokking analysis therefore splits pairs into *mirror partitions*:

- test pairs whose mirror is in train (``test_mirrored``) vs truly unseen ones (``test_unseen``);
- train pairs present in both orders (``train_both_orders``; includes the diagonal x = y) vs
  train pairs whose mirror was held out (``train_one_order``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ConfigError, InputError

__all__ = [
    "all_pairs",
    "labels",
    "pair_index",
    "Split",
    "random_split",
    "split_from_pairs",
    "MirrorPartitions",
    "mirror_partitions",
]


def _check_p(p: int) -> None:
    if not isinstance(p, int) or isinstance(p, bool) or p < 2:
        raise ConfigError(f"p must be an integer >= 2, got {p!r}")


def all_pairs(p: int) -> Tensor:
    """All p^2 pairs (x, y) as a LongTensor [p*p, 2], x major, y minor."""
    _check_p(p)
    r = torch.arange(p)
    return torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1).reshape(-1, 2)


def labels(pairs: Tensor, p: int) -> Tensor:
    """Labels (x + y) mod p for a LongTensor of pairs [batch, 2]."""
    check_pairs(pairs, p)
    return (pairs[:, 0] + pairs[:, 1]) % p


def pair_index(pairs: Tensor, p: int) -> Tensor:
    """Position of each pair in the fixed order of :func:`all_pairs` (x * p + y)."""
    check_pairs(pairs, p)
    return pairs[:, 0] * p + pairs[:, 1]


def check_pairs(pairs: Tensor, p: int) -> None:
    """Raise :class:`InputError` unless ``pairs`` is an integer tensor [batch, 2] in [0, p)."""
    if not isinstance(pairs, Tensor):
        raise InputError(f"pairs must be a torch.Tensor of shape [batch, 2], got {type(pairs).__name__}")
    if pairs.dtype.is_floating_point or pairs.dtype.is_complex or pairs.dtype == torch.bool:
        raise InputError(f"pairs must be an integer (long) tensor, got dtype {pairs.dtype}")
    if pairs.ndim != 2 or pairs.shape[-1] != 2:
        raise InputError(f"pairs must have shape [batch, 2], got {tuple(pairs.shape)}")
    if pairs.numel() and (int(pairs.min()) < 0 or int(pairs.max()) >= p):
        raise InputError(
            f"tokens must lie in [0, p) = [0, {p}), found values in "
            f"[{int(pairs.min())}, {int(pairs.max())}]"
        )


@dataclass(frozen=True)
class Split:
    """A train/test split as boolean masks over :func:`all_pairs` order."""

    p: int
    train_mask: Tensor
    seed: int | None = None

    @property
    def test_mask(self) -> Tensor:
        return ~self.train_mask

    @property
    def train_pairs(self) -> Tensor:
        return all_pairs(self.p)[self.train_mask]

    @property
    def test_pairs(self) -> Tensor:
        return all_pairs(self.p)[self.test_mask]

    @property
    def train_fraction(self) -> float:
        return float(self.train_mask.float().mean())


def random_split(p: int, train_fraction: float, seed: int) -> Split:
    """A seeded split with ``floor(train_fraction * p^2)`` training pairs.

    Uses its own ``torch.Generator`` so the global RNG is neither read nor advanced. A fraction of
    1.0 puts every pair in train (the full-data runs).
    """
    _check_p(p)
    if not 0.0 < train_fraction <= 1.0:
        raise ConfigError(f"train_fraction must be in (0, 1], got {train_fraction}")
    n = p * p
    n_train = n if train_fraction >= 1.0 else int(train_fraction * n)
    if n_train < 1:
        raise ConfigError(f"train_fraction {train_fraction} leaves no training pair at p = {p}")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n, generator=g)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[perm[:n_train]] = True
    return Split(p=p, train_mask=mask, seed=int(seed))


def split_from_pairs(p: int, train_pairs: Tensor | list) -> Split:
    """A split whose training set is the given list of (x, y) pairs (e.g. the authors' file)."""
    t = torch.as_tensor(train_pairs, dtype=torch.long).reshape(-1, 2)
    idx = pair_index(t, p)
    mask = torch.zeros(p * p, dtype=torch.bool)
    mask[idx] = True
    if int(mask.sum()) != len(t):
        raise InputError(f"the training pairs contain {len(t) - int(mask.sum())} duplicates")
    return Split(p=p, train_mask=mask)


@dataclass(frozen=True)
class MirrorPartitions:
    """Boolean masks over all pairs; see the module docstring."""

    test_mirrored: Tensor
    test_unseen: Tensor
    train_both_orders: Tensor
    train_one_order: Tensor

    def counts(self) -> dict[str, int]:
        return {k: int(getattr(self, k).sum()) for k in self.__dataclass_fields__}


def mirror_partitions(split: Split) -> MirrorPartitions:
    """Partition train and test pairs by whether their mirror (y, x) is in the training set."""
    p = split.p
    train = split.train_mask
    mirror_in_train = train.reshape(p, p).T.reshape(-1)
    return MirrorPartitions(
        test_mirrored=~train & mirror_in_train,
        test_unseen=~train & ~mirror_in_train,
        train_both_orders=train & mirror_in_train,
        train_one_order=train & ~mirror_in_train,
    )
