"""Stacked optimizers: one object updates S runs' parameters at once, each run with its own
learning rate and weight decay, with the arithmetic of torch.optim's single-tensor code.

The engine (:mod:`.stack`) holds each run's parameters in a few *storage* tensors that carry a run
axis (``run_dims[j]`` of storage tensor ``j``; a family may merge several weights into one
tensor, :class:`~.family.ParamLayout`). An optimizer keeps its per-parameter state in tensors of the
same shapes, so its element-wise passes run once over all runs; per-run numbers (learning rate,
weight decay) broadcast along the run axis. Runs trained together share the optimizer and its
hyper-parameters (:attr:`StackedOptimizer.hyper`; the engine groups runs by them).

Bits: AdamW and SGD evaluate the same expressions, in the same order and precision, as
``torch.optim.AdamW(foreach=False)`` and ``torch.optim.SGD(foreach=False)`` on one run, so a run's
weights are those of the single-run trainer bit for bit (tests/training/test_training_engine.py compares
with a frozen copy of that trainer).

Resume state: :meth:`StackedOptimizer.run_state` gives one run's state per parameter as torch.optim
names it (``exp_avg``, ``exp_avg_sq`` and ``step`` for AdamW, ``momentum_buffer`` for SGD with
momentum), which :mod:`.runfolder` writes to ``resume.safetensors`` in the format the single-run
trainer wrote; :meth:`StackedOptimizer.load_run_state` reads it back.

Adding an optimizer: a subclass here, decorated with :func:`register`, naming in ``hyper`` the
hyper-parameters it reads besides lr and weight decay. The engine, the config checks,
``modadd train --optimizer NAME`` and the sweep grid key ``optimizer`` read :data:`OPTIMIZERS`, so
an optimizer whose hyper-parameters are declared already (``betas``, ``momentum``) touches this
file only. A new hyper-parameter is one :class:`~mechinterp_modadd.hyperparams.HyperParam` entry
of :data:`~mechinterp_modadd.hyperparams.HYPER` (name, default, interval, help): its TrainConfig
field, range check, ``modadd train`` flag, sweep grid key and folder-name tag are derived from
it. So adding an optimizer touches at most two files, ``training/optim.py`` and
``hyperparams.py``; the declarations live apart because the CLI parser and the sweep spec read
them without importing torch. An optimizer may also implement :meth:`StackedOptimizer.update_runs`
(the update of a range of runs, :attr:`~StackedOptimizer.per_run`; subclassing :class:`RangeOptimizer`
and writing :meth:`RangeOptimizer.apply` gives both): a family whose runs are computed
side by side on a CPU (the transformer) then updates each run in the thread that computes it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..hyperparams import HYPER, HyperParam

__all__ = ["StackedOptimizer", "RangeOptimizer", "AdamW", "SGD", "OPTIMIZERS", "HYPER", "HyperParam", "register",
           "lr_at"]


def lr_at(cfg: Any, t: int) -> float:
    """Learning rate of update ``t`` (after step t's gradients): ``lr * min(1, (t + 1) / warmup)``."""
    if cfg.warmup_steps <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (t + 1) / cfg.warmup_steps)


#: name -> optimizer class (see :func:`register`)
OPTIMIZERS: dict[str, type[StackedOptimizer]] = {}


def register(cls: type[StackedOptimizer]) -> type[StackedOptimizer]:
    """Class decorator: make ``cls`` available as ``TrainConfig(optimizer=cls.name)``."""
    unknown = [h for h in cls.hyper if h not in HYPER]
    if unknown:
        raise ValueError(f"{cls.__name__}.hyper names {unknown}, which are not declared in "
                         f"mechinterp_modadd.hyperparams.HYPER")
    OPTIMIZERS[cls.name] = cls
    return cls


