"""The training objective: which pairs a step sees, how each run weighs them, and the stop rule.

Full batch: every step sees every pair. A family whose network is symmetric in (x, y) (the MLP on
``e_x + e_y``) is evaluated on the p(p + 1)/2 unordered pairs {x <= y}: (x, y) and (y, x) have the
same logits, so one pass gives the loss and accuracy of all p^2 ordered pairs, train and test at
once, by weighting each unordered pair with how many of its ordered versions lie in each set (the
diagonal counts once). Other families are evaluated on the p^2 ordered pairs, each weighted 1 in
its own set. For run s::

    nll[s, i]   = -log softmax(float64(logits[s, i]))[label_i]
    train_loss  = sum_i w_train[s, i] nll[s, i] / max(n_train[s], 1)     (differentiated)
    test_loss   = sum_i w_test[s, i] nll[s, i] / n_test[s]               (NaN without a test set)
    accuracies  = the same weighted means of [argmax logits[s, i] == label_i]

Early stop: see :class:`~.config.TrainConfig` and :func:`stop_rule_met`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data import random_split
from ..forward import unordered_pairs
from .config import TrainConfig

__all__ = ["PairData", "pair_data", "split_weights", "stop_rule_met", "stopped_early"]


@dataclass
class PairData:
    """The pairs of one step and each run's weights (on the CPU; the engine moves them).

    Attributes:
        pairs: [n, 2] long, the (x, y) of each row (x <= y when ``symmetric``).
        labels: [n] long, (x + y) mod p.
        w_train, w_test: [S, n] float64, how many ordered pairs of each row are in each set.
        n_train, n_test: [S] float64, the sums of those weights.
    """

    p: int
    symmetric: bool
    pairs: Tensor
    labels: Tensor
    w_train: Tensor
    w_test: Tensor
    n_train: Tensor
    n_test: Tensor


def _rows(p: int, symmetric: bool) -> Tensor:
    if symmetric:
        return unordered_pairs(p)[0]
    g = torch.arange(p)
    return torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)


def split_weights(cfg: TrainConfig, pairs: Tensor, symmetric: bool) -> tuple[Tensor, Tensor]:
    """``(w_train, w_test)`` [n] float64 of ``cfg``'s split over ``pairs``."""
    p = cfg.p
    tr = random_split(p, cfg.train_fraction, cfg.effective_split_seed).train_mask.reshape(p, p)
    xs, ys = pairs[:, 0], pairs[:, 1]
    n_tr = tr[xs, ys].double()
    if symmetric:  # how many of (x, y), (y, x) are in train; the diagonal counts once
        diag = xs == ys
        n_tr = n_tr + torch.where(diag, 0.0, tr[ys, xs].double())
        n_all = torch.where(diag, 1.0, 2.0).double()
    else:
        n_all = torch.ones(len(xs), dtype=torch.float64)
    return n_tr, n_all - n_tr


def pair_data(cfgs: Sequence[TrainConfig], symmetric: bool) -> PairData:
    """The rows and every run's weights for a batch of runs sharing p."""
    p = cfgs[0].p
    pairs = _rows(p, symmetric).contiguous()
    labels = (pairs[:, 0] + pairs[:, 1]) % p
    w = [split_weights(c, pairs, symmetric) for c in cfgs]
    w_train = torch.stack([a for a, _ in w])
    w_test = torch.stack([b for _, b in w])
    return PairData(p=p, symmetric=symmetric, pairs=pairs, labels=labels, w_train=w_train, w_test=w_test,
                    n_train=w_train.sum(1), n_test=w_test.sum(1))


def stop_rule_met(cfg: TrainConfig, train_accuracy: np.ndarray, test_accuracy: np.ndarray, t: int) -> bool:
    """Whether ``cfg``'s early stop ends the run at step ``t`` (see :class:`TrainConfig`).

    ``train_accuracy``/``test_accuracy`` are the per-step rows (index = step; a run without a test
    set has NaN test accuracy and is judged on train accuracy alone).
    """
    w = cfg.stop_window
    if cfg.stop_accuracy is None or t <= 0 or t % w or t < w or t >= len(train_accuracy):
        return False
    thr = cfg.stop_accuracy
    tr = np.asarray(train_accuracy[t - w: t + 1], dtype=np.float64)
    te = np.asarray(test_accuracy[t - w: t + 1], dtype=np.float64)
    if not np.all(tr >= thr):
        return False
    return bool(np.all(np.isnan(te)) or np.all(te >= thr))


def stopped_early(cfg: TrainConfig, metrics: pd.DataFrame) -> bool:
    """Whether a run folder's ``metrics.csv`` ends where ``cfg``'s early stop ended the run."""
    if cfg.stop_accuracy is None or metrics.empty:
        return False
    t = int(metrics["step"].iloc[-1])
    return t < cfg.steps and stop_rule_met(cfg, metrics["train_accuracy"].to_numpy(np.float64),
                                           metrics["test_accuracy"].to_numpy(np.float64), t)
