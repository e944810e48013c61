"""The two-layer modular-addition network as a TransformerLens ``HookedRootModule``.

``f(x, y) = W_out @ sigma(W_in @ (e_x + e_y))`` with no biases. ``W_in`` is [d_mlp, d_model]
(row m is theta_m when the embedding is one-hot, so d_model = p) and ``W_out`` is [p, d_mlp]
(column m is xi_m). With a learned embedding ``W_E`` [d_model, p] the effective input weights are
``W_in @ W_E``.

Hook points, named as in TransformerLens so ``run_with_cache``, ``run_with_hooks`` and
``with model.hooks(...)`` work as usual (``run_with_cache`` returns a TransformerLens
``ActivationCache``; the names ``get_act_name("pre"/"post", 0)`` gives, ``blocks.0.mlp.hook_pre``
and ``blocks.0.mlp.hook_post``, are aliases of ours; ``model.cfg`` also carries the config fields
TransformerLens reads, see :mod:`mechinterp_modadd.tlens`):

- ``hook_embed``     [batch, 2, d_model]  the two embedded tokens (one-hot rows for one-hot models)
- ``mlp.hook_pre``   [batch, d_mlp]       theta_m[x] + theta_m[y]
- ``mlp.hook_post``  [batch, d_mlp]       sigma(hook_pre)
- ``hook_logits``    [batch, p]           the output logits

The activation is looked up in :data:`ACTIVATIONS` by name, or is any callable; it can be swapped
on a trained model with :meth:`ModAddMLP.set_activation` (the paper's test that only the even part
of sigma matters).

Example:
    >>> import torch
    >>> from mechinterp_modadd import ModAddMLP, ModelConfig
    >>> model = ModAddMLP(ModelConfig(p=7, d_mlp=16), seed=0)
    >>> logits, cache = model.run_with_cache(torch.tensor([[3, 5]]))
    >>> cache["mlp.hook_pre"].shape
    torch.Size([1, 16])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from .constants import ACTIVATION_ALIASES
from .data import check_pairs
from .errors import ConfigError
from .tlens import (
    HOOK_ALIASES,
    AliasedHookDict,
    HookedConfig,
    ModAddActivationCache,
    check_patch_hook,
    check_pos_slice,
    resolve_names_filter,
)

__all__ = ["ACTIVATIONS", "ModelConfig", "ModAddMLP", "get_activation", "default_d_mlp", "check_modulus"]


def _quad(x: Tensor) -> Tensor:
    return x * x


def _softplus2(x: Tensor) -> Tensor:
    # log(1 + e^{2x}), computed stably
    return F.softplus(2.0 * x)


#: Activation functions by name. ``quad`` is x^2 (the paper's theory); ``softplus2`` is
#: log(1 + e^{2x}); ``cube`` and ``quartic`` are x^3 and x^4.
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "quad": _quad,
    "gelu": F.gelu,
    "identity": lambda x: x,
    "abs": torch.abs,
    "cube": lambda x: x * x * x,
    "quartic": lambda x: (x * x) * (x * x),
    "softplus2": _softplus2,
    "exp": torch.exp,
    "tanh": torch.tanh,
}

_ALIASES = ACTIVATION_ALIASES


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    """Look up an activation by name (case-insensitive; aliases such as ``x^2`` accepted)."""
    key = _ALIASES.get(name.lower(), name.lower()) if isinstance(name, str) else name
    if key not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[key]


def resolve_activation(activation: str | Callable[[Tensor], Tensor]) -> tuple[Callable[[Tensor], Tensor], str | None]:
    """(function, canonical registry name) of a registered name, or (the callable, None) for an
    unregistered callable; any other value is a :class:`ConfigError`. Shared by every model family's
    ``set_activation``."""
    if isinstance(activation, str):
        return get_activation(activation), canonical_activation(activation)
    if callable(activation):
        return activation, None
    raise ConfigError(f"activation must be a name or a callable, got {type(activation).__name__}")


def canonical_activation(name: str) -> str:
    get_activation(name)
    return _ALIASES.get(name.lower(), name.lower())


_WARNED_COMPOSITE: set[int] = set()  # warn once per composite p and process


def check_modulus(p: int, what: str = "p") -> None:
    """Refuse an even modulus; warn (:class:`~mechinterp_modadd.errors.ModAddWarning`) for an odd
    composite one.

    Even p is refused: its Fourier basis has a Nyquist row cos(pi j) at k = p/2 with no sine
    partner, so a neuron there has no phase, and every per-frequency analysis here (magnitude,
    phase, k = 1..(p-1)/2) would silently leave k = p/2 out. Odd composite p is analysed as usual,
    but the paper's theory assumes prime p (every k != 0 generates Z_p, so harmonics r k never fold
    onto 0 and each frequency group sees every residue).
    """
    if p % 2 == 0:
        raise ConfigError(f"{what} = {p} is even: the frequency k = p/2 = {p // 2} has a cosine but no sine "
                          f"(no phase), which the Fourier analyses here do not model; use an odd p, ideally prime")
    if p > 3 and p not in _WARNED_COMPOSITE and any(p % q == 0 for q in range(3, math.isqrt(p) + 1, 2)):
        import warnings

        _WARNED_COMPOSITE.add(p)

        from .errors import ModAddWarning

        warnings.warn(f"{what} = {p} is not prime: the analyses run, but the paper's theory assumes prime p "
                      f"(for composite p, frequencies sharing a factor with p alias onto fewer residues)",
                      ModAddWarning, stacklevel=4)


def default_d_mlp(p: int) -> int:
    """The authors' width rule: max(512, ceil(512 p^2 / 529))."""
    return max(512, math.ceil(512 * p * p / 529))


