"""TransformerLens interoperability of :class:`~mechinterp_modadd.model.ModAddMLP`.

Three pieces let TransformerLens utilities (``ActivationCache``, ``get_act_name``,
``transformer_lens.patching.generic_activation_patch``) work on our one-layer network unchanged:

- :class:`HookedConfig`, what ``model.cfg`` returns: the model's strict, frozen
  :class:`~mechinterp_modadd.model.ModelConfig` (every field, ``to_dict``, ``replace`` and equality
  are those of the ModelConfig) plus the read-only fields TransformerLens reads from a config
  (``device``, ``dtype``, ``n_layers = 1``, ``d_vocab = d_vocab_out = p``, ``n_ctx = 2``,
  ``n_heads = 0``, ``act_fn``, ...; :data:`TRANSFORMER_LENS_FIELDS` lists them).
- :data:`HOOK_ALIASES`: the names ``get_act_name`` produces for a layer-0 MLP
  (``blocks.0.mlp.hook_pre``, ``blocks.0.mlp.hook_post``) resolve to our hook points
  ``mlp.hook_pre`` and ``mlp.hook_post`` in ``run_with_hooks``, ``hooks``, ``add_hook`` and in
  ``run_with_cache``'s ``names_filter``; ours keep their names (the cache is keyed by them).
- :class:`ModAddActivationCache`, the ``transformer_lens.ActivationCache`` that
  ``run_with_cache`` returns; indexing it by an alias or by a shorthand such as ``("post", 0)``
  returns our tensor.

Our activations have no position axis (``mlp.hook_pre`` is [batch, d_mlp]: the two tokens are
summed before the MLP), so TransformerLens's ``("layer", "pos")`` patching grids do not apply;
patch per neuron with an ``index_df`` whose first column is ``layer`` (always 0), as
``tests/test_transformer_lens.py`` does.

Tested with transformer-lens 4.3 (the range pyproject states).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformer_lens import ActivationCache
from transformer_lens.utilities import get_act_name

from .errors import ConfigError

__all__ = ["HOOK_ALIASES", "TRANSFORMER_LENS_FIELDS", "HookedConfig", "ModAddActivationCache",
           "canonical_hook_name", "resolve_names_filter"]

#: TransformerLens name -> our hook point name (the MLP is TransformerLens's layer 0).
HOOK_ALIASES: dict[str, str] = {
    "blocks.0.mlp.hook_pre": "mlp.hook_pre",
    "blocks.0.mlp.hook_post": "mlp.hook_post",
}


def canonical_hook_name(name: str) -> str:
    """Our hook point name for ``name`` (an alias of :data:`HOOK_ALIASES` or already ours)."""
    return HOOK_ALIASES.get(name, name)


def _aliases_of(name: str) -> list[str]:
    return [alias for alias, target in HOOK_ALIASES.items() if target == name]


def resolve_names_filter(names_filter: Any) -> Any:
    """``run_with_cache``'s ``names_filter`` with aliases mapped to our names.

    A string or a list of strings is mapped name by name; a callable is wrapped so that it also
    selects our hook point when it accepts one of its aliases (``lambda n: n ==
    "blocks.0.mlp.hook_post"`` caches ``mlp.hook_post``); ``None`` (everything) is kept.
    """
    if names_filter is None:
        return None
    if isinstance(names_filter, str):
        return canonical_hook_name(names_filter)
    if isinstance(names_filter, (list, tuple)):
        return [canonical_hook_name(n) for n in names_filter]
    if callable(names_filter):
        f: Callable[[str], bool] = names_filter
        return lambda name: bool(f(name)) or any(f(a) for a in _aliases_of(name))
    return names_filter  # let TransformerLens report the bad type


class ModAddActivationCache(ActivationCache):
    """A ``transformer_lens.ActivationCache`` keyed by our hook names that also answers to their
    TransformerLens aliases: ``cache["mlp.hook_post"]``, ``cache["blocks.0.mlp.hook_post"]``,
    ``cache["post", 0]`` and ``cache["post0"]`` are the same tensor. ``keys()``/``items()`` list
    each activation once, under our name."""

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, str) and key in self.cache_dict:
            return self.cache_dict[key]
        if isinstance(key, str):
            name = get_act_name(key)
        else:
            key = tuple(key)
            if len(key) > 1 and key[1] is not None and key[1] < 0:
                key = (key[0], self.model.cfg.n_layers + key[1], *key[2:])
            name = get_act_name(*key)
        name = canonical_hook_name(name)
        if name not in self.cache_dict:
            raise KeyError(f"{key!r} (hook {name!r}) is not in the cache; cached: {sorted(self.cache_dict)}")
        return self.cache_dict[name]

    def __contains__(self, key: object) -> bool:
        try:
            self[key]
        except (KeyError, TypeError, ValueError):
            return False
        return True


#: The TransformerLens config fields :class:`HookedConfig` answers (besides ModelConfig's own).
TRANSFORMER_LENS_FIELDS: tuple[str, ...] = (
    "d_model", "d_head", "n_layers", "n_ctx", "n_heads", "d_mlp", "d_vocab", "d_vocab_out", "device", "dtype",
    "act_fn", "use_attn_result", "use_split_qkv_input", "default_prepend_bos", "positional_embedding_type",
    "n_key_value_heads", "attn_only", "gated_mlp", "uses_rms_norm", "eps", "layer_norm_folding",
    "normalization_type", "num_experts", "experts_per_token", "final_rms", "original_architecture",
    "model_name",
)


class HookedConfig:
    """``model.cfg``: the model's :class:`ModelConfig` seen with TransformerLens's config fields.

    Every attribute of the ModelConfig (``p``, ``d_mlp``, ``activation``, ``to_dict()``,
    ``replace()``, ``K``, ...) is read through; equality and hashing are the ModelConfig's, so
    ``model.cfg == ModelConfig(...)`` compares configurations. The object is read-only: change a
    model's configuration by assigning ``model.cfg = model.cfg.replace(...)``.

    TransformerLens fields (values for this architecture):

    - ``n_layers = 1`` (the MLP is block 0), ``n_ctx = 2`` (the tokens x and y),
      ``n_heads = 0``, ``d_head = 0``, ``n_key_value_heads = None``, ``attn_only = False``;
    - ``d_vocab = d_vocab_out = p``, ``d_model`` and ``d_mlp`` as in the ModelConfig;
    - ``device`` (string, e.g. ``"cpu"``) and ``dtype``: where the model's weights are now;
    - ``act_fn``: the activation's registry name (``"custom"`` for an unregistered callable);
    - no normalisation (``normalization_type = None``), no positional embedding
      (``positional_embedding_type = "none"``), no gating, no experts.

    ``config`` is the ModelConfig and ``model`` the ModAddMLP (typed ``Any`` here: this module is
    imported by :mod:`mechinterp_modadd.model` and imports nothing back).
    """

    __slots__ = ("_config", "_model")

    def __init__(self, config: Any, model: Any) -> None:
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_model", model)

    @property
    def config(self) -> Any:
        """The plain, frozen ModelConfig."""
        return self._config

    # TransformerLens fields -------------------------------------------------------------
    @property
    def device(self) -> str:
        return str(self._model.mlp.W_in.device)

    @property
    def dtype(self) -> torch.dtype:
        return self._model.mlp.W_in.dtype

    @property
    def act_fn(self) -> str:
        act = self._model.activation
        return act if isinstance(act, str) else "custom"

    @property
    def d_vocab(self) -> int:
        return self._config.p

    @property
    def d_vocab_out(self) -> int:
        return self._config.p

    @property
    def model_name(self) -> str:
        return f"modadd_p{self._config.p}_d{self._config.d_mlp}_{self.act_fn}"

    n_layers = 1
    n_ctx = 2
    n_heads = 0
    d_head = 0
    n_key_value_heads = None
    use_attn_result = False
    use_split_qkv_input = False
    default_prepend_bos = False
    positional_embedding_type = "none"
    attn_only = False
    gated_mlp = False
    uses_rms_norm = False
    eps = 0.0
    layer_norm_folding = False
    normalization_type = None
    num_experts = None
    experts_per_token = None
    final_rms = False
    original_architecture = "ModAddMLP"

    # the ModelConfig behind it ------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._config, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise ConfigError(f"model.cfg is read-only (tried to set {name!r}); assign "
                          f"model.cfg = model.cfg.replace({name}=...) to change the configuration")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HookedConfig):
            other = other._config
        return self._config == other

    def __hash__(self) -> int:
        return hash(self._config)

    def __repr__(self) -> str:
        return f"HookedConfig({self._config!r}, device={self.device!r}, dtype={self.dtype})"

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | set(dir(self._config)))

    def to_transformer_lens_dict(self) -> dict[str, Any]:
        """The TransformerLens fields and their values (:data:`TRANSFORMER_LENS_FIELDS`)."""
        return {name: getattr(self, name) for name in TRANSFORMER_LENS_FIELDS}
