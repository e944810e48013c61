"""The one forward pass over input pairs, shared by the analyses, the ablations and the trainer.

The network is ``logits(x, y) = W_out @ sigma(theta[:, x] + theta[:, y])`` with ``theta`` the
effective input weights [d_mlp, p] (``W_in``, or ``W_in @ W_E`` for a learned embedding). Every
place that needs logits or hidden activations on many pairs calls this module:

- :func:`weights64` is the single float64 copy of the weights (on CPU, whatever the model's
  dtype and device) that the analyses read;
- :func:`pair_chunks` streams over pairs in chunks sized from a memory budget ``max_memory``
  (bytes or a size such as ``"2G"``; default: the budget of
  :func:`mechinterp_modadd.memory.current_budget`, which ``--max-memory`` sets), a chunk taking at
  most :data:`CHUNK_SHARE` of it, so that large p and wide layers stay within memory: at p = 199
  and d_mlp = 38,329 the hidden activations over all 39,601 pairs are 12 GB in float64, one chunk
  of them is what the budget allows;
- :func:`hidden` gives pre- and post-activations, :func:`logits` the logits, both in float64 and
  optionally with neuron scales applied *without editing weights*: the post-activation of neuron
  m becomes ``fill[m] + scale[m] * (post[m] - fill[m])`` (scale 0 with fill 0 zero-ablates, scale 1
  keeps; a [B, d_mlp] scale gives a batch of B interventions in one pass);
- :func:`all_pair_logits` is the float64 logits on all p^2 pairs in ``all_pairs`` order, through
  the model's hook points so that TransformerLens hooks attached to the model apply;
- :func:`input_logits` is the differentiable pass in the model's own dtype over a dense matrix of
  ``e_x + e_y`` rows (:func:`pair_inputs`), the trainer's objective: on a CPU a matmul beats a
  gather because its backward is a matmul, not a scatter-add.

Device: the float64 copy lives on the CPU; :func:`hidden` and :func:`logits` run their chunks on
:func:`~mechinterp_modadd.runtime.compute_device` (the ``device=`` of the calling analysis; the
CPU by default, where nothing is copied) and return CPU tensors.

Memory: a chunk of ``n`` pairs costs about ``n * (3 d_mlp + 2 B p) * 8`` bytes (pre, post and the
scaled post; the logits of B interventions), see :func:`bytes_per_pair`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .data import all_pairs, check_pairs
from .errors import InputError
from .memory import current_budget
from .runtime import compute_device, takes_device

__all__ = [
    "CHUNK_SHARE",
    "Weights64",
    "weights64",
    "unordered_pairs",
    "pair_inputs",
    "bytes_per_pair",
    "chunk_size",
    "pair_chunks",
    "hidden",
    "logits",
    "all_pair_logits",
    "input_logits",
]

#: Share of the memory budget one chunk of a streamed pass may take (the rest is for its output
#: and the caller's arrays).
CHUNK_SHARE: float = 0.25


# ----------------------------------------------------------------------------------- weights
@dataclass(frozen=True)
class Weights64:
    """A float64 CPU copy of a model's weights and its activation.

    ``theta`` [d_mlp, p] holds the effective input weights (rows theta_m), ``W_out`` [p, d_mlp]
    the output weights (columns xi_m); ``W_in`` [d_mlp, d_model] and ``W_E`` [d_model, p] (None for
    one-hot models) are kept for passes that must go through ``hook_embed``.
    """

    theta: Float[Tensor, "d_mlp p"]
    W_out: Float[Tensor, "p d_mlp"]
    W_in: Float[Tensor, "d_mlp d_model"]
    W_E: Float[Tensor, "d_model p"] | None
    act_fn: Callable[[Tensor], Tensor]

    @property
    def p(self) -> int:
        return self.W_out.shape[0]

    @property
    def d_mlp(self) -> int:
        return self.W_out.shape[1]

    @property
    def xi(self) -> Float[Tensor, "d_mlp p"]:
        """Output weights as rows, xi_m = W_out[:, m]."""
        return self.W_out.T

    def to(self, device: torch.device) -> Weights64:
        """The same float64 weights on ``device`` (itself when they are there already)."""
        if self.theta.device == torch.device(device):
            return self
        W_E = None if self.W_E is None else self.W_E.to(device)
        return Weights64(theta=self.theta.to(device), W_out=self.W_out.to(device), W_in=self.W_in.to(device),
                         W_E=W_E, act_fn=self.act_fn)


def _act(model, activation) -> Callable[[Tensor], Tensor]:
    if activation is None:
        return model.act_fn
    if isinstance(activation, str):
        from .model import get_activation

        return get_activation(activation)
    if callable(activation):
        return activation
    raise InputError(f"activation must be a name or a callable, got {type(activation).__name__}")


@torch.no_grad()
def weights64(model, *, activation: str | Callable[[Tensor], Tensor] | None = None) -> Weights64:
    """The model's weights as float64 on CPU (the one place that converts them).

    ``activation`` (a registry name or a callable) replaces the model's sigma in the copy.
    A :class:`Weights64` is returned unchanged (with ``activation`` swapped in when given).
    """
    if isinstance(model, Weights64):
        if activation is None:
            return model
        return Weights64(model.theta, model.W_out, model.W_in, model.W_E, _act(None, activation))
    W_in = model.mlp.W_in.detach().to("cpu", torch.float64)
    W_E = None if model.W_E is None else model.W_E.detach().to("cpu", torch.float64)
    theta = W_in if W_E is None else W_in @ W_E
    W_out = model.mlp.W_out.detach().to("cpu", torch.float64)
    return Weights64(theta=theta, W_out=W_out, W_in=W_in, W_E=W_E, act_fn=_act(model, activation))


# ------------------------------------------------------------------------------------- pairs
def unordered_pairs(p: int) -> tuple[Int[Tensor, "P 2"], Float[Tensor, "P"]]:
    """The p(p+1)/2 pairs x <= y and their multiplicity (1 if x = y else 2).

    The network is symmetric, f(x, y) = f(y, x), so weighted means over these equal means over
    all p^2 ordered pairs.
    """
    i, j = torch.triu_indices(p, p)
    return torch.stack([i, j], 1), torch.where(i == j, 1.0, 2.0).double()


def pair_inputs(pairs: Int[Tensor, "P 2"], p: int, dtype: torch.dtype = torch.float32) -> Float[Tensor, "P p"]:
    """Dense rows e_x + e_y (entries 0, 1 or 2) of the pairs, for :func:`input_logits`."""
    rows = torch.arange(pairs.shape[0])
    out = torch.zeros(pairs.shape[0], p, dtype=dtype)
    one = torch.ones(pairs.shape[0], dtype=dtype)
    out.index_put_((rows, pairs[:, 0]), one, accumulate=True)
    out.index_put_((rows, pairs[:, 1]), one, accumulate=True)
    return out


def bytes_per_pair(d_mlp: int, p: int, batch: int = 1) -> int:
    """Working memory of one pair in a float64 pass: pre, post and scaled post [d_mlp] each, plus
    the logits of ``batch`` interventions and their softmax-sized scratch (2 * batch * p)."""
    return 8 * (3 * d_mlp + 2 * batch * p)


def chunk_size(n_items: int, item_bytes: int, max_memory: int | str | None = None) -> int:
    """How many items of ``item_bytes`` fit in :data:`CHUNK_SHARE` of the budget ``max_memory``
    (bytes, or a size text such as ``"2G"``; None: :func:`~mechinterp_modadd.memory.current_budget`,
    what ``--max-memory`` sets); at least 1, at most ``n_items``."""
    if isinstance(max_memory, (int, float)) and not isinstance(max_memory, bool):
        # an explicit number of bytes from library code (no floor: tests force tiny chunks with it)
        if not max_memory >= 1:
            raise InputError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
        budget = max_memory
    else:
        budget = current_budget(max_memory)
    return max(1, min(max(n_items, 1), int(budget * CHUNK_SHARE // max(1, item_bytes))))


def pair_chunks(n_pairs: int, d_mlp: int, p: int, *, batch: int = 1,
                max_memory: int | None = None) -> Iterator[slice]:
    """Consecutive slices over ``n_pairs`` pairs, each within ``max_memory`` (see :func:`bytes_per_pair`)."""
    step = chunk_size(n_pairs, bytes_per_pair(d_mlp, p, batch), max_memory)
    for start in range(0, n_pairs, step):
        yield slice(start, min(start + step, n_pairs))


# ------------------------------------------------------------------------------------ passes
def _scaled(post: Tensor, scale: Tensor | None, fill: Tensor | None) -> Tensor:
    """``fill + scale * (post - fill)``: [P, M] with scale [M], or [B, P, M] with scale [B, M]."""
    if scale is None:
        return post
    if fill is None:
        return post * scale if scale.ndim == 1 else post[None] * scale[:, None, :]
    if scale.ndim == 1:
        return fill + (post - fill) * scale
    return fill + (post - fill)[None] * scale[:, None, :]


def _to_device(t: Tensor | None, device: torch.device) -> Tensor | None:
    """``t`` on ``device`` (None stays None)."""
    return None if t is None else t.to(device)


def _pairs(pairs, p: int) -> Tensor:
    if pairs is None:
        return all_pairs(p)
    pairs = torch.as_tensor(pairs).detach().cpu()
    check_pairs(pairs, p)
    return pairs.long()


def _check_vector(name: str, t, d_mlp: int) -> Tensor | None:
    if t is None:
        return None
    t = torch.as_tensor(t).detach().to("cpu", torch.float64)
    if t.ndim not in (1, 2) or t.shape[-1] != d_mlp or (name == "fill" and t.ndim != 1):
        want = f"[{d_mlp}]" if name == "fill" else f"[{d_mlp}] or [B, {d_mlp}]"
        raise InputError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    return t


@takes_device
@torch.no_grad()
def hidden(model_or_weights, pairs: Int[Tensor, "P 2"] | None = None, *,
           activation: str | Callable[[Tensor], Tensor] | None = None,
           max_memory: int | None = None) -> tuple[Float[Tensor, "P d_mlp"], Float[Tensor, "P d_mlp"]]:
    """float64 pre-activations theta[:, x] + theta[:, y] and post-activations sigma(pre) [P, d_mlp].

    Reads the weights (hooks do not apply); ``pairs`` default to all p^2 pairs. The result is
    held whole (P * d_mlp * 16 bytes); use :func:`pair_chunks` to stream when that is too much.
    ``max_memory`` bounds the scratch of each chunk.
    """
    w = weights64(model_or_weights, activation=activation)
    pairs = _pairs(pairs, w.p)
    n = pairs.shape[0]
    pre = torch.empty(n, w.d_mlp, dtype=torch.float64)
    post = torch.empty_like(pre)
    dev = compute_device()
    theta_T = w.theta.T.to(dev)  # [p, M]: rows are gathered per pair
    for sl in pair_chunks(n, w.d_mlp, w.p, max_memory=max_memory):
        pr = pairs[sl].to(dev)
        chunk = theta_T[pr[:, 0]] + theta_T[pr[:, 1]]
        pre[sl] = chunk
        post[sl] = w.act_fn(chunk).double()
    return pre, post


def _has_hooks(hp) -> bool:
    return bool(getattr(hp, "_forward_hooks", None))


def _any_hooks(model) -> bool:
    """Whether any hook point of ``model`` (None: no model) has a forward hook attached."""
    if model is None:
        return False
    points = (model.hook_embed, model.mlp.hook_pre, model.mlp.hook_post, model.hook_logits)
    return any(_has_hooks(h) for h in points)


def _chunk_logits(w: Weights64, pr: Tensor, scale: Tensor | None, fill: Tensor | None, model) -> Tensor:
    """Logits of one chunk of pairs; through the model's hook points when ``model`` is given."""
    if model is not None and _has_hooks(model.hook_embed):
        emb = (torch.nn.functional.one_hot(pr, w.p).double() if w.W_E is None else w.W_E.T[pr])
        pre = model.hook_embed(emb).double().sum(1) @ w.W_in.T
    else:
        theta_T = w.theta.T
        pre = theta_T[pr[:, 0]] + theta_T[pr[:, 1]]
    if model is not None:
        pre = model.mlp.hook_pre(pre).double()
    post = w.act_fn(pre).double()
    if model is not None:
        post = model.mlp.hook_post(post).double()
    out = _scaled(post, scale, fill) @ w.W_out.T
    if model is not None:
        out = model.hook_logits(out).double()
    return out


