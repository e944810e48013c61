"""The family registry (re-exported by :mod:`mechinterp_modadd.families`; see its docstring)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from ..errors import CheckpointError, ConfigError
from .base import Family, describe_state_dict

__all__ = ["Family", "FAMILIES", "register_family", "get_family", "family_of", "family_name",
           "detect_family", "families", "neuron_view"]

#: The registry: name -> adapter, in registration order.
FAMILIES: dict[str, Family] = {}


def register_family(family: Family, *, replace: bool = False) -> Family:
    """Add ``family`` to :data:`FAMILIES` under ``family.name`` (refused when the name is taken,
    unless ``replace``). Returns it."""
    if not isinstance(family, Family):
        raise ConfigError(f"register_family needs a Family instance, got {type(family).__name__}")
    name = getattr(family, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"a family's name must be an identifier (it is a JSON value and a CLI choice), got {name!r}")
    if name in FAMILIES and not replace:
        raise ConfigError(f"family {name!r} is already registered; pass replace=True to swap it")
    FAMILIES[name] = family
    return family


def families() -> list[Family]:
    """Every registered family, in registration order."""
    return list(FAMILIES.values())


def get_family(name: str | Family) -> Family:
    """The registered family called ``name`` (a :class:`Family` is returned as is)."""
    if isinstance(name, Family):
        return name
    if name not in FAMILIES:
        raise ConfigError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_of(model: Any) -> Family:
    """The family whose model types include ``model``'s type."""
    for fam in FAMILIES.values():
        if fam.owns(model):
            return fam
    raise ConfigError(f"no registered family owns a {type(model).__name__}; known families: {', '.join(FAMILIES)}")


def family_name(model: Any) -> str:
    """``family_of(model).name``."""
    return family_of(model).name


def detect_family(state_dict: Mapping[str, Any], where: str = "state dict") -> Family:
    """The one family whose :meth:`~Family.detect` accepts the keys and shapes of ``state_dict``.

    Raises :class:`CheckpointError` naming ``where`` and listing the keys when no family or more
    than one matches (then pass the family explicitly, e.g. ``--family concat_mlp``).
    """
    hits = [f for f in FAMILIES.values() if f.detect(state_dict)]
    if len(hits) == 1:
        return hits[0]
    keys = describe_state_dict(state_dict)
    if not hits:
        raise CheckpointError(f"{where}: no known network family has these keys and shapes ({keys}); "
                              f"families: {', '.join(FAMILIES)} (pass --family to get the exact complaint)")
    raise CheckpointError(f"{where}: the keys and shapes fit several families ({', '.join(f.name for f in hits)}); "
                          f"pass --family to choose")



def neuron_view(model: Any, neurons: Sequence[int] | Tensor | slice | None = None):
    """The :class:`~mechinterp_modadd.neurons.NeuronView` of any model whose family is registered
    (``family_of(model).neuron_view(model, neurons)``)."""
    return family_of(model).neuron_view(model, neurons=neurons)
