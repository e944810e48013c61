"""Loading one-layer modular-addition transformers written by other programs.

Two layouts are read (:func:`layout_of` tells them apart from the keys and shapes):

``hooked_transformer`` — TransformerLens ``HookedTransformer`` parameter names and shapes (the
TransformerLens grokking demo, ARENA): ``embed.W_E`` [d_vocab, d_model], ``pos_embed.W_pos``
[n_ctx, d_model], ``blocks.0.attn.W_Q``/``W_K``/``W_V`` [n_heads, d_model, d_head], ``W_O``
[n_heads, d_head, d_model], ``b_Q``/``b_K``/``b_V`` [n_heads, d_head], ``b_O`` [d_model],
``blocks.0.mlp.W_in`` [d_model, d_mlp], ``b_in``, ``W_out`` [d_mlp, d_model], ``b_out``,
``unembed.W_U`` [d_model, d_vocab_out], ``b_U``. Biases may be absent (zero); the buffers
``blocks.0.attn.mask`` and ``blocks.0.attn.IGNORE`` are ignored.

``nanda`` — the ``Transformer`` class of Nanda et al.'s training code (progress-measures-paper):
``embed.W_E`` [d_model, d_vocab], ``pos_embed.W_pos`` [n_ctx, d_model],
``blocks.0.attn.W_K``/``W_Q``/``W_V`` [n_heads, d_head, d_model], ``blocks.0.attn.W_O``
[d_model, n_heads * d_head] (head-major columns), the causal ``blocks.0.attn.mask`` buffer,
``blocks.0.mlp.W_in`` [d_mlp, d_model], ``b_in``, ``W_out`` [d_model, d_mlp], ``b_out``, and
``unembed.W_U`` [d_model, d_vocab] with d_vocab = p + 1. His unembedding also scores the ``=``
token; that column is dropped, as his own metrics do (``logits[:, -1, :-1]``), so the answer's
arg-max over the p numbers is unchanged. His training script saves ``{"model": state_dict,
"epoch": ..., "train_loss": ..., ...}``.

Configs: every shape is read from the weights; ``act_fn`` is ReLU unless a config says otherwise.
A config is our :class:`~mechinterp_modadd.transformer.TransformerConfig` as JSON (``{"p": 113,
...}``) or a TransformerLens config dict (``d_model``, ``n_heads``, ``d_head``, ``d_mlp``,
``d_vocab``, ``d_vocab_out``, ``act_fn``, ``n_layers``, ``normalization_type``, ...; fields that
do not shape this network, such as ``seed`` or ``device``, are ignored, while a value this
architecture cannot honour — two layers, LayerNorm, attention-only, d_vocab != p + 1 — is refused).
It comes from ``--config FILE`` or from a ``cfg``/``config`` entry stored beside the weights.

Files: ``.safetensors`` (tensors only) or a torch pickle read with ``weights_only=True`` — a bare
state dict, or a dict holding it under ``model``/``state_dict``/``model_state_dict``, or the
TransformerLens grokking demo's full-run file (``checkpoints``: a list of state dicts; the last is
taken unless ``index`` says otherwise). A missing, extra or mis-shaped key is one
:class:`~mechinterp_modadd.errors.CheckpointError` line naming the file and the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import CheckpointError, ConfigError
from .transformer import TRANSFORMER_ACTIVATIONS, ModAddTransformer, TransformerConfig

__all__ = ["LAYOUTS", "LoadedTransformer", "layout_of", "config_from_json", "transformer_from_state_dict",
           "load_transformer", "read_config_file"]

LAYOUTS = ("hooked_transformer", "nanda")

_IGNORED_BUFFERS = ("blocks.0.attn.mask", "blocks.0.attn.IGNORE")
_HT_BIASES = ("blocks.0.attn.b_Q", "blocks.0.attn.b_K", "blocks.0.attn.b_V", "blocks.0.attn.b_O",
              "blocks.0.mlp.b_in", "blocks.0.mlp.b_out", "unembed.b_U")
_HT_WEIGHTS = ("embed.W_E", "pos_embed.W_pos", "blocks.0.attn.W_Q", "blocks.0.attn.W_K", "blocks.0.attn.W_V",
               "blocks.0.attn.W_O", "blocks.0.mlp.W_in", "blocks.0.mlp.W_out", "unembed.W_U")
_NANDA_WEIGHTS = _HT_WEIGHTS
_NANDA_OPTIONAL = ("blocks.0.mlp.b_in", "blocks.0.mlp.b_out")
_STATE_DICT_ENTRIES = ("model", "state_dict", "model_state_dict")
_CONFIG_ENTRIES = ("cfg", "config")


@dataclass(frozen=True)
class LoadedTransformer:
    """A transformer read from a foreign file: the model, its layout and what came with it.

    Attributes:
        model: the :class:`~mechinterp_modadd.transformer.ModAddTransformer` (eval mode).
        layout: ``"hooked_transformer"`` or ``"nanda"``.
        config_source: where the config came from (``"weights"`` when read from shapes alone,
            ``"file"`` for a ``cfg`` stored beside the weights, or the ``--config`` path).
        meta: scalar entries stored beside the weights (``epoch``, ``train_loss``, ...).
    """

    model: ModAddTransformer
    layout: str
    config_source: str
    meta: dict[str, Any]


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    v = sd.get(key)
    return tuple(v.shape) if isinstance(v, Tensor) else None


def layout_of(sd: Mapping[str, Any]) -> str | None:
    """``"hooked_transformer"``, ``"nanda"`` or ``None`` from the keys and shapes of ``sd``.

    Both layouts name the same keys; they differ in ``embed.W_E`` ([d_vocab, d_model] against
    [d_model, d_vocab]) and ``blocks.0.attn.W_O`` (3 against 2 dimensions).
    """
    if not all(isinstance(sd.get(k), Tensor) for k in ("embed.W_E", "blocks.0.attn.W_O", "unembed.W_U")):
        return None
    w_o, w_u = _shape(sd, "blocks.0.attn.W_O"), _shape(sd, "unembed.W_U")
    if len(w_u) != 2:
        return None
    if len(w_o) == 3:
        return "hooked_transformer"
    if len(w_o) == 2:
        return "nanda"
    return None


def _tl_config_fields(d: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Our config fields from a TransformerLens config dict, refusing what we cannot honour."""
    def get(key: str, default: Any = None) -> Any:
        return d.get(key, default)

    if get("n_layers", 1) != 1:
        raise ConfigError(f"{where}: n_layers = {get('n_layers')!r}; the transformer family has one layer")
    if get("normalization_type") not in (None, "None"):
        raise ConfigError(f"{where}: normalization_type = {get('normalization_type')!r}; the transformer family "
                          "has no LayerNorm (expected null)")
    if get("attn_only", False):
        raise ConfigError(f"{where}: attn_only = true; the transformer family has an MLP")
    if get("positional_embedding_type", "standard") != "standard":
        raise ConfigError(f"{where}: positional_embedding_type = {get('positional_embedding_type')!r}; "
                          "expected 'standard'")
    for flag in ("gated_mlp", "final_rms"):
        if get(flag, False):
            raise ConfigError(f"{where}: {flag} = true is not this architecture")
    if get("n_ctx", 3) != 3:
        raise ConfigError(f"{where}: n_ctx = {get('n_ctx')!r}; tokens are [x, y, =] (n_ctx 3)")
    out: dict[str, Any] = {}
    d_vocab, d_vocab_out = get("d_vocab"), get("d_vocab_out")
    if d_vocab_out not in (None, -1):
        out["p"] = d_vocab_out
        if d_vocab not in (None, -1) and d_vocab != d_vocab_out + 1:
            raise ConfigError(f"{where}: d_vocab = {d_vocab} and d_vocab_out = {d_vocab_out}; expected "
                              "d_vocab = d_vocab_out + 1 (the p numbers and '=')")
    elif d_vocab not in (None, -1):
        out["p"] = d_vocab - 1
    for key in ("d_model", "n_heads", "d_head", "d_mlp"):
        if get(key) is not None:
            out[key] = get(key)
    act = get("act_fn")
    if act is not None:
        act = str(act).lower()
        if act not in TRANSFORMER_ACTIVATIONS:
            raise ConfigError(f"{where}: act_fn = {get('act_fn')!r}; expected one of {sorted(TRANSFORMER_ACTIVATIONS)}")
        out["act_fn"] = act
    return out


