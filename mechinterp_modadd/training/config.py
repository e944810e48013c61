"""Training configuration and the paper's presets (docs/science.md section 1), plus
``lottery_sgd``: quad_random as the authors' shipped checkpoints were really trained (SGD lr 0.1,
10,000 steps, random init 0.1), the SGD arm of the lottery sweep (docs/science.md section 4).

``TrainConfig.family`` names the model family the engine trains (:mod:`.family`; configs written
before the key existed read as ``"mlp"``); ``optimizer`` names a stacked optimizer of
:mod:`.optim`. The optimizers' hyper-parameter fields (``betas`` for AdamW, ``momentum`` for SGD,
...) are not written here: TrainConfig has one field per entry of
:data:`mechinterp_modadd.hyperparams.HYPER`, after ``weight_decay``, with its default, type and
range check from there; a field of another optimizer must stay at its default. So a new
hyper-parameter needs no change to this file.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..constants import PRESETS as _PRESETS
from ..errors import ConfigError
from ..hyperparams import HYPER
from ..model import ModelConfig, canonical_activation, default_d_mlp
from .optim import OPTIMIZERS

__all__ = ["TrainConfig", "PRESETS", "preset"]


def _with_hyper_fields(cls: type) -> type:
    """Insert one field per declared optimizer hyper-parameter (:data:`HYPER`, in its order) right
    after ``weight_decay``, where ``betas`` and ``momentum`` have always stood in ``config.json``."""
    own = inspect.get_annotations(cls)
    clash = sorted(set(HYPER) & set(own))
    if clash:
        raise TypeError(f"hyper-parameters {clash} of mechinterp_modadd.hyperparams.HYPER are TrainConfig "
                        f"fields already; choose other names")
    annotations: dict[str, Any] = {}
    for name, kind in own.items():
        annotations[name] = kind
        if name == "weight_decay":
            for hp in HYPER.values():
                annotations[hp.name] = hp.annotation
                setattr(cls, hp.name, hp.default)
    if "weight_decay" not in own:
        raise TypeError("TrainConfig needs a weight_decay field to place the hyper-parameter fields after")
    cls.__annotations__ = annotations
    return cls


@dataclass(frozen=True)
@_with_hyper_fields
class TrainConfig:
    """Everything a full-batch training run needs; ``seed`` makes it reproducible bit for bit.

    ``split_seed`` (default: ``seed``) seeds the train/test split with its own generator.
    ``warmup_steps`` is a linear learning-rate warm-up: lr_t = lr * min(1, (t + 1) / warmup).

    Early stop (off by default): with ``stop_accuracy`` set, the run ends at the first step t that
    is a positive multiple of ``stop_window`` at which train accuracy and test accuracy (train only
    when there is no test set) were >= ``stop_accuracy`` at every step t - stop_window .. t. Step
    t is then the run's last row and last checkpoint; ``steps`` stays the budget. Checking only at
    multiples of the window makes the stop step a function of the metrics alone (the same in a
    batch as alone, and on a GPU without a host read per step). See :func:`~.objective.stop_rule_met`.

    ``optimizer`` is a name of :data:`~.optim.OPTIMIZERS` (``adamw``: ``betas``; ``sgd``:
    ``momentum``, torch's heavy-ball form without dampening). Those two and every other optimizer
    hyper-parameter are fields made from :data:`mechinterp_modadd.hyperparams.HYPER` (inserted after
    ``weight_decay``). ``family`` is a training family of :mod:`.family` (``mlp``: the paper's
    one-hidden-layer network, :mod:`.family_mlp`).

    ``bias`` gives the hidden and output layers biases (initialised at zero), for the families that
    support them (``concat_mlp``; the paper's ``mlp`` has none and refuses it). It is written to
    config.json only when true, so the configs of runs without biases read as before it existed.
    """

    family: str = "mlp"
    p: int = 23
    d_mlp: int | None = None  # None: the authors' rule max(512, ceil(512 p^2 / 529))
    activation: str = "relu"
    embedding: str = "one_hot"
    d_model: int | None = None
    init: str = "random"
    init_scale: float = 0.1
    optimizer: str = "adamw"
    lr: float = 5e-5
    weight_decay: float = 0.0
    # here: one field per optimizer hyper-parameter of HYPER (betas, momentum, ...), see _with_hyper_fields
    warmup_steps: int = 10
    train_fraction: float = 1.0
    steps: int = 5000
    seed: int = 0
    split_seed: int | None = None
    save_every: int = 1000
    preset: str | None = None
    stop_accuracy: float | None = None
    stop_window: int = 1000
    bias: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.family, str) or not self.family.isidentifier():
            raise ConfigError(f"family must be the name of a training family (e.g. 'mlp'), got {self.family!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}, "
                              f"got {self.optimizer!r}")
        for name in ("lr", "init_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number, got {v!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ConfigError(f"steps must be a non-negative integer, got {self.steps!r}")
        if not isinstance(self.save_every, int) or self.save_every < 1:
            raise ConfigError(f"save_every must be a positive integer, got {self.save_every!r}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"train_fraction must be in (0, 1], got {self.train_fraction!r}")
        if self.stop_accuracy is not None and not (
                isinstance(self.stop_accuracy, (int, float)) and not isinstance(self.stop_accuracy, bool)
                and 0.0 < self.stop_accuracy <= 1.0):
            raise ConfigError(f"stop_accuracy must be None or in (0, 1], got {self.stop_accuracy!r}")
        if isinstance(self.stop_window, bool) or not isinstance(self.stop_window, int) or self.stop_window < 1:
            raise ConfigError(f"stop_window must be a positive integer, got {self.stop_window!r}")
        if not isinstance(self.bias, bool):
            raise ConfigError(f"bias must be true or false, got {self.bias!r}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps!r}")
        for name, hp in HYPER.items():
            try:
                object.__setattr__(self, name, hp.value(getattr(self, name)))
            except ValueError as e:
                raise ConfigError(f"{name} {e}") from None
        self._check_optimizer()
        object.__setattr__(self, "activation", canonical_activation(self.activation))
        model = self.model_config()  # validate the model part now
        if self.bias and getattr(model, "bias", None) is not True:
            raise ConfigError(f"bias: family {self.family!r} has no biases (family 'concat_mlp' has)")

    def _check_optimizer(self) -> None:
        """Every hyper-parameter the optimizer does not read at its default; then the optimizer's
        own check (:meth:`~.optim.StackedOptimizer.check`; ranges were checked from HYPER)."""
        opt = OPTIMIZERS[self.optimizer]
        for name, hp in HYPER.items():
            value = getattr(self, name)
            if name not in opt.hyper and value != hp.default:
                users = " / ".join(k for k, o in OPTIMIZERS.items() if name in o.hyper) or "none registered"
                raise ConfigError(f"{name} = {value!r} is a hyper-parameter of optimizer {users}, "
                                  f"not of {self.optimizer!r} ({hp.flag}, sweep grid key {name!r})")
        opt.check(self)

    def model_config(self) -> Any:
        """The model's config: the training family's own when it defines ``model_config(cfg)``
        (``concat_mlp``: a :class:`~mechinterp_modadd.families.concat_mlp.ConcatMLPConfig`), else a
        :class:`~mechinterp_modadd.model.ModelConfig` from these fields (the paper's MLP)."""
        if self.family != "mlp":
            from .family import get_train_family

            own = getattr(get_train_family(self.family), "model_config", None)
            if own is not None:
                return own(self)
        return ModelConfig(
            p=self.p, d_mlp=self.d_mlp if self.d_mlp is not None else default_d_mlp(self.p),
            activation=self.activation, embedding=self.embedding, d_model=self.d_model,
            init=self.init, init_scale=self.init_scale,
        )

    @property
    def effective_split_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values; ``bias`` only when true (see the class docstring)."""
        d = asdict(self)
        for name, hp in HYPER.items():
            d[name] = hp.to_json(d[name])  # tuples as lists (betas: [0.9, 0.98])
        if not self.bias:
            del d["bias"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """From :meth:`to_dict`'s form; keys added later (``family``, ``momentum``, ``bias``, any
        newer optimizer hyper-parameter) take their defaults when absent, so older config.json files
        read unchanged."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown TrainConfig keys {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


#: The authors' five configurations and Gromov's (defined in :mod:`mechinterp_modadd.constants`, which the CLI
#: reads without importing torch).
PRESETS: dict[str, dict[str, Any]] = _PRESETS


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with any field overridden, e.g. ``preset("standard", p=13, steps=2000)``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return TrainConfig(**{**PRESETS[name], "preset": name, **overrides})