class StackedOptimizer(ABC):
    """The optimizer of S stacked runs.

    Args:
        cfgs: the runs' TrainConfigs (they share ``optimizer`` and the fields of :attr:`hyper`).
        params: the storage tensors, updated in place.
        run_dims: the run axis of each storage tensor.
        start: updates already applied (the step a resumed run continues from; 0 for a new run).

    Subclasses set :attr:`name`, :attr:`hyper` and :attr:`state_names` and implement
    :meth:`schedule` and :meth:`update`.
    """

    #: the value of ``TrainConfig.optimizer``
    name: ClassVar[str]
    #: hyper-parameters this optimizer reads besides lr and weight_decay (keys of :data:`HYPER`,
    #: each a TrainConfig field)
    hyper: ClassVar[tuple[str, ...]] = ()
    #: per-parameter state tensors, named as torch.optim's state names them
    state_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfgs: Sequence[Any], params: list[Tensor], run_dims: list[int], start: int = 0) -> None:
        self.cfgs = list(cfgs)
        self.params = params
        self.run_dims = list(run_dims)
        self.S = len(self.cfgs)
        self.updates = start
        self.state: dict[str, list[Tensor]] = {k: [torch.zeros_like(q) for q in params] for k in self.state_names}
        self._wd = [float(c.weight_decay) for c in self.cfgs]

    @classmethod
    def check(cls, cfg: Any) -> None:
        """Raise :class:`~mechinterp_modadd.errors.ConfigError` when ``cfg`` is not a valid
        configuration for this optimizer beyond what :data:`HYPER` checks (each hyper-parameter's
        type and interval), e.g. a relation between two of them. None for AdamW and SGD."""
        return None

    def factor_shape(self, j: int, runs: int | None = None) -> list[int]:
        """Shape that broadcasts an [S] vector (or one of ``runs`` entries) along storage tensor
        ``j``'s run axis."""
        q, d = self.params[j], self.run_dims[j]
        return [1] * d + [self.S if runs is None else runs] + [1] * (q.dim() - d - 1)

    def part(self, j: int, t: Tensor, runs: tuple[int, int] | None) -> Tensor:
        """Storage-shaped tensor ``t`` (of storage tensor ``j``) restricted to ``runs`` = (a, b)."""
        return t if runs is None else t.narrow(self.run_dims[j], runs[0], runs[1] - runs[0])

    @abstractmethod
    def schedule(self, lr: Tensor) -> None:
        """Prepare the next T updates from their [T, S] float64 learning rates (one row per update)."""

    @abstractmethod
    def update(self, i: int, grads: list[Tensor]) -> None:
        """Apply the ``i``-th scheduled update with the storage-shaped gradients ``grads``."""

    #: whether :meth:`update_runs` is implemented (AdamW and SGD: yes)
    per_run: ClassVar[bool] = False

    def update_runs(self, i: int, grads: list[Tensor], runs: tuple[int, int]) -> None:
        """Apply the ``i``-th scheduled update to runs ``a <= s < b`` only, with the arithmetic of
        :meth:`update` on those runs' slices, and do not count it: the engine calls it for disjoint
        ranges covering every run (possibly from several threads at once) and then :meth:`advance`.
        Optional (:attr:`per_run`); a family computing runs side by side uses it (``parallel_runs``)."""
        raise NotImplementedError(f"optimizer {self.name!r} updates whole stacks only")

    def advance(self) -> None:
        """Count one update applied to every run through :meth:`update_runs`."""
        self.updates += 1

    def keep(self, ix: Tensor, idx: list[int]) -> None:
        """Keep only the runs at positions ``idx`` (``ix``: the same as a tensor on the device)."""
        for name, ts in self.state.items():
            self.state[name] = [t.index_select(d, ix) for t, d in zip(ts, self.run_dims, strict=True)]
        self.cfgs = [self.cfgs[i] for i in idx]
        self._wd = [self._wd[i] for i in idx]
        self.S = len(idx)

    def set_params(self, params: list[Tensor]) -> None:
        """The storage after the batch shrank (same shapes but the run axis)."""
        self.params = params

    # ---------------------------------------------------------------- one run's state (resume)
    def run_state(self, views: Callable[[list[Tensor]], dict[str, Tensor]], i: int) -> dict[str, dict[str, Any]]:
        """Run ``i``'s state as torch.optim's ``state`` names it: parameter name -> {state name:
        tensor}. ``views`` maps storage-shaped tensors to the per-parameter [S, ...] views."""
        out: dict[str, dict[str, Any]] = {}
        for sname, ts in self.state.items():
            for pname, v in views(ts).items():
                out.setdefault(pname, {})[sname] = v[i].detach().to("cpu").clone(memory_format=torch.contiguous_format)
        return out

    def load_run_state(self, views: Callable[[list[Tensor]], dict[str, Tensor]], i: int,
                       state: dict[str, dict[str, Tensor]]) -> None:
        """Load run ``i``'s state (as :meth:`run_state` gives it); names absent stay zero."""
        for sname, ts in self.state.items():
            vs = views(ts)
            for pname, st in state.items():
                if sname in st and pname in vs:
                    with torch.no_grad():
                        vs[pname][i].copy_(st[sname])

    def group(self, i: int) -> dict[str, Any]:
        """Run ``i``'s hyper-parameters as torch.optim's param group would hold them (informative)."""
        cfg = self.cfgs[i]
        g = {"lr": lr_at(cfg, max(self.updates - 1, 0)), "weight_decay": cfg.weight_decay}
        for h in self.hyper:
            v = getattr(cfg, h)
            g[h] = list(v) if isinstance(v, tuple) else v
        return g


