"""The one place that knows checkpoint file formats.

Own format: a safetensors file holding ``mlp.W_in``, ``mlp.W_out`` (and ``embed.W_E`` for learned
embeddings), with JSON metadata: ``format``, ``config`` (the :class:`ModelConfig`), ``step``,
``metrics`` and, for checkpoints written by the trainer, ``run_id`` (the id of the run folder; files
written before run ids existed lack it and still load). Writes are atomic: the bytes go to a
temporary file in the same folder, which is then renamed over the target, so a crash never leaves
a half-written checkpoint.

Network families (:mod:`mechinterp_modadd.families`): the metadata key ``family`` names the
model's family (absent for the paper's MLP, ``"mlp"``, so its files are as before); ``config`` is that
family's config and the tensors are its own state-dict keys (``concat_mlp``: ``mlp.W_x``,
``mlp.W_y``, ``mlp.W_out`` and optionally ``mlp.b_in``, ``mlp.b_out``).

Foreign formats, read with ``torch.load(..., weights_only=True)`` (or safetensors) so no arbitrary
object is ever unpickled; they do not record the activation, so the caller must name it:

- the paper authors' ``.pth`` dicts (see ``shared/reference/README.md``);
- plain state dicts of any registered family (a ``.pt``/``.pth`` holding the state dict itself or
  under ``model``/``state_dict``, or a ``.safetensors`` without our metadata), with ``family=``
  (``--family``) or detected from the keys and shapes
  (:func:`~mechinterp_modadd.families.detect_family`); e.g. a concatenated-input MLP saved from
  plain torch.

Every problem (missing file, truncated file, not a checkpoint, missing key, wrong shape, p
mismatch, NaN weights) raises :class:`~mechinterp_modadd.errors.CheckpointError` naming the file,
the key, what was expected and what was found.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import CheckpointError, ConfigError
from .families import detect_family, family_of, get_family
from .families.base import check_tensor
from .fileio import atomic_write_bytes, atomic_write_text
from .model import ModAddMLP, ModelConfig, canonical_activation

__all__ = ["Checkpoint", "CheckpointHeader", "authors_folder_name", "authors_activation", "save_checkpoint",
           "load_checkpoint", "read_checkpoint_header", "atomic_write_bytes", "atomic_write_text",
           "check_run_checkpoints", "FORMAT_NAME"]

FORMAT_NAME = "mechinterp_modadd.checkpoint/1"
_AUTHOR_SCALARS = ("train_loss", "test_loss", "grad_norm", "param_norm", "train_accuracy",
                   "test_accuracy")


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model plus what the file said about it."""

    model: ModAddMLP
    path: Path
    step: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    source_format: str = "modadd"  # "modadd", "authors_pth" or "state_dict"
    run_id: str | None = None

    @property
    def config(self) -> ModelConfig:
        return self.model.cfg

    @property
    def family(self) -> str:
        """The model's network family (``"mlp"``, ``"concat_mlp"``, ...)."""
        return family_of(self.model).name


# atomic writes live in fileio (standard library only); re-exported here for existing callers


# ---------------------------------------------------------------------------------- saving
def _jsonable(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.tolist() if x.numel() != 1 else x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return x.item()
    return x


def checkpoint_bytes(model: ModAddMLP, step: int | None = None,
                     metrics: dict[str, Any] | None = None, run_id: str | None = None) -> bytes:
    """Serialise a model to the own safetensors format, in memory (``run_id``: the run folder's id)."""
    from safetensors.torch import save

    if not isinstance(model.activation, str):
        raise ConfigError("cannot save a model whose activation is a custom callable; "
                          "set a registered activation first (model.set_activation('relu'))")
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT_NAME,
        "config": json.dumps(model.cfg.to_dict()),
        "step": json.dumps(step),
        "metrics": json.dumps(_jsonable(metrics or {})),
    }
    if run_id is not None:
        meta["run_id"] = str(run_id)
    family = family_of(model).name
    if family != "mlp":  # the paper MLP's files stay byte-identical to those written before families
        meta["family"] = family
    return save(tensors, metadata=meta)


def save_checkpoint(model: ModAddMLP, path: str | os.PathLike, step: int | None = None,
                    metrics: dict[str, Any] | None = None, run_id: str | None = None) -> Path:
    """Save ``model`` atomically in the own format (safetensors + JSON metadata)."""
    return atomic_write_bytes(path, checkpoint_bytes(model, step, metrics, run_id))


