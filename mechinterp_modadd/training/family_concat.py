"""The ``concat_mlp`` training family: one-hot x and y concatenated, separate input weights
(:class:`~mechinterp_modadd.families.concat_mlp.ConcatMLP`), trained by the engine's generic step.

``logits = W_out sigma(W_x[:, x] + W_y[:, y])``: the network is not symmetric in (x, y), so the
objective reads all p^2 ordered pairs (``symmetric = False``) and the train/test split is one over
ordered pairs (a test pair's mirror may be in train; nothing makes it right for free). There is no
hand-written batched step: gradients come from :class:`~.family.GenericStep` (``torch.func``
``vmap`` of ``grad`` through ``functional_call`` of the model), so a run trained in a batch agrees
with the same run alone to rounding.

Config: ``TrainConfig`` fields ``p``, ``d_mlp`` (None: the authors' width rule), ``activation``,
``init_scale`` (:class:`~mechinterp_modadd.families.concat_mlp.ConcatMLPConfig`: u, v ~ s N(0, 1) /
sqrt(2p), W_out ~ s N(0, 1) / sqrt(d_mlp)) and ``bias`` (hidden and output biases, initialised at
zero, trained like the weights; default none); ``embedding`` must stay ``one_hot`` and
``init`` ``random``. The preset ``gromov`` (docs/science.md section 10.4) is quad, width 256,
cross-entropy, AdamW lr 3e-3, betas (0.9, 0.98), weight decay 1, train fraction 0.5, 3,000 steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..checkpoint import check_run_checkpoints, checkpoint_bytes
from ..errors import ConfigError
from ..families.concat_mlp import ConcatMLP, ConcatMLPConfig
from ..model import default_d_mlp
from .family import TrainFamily, register_train_family

__all__ = ["ConcatTrainFamily", "concat_model_config"]


def concat_model_config(cfg: Any) -> ConcatMLPConfig:
    """The :class:`ConcatMLPConfig` of a ``TrainConfig`` with ``family="concat_mlp"``."""
    if cfg.embedding != "one_hot" or cfg.d_model is not None:
        raise ConfigError(f"family 'concat_mlp' has one-hot inputs: embedding must be 'one_hot' (got "
                          f"{cfg.embedding!r}) and d_model unset")
    if cfg.init != "random":
        raise ConfigError(f"family 'concat_mlp' initialises at random (init 'random'), got init {cfg.init!r}")
    return ConcatMLPConfig(p=cfg.p, d_mlp=cfg.d_mlp if cfg.d_mlp is not None else default_d_mlp(cfg.p),
                           activation=cfg.activation, bias=cfg.bias, init_scale=cfg.init_scale)


class ConcatTrainFamily(TrainFamily):
    """:class:`ConcatMLP` runs through the generic step (module docstring).

    Trains on one CPU thread unless told otherwise (``max_threads = 1``): the generic step's bits
    change with the thread count (``gromov`` at p = 97 after 5 steps differs between one and two
    threads, 2026-12-02), so an automatic choice that followed the machine's load would make a seed's
    run depend on it. The presets' sizes (p = 23) take one thread anyway.
    """

    symmetric = False
    max_threads = 1

    def model_config(self, cfg: Any) -> ConcatMLPConfig:
        return concat_model_config(cfg)

    def batch_key(self, cfg: Any) -> tuple:
        m = concat_model_config(cfg)
        return (m.d_mlp, m.activation, m.bias)

    def init_params(self, cfg: Any) -> dict[str, Tensor]:
        model = ConcatMLP(concat_model_config(cfg), seed=cfg.seed)
        return {k: v.detach() for k, v in model.named_parameters()}

    def module(self, cfg: Any) -> nn.Module:
        return ConcatMLP(concat_model_config(cfg), seed=None)

    def checkpoint_bytes(self, model: nn.Module, step: int, metrics: dict[str, float], run_id: str | None) -> bytes:
        return checkpoint_bytes(model, step=step, metrics=metrics, run_id=run_id)

    def check_checkpoints(self, files: list[Path], cfg: Any, run_id: str | None) -> None:
        m = concat_model_config(cfg)
        check_run_checkpoints(files, p=m.p, d_mlp=m.d_mlp, activation=m.activation, run_id=run_id,
                              where="config.json")

    def step_flop(self, cfg: Any) -> float:
        # all p^2 pairs: forward gather-add and [n, M] x [M, p] product, backward about twice that
        n, M = cfg.p * cfg.p, concat_model_config(cfg).d_mlp
        return 3 * (2.0 * n * M * cfg.p + 3.0 * n * M)

    def run_bytes(self, cfg: Any, steps_buffered: int) -> int:
        # weights (2 [M, p] inputs, one [p, M] output) with gradients, two Adam moments, work
        # buffers and exported copies (15 weight-sized float32 tensors, as the MLP's estimate);
        # per step pre, post and their gradients [n, M] (float32, and float64 in the loss head
        # path), logits and log-probabilities [n, p] at 8 bytes (8 of them), metric slots
        n, M = cfg.p * cfg.p, concat_model_config(cfg).d_mlp
        return 15 * 4 * 3 * M * cfg.p + 6 * 8 * n * M + 8 * 8 * n * cfg.p + 4 * 8 * n + 13 * 8 * steps_buffered


register_train_family("concat_mlp", ConcatTrainFamily())