class RangeOptimizer(StackedOptimizer):
    """An optimizer whose arithmetic is written once for a range of runs (:meth:`apply`), from which
    :meth:`update` (every run, counted) and :meth:`update_runs` (a range, not counted) follow."""

    per_run = True

    @abstractmethod
    def apply(self, i: int, grads: list[Tensor], runs: tuple[int, int] | None) -> None:
        """The ``i``-th scheduled update of runs ``a <= s < b`` (``runs = (a, b)``; ``None``: all),
        as the (``updates`` + 1)-th update; touches nothing outside those runs' slices."""

    def update(self, i: int, grads: list[Tensor]) -> None:
        self.apply(i, grads, None)
        self.updates += 1

    def update_runs(self, i: int, grads: list[Tensor], runs: tuple[int, int]) -> None:
        self.apply(i, grads, runs)


@register
class AdamW(RangeOptimizer):
    """``torch.optim.AdamW(lr, betas, eps=1e-8, weight_decay)``, decoupled weight decay, per run:

    p <- p (1 - lr wd);  m <- m + (1 - b1)(g - m);  v <- b2 v + (1 - b2) g^2;
    p <- p - lr / (1 - b1^k) * m / (sqrt(v) / sqrt(1 - b2^k) + 1e-8)   (k: updates so far, this one included)
    """

    name = "adamw"
    hyper = ("betas",)
    state_names = ("exp_avg", "exp_avg_sq")

    def schedule(self, lr: Tensor) -> None:
        """AdamW's per-update factors, computed once as the single-run optimizer computes them each
        step: ``-(lr / (1 - beta1^k))`` and ``1 - lr * wd``, each cast to float32."""
        b1 = self.cfgs[0].betas[0]
        k = range(self.updates + 1, self.updates + 1 + lr.shape[0])
        bc1 = torch.tensor([1 - b1 ** i for i in k], dtype=torch.float64, device=lr.device)[:, None]
        wd = torch.tensor(self._wd, dtype=torch.float64, device=lr.device)[None]
        self._neg_step = (-(lr / bc1)).float()  # [T, S]
        self._decay = (1 - lr * wd).float()
        # runs that share lr, schedule and weight decay (e.g. a batch of seeds) take each factor as
        # one Python number (a float32 value), so the last two passes fuse into addcdiv_
        same = bool((lr == lr[:, :1]).all()) and len(set(self._wd)) == 1
        self._scalars = (self._decay[:, 0].tolist(), self._neg_step[:, 0].tolist()) if same else None
        # updates whose decay factor is exactly 1 for every run (no weight decay): x * 1 = x, skipped
        self._no_decay = (self._decay == 1).all(1).tolist()
        self._work: list[tuple[Tensor, Tensor]] = [(torch.empty_like(q), torch.empty_like(q)) for q in self.params]

    def keep(self, ix: Tensor, idx: list[int]) -> None:
        super().keep(ix, idx)
        self._neg_step = self._neg_step.index_select(1, ix)
        self._decay = self._decay.index_select(1, ix)

    def set_params(self, params: list[Tensor]) -> None:
        super().set_params(params)
        self._work = [(torch.empty_like(q), torch.empty_like(q)) for q in params]

    @torch.no_grad()
    def apply(self, i: int, grads: list[Tensor], runs: tuple[int, int] | None) -> None:
        b1, b2 = self.cfgs[0].betas
        bc2_sqrt = (1 - b2 ** (self.updates + 1)) ** 0.5  # k = updates so far, this one included
        decay, neg_step = self._decay[i], self._neg_step[i]
        if runs is not None:
            decay, neg_step = decay[runs[0]:runs[1]], neg_step[runs[0]:runs[1]]
        for j, (P, G) in enumerate(zip(self.params, grads, strict=True)):
            EA, ES = self.state["exp_avg"][j], self.state["exp_avg_sq"][j]
            denom, step = self._work[j]
            if runs is not None:
                P, G, EA, ES, denom, step = (self.part(j, t, runs) for t in (P, G, EA, ES, denom, step))
            shape = self.factor_shape(j, None if runs is None else runs[1] - runs[0])
            if not self._no_decay[i]:
                P.mul_(self._scalars[0][i] if self._scalars else decay.view(shape))
            EA.lerp_(G, 1 - b1)
            ES.mul_(b2).addcmul_(G, G, value=1 - b2)
            torch.sqrt(ES, out=denom).div_(bc2_sqrt).add_(1e-8)
            # param.addcdiv_(ea, denom, value=-step) evaluates param + (value * ea) / denom
            if self._scalars:
                P.addcdiv_(EA, denom, value=self._scalars[1][i])
            else:
                P.add_(torch.mul(EA, neg_step.view(shape), out=step).div_(denom))

    def run_state(self, views, i):
        out = super().run_state(views, i)
        if self.updates == 0:
            return {}  # torch.optim keeps no state before the first update
        for st in out.values():
            st["step"] = torch.tensor(float(self.updates))
        return out


