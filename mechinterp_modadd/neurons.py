"""The neuron view: what the analyses read from any supported network, whatever its family.

A modular-addition network of any family computes, on the pair (x, y),

    logits(x, y) = sum_m post_m(x, y) W[m] + rest(x, y)

where post_m is hidden neuron m's activation, W[m] (a vector over the p output classes) is the
direction neuron m writes into logit space, and ``rest`` is everything the neurons do not carry: an
output bias, a transformer's attention and direct paths. A :class:`NeuronView` holds these pieces on
every pair of the p x p grid, in float64 on the CPU:

==========  ===========  ==========================================================================
field       shape        meaning
==========  ===========  ==========================================================================
pre         [p*p, n]     pre-activations of the n neurons (read through the family's pre hook point)
post        [p*p, n]     post-activations (through the post hook point)
W           [n, p]       neuron m's contribution direction in logit space (row m)
rest        [p*p, p]     logits not carried by the neurons of the view (zero for the paper's MLP,
                         which has no bias; a bias or attention path otherwise; with a subset view,
                         also the contributions of the model's other neurons)
neurons     [n]          the model's indices of the neurons held (``arange(d_mlp)`` for a full view)
==========  ===========  ==========================================================================

Rows are the pairs in :func:`~mechinterp_modadd.data.all_pairs` order (row ``x * p + y``). So
``view.logits()`` equals the model's logits on all pairs (up to float64 rounding; exactly for the
paper's MLP), and ablating neurons in the view (:meth:`NeuronView.logits` with ``scale``/``fill``,
:meth:`NeuronView.ablate`) is ablating them in the model, because the neurons enter the logits
linearly once their activations are fixed. (A hook on the model's logits is not part of the view.)

A view is made by a family adapter, :meth:`mechinterp_modadd.families.Family.neuron_view`, or for
any model by :func:`mechinterp_modadd.families.neuron_view`::

    from mechinterp_modadd.families import neuron_view
    view = neuron_view(model)                 # the family is found from the model's type
    f2 = view.fourier2d("post")               # 2D Fourier analysis of every neuron (fourier2d.py)
    acc = view.accuracy(view.ablate([0, 5]))  # accuracy with neurons 0 and 5 zero-ablated

A family with an exact closed form (the paper's MLP reads theta and xi straight from its weights)
keeps computing its claims from the weights; its tests check that the view agrees with them.

Memory: a full view holds 2 p^2 n + n p + p^3 float64 numbers (p = 23, n = 512: about 4.4 MB);
pass ``neurons=`` to a family's ``neuron_view`` for a subset when the model is large.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from .data import all_pairs
from .errors import InputError

__all__ = ["NeuronView", "neuron_index"]


def neuron_index(neurons: Sequence[int] | Tensor | slice | None, d_mlp: int) -> Tensor:
    """The neuron indices ``neurons`` names (None: all; a slice; a sequence or tensor of ints) as a
    LongTensor, checked to lie in [0, d_mlp) without repeats."""
    if neurons is None:
        return torch.arange(d_mlp)
    if isinstance(neurons, slice):
        return torch.arange(d_mlp)[neurons]
    idx = torch.as_tensor(neurons)
    if idx.dtype == torch.bool:
        if idx.shape != (d_mlp,):
            raise InputError(f"a boolean neuron mask must have shape [{d_mlp}], got {tuple(idx.shape)}")
        return idx.nonzero()[:, 0]
    if idx.ndim != 1 or idx.dtype.is_floating_point or idx.dtype.is_complex:
        raise InputError(f"neurons must be a 1-D list of integer indices, got shape {tuple(idx.shape)} "
                         f"dtype {idx.dtype}")
    idx = idx.long()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= d_mlp):
        raise InputError(f"neuron indices must lie in [0, {d_mlp}), got min {int(idx.min())} max {int(idx.max())}")
    if idx.unique().numel() != idx.numel():
        raise InputError("neuron indices must not repeat")
    return idx


@dataclass(frozen=True)
class NeuronView:
    """Hidden neurons of one model on all p^2 pairs, float64 on the CPU (see the module docstring).

    Attributes:
        family: the registered name of the model's family (``"mlp"``, ``"concat_mlp"``, ...).
        p: the modulus.
        pre, post: [p*p, n] pre- and post-activations, ``all_pairs`` order.
        W: [n, p] contribution directions: neuron j adds ``post[:, j, None] * W[j]`` to the logits.
        rest: [p*p, p] the logits not carried by the neurons of the view.
        neurons: [n] the model's indices of the neurons in the view.
        hook_pre, hook_post: the hook points ``pre`` and ``post`` were read through.
    """

    family: str
    p: int
    pre: Float[Tensor, "pp n"]
    post: Float[Tensor, "pp n"]
    W: Float[Tensor, "n p"]
    rest: Float[Tensor, "pp p"]
    neurons: Tensor
    hook_pre: str = "mlp.hook_pre"
    hook_post: str = "mlp.hook_post"

    def __post_init__(self) -> None:
        pp, n, p = self.p * self.p, self.neurons.shape[0], self.p
        for name, want in (("pre", (pp, n)), ("post", (pp, n)), ("W", (n, p)), ("rest", (pp, p))):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or tuple(t.shape) != want or t.dtype != torch.float64:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise InputError(f"NeuronView.{name} must be a float64 tensor of shape {want}, got {got}"
                                 + (f" {t.dtype}" if isinstance(t, Tensor) else ""))

    @property
    def n(self) -> int:
        """Number of neurons in the view."""
        return self.neurons.shape[0]

    @property
    def K(self) -> int:
        return (self.p - 1) // 2

    @property
    def labels(self) -> Tensor:
        """(x + y) mod p on every pair, ``all_pairs`` order."""
        pr = all_pairs(self.p)
        return (pr[:, 0] + pr[:, 1]) % self.p

    # ------------------------------------------------------------------------------- logits
    def _vector(self, name: str, t, allow_batch: bool) -> Tensor | None:
        if t is None:
            return None
        t = torch.as_tensor(t).detach().to("cpu", torch.float64)
        ok = (t.ndim == 1 or (allow_batch and t.ndim == 2)) and t.shape[-1] == self.n
        if not ok:
            want = f"[{self.n}]" + (f" or [B, {self.n}]" if allow_batch else "")
            raise InputError(f"{name} must have shape {want} (one value per neuron of the view), got {tuple(t.shape)}")
        return t

    def logits(self, scale: Tensor | None = None, fill: Tensor | None = None
               ) -> Float[Tensor, "pp p"] | Float[Tensor, "B pp p"]:
        """The logits with each neuron's post-activation replaced by ``fill + scale * (post - fill)``.

        ``scale`` [n] (or [B, n] for B interventions at once, result [B, p*p, p]): 1 keeps a
        neuron, 0 removes it; ``fill`` [n] is what a removed neuron is replaced by (default 0:
        zero-ablation; ``post.mean(0)``: mean-ablation). Without ``scale`` the model's own logits.
        """
        scale = self._vector("scale", scale, allow_batch=True)
        fill = self._vector("fill", fill, allow_batch=False)
        post = self.post
        if scale is not None:
            if fill is None:
                post = post * scale if scale.ndim == 1 else post[None] * scale[:, None, :]
            elif scale.ndim == 1:
                post = fill + (post - fill) * scale
            else:
                post = fill + (post - fill)[None] * scale[:, None, :]
        return post @ self.W + self.rest

    def ablate(self, neurons: Sequence[int] | Tensor, *, mode: str = "zero") -> Float[Tensor, "pp p"]:
        """The logits with the given neurons (positions 0..n-1 in this view) removed: ``mode="zero"``
        sets their activation to 0, ``"mean"`` to its mean over the grid."""
        if mode not in ("zero", "mean"):
            raise InputError(f"ablation mode must be 'zero' or 'mean', got {mode!r}")
        idx = neuron_index(neurons, self.n)
        scale = torch.ones(self.n, dtype=torch.float64)
        scale[idx] = 0.0
        return self.logits(scale, self.post.mean(0) if mode == "mean" else None)

    def contribution(self, j: int) -> Float[Tensor, "pp p"]:
        """What neuron j (position in the view) adds to the logits on every pair."""
        return self.post[:, j, None] * self.W[j]

    def accuracy(self, logits: Tensor | None = None) -> float | Tensor:
        """Accuracy on all pairs of ``logits`` ([p*p, p]; [B, p*p, p] gives B accuracies); the view's own
        logits by default."""
        lg = self.logits() if logits is None else torch.as_tensor(logits)
        hit = (lg.argmax(-1) == self.labels).double().mean(-1)
        return float(hit) if hit.ndim == 0 else hit

    # ----------------------------------------------------------------------------- analyses
    def fourier2d(self, which: str = "post"):
        """The 2D Fourier decomposition (:class:`~mechinterp_modadd.fourier2d.Fourier2D`) of the
        neurons' ``"pre"`` or ``"post"`` activations."""
        from .fourier2d import fourier2d

        if which not in ("pre", "post"):
            raise InputError(f"which must be 'pre' or 'post', got {which!r}")
        return fourier2d(getattr(self, which))

    def subset(self, neurons: Sequence[int] | Tensor | slice) -> NeuronView:
        """A view of some of these neurons (positions 0..n-1 in this view); the others' contributions
        move into ``rest``, so the logits are unchanged."""
        idx = neuron_index(neurons, self.n)
        keep = torch.zeros(self.n, dtype=torch.bool)
        keep[idx] = True
        rest = self.rest + self.post[:, ~keep] @ self.W[~keep]
        return NeuronView(family=self.family, p=self.p, pre=self.pre[:, idx], post=self.post[:, idx],
                          W=self.W[idx], rest=rest, neurons=self.neurons[idx], hook_pre=self.hook_pre,
                          hook_post=self.hook_post)

