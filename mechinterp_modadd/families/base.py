"""The :class:`Family` adapter: everything the toolkit needs to know about one kind of network.

A *family* is an architecture that solves modular addition (the paper's MLP on e_x + e_y, an MLP on
concatenated one-hot inputs, a one-layer transformer, ...). Adding one means writing one subclass
of :class:`Family` and registering an instance with
:func:`mechinterp_modadd.families.register_family`; the analyses read its models through the
:class:`~mechinterp_modadd.neurons.NeuronView` the adapter builds, so they need no change.

What a subclass provides (class attributes, then methods):

- ``name`` (the registry key and the ``family`` recorded in checkpoints and JSON outputs),
  ``description`` (one line), ``model_types`` (the model classes it owns, for
  :func:`~mechinterp_modadd.families.family_of`), ``config_type`` (its frozen config dataclass,
  which must have ``p``, ``d_mlp``, ``to_dict()`` and a ``from_dict`` classmethod), ``hook_pre`` /
  ``hook_post`` (the hook point names of its neurons' pre- and post-activations);
- :meth:`Family.config_from_dict` / :meth:`Family.build`: a config from a JSON object, and a model
  from a config (``seed=None`` leaves the weights at zero for loading);
- :meth:`Family.detect`: whether a plain state dict (keys -> tensors) looks like this family, from
  its keys and shapes only; :func:`~mechinterp_modadd.families.detect_family` asks every family
  and refuses ambiguity;
- :meth:`Family.from_state_dict`: a model from a plain (foreign) state dict, raising
  :class:`~mechinterp_modadd.errors.CheckpointError` with one line that names the key or shape
  that does not fit (``where`` names the file in that line);
- :meth:`Family.neuron_view`: the model's :class:`~mechinterp_modadd.neurons.NeuronView`, in float64,
  through the model's hook points (so TransformerLens hooks attached to the model apply), of all
  neurons or of ``neurons=``;
- optionally :meth:`Family.d_mlp` (the number of hidden neurons of a model; default
  ``model.cfg.d_mlp``), :meth:`Family.activation_name` and :meth:`Family.activations` (pre and
  post of some neurons without the rest of the view, for large models).

:func:`check_tensor` is the shared validation of one state-dict entry (tensor, shape, float,
finite) that every loader uses, so every family words its errors alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor

from ..errors import CheckpointError

__all__ = ["Family", "check_tensor", "describe_state_dict"]


def describe_state_dict(sd: Mapping[str, Any], limit: int = 12) -> str:
    """``key [shape], key [shape], ...`` (at most ``limit`` entries) for error lines."""
    parts = []
    for k, v in list(sd.items())[:limit]:
        parts.append(f"{k} {list(v.shape)}" if isinstance(v, Tensor) else f"{k} ({type(v).__name__})")
    more = f", ... ({len(sd) - limit} more)" if len(sd) > limit else ""
    return ", ".join(parts) + more if parts else "no keys"


def check_tensor(where: str, key: str, t: Any, shape: tuple[int, ...] | None = None, *,
                 ndim: int | None = None) -> Tensor:
    """``t`` if it is a finite float tensor of ``shape`` (or of ``ndim`` dimensions); else a
    :class:`CheckpointError` naming ``where`` and ``key``."""
    want = f"shape {shape}" if shape is not None else f"{ndim} dimensions"
    if not isinstance(t, Tensor):
        raise CheckpointError(f"{where}: key {key!r} should be a tensor of {want}, found {type(t).__name__}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise CheckpointError(f"{where}: key {key!r} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if ndim is not None and t.ndim != ndim:
        raise CheckpointError(f"{where}: key {key!r} has shape {tuple(t.shape)}, expected {ndim} dimensions")
    if not t.dtype.is_floating_point:
        raise CheckpointError(f"{where}: key {key!r} has dtype {t.dtype}, expected a float tensor")
    if not bool(t.isfinite().all()):
        raise CheckpointError(f"{where}: key {key!r} has {int((~t.isfinite()).sum())} NaN/inf values")
    return t


class Family(ABC):
    """Adapter of one network family (see the module docstring for the contract)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    model_types: ClassVar[tuple[type, ...]] = ()
    config_type: ClassVar[type]
    hook_pre: ClassVar[str] = "mlp.hook_pre"
    hook_post: ClassVar[str] = "mlp.hook_post"

    # ------------------------------------------------------------------------- configs, models
    def config_from_dict(self, d: Mapping[str, Any]) -> Any:
        """The family's config from a JSON object (unknown keys refused by the config)."""
        return self.config_type.from_dict(dict(d))

    @abstractmethod
    def build(self, config: Any, seed: int | None = 0) -> Any:
        """A model of this family from ``config``, initialised from ``seed`` (None: zeros)."""

    def owns(self, model: Any) -> bool:
        """Whether ``model`` is one of this family's models."""
        return isinstance(model, self.model_types)

    def d_mlp(self, model: Any) -> int:
        """Number of hidden neurons of ``model``."""
        return int(model.cfg.d_mlp)

    def activation_name(self, model: Any) -> str:
        """The activation's registry name (``"custom"`` for an unregistered callable)."""
        act = getattr(model, "activation", None)
        return act if isinstance(act, str) else getattr(act, "__name__", "custom")

    # ------------------------------------------------------------------------- foreign weights
    @abstractmethod
    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        """Whether a plain state dict has this family's keys and shapes."""

    @abstractmethod
    def from_state_dict(self, state_dict: Mapping[str, Any], *, activation: str | None = None,
                        p: int | None = None, where: str = "state dict") -> Any:
        """A model from a plain state dict; :class:`CheckpointError` naming the key or shape that
        does not fit (``where`` names the source in the message)."""

    # ------------------------------------------------------------------------------- the view
    @abstractmethod
    def neuron_view(self, model: Any, neurons: Sequence[int] | Tensor | slice | None = None) -> Any:
        """The model's :class:`~mechinterp_modadd.neurons.NeuronView` (all neurons, or ``neurons``)."""

    def activations(self, model: Any, neurons: Sequence[int] | Tensor | slice | None = None
                    ) -> tuple[Tensor, Tensor]:
        """float64 pre- and post-activations [p*p, n] of ``neurons`` on all pairs: the view's
        ``pre`` and ``post`` without the rest of it (a family may override this with a cheaper pass;
        the default builds the view)."""
        view = self.neuron_view(model, neurons=neurons)
        return view.pre, view.post

    def __repr__(self) -> str:
        return f"<family {self.name!r}: {self.description}>"