@register
class SGD(RangeOptimizer):
    """``torch.optim.SGD(lr, momentum, weight_decay)`` (no dampening, no Nesterov), per run:

    g <- g + wd p;  b <- g at the first update, else momentum * b + g (momentum > 0 only);
    p <- p - lr * (b if momentum > 0 else g)
    """

    name = "sgd"
    hyper = ("momentum",)

    def __init__(self, cfgs, params, run_dims, start=0):
        self.momentum = float(cfgs[0].momentum)
        self.state_names = ("momentum_buffer",) if self.momentum else ()
        super().__init__(cfgs, params, run_dims, start)

    def schedule(self, lr: Tensor) -> None:
        """SGD takes lr and weight decay as Python numbers (``alpha=``), one run at a time where
        they differ across the batch."""
        self._lr_rows = lr.tolist()  # [T][S]

    def keep(self, ix: Tensor, idx: list[int]) -> None:
        super().keep(ix, idx)
        self._lr_rows = [[row[k] for k in idx] for row in self._lr_rows]

    def _one(self, P: Tensor, G: Tensor, buf: Tensor | None, lr: float, wd: float) -> None:
        g = G if wd == 0 else G.add(P, alpha=wd)
        if buf is not None:
            if self.updates == 0:
                buf.copy_(g)  # torch: buf = grad.clone()
            else:
                buf.mul_(self.momentum).add_(g, alpha=1)
            g = buf
        P.add_(g, alpha=-lr)

    @torch.no_grad()
    def apply(self, i: int, grads: list[Tensor], runs: tuple[int, int] | None) -> None:
        a, b = (0, self.S) if runs is None else runs
        lrs, wds = self._lr_rows[i][a:b], self._wd[a:b]
        bufs = self.state.get("momentum_buffer")
        for j, (P, G) in enumerate(zip(self.params, grads, strict=True)):
            P, G = self.part(j, P, runs), self.part(j, G, runs)
            buf = self.part(j, bufs[j], runs) if bufs else None
            if len(set(lrs)) == 1 and len(set(wds)) == 1:
                self._one(P, G, buf, lrs[0], wds[0])
            else:
                d = self.run_dims[j]
                for s in range(b - a):
                    self._one(P.select(d, s), G.select(d, s), None if buf is None else buf.select(d, s),
                              lrs[s], wds[s])

    def run_state(self, views, i):
        return {} if self.updates == 0 else super().run_state(views, i)
