"""Neuron ablation on the hook points, and a batched fast path that gives the same numbers.

Why hooks: hooks are global state on the model, so every helper here adds its hooks through
``model.hooks(...)`` (TransformerLens; removes them in a ``finally``) and never edits weights in
place. Two ways to ablate a set of neurons S:

- hook factories :func:`zero_ablation_hook` / :func:`mean_ablation_hook`, or the ready list
  :func:`ablation_hooks` for ``model.run_with_hooks(tokens, fwd_hooks=...)``;
- the context manager :func:`ablated` (``with ablated(model, S): model(tokens)``).

Zero-ablation sets the activation of the neurons in S to 0; mean-ablation sets it to its mean over
all p^2 pairs. On ``mlp.hook_post`` this removes (or freezes) the neuron's vote; on
``mlp.hook_pre`` the activation is applied afterwards (zero-ablating the pre-activation gives
sigma(0), which is 0 only for odd-at-zero activations such as ReLU, Quad, x^3).

The fast path (:class:`ActivationTable`): the logits are linear in the neuron activations,
``logits = post @ W_out.T``, so with ``post`` computed once on the p(p+1)/2 unordered pairs (the
network is symmetric, f(x, y) = f(y, x), and each off-diagonal pair is counted twice) a batch of
keep masks [B, d_mlp] gives every ablated logit with one batched matmul:

    logits_b = ((post - fill) * keep_b) @ W_out.T + fill @ W_out.T

where ``fill`` [d_mlp] is the value an ablated neuron takes (0, its mean, sigma(0) or
sigma(mean pre)). Tests check it against the hook path.

Selectors pick neurons by dominant frequency (:func:`frequency_groups`,
:func:`neurons_by_frequency`) and by phase window (:func:`neurons_by_phase`,
:func:`half_circle_selection`), reading :func:`~mechinterp_modadd.fourier.neuron_spectrum`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..data import all_pairs
from ..errors import InputError
from ..forward import hidden, unordered_pairs, weights64
from ..fourier import spectrum_of
from ..runtime import compute_device, takes_device

__all__ = [
    "HOOK_POINTS",
    "HookFn",
    "neuron_mask",
    "neuron_means",
    "zero_ablation_hook",
    "mean_ablation_hook",
    "ablation_hooks",
    "ablated",
    "swapped_activation",
    "frequency_groups",
    "neurons_by_frequency",
    "neurons_by_phase",
    "half_circle_selection",
    "ActivationTable",
    "unordered_pairs",
    "activation_table",
    "EvalResult",
]

#: The hook points an ablation can act on.
HOOK_POINTS = ("mlp.hook_post", "mlp.hook_pre")
_SHORT = {"post": "mlp.hook_post", "pre": "mlp.hook_pre", "hook_post": "mlp.hook_post",
          "hook_pre": "mlp.hook_pre", "mlp.hook_post": "mlp.hook_post", "mlp.hook_pre": "mlp.hook_pre"}
_MODES = ("zero", "mean")

#: TransformerLens forward-hook signature ``fn(activation, hook) -> activation``.
HookFn = Callable[[Tensor, object], Tensor]

NeuronSet = Tensor | Sequence[int] | int


# ------------------------------------------------------------------------------- helpers
def _hook_points(hook_point: str | Sequence[str]) -> list[str]:
    names = [hook_point] if isinstance(hook_point, str) else list(hook_point)
    if not names:
        raise InputError("hook_point must name at least one of " + ", ".join(HOOK_POINTS))
    out = []
    for n in names:
        if n not in _SHORT:
            raise InputError(f"unknown hook point {n!r}; ablation works on {', '.join(HOOK_POINTS)} "
                             "(or 'post' / 'pre')")
        if _SHORT[n] not in out:
            out.append(_SHORT[n])
    return out


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise InputError(f"ablation mode must be 'zero' or 'mean', got {mode!r}")


def neuron_mask(d_mlp: int, neurons: NeuronSet) -> Bool[Tensor, "d_mlp"]:
    """Boolean mask [d_mlp] from indices (tensor, list or int) or a boolean mask of length d_mlp.

    Raises :class:`InputError` for out-of-range indices or a mask of the wrong length.
    """
    if isinstance(neurons, int) and not isinstance(neurons, bool):
        neurons = [neurons]
    t = torch.as_tensor(neurons) if not isinstance(neurons, Tensor) else neurons.detach().cpu()
    if t.dtype == torch.bool:
        if t.shape != (d_mlp,):
            raise InputError(f"a boolean neuron mask must have shape ({d_mlp},), got {tuple(t.shape)}")
        return t.clone()
    if t.numel() == 0:
        return torch.zeros(d_mlp, dtype=torch.bool)
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise InputError(f"neuron indices must be integers or a boolean mask, got dtype {t.dtype}")
    t = t.reshape(-1).long()
    if int(t.min()) < 0 or int(t.max()) >= d_mlp:
        raise InputError(f"neuron indices must lie in [0, {d_mlp}), found values in "
                         f"[{int(t.min())}, {int(t.max())}]")
    m = torch.zeros(d_mlp, dtype=torch.bool)
    m[t] = True
    return m


@torch.no_grad()
def neuron_means(model, hook_point: str = "mlp.hook_post") -> Float[Tensor, "d_mlp"]:
    """Mean activation of every neuron at ``hook_point`` over all p^2 pairs (model dtype/device).

    Runs the model with a caching hook (removed afterwards; hooks already on the model apply).
    """
    (name,) = _hook_points(hook_point)
    _, cache = model.run_with_cache(all_pairs(model.cfg.p), names_filter=name)
    return cache[name].mean(dim=0)


# ------------------------------------------------------------------------- hook factories
def _fill_hook(mask: Tensor, fill: Tensor | None) -> HookFn:
    def hook(activation: Tensor, hook=None) -> Tensor:
        m = mask.to(activation.device)
        if fill is None:
            value = torch.zeros((), dtype=activation.dtype, device=activation.device)
        else:
            value = fill.to(activation.device, activation.dtype)
        return torch.where(m, value, activation)

    return hook


def zero_ablation_hook(neurons: NeuronSet, d_mlp: int) -> HookFn:
    """A forward hook ``fn(activation, hook)`` that sets the neurons in ``neurons`` to 0.

    The activation is not modified in place; a new tensor is returned.
    """
    return _fill_hook(neuron_mask(d_mlp, neurons), None)


def mean_ablation_hook(neurons: NeuronSet, means: Float[Tensor, "d_mlp"]) -> HookFn:
    """A forward hook that replaces the neurons in ``neurons`` by ``means`` (one value per neuron,
    e.g. :func:`neuron_means`)."""
    means = torch.as_tensor(means).detach()
    if means.ndim != 1:
        raise InputError(f"means must be a vector [d_mlp], got shape {tuple(means.shape)}")
    return _fill_hook(neuron_mask(means.shape[0], neurons), means)


def ablation_hooks(model, neurons: NeuronSet, *, mode: str = "zero",
                   hook_point: str | Sequence[str] = "mlp.hook_post") -> list[tuple[str, HookFn]]:
    """``[(hook_name, fn), ...]`` that zero- or mean-ablate ``neurons``; pass it to
    ``model.run_with_hooks(tokens, fwd_hooks=...)`` or ``model.hooks(fwd_hooks=...)``.

    Mean-ablation uses the mean over all p^2 pairs of the unablated model at each hook point.
    With both hook points the pre-activation is ablated first, then the post-activation.
    """
    _check_mode(mode)
    names = _hook_points(hook_point)
    d = model.cfg.d_mlp
    mask = neuron_mask(d, neurons)
    if mode == "zero":
        return [(n, _fill_hook(mask, None)) for n in names]
    return [(n, _fill_hook(mask, neuron_means(model, n))) for n in names]


@contextmanager
def ablated(model, neurons: NeuronSet, *, mode: str = "zero",
            hook_point: str | Sequence[str] = "mlp.hook_post") -> Iterator:
    """Context manager: inside it ``model`` runs with ``neurons`` ablated (see :func:`ablation_hooks`).

    The hooks are removed on exit, also when the body raises. Example::

        with ablated(model, neurons_by_frequency(model, [3])):
            logits = model(tokens)
    """
    hooks = ablation_hooks(model, neurons, mode=mode, hook_point=hook_point)
    with model.hooks(fwd_hooks=hooks):
        yield model


@contextmanager
def swapped_activation(model, activation) -> Iterator:
    """Context manager: the model's sigma is replaced by ``activation`` (a registry name or a
    callable) inside the block and restored on exit, also after an exception."""
    original = model.activation
    original_cfg = model.cfg
    try:
        model.set_activation(activation)
        yield model
    finally:
        model.set_activation(original)
        model.cfg = original_cfg


# ------------------------------------------------------------------------------ selectors
def frequency_groups(model_or_spectrum) -> dict[int, Int[Tensor, "n_k"]]:
    """Neuron indices of every frequency group N_k = {m : k*_m = k}, for k = 1..K (some may be empty)."""
    sp = spectrum_of(model_or_spectrum)
    f = sp.frequency
    order = torch.argsort(f, stable=True)  # grouped by k, ascending neuron index inside a group
    parts = torch.split(order, torch.bincount(f - 1, minlength=sp.K).tolist())
    return {k: parts[k - 1] for k in range(1, sp.K + 1)}


def neurons_by_frequency(model_or_spectrum, ks: int | Sequence[int]) -> Int[Tensor, "n"]:
    """Indices of the neurons whose dominant frequency k* is in ``ks`` (1-based)."""
    sp = spectrum_of(model_or_spectrum)
    ks = [ks] if isinstance(ks, int) else [int(k) for k in ks]
    bad = [k for k in ks if not 1 <= k <= sp.K]
    if bad:
        raise InputError(f"frequencies must lie in 1..{sp.K}, got {bad}")
    return torch.nonzero(torch.isin(sp.frequency, torch.tensor(ks, dtype=torch.long))).flatten()


def neurons_by_phase(model_or_spectrum, start: float, width: float = math.pi, *, order: int = 1,
                     ks: int | Sequence[int] | None = None) -> Int[Tensor, "n"]:
    """Indices of neurons whose angle ``order * phi*`` lies in the window [start, start + width)
    (mod 2 pi), optionally only among the groups ``ks``. phi* is the input phase at k*."""
    sp = spectrum_of(model_or_spectrum)
    if not 0 < width <= 2 * math.pi:
        raise InputError(f"phase window width must lie in (0, 2 pi], got {width}")
    rel = torch.remainder(order * sp.phi_star - start, 2 * math.pi)
    sel = rel < width
    if ks is not None:
        sel &= neuron_mask(sp.d_mlp, neurons_by_frequency(sp, ks))
    return torch.nonzero(sel).flatten()


def half_circle_selection(model_or_spectrum, order: int, n_grid: int = 72
                          ) -> tuple[Bool[Tensor, "d_mlp"], dict[int, float]]:
    """The phase-biased keep set: in each frequency group keep the neurons whose ``order * phi``
    lies in one half circle [a, a + pi), with a on the grid 2 pi i / n_grid chosen so that the kept
    count is closest to half the group. Several grid values usually tie; the rule takes the median
    one (index len // 2 of the tied grid indices in increasing order), a fixed and reproducible
    choice (the first tie would bias the selection towards the grid origin).

    Returns the keep mask [d_mlp] and the chosen a per group.
    """
    sp = spectrum_of(model_or_spectrum)
    if order < 1:
        raise InputError(f"order must be a positive integer, got {order}")
    grid = 2 * math.pi * torch.arange(n_grid, dtype=torch.float64) / n_grid
    ang = order * sp.phi_star
    group = sp.frequency - 1  # [M], 0-based
    # all groups at once: inside[i, m] = neuron m's angle lies in [grid_i, grid_i + pi)
    inside = torch.remainder(ang[None, :] - grid[:, None], 2 * math.pi) < math.pi  # [G, M]
    onehot = torch.nn.functional.one_hot(group, sp.K).double()  # [M, K]
    n = onehot.sum(0)  # [K]
    err = (inside.double() @ onehot - n / 2).abs()  # [G, K]
    ties = err == err.min(0).values
    median = ties & (ties.cumsum(0) == (ties.sum(0) // 2 + 1))  # the median tie of each group
    a_idx = median.double().argmax(0)  # [K]
    keep = inside[a_idx[group], torch.arange(sp.d_mlp)]
    chosen = {k: float(grid[a_idx[k - 1]]) for k in range(1, sp.K + 1) if n[k - 1] > 0}
    return keep, chosen


# ------------------------------------------------------------------------------ fast path
@dataclass(frozen=True)
class EvalResult:
    """Accuracy, mean cross-entropy and mean margin of a batch of ablations (each [B])."""

    accuracy: Float[Tensor, "B"]
    loss: Float[Tensor, "B"]
    margin: Float[Tensor, "B"]


@dataclass(frozen=True)
class ActivationTable:
    """Neuron activations of one model on a set of input pairs, float64, for batched ablation.

    ``pairs`` are the unordered pairs x <= y (or a seeded sample of them), ``weight`` counts how
    many ordered pairs each stands for (1 on the diagonal, 2 off it), so weighted means equal means
    over all p^2 pairs when the full set is used.
    """

    p: int
    pairs: Int[Tensor, "P 2"]
    weight: Float[Tensor, "P"]
    labels: Int[Tensor, "P"]
    pre: Float[Tensor, "P d_mlp"]
    post: Float[Tensor, "P d_mlp"]
    W_out: Float[Tensor, "p d_mlp"]
    act_fn: Callable[[Tensor], Tensor]
    exact: bool
    seed: int = 0
    #: copies of this table on other devices, made once by :meth:`on`
    _copies: dict = field(default_factory=dict, compare=False, repr=False)

    def on(self, device: torch.device | str) -> ActivationTable:
        """This table with its tensors on ``device`` (itself on its own device; a copy made once
        and kept otherwise). The heavy methods run where the table is: :meth:`evaluate` moves
        to :func:`~mechinterp_modadd.runtime.compute_device` by itself."""
        device = torch.device(device)
        if device.type == self.post.device.type and device.index in (None, self.post.device.index):
            return self
        key = str(device)
        if key not in self._copies:
            self._copies[key] = replace(
                self, pairs=self.pairs.to(device), weight=self.weight.to(device), labels=self.labels.to(device),
                pre=self.pre.to(device), post=self.post.to(device), W_out=self.W_out.to(device), _copies={})
        return self._copies[key]

    @property
    def sample(self):  # -> PairSample (imported lazily: sampling imports nothing from here)
        """Which pairs the table holds (:class:`~mechinterp_modadd.analysis.sampling.PairSample`):
        sample size, population, effective size and the 95 % interval of an accuracy."""
        from .sampling import PairSample

        return PairSample.of_table(self, self.seed)

    @property
    def d_mlp(self) -> int:
        return self.post.shape[1]

    def fill(self, mode: str = "zero", hook_point: str = "mlp.hook_post") -> Float[Tensor, "d_mlp"]:
        """The value an ablated neuron's post-activation takes: 0, its mean over all pairs,
        sigma(0) (zero on the pre-activation) or sigma(mean pre) (mean on the pre-activation)."""
        _check_mode(mode)
        (name,) = _hook_points(hook_point)
        w = self.weight / self.weight.sum()
        zero = torch.zeros(self.d_mlp, dtype=torch.float64, device=self.post.device)
        if name == "mlp.hook_post":
            return zero if mode == "zero" else w @ self.post
        pre = zero if mode == "zero" else w @ self.pre
        return self.act_fn(pre).double()

    def _centred(self, fill: Tensor) -> Tensor:
        """``post - fill``; the table itself when fill is 0 (no [P, d_mlp] copy for zero-ablation)."""
        return self.post if not bool(fill.any()) else self.post - fill

    def mask_chunk(self, max_memory: int | None = None) -> int:
        """Masks evaluated at once: the [B, p, d_mlp] masked weights and the [B, P, p] logits with
        their scoring scratch (about 5 copies) within a quarter of the memory budget, and at most
        4e6 / (P p) masks (the historical chunk, which keeps small problems in one batch)."""
        from ..memory import rows_per_chunk

        per_mask = 8 * (self.p * self.d_mlp + 5 * self.pairs.shape[0] * self.p)
        return min(max(1, int(4_000_000 // max(1, self.pairs.shape[0] * self.p))),
                   rows_per_chunk(per_mask, budget=max_memory, share=0.25))

    def group_chunk(self, n_max: int, max_memory: int | None = None) -> int:
        """Groups passed to :meth:`group_logits` at once: their gathered activations [P, G, n_max]
        and contributions [G, P, p] with scoring scratch within a quarter of the memory budget, and
        at most 2e6 / (P p) groups (the historical step)."""
        from ..memory import rows_per_chunk

        P = self.pairs.shape[0]
        per_group = 8 * (P * max(1, n_max) + 5 * P * self.p)
        return min(max(1, int(2_000_000 // max(1, P * self.p))),
                   rows_per_chunk(per_group, budget=max_memory, share=0.25))

    def logits(self, keep: Bool[Tensor, "B d_mlp"] | Float[Tensor, "B d_mlp"], mode: str = "zero",
               hook_point: str = "mlp.hook_post") -> Float[Tensor, "B P p"]:
        """Ablated logits for a batch of keep masks (1 = neuron kept): one batched matmul,
        ``((post - fill) * keep) @ W_out.T + fill @ W_out.T`` (on the table's device)."""
        keep = torch.as_tensor(keep).to(self.post.device)
        if keep.ndim == 1:
            keep = keep[None]
        if keep.shape[-1] != self.d_mlp:
            raise InputError(f"keep masks must be [B, {self.d_mlp}], got {tuple(keep.shape)}")
        fill = self.fill(mode, hook_point)
        centred = self._centred(fill)  # [P, M]
        base = fill @ self.W_out.T  # [p]
        masked_out = self.W_out[None] * keep.double()[:, None, :]  # [B, p, M], small: p << P
        return torch.matmul(centred, masked_out.transpose(1, 2)) + base

    def group_logits(self, groups: Sequence[Tensor], mode: str = "zero", hook_point: str = "mlp.hook_post"
                     ) -> tuple[Float[Tensor, "G P p"], Float[Tensor, "P p"]]:
        """Contribution of each neuron group to the logits, ``(post - fill)[:, g] @ W_out[:, g].T``
        [G, P, p], and the rest ``fill @ W_out.T`` plus the contribution of neurons in no group [P, p].

        Keeping only group g gives ``contrib[g] + rest_with_fill``; dropping group g gives the full
        logits minus ``contrib[g]``. One pass over the neurons for all groups at once.
        """
        fill = self.fill(mode, hook_point)
        centred = self._centred(fill)
        P, M = centred.shape
        base = (fill @ self.W_out.T).expand(P, -1)
        groups = [torch.as_tensor(g, dtype=torch.long).reshape(-1) for g in groups]
        n_max = max((len(g) for g in groups), default=0)
        if not groups or n_max == 0:
            return torch.zeros(len(groups), P, self.p, dtype=torch.float64, device=centred.device), base
        # pad every group to n_max with a dummy neuron M whose activation and weights are 0: one bmm
        pad = torch.full((len(groups), n_max), M, dtype=torch.long)
        for i, g in enumerate(groups):
            pad[i, : len(g)] = g
        pad = pad.to(centred.device)
        c = torch.cat([centred, torch.zeros(P, 1, dtype=torch.float64, device=centred.device)], 1)
        w = torch.cat([self.W_out, torch.zeros(self.p, 1, dtype=torch.float64, device=centred.device)], 1)
        contrib = torch.bmm(c[:, pad].permute(1, 0, 2), w[:, pad].permute(1, 2, 0))  # [G, P, p]
        return contrib, base

    def score(self, logits: Float[Tensor, "B P p"], metrics: str = "all") -> EvalResult:
        """Weighted accuracy, cross-entropy and margin (correct logit minus best other logit).

        A pair counts as right when its correct logit is strictly above every other one (a tie is
        wrong). ``metrics="accuracy"`` skips loss and margin (returned as NaN): about 3x faster.
        """
        if metrics not in ("all", "accuracy"):
            raise InputError(f"metrics must be 'all' or 'accuracy', got {metrics!r}")
        # counts are small integers, so sums of them are exact and a full score is exactly 1
        w, total = self.weight, float(self.weight.sum())
        y = self.labels
        B, P, _ = logits.shape
        correct = logits.gather(2, y.expand(B, P)[..., None])[..., 0]
        if metrics == "accuracy":
            top = logits.amax(2)
            unique = (logits >= top[..., None]).sum(2) == 1
            acc = (((correct >= top) & unique).double() @ w) / total
            nan = torch.full((B,), float("nan"), dtype=torch.float64, device=logits.device)
            return EvalResult(accuracy=acc, loss=nan, margin=nan.clone())
        other = logits.scatter(2, y.expand(B, P)[..., None], float("-inf")).amax(2)
        margin = correct - other
        acc = ((margin > 0).double() @ w) / total
        loss = ((torch.logsumexp(logits, 2) - correct) @ w) / total
        return EvalResult(accuracy=acc, loss=loss, margin=(margin @ w) / total)

    def evaluate(self, keep: Bool[Tensor, "B d_mlp"], mode: str = "zero",
                 hook_point: str = "mlp.hook_post", chunk: int | None = None, metrics: str = "all") -> EvalResult:
        """Accuracy, loss and mean margin of every keep mask (see :meth:`score`), in chunks to
        bound memory; computed on :func:`~mechinterp_modadd.runtime.compute_device`, returned on
        the CPU."""
        keep = torch.as_tensor(keep)
        if keep.ndim == 1:
            keep = keep[None]
        if chunk is None:
            chunk = self.mask_chunk()
        tab = self.on(compute_device())
        parts = [tab.score(tab.logits(keep[i: i + chunk], mode, hook_point), metrics)
                 for i in range(0, keep.shape[0], chunk)]
        if not parts:
            empty = torch.zeros(0, dtype=torch.float64)
            return EvalResult(empty, empty, empty)
        return EvalResult(*(torch.cat([getattr(r, f) for r in parts]).cpu() for f in ("accuracy", "loss", "margin")))


@takes_device
@torch.no_grad()
def activation_table(model, *, activation=None, max_pairs: int | None = None, seed: int = 0) -> ActivationTable:
    """Compute pre- and post-activations of every neuron in float64 on the unordered pairs.

    Reads the weights directly through :func:`mechinterp_modadd.forward.hidden` (hooks on the
    model do not apply): pre = theta[x] + theta[y],
    post = sigma(pre) with the model's activation, or ``activation`` (name or callable) instead.
    ``max_pairs`` evaluates on a seeded uniform sample of that many unordered pairs (an estimate;
    used by the fast claim check in the diagnosis for large p); ``None`` uses them all (exact).
    """
    p = model.cfg.p
    pairs, weight = unordered_pairs(p)
    exact = True
    if max_pairs is not None and max_pairs < pairs.shape[0]:
        if max_pairs < 1:
            raise InputError(f"max_pairs must be >= 1, got {max_pairs}")
        g = torch.Generator().manual_seed(int(seed))
        idx = torch.randperm(pairs.shape[0], generator=g)[:max_pairs].sort().values
        pairs, weight = pairs[idx], weight[idx]
        exact = False
    w = weights64(model, activation=activation)
    pre, post = hidden(w, pairs)  # [P, M] each
    return ActivationTable(p=p, pairs=pairs, weight=weight, labels=(pairs[:, 0] + pairs[:, 1]) % p,
                           pre=pre, post=post, W_out=w.W_out, act_fn=w.act_fn, exact=exact,
                           seed=int(seed))
