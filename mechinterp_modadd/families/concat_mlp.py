"""Family ``"concat_mlp"``: a two-layer MLP on concatenated one-hot inputs, separate weights for x and y.

``logits(x, y) = W_out sigma(u[:, x] + v[:, y] + b_in) + b_out``, where the input layer is one
[d_mlp, 2p] matrix ``[u | v]`` acting on ``concat(one_hot(x), one_hot(y))``: neuron m sees
u_m[x] + v_m[y] (the paper's MLP is the special case u = v = theta, b = 0). This is the network of
Gromov 2023 ("Grokking modular arithmetic", quadratic activation, with an analytic solution),
Doshi et al. 2023, Morwani et al. 2023 and Chughtai et al. 2023. Biases are optional
(``ConcatMLPConfig.bias``); the activation is any of :data:`mechinterp_modadd.model.ACTIVATIONS`.

Model: :class:`ConcatMLP`, a TransformerLens ``HookedRootModule`` with the hook points of
:class:`~mechinterp_modadd.model.ModAddMLP`: ``mlp.hook_pre`` [batch, d_mlp] (u_m[x] + v_m[y] + b_m),
``mlp.hook_post`` [batch, d_mlp] and ``hook_logits`` [batch, p] (``blocks.0.mlp.hook_pre`` /
``hook_post`` are aliases, as for the paper's model). Parameters (its own state-dict keys):
``mlp.W_x`` [d_mlp, p] (u), ``mlp.W_y`` [d_mlp, p] (v), ``mlp.W_out`` [p, d_mlp] (column m is xi_m),
and with ``bias=True`` ``mlp.b_in`` [d_mlp] and ``mlp.b_out`` [p].

Initialisation (``ConcatMLPConfig.init_scale`` = s): u, v ~ s N(0, 1) / sqrt(2p) (fan-in 2p),
W_out ~ s N(0, 1) / sqrt(d_mlp) (fan-in d_mlp), biases zero; drawn on the CPU from a private
generator, so a seed gives the same weights everywhere.

Neuron view: pre = u[x] + v[y] + b_in through ``mlp.hook_pre``, post through ``mlp.hook_post``,
W[m] = xi_m, rest = b_out on every pair (zero without bias), plus the other neurons' contributions
for a subset view.

Plain state dicts (:meth:`ConcatMLPFamily.from_state_dict`, ``--family concat_mlp``, or detected):
after one common ``model.``/``module.`` prefix is removed, either our own keys (above), or any dict
whose two-dimensional tensors are, in the dict's order,

- an input matrix [width, 2p] (``nn.Linear(2p, width)``'s weight; [2p, width] is accepted too), the
  first p input columns reading x and the next p reading y, then an output matrix [p, width]
  (``nn.Linear(width, p)``) or [width, p]; or
- two input matrices [width, p] (or [p, width]) for x then y, then the output matrix;

with at most two one-dimensional biases: the one of length width is b_in, the one of length p is
b_out (when width = p, the first in order is b_in). Where both orientations of a matrix fit, the
``nn.Linear`` layout ([out, in]) wins. Anything else is refused in one line naming the key and shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from ..data import all_pairs, check_pairs
from ..errors import CheckpointError, ConfigError
from ..model import canonical_activation, check_modulus, get_activation, resolve_activation
from ..neurons import NeuronView, neuron_index
from ..tlens import HOOK_ALIASES, ModAddActivationCache, resolve_names_filter
from .base import Family, check_tensor, describe_state_dict
from .mlp import strip_prefix
from .registry import register_family

__all__ = ["ConcatMLPConfig", "ConcatMLP", "ConcatMLPFamily", "ConcatLayout", "parse_concat_state_dict"]

#: Our own state-dict keys.
OWN_KEYS = ("mlp.W_x", "mlp.W_y", "mlp.W_out", "mlp.b_in", "mlp.b_out")


@dataclass(frozen=True)
class ConcatMLPConfig:
    """Shape and initialisation of a :class:`ConcatMLP`.

    Attributes:
        p: modulus (odd, >= 3).
        d_mlp: number of hidden neurons (the width).
        activation: name of an entry of :data:`mechinterp_modadd.model.ACTIVATIONS`.
        bias: whether the hidden and output layers have biases (initialised at zero).
        init_scale: s in u, v ~ s N(0, 1) / sqrt(2p) and W_out ~ s N(0, 1) / sqrt(d_mlp).
    """

    p: int
    d_mlp: int = 256
    activation: str = "quad"
    bias: bool = False
    init_scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.p, int) or isinstance(self.p, bool) or self.p < 3:
            raise ConfigError(f"ConcatMLPConfig.p must be an integer >= 3, got {self.p!r}")
        check_modulus(self.p, "ConcatMLPConfig.p")
        if not isinstance(self.d_mlp, int) or isinstance(self.d_mlp, bool) or self.d_mlp < 1:
            raise ConfigError(f"ConcatMLPConfig.d_mlp must be a positive integer, got {self.d_mlp!r}")
        object.__setattr__(self, "activation", canonical_activation(self.activation))
        if not isinstance(self.bias, bool):
            raise ConfigError(f"ConcatMLPConfig.bias must be true or false, got {self.bias!r}")
        if not (isinstance(self.init_scale, (int, float)) and not isinstance(self.init_scale, bool)
                and math.isfinite(self.init_scale) and self.init_scale > 0):
            raise ConfigError(f"ConcatMLPConfig.init_scale must be a positive number, got {self.init_scale!r}")
        object.__setattr__(self, "init_scale", float(self.init_scale))

    @property
    def K(self) -> int:
        return (self.p - 1) // 2

    @property
    def n_params(self) -> int:
        """Number of parameters: u, v and W_out (3 p d_mlp), plus d_mlp + p with biases."""
        return 3 * self.p * self.d_mlp + (self.d_mlp + self.p if self.bias else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConcatMLPConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown ConcatMLPConfig keys {sorted(unknown)}; known: "
                              f"{sorted(cls.__dataclass_fields__)}")
        if "p" not in d:
            raise ConfigError("ConcatMLPConfig needs the key 'p'")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> ConcatMLPConfig:
        return replace(self, **changes)


class _ConcatLayer(nn.Module):
    def __init__(self, cfg: ConcatMLPConfig) -> None:
        super().__init__()
        self.W_x = nn.Parameter(torch.zeros(cfg.d_mlp, cfg.p))
        self.W_y = nn.Parameter(torch.zeros(cfg.d_mlp, cfg.p))
        self.W_out = nn.Parameter(torch.zeros(cfg.p, cfg.d_mlp))
        if cfg.bias:
            self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
            self.b_out = nn.Parameter(torch.zeros(cfg.p))
        else:
            self.b_in = None
            self.b_out = None
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()


class ConcatMLP(HookedRootModule):
    """``logits = W_out sigma(W_x[:, x] + W_y[:, y] + b_in) + b_out`` with TransformerLens hook points.

    Args:
        cfg: the :class:`ConcatMLPConfig`.
        seed: seed of the initialisation (private generator); None leaves zeros (for loading).
        device: where the weights live (drawn on the CPU, then moved).
    """

    def __init__(self, cfg: ConcatMLPConfig, seed: int | None = 0, device: str | torch.device | None = None) -> None:
        super().__init__()
        if not isinstance(cfg, ConcatMLPConfig):
            raise ConfigError(f"ConcatMLP needs a ConcatMLPConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.mlp = _ConcatLayer(cfg)
        self.hook_logits = HookPoint()
        self._act_fn: Callable[[Tensor], Tensor] = get_activation(cfg.activation)
        self._act_name: str | None = cfg.activation
        if seed is not None:
            self.init_weights(seed)
        self.setup()
        if device is not None:
            from ..runtime import resolve_device

            self.to(resolve_device(device))

    def setup(self) -> None:
        super().setup()
        for alias, target in HOOK_ALIASES.items():
            self.mod_dict[alias] = self.mod_dict[target]

    def run_with_cache(self, *model_args: Any, names_filter: Any = None, **kwargs: Any
                       ) -> tuple[Tensor, ModAddActivationCache]:
        """Logits and a TransformerLens ``ActivationCache`` (aliases as for ModAddMLP)."""
        out, cache = super().run_with_cache(*model_args, names_filter=resolve_names_filter(names_filter), **kwargs)
        return out, ModAddActivationCache(cache, self, has_batch_dim=not kwargs.get("remove_batch_dim", False))

    @torch.no_grad()
    def init_weights(self, seed: int) -> None:
        """Initialise in place from ``seed`` (module docstring)."""
        cfg = self.cfg
        g = torch.Generator().manual_seed(int(seed))
        s, p, M = cfg.init_scale, cfg.p, cfg.d_mlp
        self.mlp.W_x.copy_(s * torch.randn(M, p, generator=g) / math.sqrt(2 * p))
        self.mlp.W_y.copy_(s * torch.randn(M, p, generator=g) / math.sqrt(2 * p))
        self.mlp.W_out.copy_(s * torch.randn(p, M, generator=g) / math.sqrt(M))
        if cfg.bias:
            self.mlp.b_in.zero_()
            self.mlp.b_out.zero_()

    # ----------------------------------------------------------------------------- activation
    @property
    def activation(self) -> str | Callable[[Tensor], Tensor]:
        return self._act_name if self._act_name is not None else self._act_fn

    def set_activation(self, activation: str | Callable[[Tensor], Tensor]) -> ConcatMLP:
        """Swap sigma in place (no retraining); a name also updates ``cfg.activation``."""
        self._act_fn, self._act_name = resolve_activation(activation)
        if self._act_name is not None:
            self.cfg = self.cfg.replace(activation=self._act_name)
        return self

    def act_fn(self, x: Tensor) -> Tensor:
        return self._act_fn(x)

    # ---------------------------------------------------------------------------- weights
    @property
    def W_x(self) -> Float[Tensor, "d_mlp p"]:
        return self.mlp.W_x

    @property
    def W_y(self) -> Float[Tensor, "d_mlp p"]:
        return self.mlp.W_y

    @property
    def W_out(self) -> Float[Tensor, "p d_mlp"]:
        return self.mlp.W_out

    @property
    def W_in(self) -> Float[Tensor, "d_mlp 2p"]:
        """The input matrix [u | v] acting on concat(one_hot(x), one_hot(y)) (a new tensor)."""
        return torch.cat([self.mlp.W_x, self.mlp.W_y], dim=1)

    # ---------------------------------------------------------------------------- forward
    def pre_activations(self, tokens: Int[Tensor, "batch 2"]) -> Float[Tensor, "batch d_mlp"]:
        """u[:, x] + v[:, y] (+ b_in), no hooks, no input checks (the training pass)."""
        pre = self.mlp.W_x.T[tokens[:, 0]] + self.mlp.W_y.T[tokens[:, 1]]
        return pre if self.mlp.b_in is None else pre + self.mlp.b_in

    def forward(self, tokens: Int[Tensor, "batch 2"]) -> Float[Tensor, "batch p"]:
        """Logits for a LongTensor of (x, y) pairs [batch, 2]."""
        check_pairs(tokens, self.cfg.p)
        tokens = tokens.to(self.mlp.W_x.device)
        pre = self.mlp.hook_pre(self.pre_activations(tokens))
        post = self.mlp.hook_post(self.act_fn(pre))
        out = post @ self.mlp.W_out.T
        if self.mlp.b_out is not None:
            out = out + self.mlp.b_out
        return self.hook_logits(out)

    def extra_repr(self) -> str:
        c = self.cfg
        return f"p={c.p}, d_mlp={c.d_mlp}, activation={self.activation!r}, bias={c.bias}"


# ------------------------------------------------------------------------------- foreign layouts
@dataclass(frozen=True)
class ConcatLayout:
    """How a plain state dict maps onto a :class:`ConcatMLP` (found by :func:`parse_concat_state_dict`):
    p, width and the float tensors u, v [width, p], W_out [p, width] and the biases (or None)."""

    p: int
    width: int
    u: Tensor
    v: Tensor
    W_out: Tensor
    b_in: Tensor | None
    b_out: Tensor | None
    keys: tuple[str, ...]


def _orientations(t: Tensor) -> list[Tensor]:
    """``t`` in the nn.Linear layout first, then transposed (without repeating a square one)."""
    return [t] if t.shape[0] == t.shape[1] else [t, t.T]


def parse_concat_state_dict(state_dict: Mapping[str, Any], where: str = "state dict") -> ConcatLayout:
    """The :class:`ConcatLayout` of a plain state dict (module docstring), or a
    :class:`CheckpointError` naming the key or shape that does not fit."""
    sd = strip_prefix(state_dict)
    if not sd:
        raise CheckpointError(f"{where}: the state dict is empty")
    for k, t in sd.items():
        if not isinstance(t, Tensor):
            raise CheckpointError(f"{where}: key {k!r} is a {type(t).__name__}, expected a tensor")
    if "mlp.W_x" in sd or "mlp.W_y" in sd:  # our own names
        extra = sorted(set(sd) - set(OWN_KEYS))
        if extra:
            raise CheckpointError(f"{where}: unexpected keys {extra} for family 'concat_mlp' (own keys: "
                                  f"{', '.join(OWN_KEYS)})")
        for key in ("mlp.W_x", "mlp.W_y", "mlp.W_out"):
            if key not in sd:
                raise CheckpointError(f"{where}: missing key {key!r} for family 'concat_mlp'; "
                                      f"found {describe_state_dict(sd)}")
        W_out = check_tensor(where, "mlp.W_out", sd["mlp.W_out"], ndim=2)
        p, width = W_out.shape
        u = check_tensor(where, "mlp.W_x", sd["mlp.W_x"], (width, p))
        v = check_tensor(where, "mlp.W_y", sd["mlp.W_y"], (width, p))
        if ("mlp.b_in" in sd) != ("mlp.b_out" in sd):
            have = "mlp.b_in" if "mlp.b_in" in sd else "mlp.b_out"
            raise CheckpointError(f"{where}: key {have!r} without its partner (give both mlp.b_in and "
                                  f"mlp.b_out or neither)")
        b_in = check_tensor(where, "mlp.b_in", sd["mlp.b_in"], (width,)) if "mlp.b_in" in sd else None
        b_out = check_tensor(where, "mlp.b_out", sd["mlp.b_out"], (p,)) if "mlp.b_out" in sd else None
        return ConcatLayout(p, width, u, v, W_out, b_in, b_out, tuple(sd))

    mats = [(k, t) for k, t in sd.items() if t.ndim == 2]
    vecs = [(k, t) for k, t in sd.items() if t.ndim == 1]
    odd = [(k, t) for k, t in sd.items() if t.ndim not in (1, 2)]
    if odd:
        k, t = odd[0]
        raise CheckpointError(f"{where}: key {k!r} has shape {tuple(t.shape)}; a concatenated-input MLP has only "
                              f"matrices and bias vectors")
    for k, t in mats + vecs:
        check_tensor(where, k, t, ndim=t.ndim)
    if len(mats) not in (2, 3):
        raise CheckpointError(f"{where}: {len(mats)} matrices ({describe_state_dict(dict(mats))}); a concatenated-"
                              f"input MLP has 2 (input [width, 2p], output [p, width]) or 3 (x, y, output)")
    out_key, out_t = mats[-1]
    found: tuple[int, int, Tensor, Tensor, Tensor] | None = None
    if len(mats) == 2:
        in_key, in_t = mats[0]
        for out in _orientations(out_t):
            p, width = out.shape
            for A in _orientations(in_t):
                if A.shape == (width, 2 * p) and p % 2 == 1 and p >= 3:
                    found = (p, width, A[:, :p], A[:, p:], out)
                    break
            if found:
                break
        if found is None:
            raise CheckpointError(
                f"{where}: key {in_key!r} has shape {tuple(in_t.shape)} and key {out_key!r} shape "
                f"{tuple(out_t.shape)}; "
                f"expected an input [width, 2p] (or [2p, width]) and an output [p, width] (or [width, p]) with odd p")
    else:
        (kx, tx), (ky, ty) = mats[0], mats[1]
        if tx.shape != ty.shape:
            raise CheckpointError(f"{where}: key {kx!r} has shape {tuple(tx.shape)} but key {ky!r} has "
                                  f"{tuple(ty.shape)}; the x and y input matrices must have the same shape")
        for out in _orientations(out_t):
            p, width = out.shape
            if (width, p) == tuple(tx.shape):
                found = (p, width, tx, ty, out)
            elif (p, width) == tuple(tx.shape):
                found = (p, width, tx.T, ty.T, out)
            if found and p % 2 == 1 and p >= 3:
                break
            found = None
        if found is None:
            raise CheckpointError(
                f"{where}: keys {kx!r}, {ky!r} have shape {tuple(tx.shape)} and key {out_key!r} shape "
                f"{tuple(out_t.shape)}; expected inputs [width, p] (or [p, width]) and an output [p, width] "
                f"(or [width, p]) with odd p")
    p, width, u, v, W_out = found
    b_in = b_out = None
    if len(vecs) > 2:
        raise CheckpointError(f"{where}: {len(vecs)} vectors ({describe_state_dict(dict(vecs))}); expected at most "
                              f"two biases (hidden [{width}], output [{p}])")
    for k, t in vecs:
        n = t.shape[0]
        if n == width and b_in is None:
            b_in = t
        elif n == p and b_out is None:
            b_out = t
        else:
            raise CheckpointError(f"{where}: key {k!r} has shape {tuple(t.shape)}; a bias must be [{width}] "
                                  f"(hidden) or [{p}] (output), once each")
    if (b_in is None) != (b_out is None):
        # a network with only one bias: the missing one is zero
        b_in = torch.zeros(width, dtype=u.dtype) if b_in is None else b_in
        b_out = torch.zeros(p, dtype=u.dtype) if b_out is None else b_out
    return ConcatLayout(p, width, u.contiguous(), v.contiguous(), W_out.contiguous(), b_in, b_out, tuple(sd))


class ConcatMLPFamily(Family):
    """One-hot x and y concatenated, separate weights u, v, optional biases."""

    name = "concat_mlp"
    description = "MLP on concat(one_hot(x), one_hot(y)): W_out sigma(u[x] + v[y] + b_in) + b_out"
    model_types = (ConcatMLP,)
    config_type = ConcatMLPConfig

    def build(self, config: ConcatMLPConfig, seed: int | None = 0) -> ConcatMLP:
        if not isinstance(config, ConcatMLPConfig):
            raise ConfigError(f"family 'concat_mlp' builds from a ConcatMLPConfig, got {type(config).__name__}")
        return ConcatMLP(config, seed=seed)

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        try:
            parse_concat_state_dict(state_dict)
        except CheckpointError:
            return False
        return True

    def from_state_dict(self, state_dict: Mapping[str, Any], *, activation: str | None = None,
                        p: int | None = None, where: str = "state dict") -> ConcatMLP:
        lay = parse_concat_state_dict(state_dict, where)
        if activation is None:
            raise CheckpointError(f"{where}: a plain state dict does not record the activation; pass it "
                                  f"(activation= / --activation, e.g. quad or relu)")
        if p is not None and lay.p != p:
            raise CheckpointError(f"{where}: p mismatch: the weights give p = {lay.p}, expected p = {p}")
        try:
            cfg = ConcatMLPConfig(p=lay.p, d_mlp=lay.width, activation=activation, bias=lay.b_in is not None)
        except ConfigError as e:
            raise CheckpointError(f"{where}: {e}") from None
        return self.from_layout(cfg, lay)

    @staticmethod
    def from_layout(cfg: ConcatMLPConfig, lay: ConcatLayout) -> ConcatMLP:
        model = ConcatMLP(cfg, seed=None)
        sd = {"mlp.W_x": lay.u, "mlp.W_y": lay.v, "mlp.W_out": lay.W_out}
        if cfg.bias:
            sd.update({"mlp.b_in": lay.b_in, "mlp.b_out": lay.b_out})
        with torch.no_grad():
            model.load_state_dict({k: t.to(torch.float32) for k, t in sd.items()}, strict=True)
        return model

    @torch.no_grad()
    def neuron_view(self, model: ConcatMLP, neurons: Sequence[int] | Tensor | slice | None = None) -> NeuronView:
        p, M = model.cfg.p, model.cfg.d_mlp
        idx = neuron_index(neurons, M)
        u = model.mlp.W_x.detach().to("cpu", torch.float64)
        v = model.mlp.W_y.detach().to("cpu", torch.float64)
        W = model.mlp.W_out.detach().to("cpu", torch.float64).T  # [M, p]
        pairs = all_pairs(p)
        h = u.T[pairs[:, 0]] + v.T[pairs[:, 1]]
        if model.mlp.b_in is not None:
            h = h + model.mlp.b_in.detach().to("cpu", torch.float64)
        h = model.mlp.hook_pre(h).double()
        a = model.mlp.hook_post(model.act_fn(h).double()).double()
        rest = torch.zeros(p * p, p, dtype=torch.float64)
        if model.mlp.b_out is not None:
            rest = rest + model.mlp.b_out.detach().to("cpu", torch.float64)
        others = torch.ones(M, dtype=torch.bool)
        others[idx] = False
        if bool(others.any()):
            rest = rest + a[:, others] @ W[others]
        return NeuronView(family=self.name, p=p, pre=h[:, idx], post=a[:, idx], W=W[idx], rest=rest, neurons=idx,
                          hook_pre=self.hook_pre, hook_post=self.hook_post)


register_family(ConcatMLPFamily())
