"""Nanda et al.'s one-layer transformer for modular addition, with TransformerLens's names.

The network of "Progress measures for grokking via mechanistic interpretability" (Nanda, Chan,
Lieberum, Smith, Steinhardt, 2023): the input is the three tokens ``[x, y, =]`` (``=`` is token
``p``), one attention layer and one ReLU MLP write into the residual stream, and the logits over the
``p`` answers are read at the last position. No LayerNorm; every bias is a zero buffer (frozen at
zero, as in TransformerLens's grokking demo), so the trained parameters are the nine weight
matrices. Defaults are the paper's: d_model 128, 4 heads of 32, d_mlp 512, ReLU, d_vocab p + 1,
d_vocab_out p, n_ctx 3.

:class:`ModAddTransformer` is a ``transformer_lens.HookedRootModule`` whose parameter, buffer and
hook names are those of TransformerLens's ``HookedTransformer`` (``embed.W_E`` [d_vocab, d_model],
``blocks.0.attn.W_Q`` [n_heads, d_model, d_head], ``blocks.0.mlp.W_in`` [d_model, d_mlp],
``unembed.W_U`` [d_model, d_vocab_out], ...), so ``run_with_cache`` returns an ``ActivationCache``,
``run_with_hooks``/``hooks`` take the usual names, and ``transformer_lens.patching`` works on it.
docs/transformer.md says why this is our own module rather than TransformerLens 4's
``TransformerBridge`` (measured by ``benchmarks/bench_transformer.py``).

Hook points (batch b, position s in {0, 1, 2}, head h):

- ``hook_embed``, ``hook_pos_embed``, ``blocks.0.hook_resid_pre``  [b, 3, d_model]
- ``blocks.0.attn.hook_q``/``hook_k``/``hook_v``/``hook_z``        [b, 3, n_heads, d_head]
- ``blocks.0.attn.hook_attn_scores``/``hook_pattern``              [b, n_heads, 3 (query), 3 (key)]
- ``blocks.0.hook_attn_out``, ``blocks.0.hook_resid_mid``          [b, 3, d_model]
- ``blocks.0.mlp.hook_pre``/``hook_post``                          [b, 3, d_mlp]
- ``blocks.0.hook_mlp_out``, ``blocks.0.hook_resid_post``          [b, 3, d_model]

``forward`` takes tokens ``[b, 3]`` (or pairs ``[b, 2]``, to which ``=`` is appended) and returns
the logits at the last position, ``[b, p]``; ``forward(tokens, all_positions=True)`` returns
``[b, 3, p]`` as TransformerLens does.

Example:
    >>> import torch
    >>> from mechinterp_modadd.transformer import ModAddTransformer, TransformerConfig
    >>> model = ModAddTransformer(TransformerConfig(p=7, d_model=16, n_heads=2, d_head=8, d_mlp=32))
    >>> logits, cache = model.run_with_cache(torch.tensor([[3, 5]]))
    >>> logits.shape, cache["blocks.0.attn.hook_pattern"].shape
    (torch.Size([1, 7]), torch.Size([1, 2, 3, 3]))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import ActivationCache, HookedRootModule
from transformer_lens.hook_points import HookPoint

from .errors import ConfigError, InputError
from .model import check_modulus

__all__ = ["TRANSFORMER_ACTIVATIONS", "TransformerConfig", "ModAddTransformer", "pair_tokens", "all_pair_tokens"]

#: MLP activations of the transformer family (Nanda's code offers ReLU and GeLU).
TRANSFORMER_ACTIVATIONS = {"relu": torch.relu, "gelu": F.gelu}

_N_CTX = 3


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"TransformerConfig.{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class TransformerConfig:
    """Shape of a :class:`ModAddTransformer` (defaults: Nanda et al.'s configuration).

    Attributes:
        p: modulus; the vocabulary is the p numbers plus ``=`` (token p), the outputs the p answers.
        d_model: width of the residual stream (128).
        n_heads: attention heads (4).
        d_head: width of a head (32).
        d_mlp: MLP neurons (512).
        act_fn: ``"relu"`` (the paper) or ``"gelu"``.

    Read-only TransformerLens fields: ``n_layers = 1``, ``n_ctx = 3``, ``d_vocab = p + 1``,
    ``d_vocab_out = p``, no normalisation, standard positional embedding.
    """

    p: int
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    act_fn: str = "relu"

    def __post_init__(self) -> None:
        if not isinstance(self.p, int) or isinstance(self.p, bool) or self.p < 3:
            raise ConfigError(f"TransformerConfig.p must be an integer >= 3, got {self.p!r}")
        check_modulus(self.p, "TransformerConfig.p")
        for name in ("d_model", "n_heads", "d_head", "d_mlp"):
            _positive_int(getattr(self, name), name)
        if self.act_fn not in TRANSFORMER_ACTIVATIONS:
            raise ConfigError(f"TransformerConfig.act_fn must be one of {sorted(TRANSFORMER_ACTIVATIONS)}, "
                              f"got {self.act_fn!r}")

    # TransformerLens's read-only fields ------------------------------------------------
    n_layers = 1
    n_ctx = _N_CTX
    n_key_value_heads = None
    attn_only = False
    normalization_type = None
    positional_embedding_type = "standard"
    use_attn_result = False
    use_split_qkv_input = False
    use_attn_in = False
    use_hook_mlp_in = False
    gated_mlp = False
    final_rms = False
    default_prepend_bos = False
    original_architecture = "ModAddTransformer"
    model_name = "modadd-transformer"

    @property
    def d_vocab(self) -> int:
        """Input vocabulary: the p numbers and ``=``."""
        return self.p + 1

    @property
    def d_vocab_out(self) -> int:
        return self.p

    @property
    def K(self) -> int:
        """Number of non-DC frequencies, floor((p - 1) / 2)."""
        return (self.p - 1) // 2

    @property
    def activation(self) -> str:
        """``act_fn`` under the name the other families' configs use."""
        return self.act_fn

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "TransformerConfig") -> TransformerConfig:
        """Strict: unknown keys and a missing ``p`` are errors naming ``where``."""
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a mapping of config fields, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"{where}: unknown transformer config keys {sorted(unknown)}; known: {sorted(known)}")
        if "p" not in d:
            raise ConfigError(f"{where}: the transformer config needs the key 'p'")
        return cls(**d)

    def replace(self, **changes: Any) -> TransformerConfig:
        return replace(self, **changes)


