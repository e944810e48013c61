"""Network families and their registry.

Every supported architecture is a :class:`~mechinterp_modadd.families.base.Family` adapter
registered here by name. The registry answers four questions:

- :func:`get_family` (``"mlp"`` -> the adapter; :class:`~mechinterp_modadd.errors.ConfigError`
  listing the known names otherwise);
- :func:`family_of` (a model -> its adapter, by the model's type);
- :func:`detect_family` (a plain state dict -> the one adapter whose :meth:`Family.detect` accepts
  its keys and shapes; :class:`~mechinterp_modadd.errors.CheckpointError` when none or several do);
- :func:`families` (every registered adapter, in registration order).

Registered here: ``"mlp"`` (the paper's network, :class:`~mechinterp_modadd.model.ModAddMLP`) and
``"concat_mlp"`` (one-hot x and y concatenated, separate weights,
:class:`~mechinterp_modadd.families.concat_mlp.ConcatMLP`). A family module registers its adapter
with :func:`register_family` when imported (this package imports its own at the top); a new family
does the same in its own module, imported by the user or added to the imports here::

    from mechinterp_modadd.families import register_family
    from mechinterp_modadd.families.base import Family

    class MyFamily(Family):
        name = "my_family"
        ...
    register_family(MyFamily())

The whole family API used by the analyses is: ``family.neuron_view(model)`` (a
:class:`~mechinterp_modadd.neurons.NeuronView`), ``family.build(config, seed)``,
``family.from_state_dict(sd, ...)`` and ``family.name``.
"""

from __future__ import annotations

# importing the family modules registers them ("mlp" first: concat_mlp imports it)
from . import concat_mlp as _concat_mlp
from . import mlp as _mlp
from . import transformer as _transformer
from .base import Family
from .registry import (
    FAMILIES,
    detect_family,
    families,
    family_name,
    family_of,
    get_family,
    neuron_view,
    register_family,
)

__all__ = ["Family", "FAMILIES", "register_family", "get_family", "family_of", "family_name",
           "detect_family", "families", "neuron_view"]

del _mlp, _concat_mlp, _transformer