def config_from_json(d: Any, where: str) -> dict[str, Any]:
    """Config fields from our TransformerConfig JSON (has ``p``) or a TransformerLens config dict
    (has ``d_vocab``/``d_model``); unknown keys of ours are refused, TransformerLens's ignored."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: a transformer config must be a JSON object, got {type(d).__name__}")
    if "p" in d:
        TransformerConfig.from_dict(dict(d), where=where)  # strict keys and values
        return dict(d)  # only the fields given; the rest are read from the weights
    if any(k in d for k in ("d_vocab", "d_vocab_out", "d_model", "n_heads")):
        return _tl_config_fields(d, where)
    raise ConfigError(f"{where}: not a transformer config (expected our keys p, d_model, n_heads, d_head, d_mlp, "
                      f"act_fn or TransformerLens's d_vocab, d_model, n_heads, ...); found {sorted(d)[:12]}")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Config fields from a JSON file (see :func:`config_from_json`)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return config_from_json(d, str(path))


def _check(where: str, key: str, t: Any, shape: tuple[int, ...]) -> Tensor:
    if not isinstance(t, Tensor):
        raise CheckpointError(f"{where}: key {key!r} should be a tensor of shape {shape}, found {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise CheckpointError(f"{where}: key {key!r} has shape {tuple(t.shape)}, expected {tuple(shape)}")
    if not t.dtype.is_floating_point:
        raise CheckpointError(f"{where}: key {key!r} has dtype {t.dtype}, expected a float tensor")
    if not bool(t.isfinite().all()):
        raise CheckpointError(f"{where}: key {key!r} has {int((~t.isfinite()).sum())} NaN/inf values")
    return t


def _check_keys(sd: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...], where: str,
                layout: str) -> None:
    missing = [k for k in required if k not in sd]
    extra = [k for k in sd if k not in required and k not in optional and k not in _IGNORED_BUFFERS]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            hint = " (LayerNorm weights: this family has no LayerNorm)" if any(".ln" in k or k.startswith("ln")
                                                                               for k in extra) else ""
            parts.append(f"unexpected {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''}{hint}")
        raise CheckpointError(f"{where}: not a one-layer {layout} transformer state dict: {'; '.join(parts)}")


def _merge_config(from_weights: dict[str, Any], given: dict[str, Any] | None, where: str,
                  source: str) -> TransformerConfig:
    fields = dict(from_weights)
    if given:
        for key, value in given.items():
            if key in from_weights and from_weights[key] != value:
                raise CheckpointError(f"{where}: the config ({source}) says {key} = {value!r} but the weights "
                                      f"have {key} = {from_weights[key]!r}")
            fields[key] = value
    try:
        return TransformerConfig(**fields)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc}") from None


def _ht_shapes(sd: Mapping[str, Any], where: str) -> dict[str, Any]:
    w_e, w_q = _shape(sd, "embed.W_E"), _shape(sd, "blocks.0.attn.W_Q")
    w_in, w_u = _shape(sd, "blocks.0.mlp.W_in"), _shape(sd, "unembed.W_U")
    for key, shape, nd in (("embed.W_E", w_e, 2), ("blocks.0.attn.W_Q", w_q, 3), ("blocks.0.mlp.W_in", w_in, 2),
                           ("unembed.W_U", w_u, 2)):
        if shape is None or len(shape) != nd:
            raise CheckpointError(f"{where}: key {key!r} has shape {shape}, expected {nd} dimensions")
    return dict(p=w_u[1], d_model=w_e[1], n_heads=w_q[0], d_head=w_q[2], d_mlp=w_in[1])


def _nanda_shapes(sd: Mapping[str, Any], where: str) -> dict[str, Any]:
    w_e, w_q = _shape(sd, "embed.W_E"), _shape(sd, "blocks.0.attn.W_Q")
    w_in = _shape(sd, "blocks.0.mlp.W_in")
    for key, shape, nd in (("embed.W_E", w_e, 2), ("blocks.0.attn.W_Q", w_q, 3), ("blocks.0.mlp.W_in", w_in, 2)):
        if shape is None or len(shape) != nd:
            raise CheckpointError(f"{where}: key {key!r} has shape {shape}, expected {nd} dimensions")
    return dict(p=w_e[1] - 1, d_model=w_e[0], n_heads=w_q[0], d_head=w_q[1], d_mlp=w_in[0])


def transformer_from_state_dict(sd: Mapping[str, Any], config: dict[str, Any] | None = None, *,
                                layout: str | None = None, where: str = "state dict",
                                config_source: str = "--config") -> tuple[ModAddTransformer, str]:
    """A :class:`ModAddTransformer` (eval mode) from a foreign state dict, and the layout read.

    ``config``: fields from :func:`config_from_json` (they must agree with the shapes); ``layout``
    forces one of :data:`LAYOUTS` instead of reading it from the keys.
    """
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{where}: expected a state dict (key -> tensor), got {type(sd).__name__}")
    found = layout_of(sd)
    layout = layout or found
    if layout is None:
        _check_keys(sd, _HT_WEIGHTS, _HT_BIASES, where, "TransformerLens (HookedTransformer) or Nanda et al.")
        raise CheckpointError(f"{where}: the keys are a transformer's but the shapes of embed.W_E, "
                              f"blocks.0.attn.W_O and unembed.W_U fit neither layout")
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown transformer layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if layout == "hooked_transformer":
        _check_keys(sd, _HT_WEIGHTS, _HT_BIASES, where, "TransformerLens (HookedTransformer)")
        cfg = _merge_config(_ht_shapes(sd, where), config, where, config_source)
        mapped = dict(sd)
    else:
        _check_keys(sd, _NANDA_WEIGHTS, _NANDA_OPTIONAL, where, "Nanda et al. (progress-measures-paper)")
        cfg = _merge_config(_nanda_shapes(sd, where), config, where, config_source)
        mapped = _from_nanda(sd, cfg, where)
    model = ModAddTransformer(cfg, seed=None)
    target = model.state_dict()
    with torch.no_grad():
        for key, value in target.items():
            if key in mapped:
                value.copy_(_check(where, key, mapped[key], tuple(value.shape)).to(value.dtype))
    return model.eval(), layout


def _from_nanda(sd: Mapping[str, Any], cfg: TransformerConfig, where: str) -> dict[str, Tensor]:
    """Nanda's tensors in HookedTransformer's shapes (shapes checked first, against ``cfg``)."""
    h, d, e, m, p = cfg.n_heads, cfg.d_model, cfg.d_head, cfg.d_mlp, cfg.p
    w_u = sd["unembed.W_U"]
    if isinstance(w_u, Tensor) and tuple(w_u.shape) == (d, p):
        w_u_p = w_u  # a variant that unembeds to the p answers only
    else:
        w_u_p = _check(where, "unembed.W_U", w_u, (d, p + 1))[:, :p]
    out = {
        "embed.W_E": _check(where, "embed.W_E", sd["embed.W_E"], (d, p + 1)).T,
        "pos_embed.W_pos": _check(where, "pos_embed.W_pos", sd["pos_embed.W_pos"], (3, d)),
        "blocks.0.attn.W_O": _check(where, "blocks.0.attn.W_O", sd["blocks.0.attn.W_O"], (d, h * e)).T.reshape(h, e, d),
        "blocks.0.mlp.W_in": _check(where, "blocks.0.mlp.W_in", sd["blocks.0.mlp.W_in"], (m, d)).T,
        "blocks.0.mlp.W_out": _check(where, "blocks.0.mlp.W_out", sd["blocks.0.mlp.W_out"], (d, m)).T,
        "unembed.W_U": w_u_p,
    }
    for name in ("W_Q", "W_K", "W_V"):
        key = f"blocks.0.attn.{name}"
        out[key] = _check(where, key, sd[key], (h, e, d)).transpose(1, 2)
    for key in _NANDA_OPTIONAL:
        if key in sd:
            out[key] = sd[key]
    return out


def _read_file(path: Path) -> Any:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder; expected a weights file (.pt, .pth or .safetensors)")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: not a torch weights file readable with weights_only=True ({first[:200]}); "
                              "a file holding objects (e.g. a HookedTransformerConfig) must be re-saved with plain "
                              "values (cfg.to_dict())") from None


def _unwrap(obj: Any, where: str, index: int | None) -> tuple[Mapping[str, Any], Any, dict[str, Any]]:
    """(state dict, stored config or None, scalar metadata) from what the file held."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{where}: expected a dict of tensors or a dict holding one, found {type(obj).__name__}")
    meta = {k: v for k, v in obj.items() if isinstance(v, (int, float, str, bool)) and not isinstance(v, Tensor)}
    stored_cfg = next((obj[k] for k in _CONFIG_ENTRIES if k in obj), None)
    if all(isinstance(v, Tensor) for v in obj.values()):
        return obj, stored_cfg, meta
    if isinstance(obj.get("checkpoints"), (list, tuple)):
        ckpts = obj["checkpoints"]
        if not ckpts:
            raise CheckpointError(f"{where}: 'checkpoints' is empty")
        i = len(ckpts) - 1 if index is None else index
        if not -len(ckpts) <= i < len(ckpts):
            raise CheckpointError(f"{where}: checkpoint index {index} out of range (the file has {len(ckpts)})")
        epochs = obj.get("checkpoint_epochs")
        if isinstance(epochs, (list, tuple)) and len(epochs) == len(ckpts):
            meta["epoch"] = epochs[i]
        return ckpts[i], stored_cfg, meta
    for key in _STATE_DICT_ENTRIES:
        if isinstance(obj.get(key), Mapping):
            return obj[key], stored_cfg, meta
    raise CheckpointError(f"{where}: no state dict found (expected tensors at the top level or under one of "
                          f"{', '.join(_STATE_DICT_ENTRIES + ('checkpoints',))}); keys: {sorted(obj)[:12]}")


def load_transformer(path: str | Path, config: str | Path | dict[str, Any] | None = None, *,
                     layout: str | None = None, index: int | None = None) -> LoadedTransformer:
    """Read a foreign transformer checkpoint (module docstring) into a :class:`LoadedTransformer`.

    ``config``: a JSON file path or config fields (default: a ``cfg``/``config`` stored in the file,
    else the shapes alone, with ReLU). ``index`` picks one state dict of a file with a list of
    ``checkpoints`` (default the last).
    """
    path = Path(path)
    where = str(path)
    sd, stored_cfg, meta = _unwrap(_read_file(path), where, index)
    fields: dict[str, Any] | None
    if isinstance(config, (str, Path)):
        fields, source = read_config_file(config), str(config)
    elif config is not None:
        fields, source = config_from_json(config, "config"), "config"
    elif stored_cfg is not None:
        fields, source = config_from_json(stored_cfg, f"{where} (its stored cfg)"), "file"
    else:
        fields, source = None, "weights"
    model, found = transformer_from_state_dict(sd, fields, layout=layout, where=where, config_source=source)
    return LoadedTransformer(model=model, layout=found, config_source=source, meta=meta)
