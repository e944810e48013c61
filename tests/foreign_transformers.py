"""Plain-torch writers of one-layer transformer checkpoints in other programs' layouts.

Nothing here imports mechinterp_modadd: the weights are made and trained by a few lines of torch
written for these tests, the way another program would, and saved in

- TransformerLens ``HookedTransformer`` names and shapes (:func:`write_hooked_transformer`), and
- the layout of Nanda et al.'s training code (:func:`write_nanda`): ``embed.W_E`` [d_model,
  d_vocab], ``W_K/W_Q/W_V`` [heads, d_head, d_model], ``W_O`` [d_model, heads * d_head], MLP
  ``W_in`` [d_mlp, d_model] with a trained ``b_in``/``b_out``, ``W_U`` [d_model, p + 1], a causal
  ``mask`` buffer, saved as ``{"model": ..., "epoch": ..., "train_loss": ...}``.

Each writer returns the reference logits at the last position over the p answers, [p * p, p], for
the inputs ``[x, y, p]`` in row-major order, computed by its own forward.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F


def _tokens(p: int) -> torch.Tensor:
    x = torch.arange(p).repeat_interleave(p)
    y = torch.arange(p).repeat(p)
    return torch.stack([x, y, torch.full_like(x, p)], 1)


def _ht_forward(w: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """HookedTransformer-shaped weights -> logits [b, 3, d_vocab_out]."""
    r = w["embed.W_E"][tokens] + w["pos_embed.W_pos"]
    q = torch.einsum("bpd,hdk->bphk", r, w["blocks.0.attn.W_Q"]) + w["blocks.0.attn.b_Q"]
    k = torch.einsum("bpd,hdk->bphk", r, w["blocks.0.attn.W_K"]) + w["blocks.0.attn.b_K"]
    v = torch.einsum("bpd,hdk->bphk", r, w["blocks.0.attn.W_V"]) + w["blocks.0.attn.b_V"]
    s = torch.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(q.shape[-1])
    n = tokens.shape[1]
    s = s.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), -1e9)
    z = torch.einsum("bhqs,bshk->bqhk", s.softmax(-1), v)
    r = r + torch.einsum("bqhk,hkd->bqd", z, w["blocks.0.attn.W_O"]) + w["blocks.0.attn.b_O"]
    hid = torch.relu(r @ w["blocks.0.mlp.W_in"] + w["blocks.0.mlp.b_in"])
    r = r + hid @ w["blocks.0.mlp.W_out"] + w["blocks.0.mlp.b_out"]
    return r @ w["unembed.W_U"] + w["unembed.b_U"]


def _nanda_forward(w: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Nanda-layout weights -> logits [b, 3, p + 1] (his shapes, his einsum conventions)."""
    r = w["embed.W_E"][:, tokens].permute(1, 2, 0) + w["pos_embed.W_pos"]
    k = torch.einsum("ihd,bpd->biph", w["blocks.0.attn.W_K"], r)
    q = torch.einsum("ihd,bpd->biph", w["blocks.0.attn.W_Q"], r)
    v = torch.einsum("ihd,bpd->biph", w["blocks.0.attn.W_V"], r)
    scores = torch.einsum("biph,biqh->biqp", k, q)
    mask = w["blocks.0.attn.mask"]
    scores = torch.tril(scores) - 1e10 * (1 - mask)
    pattern = F.softmax(scores / math.sqrt(k.shape[-1]), dim=-1)
    z = torch.einsum("biph,biqp->biqh", v, pattern)
    z_flat = z.permute(0, 2, 1, 3).reshape(z.shape[0], z.shape[2], -1)
    r = r + torch.einsum("df,bqf->bqd", w["blocks.0.attn.W_O"], z_flat)
    hid = torch.relu(torch.einsum("md,bpd->bpm", w["blocks.0.mlp.W_in"], r) + w["blocks.0.mlp.b_in"])
    r = r + torch.einsum("dm,bpm->bpd", w["blocks.0.mlp.W_out"], hid) + w["blocks.0.mlp.b_out"]
    return r @ w["unembed.W_U"]


