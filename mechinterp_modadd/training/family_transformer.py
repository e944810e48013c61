"""The ``transformer`` training family: Nanda et al.'s one-layer transformer in the one engine.

``TrainConfig(family="transformer", ...)`` trains :class:`~mechinterp_modadd.transformer.ModAddTransformer`
with a hand-written step (below); the engine's generic step (:class:`~.family.GenericStep`,
``torch.func.vmap`` of ``grad`` with the module's :meth:`ModAddTransformer.forward_last`, the
logits at ``=`` computed for that position only) computes the same. The trained parameters are the nine
weight matrices (every bias is a zero buffer, frozen, as in the paper's runs).

How the TrainConfig fields map onto the transformer (:func:`transformer_config`):
``p``; ``d_model`` (default 128); ``d_mlp`` (default 512, the paper's; the MLP family's width rule
does not apply); ``activation`` (``relu`` or ``gelu``); 4 heads of ``d_model / 4``. A transformer
config must set ``embedding="learned"`` (its embedding is learned; the presets ``nanda`` and
``nanda_small`` do). ``init`` and ``init_scale`` are the MLP's and must stay at their defaults: the
seed draws Nanda et al.'s initialisation (:meth:`ModAddTransformer.init_weights`).

The objective runs on all p^2 ordered pairs (the transformer is not symmetric in x and y).

The step (:class:`TransformerStep`, :meth:`TransformerTrainFamily.make_step`) is hand-written:
the forward of ``forward_last`` with a leading run axis, on the p x p grid of pairs (the attention's
per-token parts computed once per token and mixed by products batched over x and over y, see
:func:`attention_out`; the MLP and the unembedding per pair, :func:`head_logits`), then one autograd
backward. On a CPU every run of a stack is computed alone, its backward over its training pairs only
(its test pairs' logits without autograd), and the stack's threads go to runs computed side by side
(``parallel_runs``, one intra-op thread each), so a seed's bits are the same alone and in any
stack; on a GPU the stack is one batched computation. It computes what the generic step computes
(gradients equal to float32 rounding, ``tests/training/test_transformer_training.py``) without
``vmap``'s per-operator overhead, which dominates at these sizes on a CPU. The biases are zero
buffers never trained, so the step leaves them out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import checkpoint_bytes, read_checkpoint_header
from ..data import all_pairs
from ..errors import CheckpointError, ConfigError
from ..transformer import ModAddTransformer, TransformerConfig, pair_tokens
from .family import TrainFamily, register_train_family

__all__ = ["TransformerTrainFamily", "TransformerStep", "attention_out", "head_logits", "stacked_logits",
           "transformer_config", "N_HEADS"]

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


def attention_out(params: dict[str, Tensor], p: int, scale: float) -> Tensor:
    """The residual stream at ``=`` after attention, [S, p*p, d], of S runs (parameters [S, ...],
    zero biases) on every pair in :func:`~mechinterp_modadd.data.all_pairs` order (x major).

    In ``[x, y, =]`` the query, key and value at ``=`` are the same for every input, and the keys and
    values at positions 0 and 1 depend on one token each: they are computed once per token (tables
    of p rows). On the p x p grid the attention weights are broadcasts of those tables, and what the
    heads write is a product batched over x (for position 0) and over y (for position 1), so no
    per-pair gather is made.
    """
    W_E, W_pos = params["embed.W_E"], params["pos_embed.W_pos"]
    W_Q, W_K, W_V = params["blocks.0.attn.W_Q"], params["blocks.0.attn.W_K"], params["blocks.0.attn.W_V"]
    W_O = params["blocks.0.attn.W_O"]
    S, d, H = W_E.shape[0], W_E.shape[-1], W_Q.shape[1]
    ex = W_E[:, :p] + W_pos[:, 0:1]  # [S, p, d]: x at position 0
    ey = W_E[:, :p] + W_pos[:, 1:2]  # y at position 1
    eq = W_E[:, p] + W_pos[:, 2]  # [S, d]: '=' at position 2
    q = torch.einsum("sd,shde->she", eq, W_Q) * scale  # [S, h, e]
    kq = torch.einsum("shde,she->sdh", W_K, q)  # [S, d, h]: a token's score is its residual times this
    sx, sy, s_eq = torch.bmm(ex, kq), torch.bmm(ey, kq), torch.bmm(eq[:, None], kq)  # [S, p | 1, h]
    OV = torch.einsum("shde,shef->shdf", W_V, W_O)  # [S, h, d, d]: value then output, per head
    ox = torch.einsum("spd,shdf->sphf", ex, OV).reshape(S * p, H, d)  # what x writes through each head
    oy = torch.einsum("spd,shdf->sphf", ey, OV).reshape(S * p, H, d)
    o_eq = torch.einsum("sd,shdf->shf", eq, OV)  # [S, h, d]
    scores = torch.stack(torch.broadcast_tensors(sx[:, :, None], sy[:, None, :], s_eq[:, None]), dim=-1)
    a = torch.softmax(scores, dim=-1)  # [S, x, y, h, 3]
    out = torch.bmm(a[..., 0].reshape(S * p, p, H), ox).view(S, p, p, d)  # batched over x
    out = out + torch.bmm(a[..., 1].transpose(1, 2).reshape(S * p, p, H), oy).view(S, p, p, d).transpose(1, 2)
    out = out.reshape(S, p * p, d) + torch.bmm(a[..., 2].reshape(S, p * p, H), o_eq)
    return eq[:, None] + out


def head_logits(params: dict[str, Tensor], resid: Tensor, act: Any) -> Tensor:
    """Logits [S, n, p] from the residual at ``=`` after attention [S, n, d]: the MLP, then W_U."""
    resid = resid + act(torch.bmm(resid, params["blocks.0.mlp.W_in"])).bmm(params["blocks.0.mlp.W_out"])
    return torch.bmm(resid, params["unembed.W_U"])


def stacked_logits(params: dict[str, Tensor], p: int, scale: float, act: Any) -> Tensor:
    """Logits at ``=`` [S, p*p, p] of S runs on every pair, x major (:func:`attention_out`)."""
    return head_logits(params, attention_out(params, p, scale), act)


class TransformerStep:
    """The hand-written step of S transformer runs (module docstring).

    On a CPU the engine calls :meth:`run` for each run (``parallel_runs``: several at once, one
    intra-op thread each); a run's backward covers its training pairs only, its test pairs' logits
    are computed without autograd, and its operations are those of the same run alone. Called as a
    whole (``step(...)``) on a GPU, the S runs are one batched computation over all pairs, the test
    pairs weighted zero.
    """

    def __init__(self, stack: Any) -> None:
        self.stack = st = stack
        t = transformer_config(st.cfgs[0])
        self.p = t.p
        if not torch.equal(st.pairs.cpu(), all_pairs(t.p)):
            raise RuntimeError("internal: the transformer step expects every pair in all_pairs order")
        self.scale = 1.0 / (t.d_head ** 0.5)
        self.act = torch.relu if t.act_fn == "relu" else torch.nn.functional.gelu
        # per run, fixed for the stack: training and test rows, their labels, the training weights
        self.rows = []
        for w in st.w_train:
            tr, te = torch.nonzero(w > 0)[:, 0], torch.nonzero(w <= 0)[:, 0]
            self.rows.append((tr, te, st.labels[tr, None], st.labels[te, None], w[tr]))
        self.label_index = st.labels.expand(st.S, st.n)[..., None]
        #: ``step(...)`` as one batched computation (off a CPU), else run by run
        self.batched = st.device.type != "cpu"

    def run(self, i: int, label_logp_out: Tensor, argmax_out: Tensor) -> None:
        """Run ``i`` alone: its gradients into ``stack.G`` and its rows of the metric inputs."""
        st = self.stack
        tr, te, label_tr, label_te, w_tr = self.rows[i]
        # copies: a slice would share the storage's version counter, which other threads' updates bump
        params = {k: v[i:i + 1].clone().requires_grad_(True) for k, v in st.layout.views(st.P).items()}
        with torch.enable_grad():
            resid = attention_out(params, self.p, self.scale)
            logits = head_logits(params, resid[:, tr], self.act)[0]  # [n_train, p]
            at_label = torch.log_softmax(logits.double(), dim=-1).gather(1, label_tr)
            loss = -(at_label[:, 0] * w_tr).sum() / st.n_train[i]
            grads = torch.autograd.grad(loss, list(params.values()))
        gviews = st.layout.views(st.G)
        with torch.no_grad():
            for name, g in zip(params, grads, strict=True):
                gviews[name][i:i + 1].copy_(g)
            label_logp_out[i, tr] = at_label
            argmax_out[i, tr] = logits.argmax(dim=-1)
            if len(te):
                fixed = {k: v.detach() for k, v in params.items()}
                logits = head_logits(fixed, resid.detach()[:, te], self.act)[0]
                label_logp_out[i, te] = torch.log_softmax(logits.double(), dim=-1).gather(1, label_te)
                argmax_out[i, te] = logits.argmax(dim=-1)

    def __call__(self, label_logp_out: Tensor, argmax_out: Tensor) -> None:
        st = self.stack
        if not self.batched:
            for i in range(st.S):
                self.run(i, label_logp_out, argmax_out)
            return
        params = {k: v.detach().requires_grad_(True) for k, v in st.layout.views(st.P).items()}
        with torch.enable_grad():
            logits = stacked_logits(params, self.p, self.scale, self.act)
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

    A run trains on one CPU thread unless told otherwise (``max_threads = 1``): its step's bits change
    with the intra-op thread count, and a run given two threads on a quiet machine and one on a busy
    one would take different paths (``nanda_small`` seed 0 grokked on one thread and ended at test
    accuracy 0.987 on two, 2026-12-02), for 1.14x. A stack of runs spends the machine's threads on
    runs side by side instead (``parallel_runs``), which leaves every run's bits as they are alone.
    """

    symmetric = False
    max_threads = 1
    parallel_runs = True

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
        d, m, p, h = t.d_model, t.d_mlp, t.p, t.n_heads
        per_pair = 2 * (3 * h * d + 2 * d * m + d * p)  # the heads' mixture, the MLP and W_U at '='
        per_token = 2 * 2 * (p + 1) * (h * d * d + d * h)  # what a token writes per head, and its scores
        return per_pair * p * p * (1.0 + 2.0 * cfg.train_fraction) + 3.0 * per_token  # backward: train pairs

    def run_bytes(self, cfg: Any, steps_buffered: int) -> int:
        t = transformer_config(cfg)
        d, hd, m, p = t.d_model, t.n_heads * t.d_head, t.d_mlp, t.p
        n_params = (p + 1) * d + 3 * d + 4 * d * hd + 2 * d * m + d * p
        activations = p * p * (3 * d + 6 * hd + 3 * m + 4 * p) * 4 * 3  # forward, saved and gradients
        return 4 * n_params * 4 + activations + steps_buffered * 64


register_train_family("transformer", TransformerTrainFamily())
