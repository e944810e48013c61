"""The stacked state of S runs on a device, and one training step of all of them.

A :class:`Stack` holds the runs' parameters in the storage of their family's
:class:`~.family.ParamLayout`, their gradients in tensors of the same shapes, a stacked optimizer
(:mod:`.optim`), each run's pair weights (:mod:`.objective`) and the per-step slots of the metric
inputs. :meth:`Stack.step_grads` runs the family's batched step (hand-written, or the generic
``torch.func`` one); :meth:`Stack.update` the optimizer. A family with ``parallel_runs`` whose step
can compute one run (``step.run(i, ...)``) is stepped run by run on a CPU instead, its runs side by
side on ``Stack.workers`` threads, each run's update, gradients and norms in one thread
(:meth:`Stack._step_by_run`).

Host synchronisation: metrics stay on the device. Each step's inputs (log-probability at the
label, arg-max, weight norms) go to a slot; :meth:`Stack.take_metrics` reduces up to
:data:`METRIC_BLOCK` steps' slots to metric rows in one pass (three small kernels per step instead
of about fifteen, with the same bits, since every row is reduced by the same kernels either way).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from .family import GenericStep, get_train_family
from .objective import pair_data
from .optim import OPTIMIZERS, lr_at

__all__ = ["Stack", "METRIC_BLOCK", "METRIC_NAMES"]

#: steps whose metric inputs wait in slots before they are reduced to rows together
METRIC_BLOCK = 32
#: the metric rows :meth:`Stack.take_metrics` returns, in order (then the lr column)
METRIC_NAMES = ("train_loss", "test_loss", "train_accuracy", "test_accuracy", "param_norm")


class Stack:
    """S runs of one family, one optimizer and one start step, on ``device``.

    Args:
        cfgs: the runs' TrainConfigs (same family, p, :meth:`~.family.TrainFamily.batch_key`,
            optimizer and optimizer hyper-parameters).
        params: each run's parameters (name -> tensor, CPU), fresh or resumed.
        opt_states: each run's optimizer state as :meth:`~.optim.StackedOptimizer.run_state`
            gives it (``None`` or empty: fresh).
        start: the step the runs continue from (updates already applied).
        device: where the stack lives.
    """

    def __init__(self, cfgs: Sequence[Any], params: Sequence[dict[str, Tensor]],
                 opt_states: Sequence[dict[str, dict[str, Tensor]] | None], start: int,
                 device: torch.device) -> None:
        cfg0 = cfgs[0]
        self.cfgs = list(cfgs)
        self.S = len(self.cfgs)
        self.device = device
        self.p = cfg0.p
        self.family = get_train_family(cfg0.family)
        self.layout = self.family.layout(cfg0)
        data = pair_data(self.cfgs, self.family.symmetric)
        self.pairs = data.pairs.to(device)
        self.labels = data.labels.to(device)
        self.n = len(data.labels)
        # the same weights and divisors as the single-run objective, so each run's loss is the same sum
        self.w_train, self.w_test = data.w_train.to(device), data.w_test.to(device)
        self.n_train = data.n_train.clamp(min=1.0).to(device)
        self.n_test = data.n_test.clamp(min=1.0).to(device)
        self.has_test = (data.n_test > 0).to(device)
        self.P = [t.to(device) for t in self.layout.pack(params)]
        self.G = [torch.empty_like(t) for t in self.P]
        self.opt = OPTIMIZERS[cfg0.optimizer](self.cfgs, self.P, self.layout.run_dims, start)
        for i, st in enumerate(opt_states):
            if st:
                self.opt.load_run_state(self.layout.views, i, st)
        self.pending = 0  # steps whose metric inputs wait in the slots (take_metrics)
        self._slots: dict[str, Tensor] | None = None
        self._step = None
        self._generic = False
        self._start = start
        # a family with ``parallel_runs`` on a CPU: every run computed alone (its gradients, norms
        # and update), ``workers`` runs at once (the engine sets it); the update of step t is applied
        # at the start of step t + 1's computation, in the thread that computes that run
        self.by_run = self.family.parallel_runs and device.type == "cpu" and self.opt.per_run
        self.workers = 1
        self._deferred: int | None = None
        self._pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------------------ the step
    def _metric_slots(self) -> dict[str, Tensor]:
        if self._slots is None:
            S, n = self.S, self.n
            f64 = dict(dtype=torch.float64, device=self.device)
            self._slots = {
                "nll": torch.empty(METRIC_BLOCK, S, n, 1, **f64),
                "argmax": torch.empty(METRIC_BLOCK, S, n, dtype=torch.long, device=self.device),
                "norm": torch.empty(METRIC_BLOCK, self.layout.n_norms(), S, **f64),
                # per-pair weights and counts, [S, 1, 2 (train, test), ...]
                "weights": torch.stack([self.w_train, self.w_test], 1)[:, None],
                "counts": torch.stack([self.n_train, self.n_test], 1)[:, None],
                "has_split": torch.stack([torch.ones_like(self.has_test), self.has_test], 1)[:, None]}
        return self._slots

    @property
    def step(self):
        """The family's batched step for the current batch (rebuilt when the batch shrinks)."""
        if self._step is None:
            self._step = (None if self._generic else self.family.make_step(self)) or GenericStep(self.family, self)
        return self._step

    def use_generic_step(self) -> None:
        """Take the generic ``torch.func`` step even where the family has a hand-written one (to
        measure one against the other: benchmarks/bench_train.py)."""
        self._generic = True
        self._step = None

    def step_grads(self) -> None:
        """Gradients of every run's training loss into ``G``; this step's metric inputs into the
        next slot."""
        slots, k = self._metric_slots(), self.pending
        if self._run_wise():
            self._step_by_run(slots, k)
        else:
            self.step(slots["nll"][k], slots["argmax"][k])
            with torch.no_grad():
                self.layout.norms(self.P, slots["norm"][k])
        self.pending = k + 1

    def _run_wise(self) -> bool:
        return self.by_run and hasattr(self.step, "run")

    def _step_by_run(self, slots: dict[str, Tensor], k: int) -> None:
        """:meth:`step_grads` one run at a time (``by_run``): run i's deferred update, gradients
        (the step's ``run(i, ...)``) and norms, ``workers`` runs at once on one intra-op thread each.
        A run's operations are those of the same run trained alone, so its bits do not depend on the
        stack or the number of workers."""
        step, deferred, dims = self.step, self._deferred, self.layout.run_dims

        def one(i: int) -> None:
            if deferred is not None:
                self.opt.update_runs(deferred, self.G, (i, i + 1))
            step.run(i, slots["nll"][k], slots["argmax"][k])
            with torch.no_grad():
                self.layout.norms([t.narrow(d, i, 1) for t, d in zip(self.P, dims, strict=True)],
                                  slots["norm"][k][:, i:i + 1])

        workers = max(1, min(self.workers, self.S))
        if workers == 1:
            for i in range(self.S):
                one(i)
        else:
            if self._pool is None:  # kept while the batch shrinks: fewer runs submit fewer tasks
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="modadd-run")
                weakref.finalize(self, self._pool.shutdown, wait=False)
            for f in [self._pool.submit(one, i) for i in range(self.S)]:
                f.result()
        if deferred is not None:
            self._deferred = None
            self.opt.advance()

    def _settle_update(self) -> None:
        """Apply a deferred update now (before the parameters or the optimizer state are read)."""
        if self._deferred is not None:
            for i in range(self.S):
                self.opt.update_runs(self._deferred, self.G, (i, i + 1))
            self._deferred = None
            self.opt.advance()

    @torch.no_grad()
    def take_metrics(self) -> Tensor:
        """The [k, S, 5] metric rows (:data:`METRIC_NAMES`) of the k pending steps; none pending
        after. The objective's weighted means, all steps, train and test in one reduction."""
        k, S, slots = self.pending, self.S, self._metric_slots()
        self.pending = 0
        nll = -slots["nll"][:k, ..., 0]  # [k, S, n]
        correct = (slots["argmax"][:k] == self.labels).double()
        per_pair = torch.stack([nll, correct], 2)  # [k, S, 2 (loss, accuracy), n]
        sums = (per_pair[:, :, :, None, :] * slots["weights"]).sum(-1)  # [k, S, 2, 2 (train, test)]
        means = torch.where(slots["has_split"], sums / slots["counts"], float("nan"))
        norms = slots["norm"][:k]  # [k, n_norms, S]
        return torch.cat([means.reshape(k, S, 4), (norms * norms).sum(1).sqrt()[..., None]], 2)

    # ------------------------------------------------------------------------- the optimizer
    def lr_table(self, start: int, stop: int) -> Tensor:
        """[stop - start, S] learning rates of updates start..stop-1, computed on the host as
        :func:`~.optim.lr_at` does and uploaded once."""
        tab = [[lr_at(c, t) for c in self.cfgs] for t in range(start, stop)]
        return torch.tensor(tab, dtype=torch.float64).reshape(stop - start, self.S).to(self.device)

    def schedule(self, start: int, lr: Tensor) -> None:
        """The optimizer's factors of the updates start, start + 1, ... from their [T, S] lrs."""
        self._start = start
        self.opt.schedule(lr)

    def update(self, t: int) -> None:
        """The optimizer step after step t, with this step's gradients (``by_run``: applied run by
        run when the next step computes that run)."""
        if self._run_wise():
            self._settle_update()
            self._deferred = t - self._start
        else:
            self.opt.update(t - self._start, self.G)

    # ---------------------------------------------------------------------------- the batch
    def keep(self, idx: list[int]) -> None:
        """Keep only the runs at positions ``idx`` (the others stopped)."""
        if self.pending:
            raise RuntimeError("internal: the batch shrinks with metrics still pending")
        self._settle_update()
        ix = torch.tensor(idx, dtype=torch.long, device=self.device)
        dims = self.layout.run_dims
        self.P = [t.index_select(d, ix) for t, d in zip(self.P, dims, strict=True)]
        self.G = [t.index_select(d, ix) for t, d in zip(self.G, dims, strict=True)]
        self.cfgs = [self.cfgs[i] for i in idx]
        self.S = len(idx)
        self.w_train, self.w_test = self.w_train.index_select(0, ix), self.w_test.index_select(0, ix)
        self.n_train, self.n_test = self.n_train.index_select(0, ix), self.n_test.index_select(0, ix)
        self.has_test = self.has_test.index_select(0, ix)
        self.opt.keep(ix, idx)
        self.opt.set_params(self.P)
        self._slots = None
        self._step = None

    def export(self, i: int) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]], dict[str, Any]]:
        """Run ``i``'s parameters (CPU, contiguous), optimizer state and param group."""
        self._settle_update()
        params = {k: v[i].detach().to("cpu").clone(memory_format=torch.contiguous_format)
                  for k, v in self.layout.views(self.P).items()}
        return params, self.opt.run_state(self.layout.views, i), self.opt.group(i)
