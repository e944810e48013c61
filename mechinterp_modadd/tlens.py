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

- ``model.hook_dict`` answers to the aliases too (``hook_dict[get_act_name("post", 0)]``) while
  iterating each hook point once under our name.

What does not apply to this architecture is refused with one sentence (a
:class:`~mechinterp_modadd.errors.ConfigError`) instead of a wrong answer or a bare ``KeyError``:

- Only ``hook_embed`` ([batch, 2, d_model]) has a position axis. ``mlp.hook_pre``,
  ``mlp.hook_post`` ([batch, d_mlp]: the two tokens are summed before the MLP) and ``hook_logits``
  have none, so ``run_with_cache(..., pos_slice=...)`` is refused (TransformerLens would slice the
  neuron axis), and so is a position patch setter of ``transformer_lens.patching``
  (``layer_pos_patch_setter``, ...) on one of those hook points. Patch per neuron instead, with an
  ``index_df`` whose first column is ``layer`` (always 0) and a setter that writes
  ``act[:, neuron]``, as ``tests/core/test_transformer_lens.py`` does.
- The residual-stream helpers of ``ActivationCache`` (``accumulated_resid``, ``decompose_resid``,
  ``stack_neuron_results``, ...: :data:`RESIDUAL_HELPERS`) assume a residual stream with layer
  norms and attention heads; a one-hidden-layer MLP has none, and the sentence says what it has
  instead (the logits are a sum of per-neuron terms).

Tested with transformer-lens 4.3 (the range pyproject states; README, "TransformerLens versions").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformer_lens import ActivationCache
from transformer_lens.utilities import get_act_name

from .errors import ConfigError

__all__ = ["HOOK_ALIASES", "POSITIONLESS_HOOKS", "RESIDUAL_HELPERS", "TRANSFORMER_LENS_FIELDS", "AliasedHookDict",
           "HookedConfig", "ModAddActivationCache", "canonical_hook_name", "check_patch_hook", "check_pos_slice",
           "resolve_names_filter"]

#: TransformerLens name -> our hook point name (the MLP is TransformerLens's layer 0).
HOOK_ALIASES: dict[str, str] = {
    "blocks.0.mlp.hook_pre": "mlp.hook_pre",
    "blocks.0.mlp.hook_post": "mlp.hook_post",
}


#: Hook points whose activations have no position axis (batch first, then neurons or classes).
POSITIONLESS_HOOKS: frozenset[str] = frozenset({"mlp.hook_pre", "mlp.hook_post", "hook_logits"})

_NO_POSITION = ("{what}: ModAddMLP's activations {names} are [batch, d_mlp] / [batch, p] with no position "
                "axis (x and y are summed before the MLP; only hook_embed is [batch, 2, d_model])")


def canonical_hook_name(name: str) -> str:
    """Our hook point name for ``name`` (an alias of :data:`HOOK_ALIASES` or already ours)."""
    return HOOK_ALIASES.get(name, name) if isinstance(name, str) else name


class AliasedHookDict(dict):
    """``model.hook_dict``: our hook points by our names (iteration, ``len``, ``items()`` list each
    once, so TransformerLens's loops over it hook each point once), and lookup by a
    :data:`HOOK_ALIASES` name too: ``hook_dict["blocks.0.mlp.hook_post"] is hook_dict["mlp.hook_post"]``."""

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(canonical_hook_name(key))

    def __contains__(self, key: object) -> bool:
        return super().__contains__(canonical_hook_name(key))  # type: ignore[arg-type]

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(canonical_hook_name(key), default)


def check_pos_slice(pos_slice: Any) -> None:
    """Refuse a ``pos_slice`` other than None (TransformerLens would slice dim -2, which for our
    [batch, d_mlp] activations is the batch: ``pos_slice=-1`` kept only the last example)."""
    if pos_slice is None or getattr(pos_slice, "mode", None) == "identity":
        return
    raise ConfigError(_NO_POSITION.format(what=f"run_with_cache(pos_slice={pos_slice!r})",
                                          names="mlp.hook_pre, mlp.hook_post and hook_logits")
                      + "; drop pos_slice and index cache['hook_embed'][:, pos] for a token's embedding")