@dataclass(frozen=True)
class ModelConfig:
    """Shape and initialisation of a :class:`ModAddMLP`.

    Attributes:
        p: modulus (number of tokens and classes).
        d_mlp: number of hidden neurons M.
        activation: name of an entry of :data:`ACTIVATIONS`.
        embedding: ``"one_hot"`` (d_model = p) or ``"learned"`` (a W_E of shape [d_model, p]).
        d_model: embedding width for learned embeddings (ignored for one-hot).
        init: ``"random"`` (scale * N(0, 1) / sqrt(p)) or ``"single_freq"`` (docs/science.md section 1).
        init_scale: the scale of the initialisation.
    """

    p: int
    d_mlp: int = 512
    activation: str = "relu"
    embedding: str = "one_hot"
    d_model: int | None = None
    init: str = "random"
    init_scale: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.p, int) or isinstance(self.p, bool) or self.p < 3:
            raise ConfigError(f"ModelConfig.p must be an integer >= 3, got {self.p!r}")
        check_modulus(self.p, "ModelConfig.p")
        if not isinstance(self.d_mlp, int) or isinstance(self.d_mlp, bool) or self.d_mlp < 1:
            raise ConfigError(f"ModelConfig.d_mlp must be a positive integer, got {self.d_mlp!r}")
        object.__setattr__(self, "activation", canonical_activation(self.activation))
        if self.embedding not in ("one_hot", "learned"):
            raise ConfigError(f"ModelConfig.embedding must be 'one_hot' or 'learned', got {self.embedding!r}")
        if self.embedding == "one_hot":
            if self.d_model not in (None, self.p):
                raise ConfigError(f"one-hot embedding needs d_model = p = {self.p}, got {self.d_model}")
            object.__setattr__(self, "d_model", self.p)
        elif self.d_model is None or self.d_model < 1:
            raise ConfigError(f"a learned embedding needs a positive d_model, got {self.d_model!r}")
        if self.init not in ("random", "single_freq"):
            raise ConfigError(f"ModelConfig.init must be 'random' or 'single_freq', got {self.init!r}")
        if not (isinstance(self.init_scale, (int, float)) and math.isfinite(self.init_scale)
                and self.init_scale > 0):
            raise ConfigError(f"ModelConfig.init_scale must be a positive number, got {self.init_scale!r}")
        object.__setattr__(self, "init_scale", float(self.init_scale))

    @property
    def K(self) -> int:
        """Number of non-DC frequencies, floor((p - 1) / 2)."""
        return (self.p - 1) // 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown ModelConfig keys {sorted(unknown)}; known: {sorted(known)}")
        if "p" not in d:
            raise ConfigError("ModelConfig needs the key 'p'")
        return cls(**d)

    def replace(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)


class _MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_in = nn.Parameter(torch.zeros(cfg.d_mlp, cfg.d_model))
        self.W_out = nn.Parameter(torch.zeros(cfg.p, cfg.d_mlp))
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()


class _Embed(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.zeros(cfg.d_model, cfg.p))