# --------------------------------------------------------------------------------- loading
def _check_tensor(path: Path, key: str, t: Any, shape: tuple[int, ...]) -> Tensor:
    if not isinstance(t, Tensor):
        raise CheckpointError(f"{path}: key {key!r} should be a tensor of shape {shape}, "
                              f"found {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise CheckpointError(f"{path}: key {key!r} has shape {tuple(t.shape)}, expected {shape}")
    if not t.dtype.is_floating_point:
        raise CheckpointError(f"{path}: key {key!r} has dtype {t.dtype}, expected a float tensor")
    if not torch.isfinite(t).all():
        bad = int((~torch.isfinite(t)).sum())
        raise CheckpointError(f"{path}: key {key!r} has {bad} NaN/inf values")
    return t


def _build_model(path: Path, cfg: ModelConfig, weights: dict[str, Any]) -> ModAddMLP:
    expected = {"mlp.W_in": (cfg.d_mlp, cfg.d_model), "mlp.W_out": (cfg.p, cfg.d_mlp)}
    if cfg.embedding == "learned":
        expected["embed.W_E"] = (cfg.d_model, cfg.p)
    for key, shape in expected.items():
        if key not in weights:
            raise CheckpointError(f"{path}: missing key {key!r} (expected a tensor of shape {shape}); "
                                  f"found keys {sorted(weights)}")
        _check_tensor(path, key, weights[key], shape)
    unknown = set(weights) - set(expected)
    if unknown:
        raise CheckpointError(f"{path}: unexpected keys {sorted(unknown)} for a {cfg.embedding} model; "
                              f"expected {sorted(expected)}")
    model = ModAddMLP(cfg, seed=None)
    with torch.no_grad():
        model.load_state_dict({k: weights[k].to(torch.float32) for k in expected}, strict=True)
    # a loaded model is for analysis: eval mode, as TransformerLens's from_pretrained returns its models
    # (TransformerLens's activation patching refuses a model in training mode)
    return model.eval()


@dataclass(frozen=True)
class CheckpointHeader:
    """The metadata of an own-format checkpoint, read without loading its tensors."""

    path: Path
    config: ModelConfig
    step: int | None
    metrics: dict[str, Any]
    run_id: str | None
    family: str = "mlp"


def _meta_json(path: Path, meta: dict[str, str], key: str, default: str | None, want: str) -> Any:
    raw = meta.get(key, default)
    if raw is None:
        raise CheckpointError(f"{path}: metadata key {key!r} missing; expected {want}")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: metadata key {key!r} is not valid JSON ({e}); expected {want}") from None


def _parse_header(path: Path, meta: dict[str, str]) -> CheckpointHeader:
    if meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: metadata key 'format' is {meta.get('format')!r}, "
                              f"expected {FORMAT_NAME!r}; not a mechinterp_modadd checkpoint")
    cfg_dict = _meta_json(path, meta, "config", None, "a JSON object (the ModelConfig)")
    if not isinstance(cfg_dict, dict):
        raise CheckpointError(f"{path}: metadata key 'config' is {type(cfg_dict).__name__}, expected a JSON "
                              f"object (the ModelConfig)")
    step = _meta_json(path, meta, "step", "null", "an integer >= 0 or null")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
        raise CheckpointError(f"{path}: metadata key 'step' is {step!r}, expected an integer >= 0 or null")
    metrics = _meta_json(path, meta, "metrics", "{}", "a JSON object")
    if not isinstance(metrics, dict):
        raise CheckpointError(f"{path}: metadata key 'metrics' is {type(metrics).__name__}, expected a JSON "
                              f"object")
    run_id = meta.get("run_id")
    family = meta.get("family", "mlp")
    try:
        fam = get_family(family)
    except ConfigError as e:
        raise CheckpointError(f"{path}: metadata key 'family': {e}") from None
    try:
        cfg = fam.config_from_dict(cfg_dict)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{path}: metadata key 'config' is not a valid {fam.config_type.__name__}: "
                              f"{e}") from None
    return CheckpointHeader(path=path, config=cfg, step=step, metrics=metrics, run_id=run_id, family=family)


