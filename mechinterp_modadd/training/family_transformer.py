"""The ``transformer`` training family: Nanda et al.'s one-layer transformer in the one engine.

``TrainConfig(family="transformer", ...)`` trains :class:`~mechinterp_modadd.transformer.ModAddTransformer`
with the engine's generic step (:class:`~.family.GenericStep`: ``torch.func.vmap`` of ``grad``
over the stacked parameters of S runs, the module called through ``functional_call``). The
module's forward during training is :meth:`ModAddTransformer.forward_last` (the logits at ``=``
computed for that position only; docs/transformer.md), and the trained parameters are the nine
weight matrices (every bias is a zero buffer, frozen, as in the paper's runs).

How the TrainConfig fields map onto the transformer (:func:`transformer_config`):
``p``; ``d_model`` (default 128); ``d_mlp`` (default 512, the paper's; the MLP family's width rule
does not apply); ``activation`` (``relu`` or ``gelu``); 4 heads of ``d_model / 4``. A transformer
config must set ``embedding="learned"`` (its embedding is learned; the presets ``nanda`` and
``nanda_small`` do). ``init`` and ``init_scale`` are the MLP's and must stay at their defaults: the
seed draws Nanda et al.'s initialisation (:meth:`ModAddTransformer.init_weights`).

The objective runs on all p^2 ordered pairs (the transformer is not symmetric in x and y).

The step (:class:`TransformerStep`, :meth:`TransformerTrainFamily.make_step`) is hand-batched: the
forward of ``forward_last`` written once with a leading run axis (every product an einsum or a
batched matmul over the S runs; the attention's per-token parts computed once per token, see
:func:`stacked_logits`), one autograd backward of the sum of the runs' losses. It computes
what the generic step computes (the gradients agree to float32 rounding,
``tests/training/test_transformer_training.py``) without ``vmap``'s per-operator overhead, which dominates
at these sizes on a CPU. The biases are zero buffers never trained, so the step leaves them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import checkpoint_bytes, read_checkpoint_header
from ..errors import CheckpointError, ConfigError
from ..transformer import ModAddTransformer, TransformerConfig, pair_tokens
from .family import TrainFamily, register_train_family

__all__ = ["TransformerTrainFamily", "TransformerStep", "stacked_logits", "transformer_config", "N_HEADS"]

#: heads of a trained transformer (d_head = d_model / N_HEADS): Nanda et al.'s 4
N_HEADS = 4


def transformer_config(cfg: Any) -> TransformerConfig:
    """The :class:`TransformerConfig` a TrainConfig describes (module docstring)."""
    if cfg.embedding != "learned":
        raise ConfigError("family 'transformer' learns its embedding: set embedding='learned' (the presets "
                          "nanda and nanda_small do)")
    if cfg.init != "random" or cfg.init_scale != 0.1:
        raise ConfigError("family 'transformer' draws Nanda et al.'s initialisation from the seed; init and "
                          "init_scale are the MLP's and must stay at their defaults ('random', 0.1)")
    d_model = 128 if cfg.d_model is None else cfg.d_model
    if d_model % N_HEADS:
        raise ConfigError(f"family 'transformer' uses {N_HEADS} heads: d_model must be a multiple of {N_HEADS}, "
                          f"got {d_model}")
    return TransformerConfig(p=cfg.p, d_model=d_model, n_heads=N_HEADS, d_head=d_model // N_HEADS,
                             d_mlp=512 if cfg.d_mlp is None else cfg.d_mlp, act_fn=cfg.activation)


class _TrainingTransformer(ModAddTransformer):
    """The model whose ``forward`` is the training path (same parameter names as the model)."""

    def forward(self, tokens: Tensor, *args: Any, **kwargs: Any) -> Tensor:  # type: ignore[override]
        return self.forward_last(tokens)


def stacked_logits(params: dict[str, Tensor], pairs: Tensor, p: int, scale: float, act: Any) -> Tensor:
    """Logits at ``=`` [S, n, p] of S runs (parameters [S, ...]) on pairs [n, 2] (zero biases).

    In ``[x, y, =]`` the query, key and value at ``=`` are the same for every input, and the keys and
    values at positions 0 and 1 depend on one token each: they are computed once per token (tables
    of p rows) and gathered per pair, so per pair only the three attention weights, their mixture
    and the MLP at ``=`` remain.
    """
    W_E, W_pos = params["embed.W_E"], params["pos_embed.W_pos"]
    W_Q, W_K, W_V = params["blocks.0.attn.W_Q"], params["blocks.0.attn.W_K"], params["blocks.0.attn.W_V"]
    W_O = params["blocks.0.attn.W_O"]
    ex = W_E[:, :p] + W_pos[:, 0:1]  # [S, p, d]: x at position 0
    ey = W_E[:, :p] + W_pos[:, 1:2]  # y at position 1
    eq = W_E[:, p] + W_pos[:, 2]  # [S, d]: '=' at position 2
    q = torch.einsum("sd,shde->she", eq, W_Q) * scale  # [S, h, e]
    OV = torch.einsum("shde,shef->shdf", W_V, W_O)  # [S, h, d, d]: value then output, per head
    def key_score(e: Tensor) -> Tensor:
        return torch.einsum("spd,shde,she->sph", e, W_K, q)  # [S, p, h]
    sx, sy = key_score(ex), key_score(ey)
    s_eq = torch.einsum("sd,shde,she->sh", eq, W_K, q)  # [S, h]
    ox = torch.einsum("spd,shdf->sphf", ex, OV)  # [S, p, h, d]: what x writes through each head
    oy = torch.einsum("spd,shdf->sphf", ey, OV)
    o_eq = torch.einsum("sd,shdf->shf", eq, OV)  # [S, h, d]
    x, y = pairs[:, 0], pairs[:, 1]
    S, n = W_E.shape[0], pairs.shape[0]
    scores = torch.stack([sx[:, x], sy[:, y], s_eq[:, None].expand(S, n, -1)], dim=-1)  # [S, n, h, 3]
    a = torch.softmax(scores, dim=-1)
    attn = (a[..., 0:1] * ox[:, x] + a[..., 1:2] * oy[:, y] + a[..., 2:3] * o_eq[:, None]).sum(2)  # [S, n, d]
    last = eq[:, None] + attn
    last = last + act(torch.bmm(last, params["blocks.0.mlp.W_in"])).bmm(params["blocks.0.mlp.W_out"])
    return torch.bmm(last, params["unembed.W_U"])


class TransformerStep:
    """The hand-batched step of S transformer runs (module docstring)."""

    def __init__(self, stack: Any) -> None:
        self.stack = st = stack
        t = transformer_config(st.cfgs[0])
        self.pairs, self.p = st.pairs, t.p
        self.scale = 1.0 / (t.d_head ** 0.5)
        self.act = torch.relu if t.act_fn == "relu" else torch.nn.functional.gelu
        self.label_index = st.labels.expand(st.S, st.n)[..., None]

    def __call__(self, label_logp_out: Tensor, argmax_out: Tensor) -> None:
        st = self.stack
        views = st.layout.views(st.P)
        params = {k: v.detach().requires_grad_(True) for k, v in views.items()}
        with torch.enable_grad():
            logits = stacked_logits(params, self.pairs, self.p, self.scale, self.act)
            at_label = torch.log_softmax(logits.double(), dim=-1).gather(2, self.label_index)  # [S, n, 1]
            loss = (-(at_label[..., 0] * st.w_train).sum(-1) / st.n_train).sum()
            grads = torch.autograd.grad(loss, list(params.values()))
        gviews = st.layout.views(st.G)
        with torch.no_grad():
            for name, g in zip(params, grads, strict=True):
                gviews[name].copy_(g)
            label_logp_out.copy_(at_label)
            argmax_out.copy_(logits.argmax(dim=-1))


class TransformerTrainFamily(TrainFamily):
    """``TrainConfig(family="transformer")`` (module docstring).

    Trains on one CPU thread unless told otherwise (``max_threads = 1``): its step's bits change with
    the thread count, and a run chosen two threads on a quiet machine and one on a busy one took
    different paths (``nanda_small`` seed 0 grokked on one thread and ended at test accuracy 0.987 on
    two); two threads bought only 1.14x on one run (benchmarks/bench_transformer_many.py, 2026-12-02).
    """

    symmetric = False
    max_threads = 1

    def batch_key(self, cfg: Any) -> tuple:
        t = transformer_config(cfg)
        return (t.d_model, t.n_heads, t.d_head, t.d_mlp, t.act_fn)

    def init_params(self, cfg: Any) -> dict[str, Tensor]:
        model = ModAddTransformer(transformer_config(cfg), seed=cfg.seed)
        return {k: v.detach().clone() for k, v in model.named_parameters()}

    def module(self, cfg: Any) -> nn.Module:
        return _TrainingTransformer(transformer_config(cfg), seed=None)

    def inputs(self, pairs: Tensor, cfg: Any) -> Tensor:
        return pair_tokens(pairs, cfg.p)

    def make_step(self, stack: Any) -> TransformerStep:
        return TransformerStep(stack)

    def export(self, cfg: Any, params: dict[str, Tensor]) -> nn.Module:
        model = ModAddTransformer(transformer_config(cfg), seed=None)
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(params[name])
        return model

    def checkpoint_bytes(self, model: nn.Module, step: int, metrics: dict[str, float], run_id: str | None) -> bytes:
        return checkpoint_bytes(model, step=step, metrics=metrics, run_id=run_id)

    def check_checkpoints(self, files: list[Path], cfg: Any, run_id: str | None) -> None:
        want = transformer_config(cfg)
        for f in files:
            h = read_checkpoint_header(f)
            if h.family != "transformer":
                raise CheckpointError(f"{f}: a checkpoint of family {h.family!r}, but config.json trains a "
                                      f"transformer; a folder must hold one run (move the odd file away)")
            if h.config != want:
                raise CheckpointError(f"{f}: transformer config {h.config.to_dict()}, but config.json has "
                                      f"{want.to_dict()}; a folder must hold one run (move the odd file away)")
            if run_id is not None and h.run_id is not None and h.run_id != run_id:
                raise CheckpointError(f"{f}: run_id {h.run_id!r}, but config.json's run is {run_id!r}; a folder "
                                      f"must hold one run (move the odd file away)")

    def step_flop(self, cfg: Any) -> float:
        t = transformer_config(cfg)
        d, hd, m, p = t.d_model, t.n_heads * t.d_head, t.d_mlp, t.p
        per_pair = 2 * (3 * d * hd * 2 + d * hd + hd * d + 2 * d * m + d * p)
        return 3.0 * per_pair * p * p  # forward and backward, all ordered pairs

    def run_bytes(self, cfg: Any, steps_buffered: int) -> int:
        t = transformer_config(cfg)
        d, hd, m, p = t.d_model, t.n_heads * t.d_head, t.d_mlp, t.p
        n_params = (p + 1) * d + 3 * d + 4 * d * hd + 2 * d * m + d * p
        activations = p * p * (3 * d + 6 * hd + 3 * m + 4 * p) * 4 * 3  # forward, saved and gradients
        return 4 * n_params * 4 + activations + steps_buffered * 64


register_train_family("transformer", TransformerTrainFamily())