class _TLConfig:
    """``model.cfg``: the frozen :class:`TransformerConfig` plus ``device`` and ``dtype`` (where the
    weights are now), which TransformerLens's patching and cache code read."""

    __slots__ = ("_config", "_model")

    def __init__(self, config: TransformerConfig, model: ModAddTransformer) -> None:
        object.__setattr__(self, "_config", config)
        object.__setattr__(self, "_model", model)

    @property
    def config(self) -> TransformerConfig:
        return self._config

    @property
    def device(self) -> torch.device:
        return self._model.embed.W_E.device

    @property
    def dtype(self) -> torch.dtype:
        return self._model.embed.W_E.dtype

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"model.cfg is read-only; assign model.cfg = model.cfg.replace({name}=...) instead")

    def __eq__(self, other: object) -> bool:
        other = other._config if isinstance(other, _TLConfig) else other
        return self._config == other

    def __hash__(self) -> int:
        return hash(self._config)

    def __repr__(self) -> str:
        return repr(self._config)


class _Embed(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.zeros(cfg.d_vocab, cfg.d_model))


class _PosEmbed(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.zeros(cfg.n_ctx, cfg.d_model))


class _Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        h, d, e = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.zeros(h, d, e))
        self.W_K = nn.Parameter(torch.zeros(h, d, e))
        self.W_V = nn.Parameter(torch.zeros(h, d, e))
        self.W_O = nn.Parameter(torch.zeros(h, e, d))
        for name, shape in (("b_Q", (h, e)), ("b_K", (h, e)), ("b_V", (h, e)), ("b_O", (d,))):
            self.register_buffer(name, torch.zeros(shape))
        self.register_buffer("mask", torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool)),
                             persistent=False)
        self.scale = 1.0 / math.sqrt(e)
        self.hook_q = HookPoint()
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()
        self.hook_pattern = HookPoint()
        self.hook_z = HookPoint()

    def forward(self, x: Float[Tensor, "b s d"]) -> Float[Tensor, "b s d"]:
        q = self.hook_q(torch.einsum("bsd,hde->bshe", x, self.W_Q) + self.b_Q)
        k = self.hook_k(torch.einsum("bsd,hde->bshe", x, self.W_K) + self.b_K)
        v = self.hook_v(torch.einsum("bsd,hde->bshe", x, self.W_V) + self.b_V)
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * self.scale
        scores = self.hook_attn_scores(scores.masked_fill(~self.mask, float("-inf")))
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
        return torch.einsum("bqhe,hed->bqd", z, self.W_O) + self.b_O