def read_checkpoint_header(path: str | os.PathLike) -> CheckpointHeader:
    """The metadata of an own-format checkpoint (config, step, metrics, run id), tensors unread."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted "
                              f"safetensors file?): {e}") from None
    return _parse_header(path, meta)


def check_run_checkpoints(files: list[Path], *, p: int | None = None, d_mlp: int | None = None,
                          activation: str | None = None, run_id: str | None = None,
                          where: str = "the run") -> dict[str, Any]:
    """Check that checkpoint files (own format) are one run: same p, d_mlp, activation, run id.

    Reads only the metadata of each file. The expected values default to those of the first file;
    a checkpoint without a run id (written before run ids existed) matches any run id.

    Returns:
        ``{"p", "d_mlp", "activation", "run_id"}`` shared by the files.

    Raises:
        CheckpointError: naming the first file that differs, the key, and both values.
    """
    want: dict[str, Any] = {"p": p, "d_mlp": d_mlp, "activation": activation, "run_id": run_id}
    source: dict[str, str] = {k: where for k, v in want.items() if v is not None}
    for f in files:
        h = read_checkpoint_header(f)
        got = {"p": h.config.p, "d_mlp": h.config.d_mlp, "activation": h.config.activation,
               "run_id": h.run_id}
        for key, v in got.items():
            if v is None:
                continue
            if want[key] is None:
                want[key], source[key] = v, str(f.name)
            elif want[key] != v:
                raise CheckpointError(f"{f}: {key} = {v!r}, but {source[key]} has {key} = {want[key]!r}; "
                                      f"a folder must hold one run (move the odd file away)")
    return want


def _check_activation(path: Path, stored: str, given: str | None, force: bool) -> str:
    """The activation to build with: ``given`` if it agrees with ``stored`` or ``force`` is set."""
    if given is None:
        return stored
    try:
        want = canonical_activation(given)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if want != stored and not force:
        raise CheckpointError(f"{path}: the checkpoint records activation {stored!r}; the given activation "
                              f"{given!r} contradicts it (pass force=True / --force to swap it on purpose)")
    return want


def _read_modadd(path: Path, activation: str | None, force: bool = False) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted "
                              f"safetensors file?): {e}") from None
    head = _parse_header(path, meta)
    cfg = head.config
    act = _check_activation(path, cfg.activation, activation, force)
    if act != cfg.activation:
        cfg = replace(cfg, activation=act)
    model = _build_model(path, cfg, weights) if head.family == "mlp" else \
        _build_family_model(path, head.family, cfg, weights)
    return Checkpoint(model=model, path=path, step=head.step, metrics=head.metrics, run_id=head.run_id)


def _build_family_model(path: Path, family: str, cfg: Any, weights: dict[str, Any]) -> Any:
    """A model of ``family`` from its own state-dict keys, each checked (shape, float, finite)."""
    model = get_family(family).build(cfg, seed=None)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in expected.items():
        if key not in weights:
            raise CheckpointError(f"{path}: missing key {key!r} (expected a tensor of shape {shape}) for family "
                                  f"{family!r}; found keys {sorted(weights)}")
        check_tensor(str(path), key, weights[key], shape)
    unknown = set(weights) - set(expected)
    if unknown:
        raise CheckpointError(f"{path}: unexpected keys {sorted(unknown)} for family {family!r}; expected "
                              f"{sorted(expected)}")
    with torch.no_grad():
        model.load_state_dict({k: weights[k].to(torch.float32) for k in expected}, strict=True)
    return model


def _plain_state_dict(path: Path, obj: Any) -> dict[str, Any] | None:
    """The state dict inside a loaded foreign object (itself, or under 'model' / 'state_dict'), or None."""
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        return obj
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            inner = obj[key]
            if inner and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in inner.items()):
                return dict(inner)
    return None


def _read_transformer(path: Path, config: Any, activation: str | None, p: int | None) -> Checkpoint:
    """A foreign transformer file through :func:`~mechinterp_modadd.transformer_io.load_transformer`
    (its layouts, a config stored beside the weights or ``config``, the demo's checkpoint lists)."""
    from .transformer_io import config_from_json, load_transformer, read_config_file

    fields = None
    if config is not None:
        fields = read_config_file(config) if isinstance(config, (str, os.PathLike)) else \
            config_from_json(config, "config")
    if activation is not None:
        fields = {**(fields or {}), "act_fn": canonical_activation(activation)}
    loaded = load_transformer(path, fields)
    if p is not None and loaded.model.cfg.p != p:
        raise CheckpointError(f"{path}: the checkpoint has p = {loaded.model.cfg.p}, expected p = {p}")
    step = loaded.meta.get("epoch")
    return Checkpoint(model=loaded.model, path=path, source_format=f"transformer ({loaded.layout})",
                      step=step if isinstance(step, int) else None)


def _read_plain(path: Path, sd: dict[str, Any], family: str | None, activation: str | None,
                p: int | None, config: Any = None) -> Checkpoint:
    """A model of ``family`` (or the detected one) from a plain state dict."""
    try:
        fam = get_family(family) if family is not None else detect_family(sd, where=str(path))
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if fam.name == "transformer":
        return _read_transformer(path, config, activation, p)
    if config is not None:
        raise CheckpointError(f"{path}: --config applies to family transformer, not {fam.name!r}")
    model = fam.from_state_dict(sd, activation=activation, p=p, where=str(path))
    return Checkpoint(model=model, path=path, source_format="state_dict")


#: the authors' run-folder names: p_<p>_dmlp_<d_mlp>_<Activation>_<init>_...
_AUTHOR_NAME = re.compile(r"^p_(\d+)_dmlp_(\d+)_([A-Za-z0-9^]+)_")


def authors_folder_name(path: str | os.PathLike) -> dict[str, Any] | None:
    """``{"p", "d_mlp", "activation"}`` from an authors' folder name such as
    ``p_23_dmlp_512_ReLU_random_scale_0.1_decay_2.0_08180102`` (``None`` if the name is not one;
    ``activation`` is ``None`` when the name's token is not a known activation)."""
    m = _AUTHOR_NAME.match(Path(path).name)
    if not m:
        return None
    try:
        act: str | None = canonical_activation(m.group(3))
    except ConfigError:
        act = None
    return {"p": int(m.group(1)), "d_mlp": int(m.group(2)), "activation": act, "token": m.group(3)}


def authors_activation(where: Path, activation: str | None, force: bool) -> str | None:
    """The activation for an authors' file or folder ``where``: the given one, else the one its
    (parent) folder name states; a given one that contradicts the name is refused unless ``force``."""
    folder = where if where.is_dir() else where.resolve().parent
    named = authors_folder_name(folder.resolve())
    if named is None or named["activation"] is None:
        return activation
    if activation is None:
        return named["activation"]
    try:
        given = canonical_activation(activation)
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None
    if given != named["activation"] and not force:
        raise CheckpointError(f"{where}: the folder name says activation {named['token']!r}; the given "
                              f"activation {activation!r} contradicts it (pass force=True / --force to use it "
                              f"anyway)")
    return given


def _read_torch_file(path: Path, activation: str | None, init_scale: float | None, force: bool,
                     family: str | None, p: int | None, config: Any = None) -> Checkpoint:
    """A torch zip file: the authors' ``.pth`` (a dict with the paper MLP's state dict under
    ``model``) or a plain state dict of any family."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad zips / unsafe pickles
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint with weights_only=True "
                              f"(truncated, corrupted or holds arbitrary objects): "
                              f"{type(e).__name__}: {str(e)[:200]}") from None
    authors = isinstance(obj, dict) and isinstance(obj.get("model"), dict) and "mlp.W_in" in obj["model"] \
        and family in (None, "mlp")
    if not authors:
        sd = _plain_state_dict(path, obj)
        if sd is not None:
            return _read_plain(path, sd, family, activation, p, config)
        if family == "transformer" or config is not None or (isinstance(obj, dict) and "checkpoints" in obj):
            return _read_transformer(path, config, activation, p)
    return _read_authors(path, activation, init_scale, force, obj)


def _read_safetensors(path: Path, activation: str | None, force: bool, family: str | None,
                      p: int | None, config: Any = None) -> Checkpoint:
    """Our own format, or a safetensors file without our metadata (a plain state dict)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            plain = meta.get("format") is None
            sd = {k: f.get_tensor(k) for k in f.keys()} if plain else None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupted "
                              f"safetensors file?): {e}") from None
    if plain:
        return _read_plain(path, sd, family, activation, p, config)
    return _read_modadd(path, activation, force)