def _transformer_lens_patch_setter(hook: Any) -> Any:
    """The ``patch_setter`` of a hook made by ``transformer_lens.patching.generic_activation_patch``
    (a ``functools.partial`` of its inner ``patching_hook``, which holds the setter in its closure),
    or None for any other hook."""
    import functools
    import inspect

    if not isinstance(hook, functools.partial) or not inspect.isfunction(hook.func):
        return None
    if not hook.func.__qualname__.startswith("generic_activation_patch."):
        return None
    return inspect.getclosurevars(hook.func).nonlocals.get("patch_setter")


def check_patch_hook(name: Any, hook: Any) -> None:
    """Refuse a TransformerLens patch setter that indexes a position axis (``layer_pos_patch_setter``
    and the other setters of ``transformer_lens.patching``: they write ``act[:, pos, ...]``) on a
    hook point of :data:`POSITIONLESS_HOOKS`, where that index would silently pick neurons 0 and 1."""
    if not isinstance(name, str) or canonical_hook_name(name) not in POSITIONLESS_HOOKS:
        return
    setter = _transformer_lens_patch_setter(hook)
    if setter is None or getattr(setter, "__module__", None) != "transformer_lens.patching":
        return
    raise ConfigError(_NO_POSITION.format(what=f"{setter.__name__} on {name}", names=canonical_hook_name(name))
                      + ", so a [layer, pos] patch would overwrite neurons; patch neurons with "
                      "generic_activation_patch(..., index_df=pandas.DataFrame({'layer': 0, 'neuron': "
                      "range(d_mlp)})) and a setter that writes act[:, index[1]]")


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

    def apply_slice_to_batch_dim(self, batch_slice: Any) -> ModAddActivationCache:
        """TransformerLens's batch slice, still answering to the aliases."""
        sliced = super().apply_slice_to_batch_dim(batch_slice)
        return ModAddActivationCache(sliced.cache_dict, self.model, has_batch_dim=sliced.has_batch_dim)

    def _refuse(self, name: str) -> Any:
        raise ConfigError(
            f"cache.{name}(): ModAddMLP is one hidden layer, logits = W_out @ sigma(W_in @ (e_x + e_y)), with no "
            f"residual stream, attention heads or layer norm; its logits decompose over neurons instead: "
            f"cache['post', 0][:, m, None] * model.W_out[:, m] is neuron m's term and the d_mlp terms sum to "
            f"cache['hook_logits']")

    def accumulated_resid(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("accumulated_resid")

    def decompose_resid(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("decompose_resid")

    def stack_neuron_results(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("stack_neuron_results")

    def get_neuron_results(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("get_neuron_results")

    def get_full_resid_decomposition(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("get_full_resid_decomposition")

    def stack_head_results(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("stack_head_results")

    def compute_head_results(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("compute_head_results")

    def apply_ln_to_stack(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("apply_ln_to_stack")

    def logit_attrs(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("logit_attrs")

    def logit_lens(self, *args: Any, **kwargs: Any) -> Any:
        return self._refuse("logit_lens")


#: ActivationCache methods refused by :class:`ModAddActivationCache` (they need a residual stream).
RESIDUAL_HELPERS: tuple[str, ...] = (
    "accumulated_resid", "decompose_resid", "stack_neuron_results", "get_neuron_results",
    "get_full_resid_decomposition", "stack_head_results", "compute_head_results", "apply_ln_to_stack",
    "logit_attrs", "logit_lens",
)


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

    - ``n_layers = 1`` (the MLP is block 0), ``n_ctx = 2`` (the input's two tokens x and y: the
      position axis of ``hook_embed``, the only activation that has one; see the module docstring),
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
