"""Shared pieces of the analyses: the result protocol and all-pairs evaluation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data import all_pairs
from ..forward import all_pair_logits

__all__ = ["ClaimResult", "to_jsonable", "all_pair_logits", "accuracy_and_loss"]


def to_jsonable(x: Any) -> Any:
    """Turn tensors, numpy values, dataclasses and non-finite floats into plain JSON values."""
    if is_dataclass(x) and not isinstance(x, type):
        return {f.name: to_jsonable(getattr(x, f.name)) for f in fields(x)}
    if isinstance(x, Tensor):
        return to_jsonable(x.detach().cpu().tolist())
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return to_jsonable(x.item())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, pd.DataFrame):
        return to_jsonable(x.to_dict(orient="records"))
    return x


@dataclass
class ClaimResult:
    """Base of every claim check: a boolean verdict ``holds`` plus the numbers behind it.

    Subclasses are dataclasses; they set ``claim`` (the JSON name), ``key_metric`` (the field
    shown in one-line summaries) and document their threshold in the class docstring.
    """

    holds: bool
    claim: ClassVar[str] = "claim"
    key_metric: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))

    def to_frame(self) -> pd.DataFrame:
        """One row: the scalar fields of the result."""
        d = {k: v for k, v in self.to_dict().items() if not isinstance(v, (list, dict))}
        return pd.DataFrame([d])

    @property
    def key_value(self) -> Any:
        return getattr(self, self.key_metric) if self.key_metric else None

    def summary(self) -> str:
        v = self.key_value
        num = f"{v:.4g}" if isinstance(v, float) else str(v)
        return f"{self.claim}: {self.key_metric} = {num} -> {'holds' if self.holds else 'fails'}"


def accuracy_and_loss(logits: Tensor, p: int, mask: Tensor | None = None) -> tuple[float, float]:
    """Accuracy and mean cross-entropy (float64) of all-pairs logits, optionally on a subset."""
    pairs = all_pairs(p)
    y = (pairs[:, 0] + pairs[:, 1]) % p
    logits = logits.double()
    if mask is not None:
        logits, y = logits[mask], y[mask]
    if len(y) == 0:
        return float("nan"), float("nan")
    acc = float((logits.argmax(-1) == y).double().mean())
    loss = float(torch.nn.functional.cross_entropy(logits, y))
    return acc, loss
