"""Shared pieces of the analyses: the result protocol and all-pairs evaluation."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data import all_pairs
from ..forward import all_pair_logits

__all__ = ["Result", "Thresholds", "ClaimResult", "to_jsonable", "all_pair_logits", "accuracy_and_loss"]


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


class Result:
    """The protocol every analysis result follows, with one meaning across classes:

    - ``to_dict()``: a ``dict`` of plain JSON values (numbers, strings, lists, dicts; NaN and inf
      become ``None``) holding every number of the result;
    - ``to_frame()``: its main table as a :class:`pandas.DataFrame`;
    - ``to_json()``: the text of ``to_dict()`` as JSON (``allow_nan=False``).

    Subclasses define ``to_dict`` and ``to_frame``; ``to_json`` comes from here.
    """

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__}.to_dict")

    def to_frame(self) -> pd.DataFrame:
        raise NotImplementedError(f"{type(self).__name__}.to_frame")

    def to_json(self, indent: int | None = 1) -> str:
        """``to_dict()`` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)


@dataclass(frozen=True)
class Thresholds:
    """Base of the frozen dataclasses that hold one claim's thresholds (one per claim).

    A claim function builds its thresholds object from its keyword arguments and stores it on its
    result (``result.thresholds``), so every verdict carries the numbers it was judged by.
    """

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(asdict(self))


@dataclass
class ClaimResult(Result):
    """Base of every claim check: a boolean verdict ``holds`` plus the numbers behind it.

    Subclasses are dataclasses; they set ``claim`` (the JSON name), ``key_metric`` (the field
    shown in one-line summaries), ``level`` ("model" for one checkpoint, "run" for a training
    run) and document their formula and thresholds in the class docstring. ``thresholds`` is the
    claim's frozen :class:`Thresholds` dataclass; its fields read as attributes of the result too
    (``result.min_fraction`` is ``result.thresholds.min_fraction``) and appear both flat and as
    the ``thresholds`` object in :meth:`to_dict`.
    """

    holds: bool
    thresholds: Thresholds | None = field(default=None, kw_only=True)
    claim: ClassVar[str] = "claim"
    key_metric: ClassVar[str] = ""
    level: ClassVar[str] = "model"

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: a threshold read through the result
        th = self.__dict__.get("thresholds")
        if th is not None and name in {f.name for f in fields(th)}:
            return getattr(th, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def to_dict(self) -> dict[str, Any]:
        d = to_jsonable({f.name: getattr(self, f.name) for f in fields(self) if f.name != "thresholds"})
        if self.thresholds is not None:
            th = self.thresholds.to_dict()
            d.update({k: v for k, v in th.items() if k not in d})
            d["thresholds"] = th
        return d

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