class ModAddMLP(HookedRootModule):
    """``logits = W_out @ sigma(W_in @ (e_x + e_y))`` with TransformerLens hook points.

    Args:
        cfg: the :class:`ModelConfig`.
        seed: seed of the initialisation (a private generator; the global RNG is untouched).
            ``None`` leaves the weights at zero (for loading).
        device: where the weights live (``"auto"``, ``"cpu"``, ``"cuda"``; default the CPU). The
            weights are drawn on the CPU and then moved, so a seed gives the same weights on every
            device.
    """

    _cfg: ModelConfig

    def __init__(self, cfg: ModelConfig | HookedConfig, seed: int | None = 0,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = _Embed(cfg) if cfg.embedding == "learned" else None
        self.mlp = _MLP(cfg)
        self.hook_embed = HookPoint()
        self.hook_logits = HookPoint()
        self._act_fn: Callable[[Tensor], Tensor] = get_activation(cfg.activation)
        self._act_name: str | None = cfg.activation
        if seed is not None:
            self.init_weights(seed)
        self.setup()
        if device is not None:
            from .runtime import resolve_device

            self.to(resolve_device(device))

    # ------------------------------------------------------------------- TransformerLens surface
    @property
    def cfg(self) -> HookedConfig:
        """The :class:`ModelConfig` seen with TransformerLens's config fields (device, dtype,
        n_layers = 1, d_vocab = p, ...); see :class:`mechinterp_modadd.tlens.HookedConfig`."""
        return HookedConfig(self._cfg, self)

    @cfg.setter
    def cfg(self, cfg: ModelConfig | HookedConfig) -> None:
        if isinstance(cfg, HookedConfig):
            cfg = cfg.config
        if not isinstance(cfg, ModelConfig):
            raise ConfigError(f"model.cfg must be a ModelConfig, got {type(cfg).__name__}")
        object.__setattr__(self, "_cfg", cfg)

    def setup(self) -> None:
        """TransformerLens's hook registry, plus the aliases of :data:`~mechinterp_modadd.tlens.HOOK_ALIASES`
        in ``mod_dict`` (so hooks can be added by either name) and in lookups of ``hook_dict``
        (an :class:`~mechinterp_modadd.tlens.AliasedHookDict`, which iterates each point once)."""
        super().setup()
        self.hook_dict = AliasedHookDict(self.hook_dict)
        for alias, target in HOOK_ALIASES.items():
            self.mod_dict[alias] = self.mod_dict[target]

    def run_with_cache(self, *model_args: Any, names_filter: Any = None, pos_slice: Any = None, **kwargs: Any
                       ) -> tuple[Tensor, ModAddActivationCache]:
        """Logits and a TransformerLens ``ActivationCache`` of the hook points (keyed by our names;
        indexing by ``blocks.0.mlp.hook_post`` or ``("post", 0)`` works too). ``names_filter`` may
        use either name. ``pos_slice`` is refused (:func:`~mechinterp_modadd.tlens.check_pos_slice`:
        the MLP activations have no position axis). Other keywords are TransformerLens's
        (``device``, ``remove_batch_dim``, ...)."""
        check_pos_slice(pos_slice)
        out, cache = super().run_with_cache(*model_args, names_filter=resolve_names_filter(names_filter),
                                            **kwargs)
        return out, ModAddActivationCache(cache, self, has_batch_dim=not kwargs.get("remove_batch_dim", False))

    def get_caching_hooks(self, *args: Any, pos_slice: Any = None, **kwargs: Any) -> Any:
        """TransformerLens's caching hooks; ``pos_slice`` refused as in :meth:`run_with_cache`."""
        check_pos_slice(pos_slice)
        return super().get_caching_hooks(*args, **kwargs)

    @contextmanager
    def hooks(self, fwd_hooks: Any = (), bwd_hooks: Any = (), reset_hooks_end: bool = True,
              clear_contexts: bool = False) -> Iterator[ModAddMLP]:
        """TransformerLens's ``hooks`` context manager (``run_with_hooks`` goes through it), after
        refusing a position patch setter on a hook point without a position axis
        (:func:`~mechinterp_modadd.tlens.check_patch_hook`)."""
        fwd_hooks, bwd_hooks = list(fwd_hooks), list(bwd_hooks)
        for name, hook in fwd_hooks + bwd_hooks:
            check_patch_hook(name, hook)
        with super().hooks(fwd_hooks, bwd_hooks, reset_hooks_end, clear_contexts) as model:
            yield model

    def check_hooks_to_add(self, hook_point: Any, hook_point_name: str, hook: Any, *args: Any,
                           **kwargs: Any) -> None:
        """``add_hook``'s check: the same refusal as :meth:`hooks`."""
        check_patch_hook(hook_point_name, hook)

    # ----------------------------------------------------------------------------------- init
    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Initialise in place from ``seed`` as ``cfg.init`` says (docs/science.md section 1)."""
        cfg = self.cfg
        g = torch.Generator().manual_seed(int(seed))
        p, M = cfg.p, cfg.d_mlp
        if self.embed is not None:
            self.embed.W_E.copy_(torch.randn(cfg.d_model, p, generator=g) / math.sqrt(p))
        if cfg.init == "random":
            self.mlp.W_in.copy_(cfg.init_scale * torch.randn(M, cfg.d_model, generator=g) / math.sqrt(p))
            self.mlp.W_out.copy_(cfg.init_scale * torch.randn(p, M, generator=g) / math.sqrt(p))
            return
        if cfg.embedding != "one_hot":
            raise ConfigError("init 'single_freq' is defined for one-hot embeddings only")
        K = cfg.K
        freqs = (torch.arange(M) % K) + 1
        freqs = freqs[torch.randperm(M, generator=g)]
        j = torch.arange(p, dtype=torch.float64)
        w = 2 * math.pi * freqs.double()[:, None] * j[None, :] / p  # [M, p]

        def wave() -> Tensor:
            ab = torch.randn(M, 2, generator=g, dtype=torch.float64)
            ab = ab / ab.norm(dim=1, keepdim=True)
            return cfg.init_scale * (ab[:, :1] * torch.cos(w) + ab[:, 1:] * torch.sin(w))

        self.mlp.W_in.copy_(wave().float())
        self.mlp.W_out.copy_(wave().float().T)

    # ----------------------------------------------------------------------------- activation
    @property
    def activation(self) -> str | Callable[[Tensor], Tensor]:
        """The current activation: its registry name, or the callable if it is not registered."""
        return self._act_name if self._act_name is not None else self._act_fn

    def set_activation(self, activation: str | Callable[[Tensor], Tensor]) -> ModAddMLP:
        """Swap sigma in place (no retraining). A name also updates ``cfg.activation``."""
        self._act_fn, self._act_name = resolve_activation(activation)
        if self._act_name is not None:
            self.cfg = self.cfg.replace(activation=self._act_name)
        return self

    def act_fn(self, x: Tensor) -> Tensor:
        return self._act_fn(x)

    # ---------------------------------------------------------------------------- weights
    @property
    def W_in(self) -> Float[Tensor, "d_mlp d_model"]:
        return self.mlp.W_in

    @property
    def W_out(self) -> Float[Tensor, "p d_mlp"]:
        return self.mlp.W_out

    @property
    def W_E(self) -> Float[Tensor, "d_model p"] | None:
        return None if self.embed is None else self.embed.W_E

    def effective_W_in(self) -> Float[Tensor, "d_mlp p"]:
        """theta as rows: W_in for one-hot models, W_in @ W_E for learned embeddings."""
        if self.embed is None:
            return self.mlp.W_in
        return self.mlp.W_in @ self.embed.W_E

    # ---------------------------------------------------------------------------- forward
    def embed_tokens(self, tokens: Int[Tensor, "batch 2"]) -> Float[Tensor, "batch 2 d_model"]:
        dtype = self.mlp.W_in.dtype
        if self.embed is None:
            return F.one_hot(tokens, self.cfg.p).to(dtype)
        return self.embed.W_E.T[tokens]

    def forward(self, tokens: Int[Tensor, "batch 2"]) -> Float[Tensor, "batch p"]:
        """Logits for a LongTensor of (x, y) pairs of shape [batch, 2]."""
        check_pairs(tokens, self.cfg.p)
        tokens = tokens.to(self.mlp.W_in.device)
        emb = self.hook_embed(self.embed_tokens(tokens))  # [batch, 2, d_model]
        pre = self.mlp.hook_pre(emb.sum(dim=1) @ self.mlp.W_in.T)  # [batch, d_mlp]
        post = self.mlp.hook_post(self.act_fn(pre))
        return self.hook_logits(post @ self.mlp.W_out.T)

    def extra_repr(self) -> str:
        c = self.cfg
        return f"p={c.p}, d_mlp={c.d_mlp}, activation={self.activation!r}, embedding={c.embedding}"

    # ----------------------------------------------------------------------------- checks
    def check_finite(self, where: str = "model") -> None:
        """Raise :class:`ConfigError` naming the parameter if any weight is NaN or infinite."""
        for name, t in self.state_dict().items():
            if not torch.isfinite(t).all():
                bad = int((~torch.isfinite(t)).sum())
                raise ConfigError(f"{where}: parameter {name!r} has {bad} NaN/inf values")

