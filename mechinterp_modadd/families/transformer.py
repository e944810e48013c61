"""Family ``transformer``: Nanda et al.'s one-layer transformer (:mod:`mechinterp_modadd.transformer`).

The neuron view holds the MLP neurons **at the last position** (``=``, where the logits are read),
on every input ``[x, y, =]`` of the p x p grid:

- ``pre``, ``post`` [p*p, d_mlp]: ``blocks.0.mlp.hook_pre`` / ``hook_post`` at position 2;
- ``W`` [d_mlp, p] = ``W_out @ W_U``: the direction neuron m writes into the logits (its output
  weights through the unembedding);
- ``rest`` [p*p, p]: everything else that reaches the logits at ``=``, i.e. the residual stream
  before the MLP (token and position embedding of ``=``, the attention output: the direct and
  attention paths) through ``W_U``, plus ``b_out @ W_U + b_U``.

In one layer the MLP's output reaches only the unembedding, so ``post @ W + rest`` equals the
model's logits (to float32 rounding of the model's own forward) and ablating neurons in the view is
ablating them in the model. Plain state dicts in TransformerLens's ``HookedTransformer`` layout or
Nanda et al.'s are detected from their keys (:mod:`mechinterp_modadd.transformer_io`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..neurons import NeuronView, neuron_index
from ..transformer import ModAddTransformer, TransformerConfig, all_pair_tokens
from ..transformer_io import layout_of, transformer_from_state_dict
from .base import Family
from .registry import register_family

__all__ = ["TransformerFamily", "transformer_view_parts"]


def transformer_view_parts(model: ModAddTransformer) -> dict[str, Tensor]:
    """pre, post [p*p, d_mlp], W [d_mlp, p], rest [p*p, p] and the pattern at ``=`` [p*p, heads, 3],
    float64, from one hooked run on all inputs (so hooks attached to the model apply)."""
    p = model.cfg.p
    names = ("blocks.0.mlp.hook_pre", "blocks.0.mlp.hook_post", "blocks.0.hook_resid_mid",
             "blocks.0.attn.hook_pattern")
    device = model.cfg.device
    with torch.no_grad():
        _, cache = model.run_with_cache(all_pair_tokens(p, device=device), names_filter=list(names))
        W_U = model.unembed.W_U.detach().to("cpu", torch.float64)
        W_out = model.blocks[0].mlp.W_out.detach().to("cpu", torch.float64)
        b_out = model.blocks[0].mlp.b_out.detach().to("cpu", torch.float64)
        b_U = model.unembed.b_U.detach().to("cpu", torch.float64)
        resid_mid = cache["blocks.0.hook_resid_mid"][:, -1].to("cpu", torch.float64)
        return {
            "pre": cache["blocks.0.mlp.hook_pre"][:, -1].to("cpu", torch.float64),
            "post": cache["blocks.0.mlp.hook_post"][:, -1].to("cpu", torch.float64),
            "W": W_out @ W_U,
            "rest": resid_mid @ W_U + b_out @ W_U + b_U,
            "pattern": cache["blocks.0.attn.hook_pattern"][:, :, -1, :].to("cpu", torch.float64),
        }


class TransformerFamily(Family):
    """Adapter of :class:`~mechinterp_modadd.transformer.ModAddTransformer` (module docstring)."""

    name = "transformer"
    description = "Nanda et al.'s one-layer transformer on [x, y, =] (attention + ReLU MLP, logits at '=')"
    model_types = (ModAddTransformer,)
    config_type = TransformerConfig
    hook_pre = "blocks.0.mlp.hook_pre"
    hook_post = "blocks.0.mlp.hook_post"

    def build(self, config: TransformerConfig, seed: int | None = 0) -> ModAddTransformer:
        return ModAddTransformer(config, seed=seed)

    def activation_name(self, model: ModAddTransformer) -> str:
        return model.cfg.act_fn

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        return layout_of(state_dict) is not None

    def from_state_dict(self, state_dict: Mapping[str, Any], *, activation: str | None = None,
                        p: int | None = None, where: str = "state dict") -> ModAddTransformer:
        given: dict[str, Any] = {}
        if activation is not None:
            given["act_fn"] = activation
        if p is not None:
            given["p"] = p
        model, _ = transformer_from_state_dict(state_dict, given or None, where=where,
                                               config_source="the command line")
        return model

    def neuron_view(self, model: ModAddTransformer, neurons: Sequence[int] | Tensor | slice | None = None
                    ) -> NeuronView:
        idx = neuron_index(neurons, model.cfg.d_mlp)
        parts = transformer_view_parts(model)
        others = torch.ones(model.cfg.d_mlp, dtype=torch.bool)
        others[idx] = False
        rest = parts["rest"]
        if bool(others.any()):
            rest = rest + parts["post"][:, others] @ parts["W"][others]
        return NeuronView(family=self.name, p=model.cfg.p, pre=parts["pre"][:, idx], post=parts["post"][:, idx],
                          W=parts["W"][idx], rest=rest, neurons=idx, hook_pre=self.hook_pre,
                          hook_post=self.hook_post)


register_family(TransformerFamily())