class _MLP(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.zeros(cfg.d_model, cfg.d_mlp))
        self.W_out = nn.Parameter(torch.zeros(cfg.d_mlp, cfg.d_model))
        self.register_buffer("b_in", torch.zeros(cfg.d_mlp))
        self.register_buffer("b_out", torch.zeros(cfg.d_model))
        self.act = TRANSFORMER_ACTIVATIONS[cfg.act_fn]
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: Float[Tensor, "b s d"]) -> Float[Tensor, "b s d"]:
        pre = self.hook_pre(x @ self.W_in + self.b_in)
        post = self.hook_post(self.act(pre))
        return post @ self.W_out + self.b_out


class _Block(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.attn = _Attention(cfg)
        self.mlp = _MLP(cfg)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_mlp_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, resid: Float[Tensor, "b s d"]) -> Float[Tensor, "b s d"]:
        resid = self.hook_resid_pre(resid)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(self.attn(resid)))
        return self.hook_resid_post(resid + self.hook_mlp_out(self.mlp(resid)))


class _Unembed(nn.Module):
    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.zeros(cfg.d_model, cfg.d_vocab_out))
        self.register_buffer("b_U", torch.zeros(cfg.d_vocab_out))


def pair_tokens(pairs: Int[Tensor, "b 2"], p: int) -> Int[Tensor, "b 3"]:
    """``[x, y]`` pairs -> ``[x, y, =]`` tokens (``=`` is token ``p``)."""
    eq = torch.full((pairs.shape[0], 1), p, dtype=pairs.dtype, device=pairs.device)
    return torch.cat([pairs, eq], dim=1)


def all_pair_tokens(p: int, device: str | torch.device | None = None) -> Int[Tensor, "pp 3"]:
    """The p^2 inputs ``[x, y, =]`` in row-major order (row ``x * p + y``)."""
    x = torch.arange(p, device=device).repeat_interleave(p)
    y = torch.arange(p, device=device).repeat(p)
    return torch.stack([x, y, torch.full_like(x, p)], dim=1)