def _read_authors(path: Path, activation: str | None, init_scale: float | None,
                  force: bool = False, obj: Any = None) -> Checkpoint:
    activation = authors_activation(path, activation, force)
    if activation is None:
        raise CheckpointError(f"{path}: the authors' .pth files do not record the activation; pass "
                              f"activation= ('relu' or 'quad' for the reference runs)")
    if not isinstance(obj, dict) or "model" not in obj:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: expected a dict with key 'model' (a state dict), found {keys}")
    sd = obj["model"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: key 'model' should be a state dict, found {type(sd).__name__}")
    sd = dict(sd)
    if "mlp.W_in" not in sd or not isinstance(sd["mlp.W_in"], Tensor) or sd["mlp.W_in"].ndim != 2:
        raise CheckpointError(f"{path}: missing key 'model.mlp.W_in' (a [d_mlp, p] tensor); "
                              f"found {sorted(sd)}")
    if "mlp.W_out" not in sd or not isinstance(sd["mlp.W_out"], Tensor) or sd["mlp.W_out"].ndim != 2:
        raise CheckpointError(f"{path}: missing key 'model.mlp.W_out' (a [p, d_mlp] tensor); "
                              f"found {sorted(sd)}")
    d_mlp = sd["mlp.W_in"].shape[0]
    p = sd["mlp.W_out"].shape[0]
    basis = sd.pop("mlp.basis", None)
    if basis is not None and tuple(basis.shape) != (p, p):
        raise CheckpointError(f"{path}: key 'model.mlp.basis' has shape {tuple(basis.shape)}, "
                              f"expected ({p}, {p}) from W_out")
    learned = "embed.W_E" in sd
    d_model = sd["embed.W_E"].shape[0] if learned and sd["embed.W_E"].ndim == 2 else None
    try:
        cfg = ModelConfig(p=p, d_mlp=d_mlp, activation=activation,
                          embedding="learned" if learned else "one_hot", d_model=d_model,
                          init_scale=init_scale or 0.1)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model = _build_model(path, cfg, sd)
    metrics: dict[str, Any] = {}
    for k in _AUTHOR_SCALARS:
        if k in obj and isinstance(obj[k], (int, float)):
            metrics[k] = float(obj[k])
    step = obj.get("epoch")
    return Checkpoint(model=model, path=path, step=int(step) if isinstance(step, int) else None,
                      metrics=metrics, source_format="authors_pth")


def load_checkpoint(path: str | os.PathLike, activation: str | None = None, *,
                    p: int | None = None, init_scale: float | None = None,
                    force: bool = False, device: str | torch.device | None = None,
                    family: str | None = None, config: Any = None) -> Checkpoint:
    """Load a checkpoint in the own format, the paper authors' ``.pth`` format or a plain state dict.

    Args:
        path: the file.
        family: the network family of a plain state dict (``"mlp"``, ``"concat_mlp"``, ...; None:
            detected from its keys and shapes). For an own-format file it must agree with the
            recorded family.
        config: family ``transformer`` only: a JSON config file or dict for a foreign transformer
            checkpoint (:mod:`mechinterp_modadd.transformer_io`; default: a ``cfg`` stored in the
            file, else the shapes alone).
        activation: required for the authors' files (they do not record it). Own files record
            it: an equal value is accepted, a different one is refused unless ``force``.
        p: if given, the checkpoint's modulus must equal it (:class:`CheckpointError` otherwise).
        device: where to put the model (``"auto"``, ``"cpu"``, ``"cuda"``; default the CPU). The
            file is read and checked on the CPU, then the weights are moved.
        force: swap a recorded activation for ``activation`` (e.g. ``"abs"``) without retraining.

    The model comes back in eval mode (``model.training`` is False), ready for TransformerLens's
    patching; ModAddMLP has no dropout or normalisation, so the mode changes no output.
    """
    from .inputs import check_input_path

    # stat only: a folder, a missing path, a pipe or a device is refused before anything is opened
    path = check_input_path(path, what="checkpoint file", kind="file")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{path}: file is empty or truncated ({len(head)} bytes)")
    if family is not None:
        try:
            get_family(family)
        except ConfigError as e:
            raise CheckpointError(f"{path}: {e}") from None
    if head[:2] == b"PK":
        ck = _read_torch_file(path, activation, init_scale, force, family, p, config)
    else:
        ck = _read_safetensors(path, activation, force, family, p, config)
    if family is not None and ck.family != family:
        raise CheckpointError(f"{path}: the file holds a {ck.family!r} model, but family {family!r} was asked for")
    if p is not None and ck.model.cfg.p != p:
        raise CheckpointError(f"{path}: p mismatch: checkpoint has p = {ck.model.cfg.p}, expected p = {p}")
    if device is not None:
        from .runtime import resolve_device

        ck.model.to(resolve_device(device))
    return ck
