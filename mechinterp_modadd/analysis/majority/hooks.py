"""Interventions on the running model: sigma swapped at test time, and the hook helpers.

The hook factories and context managers (:func:`ablated`, :func:`swapped_activation`, ...) live in
:mod:`mechinterp_modadd.analysis.ablation` and are re-exported here; this module adds the
activation-swap experiment, which evaluates the trained weights with another sigma through
:func:`~mechinterp_modadd.forward.hidden` (the model itself is never modified).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from ...model import get_activation
from ...runtime import takes_device
from ..ablation import (
    ablated,
    ablation_hooks,
    activation_table,
    mean_ablation_hook,
    swapped_activation,
    zero_ablation_hook,
)
from ..base import Result, to_jsonable
from ..sampling import PairSample
from .experiments import lookup, with_ci

__all__ = ["SWAP_ACTIVATIONS", "ActivationSwapResult", "activation_swap", "ablated", "ablation_hooks",
           "mean_ablation_hook", "swapped_activation", "zero_ablation_hook"]

#: activations of the test-time swap (docs/science.md 3.7): relu, |x|, x^2, x^4, log(1+e^{2x}), e^x, x, x^3
SWAP_ACTIVATIONS: tuple[str, ...] = ("relu", "abs", "quad", "quartic", "softplus2", "exp", "identity", "cube")


@dataclass
class ActivationSwapResult(Result):
    """Accuracy and loss on all pairs with sigma replaced at test time by each activation
    (weights unchanged). Theory (docs/science.md 3.7): with symmetric phases only the even part of
    sigma votes, so even activations keep accuracy and odd ones (x, x^3) fall to chance."""

    rows: pd.DataFrame
    original: str
    sample: PairSample | None = None

    def to_frame(self) -> pd.DataFrame:
        """The rows; on a sample of pairs also ``ci_low`` / ``ci_high`` of the accuracy."""
        return with_ci(self.rows.copy(), "accuracy", self.sample)

    def intervals(self) -> dict[str, list[float]] | None:
        """Name -> 95 % interval of the accuracy, or None when all pairs were used."""
        if self.sample is None or self.sample.exact:
            return None
        f = self.to_frame()
        return {str(r.activation): [float(r.ci_low), float(r.ci_high)] for r in f.itertuples()}

    def accuracy(self, name: str) -> float:
        return lookup(self.rows, "activation", name, "accuracy")

    def accuracies(self) -> dict[str, float]:
        """Name -> accuracy on all pairs (the ``activation_swap`` object of the ``modadd ablate`` JSON)."""
        return {str(r.activation): float(r.accuracy) for r in self.rows.itertuples()}

    def losses(self) -> dict[str, float]:
        """Name -> cross-entropy loss on all pairs (the ``loss`` column of the printed table)."""
        return {str(r.activation): float(r.loss) for r in self.rows.itertuples()}

    #: the pre-split name of :meth:`losses`
    loss_json = losses

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable({"original": self.original, "accuracy": self.accuracies(), "loss": self.losses(),
                            "even": {str(r.activation): bool(r.even) for r in self.rows.itertuples()}})


@takes_device
def activation_swap(model, activations: Sequence[str] = SWAP_ACTIVATIONS, *, max_pairs: int | None = None,
                    seed: int = 0) -> ActivationSwapResult:
    """Accuracy and loss on all pairs with sigma replaced by each activation (the model is not
    modified: the swapped sigma is applied to a float64 copy of the weights), or on a seeded sample
    of ``max_pairs`` unordered pairs (the result then carries the sample and its intervals)."""
    tab_rows = []
    original = model.activation
    sample = None
    for name in activations:
        tab = activation_table(model, activation=name, max_pairs=max_pairs, seed=seed)
        ev = tab.evaluate(torch.ones(1, tab.d_mlp, dtype=torch.bool))
        sample = tab.sample
        del tab  # one table at a time
        tab_rows.append({"activation": name, "accuracy": float(ev.accuracy[0]), "loss": float(ev.loss[0]),
                         "even": _is_even(name)})
    return ActivationSwapResult(rows=pd.DataFrame(tab_rows),
                                original=original if isinstance(original, str) else repr(original), sample=sample)


def _is_even(name: str) -> bool:
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    f = get_activation(name)
    return bool(torch.allclose(f(x), f(-x)))