@takes_device
@torch.no_grad()
def logits(model_or_weights, pairs: Int[Tensor, "P 2"] | None = None, *,
           scale: Float[Tensor, "d_mlp"] | Float[Tensor, "B d_mlp"] | None = None,
           fill: Float[Tensor, "d_mlp"] | None = None,
           activation: str | Callable[[Tensor], Tensor] | None = None,
           hooks: bool = False, max_memory: int | None = None) -> Float[Tensor, "P p"] | Float[Tensor, "B P p"]:
    """float64 logits ``(fill + scale * (sigma(pre) - fill)) @ W_out.T`` on ``pairs`` (default: all
    p^2 pairs in ``all_pairs`` order), streamed over pairs within ``max_memory``.

    Args:
        model_or_weights: a :class:`~mechinterp_modadd.model.ModAddMLP` or a :class:`Weights64`.
        scale: per-neuron factors on the post-activation, [d_mlp] (result [P, p]) or a batch
            [B, d_mlp] (result [B, P, p]); 0/1 masks ablate/keep. None keeps every neuron.
        fill: the value a scaled-away neuron tends to (default 0: zero-ablation; a neuron's mean
            activation gives mean-ablation); used only with ``scale``.
        activation: replaces sigma for this pass only (name or callable).
        hooks: run through the model's hook points (``hook_embed``, ``mlp.hook_pre``,
            ``mlp.hook_post``, ``hook_logits``) so attached TransformerLens hooks apply, in float64
            and chunk by chunk (a hook sees one chunk of pairs at a time). Needs a model.
    """
    w = weights64(model_or_weights, activation=activation)
    if hooks and isinstance(model_or_weights, Weights64):
        raise InputError("logits(..., hooks=True) needs the model, not a Weights64 copy")
    model = model_or_weights if hooks else None
    scale = _check_vector("scale", scale, w.d_mlp)
    fill = _check_vector("fill", fill, w.d_mlp)
    all_p = pairs is None
    pairs = _pairs(pairs, w.p)
    n = pairs.shape[0]
    batch = 1 if scale is None or scale.ndim == 1 else scale.shape[0]
    shape = (n, w.p) if batch == 1 and (scale is None or scale.ndim == 1) else (batch, n, w.p)
    out = torch.empty(shape, dtype=torch.float64)
    if all_p and not _any_hooks(model) and \
            chunk_size(n, bytes_per_pair(w.d_mlp * batch, w.p, batch), max_memory) < n:
        # more than one chunk: compute the p(p+1)/2 unordered pairs only and mirror them, since
        # theta[x] + theta[y] is the same float sum in either order (half the work at large p)
        up, _ = unordered_pairs(w.p)
        half = logits(w, up, scale=scale, fill=fill, max_memory=max_memory)
        x, y = up[:, 0], up[:, 1]
        out[..., x * w.p + y, :] = half
        out[..., y * w.p + x, :] = half
        return out
    dev = compute_device()
    wd, scale, fill = w.to(dev), _to_device(scale, dev), _to_device(fill, dev)
    for sl in pair_chunks(n, w.d_mlp * batch, w.p, batch=batch, max_memory=max_memory):
        out[..., sl, :] = _chunk_logits(wd, pairs[sl].to(dev), scale, fill, model)
    return out


@takes_device
def all_pair_logits(model, *, hooks: bool = True, max_memory: int | None = None) -> Float[Tensor, "pp p"]:
    """float64 logits [p*p, p] on all pairs in ``all_pairs`` order (hooks of the model apply unless
    ``hooks=False``), streamed within ``max_memory``."""
    return logits(model, hooks=hooks, max_memory=max_memory)


def input_logits(model, inputs: Float[Tensor, "P p"], *,
                 scale: Float[Tensor, "d_mlp"] | None = None) -> Float[Tensor, "P p"]:
    """Differentiable logits in the model's dtype and device from dense ``e_x + e_y`` rows
    (:func:`pair_inputs`): ``sigma(inputs @ theta.T) * scale @ W_out.T``. Hooks do not apply.

    This is the trainer's pass: one matmul per layer, autograd through both.
    """
    W = model.mlp.W_in
    pre = inputs.to(W.device, W.dtype) @ model.effective_W_in().T  # [P, d_mlp]
    post = model.act_fn(pre)
    if scale is not None:
        post = post * torch.as_tensor(scale).to(post.device, post.dtype)
    return post @ model.mlp.W_out.T
