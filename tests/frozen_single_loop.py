"""A frozen copy of the single-run CPU training loop as it was before the one engine (issue 19),
kept only as the reference the engine is compared with bit for bit (tests/training/test_training_engine.py).

Do not change its arithmetic. The one addition: torch.optim.SGD receives ``cfg.momentum`` (0 for
every config of that time), so SGD with momentum has a reference too. In memory only: no run
folder, no resume.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mechinterp_modadd.data import Split, random_split
from mechinterp_modadd.forward import input_logits, pair_inputs, unordered_pairs
from mechinterp_modadd.model import ModAddMLP

METRIC_COLUMNS = ["step", "train_loss", "test_loss", "train_accuracy", "test_accuracy", "param_norm", "lr"]


class FullBatchObjective:
    """Loss and accuracy of all p^2 pairs from one pass over the p(p + 1)/2 unordered pairs."""

    def __init__(self, split: Split) -> None:
        p = split.p
        self.p = p
        pairs, _ = unordered_pairs(p)
        self.xs, self.ys = pairs[:, 0].contiguous(), pairs[:, 1].contiguous()
        self.labels = (self.xs + self.ys) % p
        self.inputs = pair_inputs(pairs, p)
        tr = split.train_mask.reshape(p, p)
        diag = self.xs == self.ys
        n_tr = tr[self.xs, self.ys].double() + torch.where(diag, 0.0, tr[self.ys, self.xs].double())
        n_all = torch.where(diag, 1.0, 2.0).double()
        self.w_train = n_tr
        self.w_test = n_all - n_tr
        self.n_train = float(self.w_train.sum())
        self.n_test = float(self.w_test.sum())

    def __call__(self, model: ModAddMLP) -> tuple[Tensor, dict[str, float]]:
        logits = input_logits(model, self.inputs)
        logp = torch.log_softmax(logits.double(), dim=-1)
        nll = -logp.gather(1, self.labels[:, None])[:, 0]
        correct = (logits.argmax(dim=-1) == self.labels).double()
        train_loss = (nll * self.w_train).sum() / max(self.n_train, 1.0)
        with torch.no_grad():
            nll_d = nll.detach()
            m = {
                "train_loss": float(train_loss.detach()),
                "train_accuracy": float((correct * self.w_train).sum() / max(self.n_train, 1.0)),
                "test_loss": float((nll_d * self.w_test).sum() / self.n_test) if self.n_test else float("nan"),
                "test_accuracy": float((correct * self.w_test).sum() / self.n_test) if self.n_test else float("nan"),
            }
        return train_loss, m


def stop_rule_met(cfg, train_accuracy, test_accuracy, t: int) -> bool:
    w = cfg.stop_window
    if cfg.stop_accuracy is None or t <= 0 or t % w or t < w or t >= len(train_accuracy):
        return False
    thr = cfg.stop_accuracy
    tr = np.asarray(train_accuracy[t - w: t + 1], dtype=np.float64)
    te = np.asarray(test_accuracy[t - w: t + 1], dtype=np.float64)
    if not np.all(tr >= thr):
        return False
    return bool(np.all(np.isnan(te)) or np.all(te >= thr))


def param_norm(params) -> Tensor:
    sq = [torch.linalg.vector_norm(q, dtype=torch.float64) ** 2 for q in params]
    return torch.stack(sq).sum().sqrt()


def make_optimizer(cfg, model: ModAddMLP) -> torch.optim.Optimizer:
    params = [p for _, p in model.named_parameters()]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                 foreach=False)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           foreach=False)


def lr_at(cfg, t: int) -> float:
    if cfg.warmup_steps <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (t + 1) / cfg.warmup_steps)


def frozen_train(cfg) -> tuple[ModAddMLP, pd.DataFrame]:
    """The old single-run loop, in memory: (model, metrics)."""
    model = ModAddMLP(cfg.model_config(), seed=cfg.seed)
    split = random_split(cfg.p, cfg.train_fraction, cfg.effective_split_seed)
    objective = FullBatchObjective(split)
    opt = make_optimizer(cfg, model)
    n = cfg.steps + 1
    rows = {c: np.full(n, np.nan) for c in METRIC_COLUMNS}
    rows["step"] = np.arange(n, dtype=np.float64)
    for t in range(0, n):
        opt.zero_grad(set_to_none=True)
        loss, m = objective(model)
        with torch.no_grad():
            norm = param_norm(model.parameters())
        for k, v in m.items():
            rows[k][t] = v
        rows["param_norm"][t] = float(norm)
        rows["lr"][t] = lr_at(cfg, t)
        stop = stop_rule_met(cfg, rows["train_accuracy"], rows["test_accuracy"], t)
        if t == cfg.steps or stop:
            n = t + 1
            break
        loss.backward()
        lr = lr_at(cfg, t)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.step()
    df = pd.DataFrame({k: v[:n] for k, v in rows.items()})
    df["step"] = df["step"].astype(int)
    return model, df