class ModAddTransformer(HookedRootModule):
    """One-layer transformer on ``[x, y, =]`` with TransformerLens's names (module docstring).

    Args:
        cfg: the :class:`TransformerConfig`.
        seed: seed of the initialisation (a private CPU generator; the global RNG is untouched).
            Nanda et al.'s scales: N(0, 1) / sqrt(d_model) for every matrix but W_U, which is
            N(0, 1) / sqrt(d_vocab). ``None`` leaves the weights at zero (for loading).
        device: where the weights live (default the CPU); drawn on the CPU, then moved.
    """

    _cfg: TransformerConfig

    def __init__(self, cfg: TransformerConfig | _TLConfig, seed: int | None = 0,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        c = self._cfg
        self.embed = _Embed(c)
        self.hook_embed = HookPoint()
        self.pos_embed = _PosEmbed(c)
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList([_Block(c)])
        self.unembed = _Unembed(c)
        if seed is not None:
            self.init_weights(seed)
        self.setup()
        if device is not None:
            from .runtime import resolve_device

            self.to(resolve_device(device))

    @property
    def cfg(self) -> _TLConfig:
        """The :class:`TransformerConfig` with TransformerLens's ``device`` and ``dtype``."""
        return _TLConfig(self._cfg, self)

    @cfg.setter
    def cfg(self, cfg: TransformerConfig | _TLConfig) -> None:
        if isinstance(cfg, _TLConfig):
            cfg = cfg.config
        if not isinstance(cfg, TransformerConfig):
            raise ConfigError(f"model.cfg must be a TransformerConfig, got {type(cfg).__name__}")
        object.__setattr__(self, "_cfg", cfg)

    @property
    def config(self) -> TransformerConfig:
        return self._cfg

    @property
    def activation(self) -> str:
        """The MLP activation's name (``cfg.act_fn``)."""
        return self._cfg.act_fn

    def init_weights(self, seed: int) -> None:
        """Draw the weights with Nanda et al.'s scales from ``seed`` (biases stay zero)."""
        c = self._cfg
        g = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for param in self.weight_parameters():
                scale = c.d_vocab if param is self.unembed.W_U else c.d_model
                param.copy_(torch.randn(param.shape, generator=g) / math.sqrt(scale))

    def weight_parameters(self) -> list[nn.Parameter]:
        """The trained matrices in a fixed order (W_E, W_pos, W_Q, W_K, W_V, W_O, W_in, W_out, W_U)."""
        a, m = self.blocks[0].attn, self.blocks[0].mlp
        return [self.embed.W_E, self.pos_embed.W_pos, a.W_Q, a.W_K, a.W_V, a.W_O, m.W_in, m.W_out,
                self.unembed.W_U]

    # Convenience views of the weights (TransformerLens style) -------------------------
    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_pos(self) -> Float[Tensor, "n_ctx d_model"]:
        return self.pos_embed.W_pos

    @property
    def W_in(self) -> Float[Tensor, "d_model d_mlp"]:
        return self.blocks[0].mlp.W_in

    @property
    def W_out(self) -> Float[Tensor, "d_mlp d_model"]:
        return self.blocks[0].mlp.W_out

    @property
    def W_U(self) -> Float[Tensor, "d_model p"]:
        return self.unembed.W_U

    def tokens_of(self, tokens: Tensor) -> Int[Tensor, "b 3"]:
        """Validate ``tokens`` ([b, 3] ``[x, y, =]`` or [b, 2] pairs) and return [b, 3] tokens."""
        p = self._cfg.p
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.shape[1] not in (2, 3):
            shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
            raise InputError(f"tokens must be a [batch, 3] ([x, y, =]) or [batch, 2] integer tensor, got {shape}")
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise InputError(f"tokens must be integers, got {tokens.dtype}")
        if tokens.shape[1] == 2:
            tokens = pair_tokens(tokens, p)
        if tokens.numel() and (int(tokens[:, :2].min()) < 0 or int(tokens[:, :2].max()) >= p
                               or bool((tokens[:, 2] != p).any())):
            raise InputError(f"tokens must be [x, y, {p}] with 0 <= x, y < {p}")
        return tokens

    def forward(self, tokens: Int[Tensor, "b s"], all_positions: bool = False, last_only: bool = False) -> Tensor:
        """Logits at the last position [b, p] (``all_positions=True``: [b, 3, p]).

        ``last_only=True`` is :meth:`forward_last` (unchecked [b, 3] tokens, no hooks), the path
        training takes through ``torch.func.functional_call``.
        """
        if last_only:
            return self.forward_last(tokens)
        tokens = self.tokens_of(tokens)
        return self._forward(tokens, all_positions)

    def _forward(self, tokens: Int[Tensor, "b 3"], all_positions: bool = False) -> Tensor:
        """``forward`` without input checks (for torch.func transforms and training)."""
        embed = self.hook_embed(self.embed.W_E[tokens])
        pos = self.hook_pos_embed(self.pos_embed.W_pos.expand(tokens.shape[0], -1, -1))
        resid = self.blocks[0](embed + pos)
        if all_positions:
            return resid @ self.unembed.W_U + self.unembed.b_U
        return resid[:, -1] @ self.unembed.W_U + self.unembed.b_U

    def forward_last(self, tokens: Int[Tensor, "b 3"]) -> Float[Tensor, "b p"]:
        """The logits at the last position computed for that position only (training's path).

        In one layer the answer at ``=`` needs the keys and values of all three positions but the
        query, attention output and MLP of the last position alone, so this skips two thirds of
        the MLP and of the attention queries. No hooks run and ``tokens`` are not checked; the
        logits equal ``forward``'s to float32 rounding (``tests/core/test_transformer.py``).
        """
        a, m = self.blocks[0].attn, self.blocks[0].mlp
        resid = self.embed.W_E[tokens] + self.pos_embed.W_pos
        last = resid[:, -1]
        q = torch.einsum("bd,hde->bhe", last, a.W_Q) + a.b_Q
        k = torch.einsum("bsd,hde->bhse", resid, a.W_K) + a.b_K[:, None]
        v = torch.einsum("bsd,hde->bhse", resid, a.W_V) + a.b_V[:, None]
        pattern = torch.softmax(torch.einsum("bhe,bhse->bhs", q, k) * a.scale, dim=-1)
        z = torch.einsum("bhs,bhse->bhe", pattern, v)
        last = last + torch.einsum("bhe,hed->bd", z, a.W_O) + a.b_O
        last = last + m.act(last @ m.W_in + m.b_in) @ m.W_out + m.b_out
        return last @ self.unembed.W_U + self.unembed.b_U

    def run_with_cache(self, *model_args: Any, **kwargs: Any) -> tuple[Tensor, ActivationCache]:
        """TransformerLens's ``run_with_cache``; the cache is a ``transformer_lens.ActivationCache``."""
        out, cache = super().run_with_cache(*model_args, **kwargs)
        return out, ActivationCache(cache, self, has_batch_dim=not kwargs.get("remove_batch_dim", False))

    def check_finite(self, where: str = "model") -> None:
        for name, value in self.state_dict().items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise InputError(f"{where}: {name} has non-finite values")

    def extra_repr(self) -> str:
        c = self._cfg
        return (f"p={c.p}, d_model={c.d_model}, n_heads={c.n_heads}, d_head={c.d_head}, d_mlp={c.d_mlp}, "
                f"act_fn={c.act_fn}")