def _train(w: dict[str, torch.Tensor], forward, p: int, steps: int, trained: list[str]) -> None:
    tokens = _tokens(p)
    labels = (tokens[:, 0] + tokens[:, 1]) % p
    params = [w[k].requires_grad_(True) for k in trained]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98))
    for _ in range(steps):
        loss = F.cross_entropy(forward(w, tokens)[:, -1, :p], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k in trained:
        w[k] = w[k].detach()


def write_hooked_transformer(path: Path, p: int = 7, d_model: int = 16, n_heads: int = 2, d_head: int = 8,
                             d_mlp: int = 24, steps: int = 5, seed: int = 0, wrap: str = "cfg",
                             biases: bool = True) -> torch.Tensor:
    """Write a HookedTransformer-layout checkpoint; ``wrap``: ``"cfg"`` ({"state_dict", "cfg"}),
    ``"bare"`` (the state dict alone), ``"checkpoints"`` (the grokking demo's list of state dicts)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) / math.sqrt(d_model)

    w = {
        "embed.W_E": rnd(p + 1, d_model), "pos_embed.W_pos": rnd(3, d_model),
        "blocks.0.attn.W_Q": rnd(n_heads, d_model, d_head), "blocks.0.attn.W_K": rnd(n_heads, d_model, d_head),
        "blocks.0.attn.W_V": rnd(n_heads, d_model, d_head), "blocks.0.attn.W_O": rnd(n_heads, d_head, d_model),
        "blocks.0.attn.b_Q": torch.zeros(n_heads, d_head), "blocks.0.attn.b_K": torch.zeros(n_heads, d_head),
        "blocks.0.attn.b_V": torch.zeros(n_heads, d_head), "blocks.0.attn.b_O": torch.zeros(d_model),
        "blocks.0.mlp.W_in": rnd(d_model, d_mlp), "blocks.0.mlp.b_in": torch.zeros(d_mlp),
        "blocks.0.mlp.W_out": rnd(d_mlp, d_model), "blocks.0.mlp.b_out": torch.zeros(d_model),
        "unembed.W_U": rnd(d_model, p), "unembed.b_U": torch.zeros(p),
    }
    _train(w, _ht_forward, p, steps, [k for k in w if ".W_" in k])
    ref = _ht_forward(w, _tokens(p))[:, -1].detach()
    sd = dict(w)
    sd["blocks.0.attn.mask"] = torch.tril(torch.ones(3, 3, dtype=torch.bool))
    sd["blocks.0.attn.IGNORE"] = torch.tensor(-torch.inf)
    if not biases:
        sd = {k: v for k, v in sd.items() if ".b_" not in k}
    cfg = dict(n_layers=1, d_model=d_model, d_head=d_head, n_heads=n_heads, d_mlp=d_mlp, d_vocab=p + 1,
               d_vocab_out=p, n_ctx=3, act_fn="relu", normalization_type=None, seed=999, device="cpu")
    if wrap == "cfg":
        torch.save({"state_dict": sd, "cfg": cfg}, path)
    elif wrap == "checkpoints":
        torch.save({"checkpoints": [sd, sd], "checkpoint_epochs": [0, steps], "train_losses": [1.0, 0.5]}, path)
    else:
        torch.save(sd, path)
    return ref


def write_nanda(path: Path, p: int = 7, d_model: int = 16, n_heads: int = 2, d_mlp: int = 24, steps: int = 5,
                seed: int = 0) -> torch.Tensor:
    """Write a checkpoint in Nanda et al.'s layout, trained ``steps`` steps (biases b_in/b_out trained)."""
    d_head = d_model // n_heads
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = d_model) -> torch.Tensor:
        return torch.randn(*shape, generator=g) / math.sqrt(scale)

    w = {
        "embed.W_E": rnd(d_model, p + 1), "pos_embed.W_pos": rnd(3, d_model),
        "blocks.0.attn.W_K": rnd(n_heads, d_head, d_model), "blocks.0.attn.W_Q": rnd(n_heads, d_head, d_model),
        "blocks.0.attn.W_V": rnd(n_heads, d_head, d_model), "blocks.0.attn.W_O": rnd(d_model, d_head * n_heads),
        "blocks.0.attn.mask": torch.tril(torch.ones(3, 3)),
        "blocks.0.mlp.W_in": rnd(d_mlp, d_model), "blocks.0.mlp.b_in": torch.zeros(d_mlp),
        "blocks.0.mlp.W_out": rnd(d_model, d_mlp), "blocks.0.mlp.b_out": torch.zeros(d_model),
        "unembed.W_U": rnd(d_model, p + 1, scale=p + 1),
    }
    _train(w, _nanda_forward, p, steps, [k for k in w if k != "blocks.0.attn.mask"])
    ref = _nanda_forward(w, _tokens(p))[:, -1, :p].detach()
    torch.save({"model": w, "train_loss": 0.5, "test_loss": 1.5, "epoch": steps}, path)
    return ref
