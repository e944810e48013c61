"""What the run-level analyses need from a model of any family: its closed-form spectrum and its logits.

- :func:`family_spectrum`: the per-neuron decomposition registered for the model's family with
  :func:`register_family_spectrum` (:func:`~mechinterp_modadd.fourier.neuron_spectrum` for the
  paper's MLP, :func:`~mechinterp_modadd.analysis.concat.concat_spectrum_of` for ``concat_mlp``;
  None for a family without a closed form);
- :func:`family_logits`: float64 logits on all p^2 pairs, from the weights for the paper's MLP
  (:func:`mechinterp_modadd.forward.logits`, the bits of every analysis before families existed)
  and from the neuron view otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ..families import family_of
from ..forward import logits as forward_logits
from ..fourier import neuron_spectrum

__all__ = ["FAMILY_SPECTRA", "register_family_spectrum", "family_spectrum", "family_logits"]


def _concat_spectrum(model: Any) -> Any:
    from .concat import concat_spectrum_of

    return concat_spectrum_of(model)


#: family name -> function(model) giving its closed-form spectrum
FAMILY_SPECTRA: dict[str, Callable[[Any], Any]] = {"mlp": neuron_spectrum, "concat_mlp": _concat_spectrum}


def register_family_spectrum(family: str, fn: Callable[[Any], Any]) -> None:
    """Name the closed-form per-neuron decomposition of ``family`` (``ctx.spectrum`` in diagnoses,
    ``series.spectrum(step)`` over runs)."""
    FAMILY_SPECTRA[family] = fn


def family_spectrum(model: Any, family: str | None = None) -> Any:
    """The registered spectrum of ``model`` (None for a family without one)."""
    fn = FAMILY_SPECTRA.get(family_of(model).name if family is None else family)
    return None if fn is None else fn(model)


def family_logits(model: Any, max_memory: int | None = None) -> Tensor:
    """float64 all-pairs logits [p*p, p] (weights for ``mlp``, the neuron view otherwise; hooks on
    the MLP's hook points apply only through the view)."""
    fam = family_of(model)
    if fam.name == "mlp":
        return forward_logits(model, max_memory=max_memory)
    return fam.neuron_view(model).logits()
