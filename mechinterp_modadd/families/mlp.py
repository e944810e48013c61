"""Family ``"mlp"``: the paper's network, ``logits = W_out sigma(W_in (e_x + e_y))``
(:class:`~mechinterp_modadd.model.ModAddMLP`).

Neuron view: ``pre[(x, y), m] = theta_m[x] + theta_m[y]`` (theta = the effective input weights,
``W_in`` or ``W_in W_E``), read through ``mlp.hook_pre`` (and ``hook_embed`` when a hook is
attached there); ``post = sigma(pre)`` through ``mlp.hook_post``; ``W[m] = xi_m = W_out[:, m]``;
``rest`` is zero for a full view (no bias). Without hooks the view's ``pre`` and ``post`` are the
bits of :func:`mechinterp_modadd.forward.hidden` and ``view.logits()`` those of
:func:`mechinterp_modadd.forward.all_pair_logits` (tests/core/test_families.py).

This family has an exact closed form: its claims read theta and xi from the weights
(:func:`mechinterp_modadd.fourier.neuron_spectrum`), which the view reproduces.

Plain state dicts: ``mlp.W_in`` [d_mlp, p] and ``mlp.W_out`` [p, d_mlp] (optionally ``embed.W_E``
[d_model, p] with ``mlp.W_in`` [d_mlp, d_model], and the authors' ``mlp.basis`` [p, p], which is
ignored), optionally under a ``model.`` or ``module.`` prefix. The activation is not in a state dict:
pass it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..data import all_pairs
from ..errors import CheckpointError, ConfigError
from ..forward import pair_chunks, weights64
from ..model import ModAddMLP, ModelConfig
from ..neurons import NeuronView, neuron_index
from .base import Family, check_tensor, describe_state_dict
from .registry import register_family

__all__ = ["MLPFamily", "strip_prefix"]


def strip_prefix(sd: Mapping[str, Any], prefixes: Sequence[str] = ("model.", "module.", "_orig_mod.")
                 ) -> dict[str, Any]:
    """``sd`` with one common wrapper prefix removed from every key (when all keys share it)."""
    out = dict(sd)
    changed = True
    while changed and out:
        changed = False
        for pre in prefixes:
            if all(k.startswith(pre) for k in out):
                out = {k[len(pre):]: v for k, v in out.items()}
                changed = True
    return out


def _has_hooks(hp) -> bool:
    return bool(getattr(hp, "_forward_hooks", None))


class MLPFamily(Family):
    """The paper's two-layer MLP on e_x + e_y with one shared input matrix."""

    name = "mlp"
    description = "the paper's MLP: W_out sigma(W_in (e_x + e_y)), no biases"
    model_types = (ModAddMLP,)
    config_type = ModelConfig
    hook_pre = "mlp.hook_pre"
    hook_post = "mlp.hook_post"

    def build(self, config: ModelConfig, seed: int | None = 0) -> ModAddMLP:
        if not isinstance(config, ModelConfig):
            raise ConfigError(f"family 'mlp' builds from a ModelConfig, got {type(config).__name__}")
        return ModAddMLP(config, seed=seed)

    # ------------------------------------------------------------------------- foreign weights
    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        sd = strip_prefix(state_dict)
        w_in, w_out = sd.get("mlp.W_in"), sd.get("mlp.W_out")
        if not (isinstance(w_in, Tensor) and isinstance(w_out, Tensor) and w_in.ndim == 2 and w_out.ndim == 2):
            return False
        if set(sd) - {"mlp.W_in", "mlp.W_out", "embed.W_E", "mlp.basis"}:
            return False
        d_model = sd["embed.W_E"].shape[0] if isinstance(sd.get("embed.W_E"), Tensor) else w_out.shape[0]
        return w_in.shape == (w_out.shape[1], d_model)

    def from_state_dict(self, state_dict: Mapping[str, Any], *, activation: str | None = None,
                        p: int | None = None, where: str = "state dict") -> ModAddMLP:
        sd = strip_prefix(state_dict)
        sd.pop("mlp.basis", None)
        if activation is None:
            raise CheckpointError(f"{where}: a plain state dict does not record the activation; pass it "
                                  f"(activation= / --activation, e.g. relu or quad)")
        for key, what in (("mlp.W_in", "[d_mlp, p]"), ("mlp.W_out", "[p, d_mlp]")):
            if key not in sd:
                raise CheckpointError(f"{where}: missing key {key!r} (a {what} tensor) for family 'mlp'; "
                                      f"found {describe_state_dict(sd)}")
            check_tensor(where, key, sd[key], ndim=2)
        p_, d_mlp = sd["mlp.W_out"].shape
        learned = "embed.W_E" in sd
        if learned:
            check_tensor(where, "embed.W_E", sd["embed.W_E"], ndim=2)
        d_model = sd["embed.W_E"].shape[0] if learned else p_
        check_tensor(where, "mlp.W_in", sd["mlp.W_in"], (d_mlp, d_model))
        if learned:
            check_tensor(where, "embed.W_E", sd["embed.W_E"], (d_model, p_))
        extra = sorted(set(sd) - {"mlp.W_in", "mlp.W_out", "embed.W_E"})
        if extra:
            raise CheckpointError(f"{where}: unexpected keys {extra} for family 'mlp' (expected mlp.W_in, "
                                  f"mlp.W_out and optionally embed.W_E)")
        if p is not None and p_ != p:
            raise CheckpointError(f"{where}: p mismatch: key 'mlp.W_out' gives p = {p_}, expected p = {p}")
        try:
            cfg = ModelConfig(p=p_, d_mlp=d_mlp, activation=activation,
                              embedding="learned" if learned else "one_hot", d_model=d_model)
        except ConfigError as e:
            raise CheckpointError(f"{where}: {e}") from None
        model = ModAddMLP(cfg, seed=None)
        keys = ["mlp.W_in", "mlp.W_out"] + (["embed.W_E"] if learned else [])
        with torch.no_grad():
            model.load_state_dict({k: sd[k].to(torch.float32) for k in keys}, strict=True)
        return model

    # ------------------------------------------------------------------------------- the view
    @torch.no_grad()
    def activations(self, model: ModAddMLP, neurons: Sequence[int] | Tensor | slice | None = None
                    ) -> tuple[Tensor, Tensor]:
        """pre and post [p*p, n] of ``neurons`` without the view's ``rest`` (no pass over the other
        neurons' contributions: cheap for a sample of a wide model)."""
        return self._pass(model, neurons, with_rest=False)[:2]

    @torch.no_grad()
    def neuron_view(self, model: ModAddMLP, neurons: Sequence[int] | Tensor | slice | None = None) -> NeuronView:
        pre, post, rest, idx, W = self._pass(model, neurons, with_rest=True)
        return NeuronView(family=self.name, p=int(model.cfg.p), pre=pre, post=post, W=W, rest=rest,
                          neurons=idx, hook_pre=self.hook_pre, hook_post=self.hook_post)

    def _pass(self, model: ModAddMLP, neurons, with_rest: bool):
        w = weights64(model)
        p, M = w.p, w.d_mlp
        idx = neuron_index(neurons, M)
        full = idx.numel() == M and bool((idx == torch.arange(M)).all())
        pairs = all_pairs(p)
        n = pairs.shape[0]
        pre = torch.empty(n, idx.numel(), dtype=torch.float64)
        post = torch.empty_like(pre)
        rest = torch.zeros(n, p, dtype=torch.float64)
        others = torch.ones(M, dtype=torch.bool)
        others[idx] = False
        theta_T = w.theta.T
        hooked_embed = _has_hooks(model.hook_embed)
        for sl in pair_chunks(n, M, p):
            pr = pairs[sl]
            if hooked_embed:
                emb = (torch.nn.functional.one_hot(pr, p).double() if w.W_E is None else w.W_E.T[pr])
                h = model.hook_embed(emb).double().sum(1) @ w.W_in.T
            else:
                h = theta_T[pr[:, 0]] + theta_T[pr[:, 1]]
            h = model.mlp.hook_pre(h).double()
            a = model.mlp.hook_post(w.act_fn(h).double()).double()
            if full:
                pre[sl], post[sl] = h, a
            else:
                pre[sl], post[sl] = h[:, idx], a[:, idx]
                if with_rest and bool(others.any()):
                    rest[sl] = a[:, others] @ w.W_out.T[others]
        return pre, post, rest, idx, (w.W_out.T if full else w.W_out.T[idx])


register_family(MLPFamily())
