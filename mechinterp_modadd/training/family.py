"""Training families: what the one engine needs to know about a kind of network.

The engine (:mod:`.stack`, :mod:`.loop`) trains S runs of one family at once. A family is a
:class:`TrainFamily` registered under a name; ``TrainConfig.family`` picks it. It says

- how one run's parameters start from its seed (:meth:`TrainFamily.init_params`), bit for bit as
  the family's model initialises itself alone, and how S runs' parameters are stored
  (:meth:`TrainFamily.layout`; default: one [S, ...] tensor per parameter);
- the network as a module (:meth:`TrainFamily.module`) and what it reads
  (:meth:`TrainFamily.inputs`, default the [n, 2] token pairs), from which the **generic step**
  (:class:`GenericStep`) gets every run's gradients with ``torch.func``: ``vmap`` over the stacked
  parameters of ``grad`` of the objective of :mod:`.objective`, evaluated through
  ``functional_call`` of the module. A family may add a hand-written batched step
  (:meth:`TrainFamily.make_step`) that is faster; the MLP's is (:mod:`.family_mlp`);
- how one run's trained parameters become the model saved in its checkpoints
  (:meth:`TrainFamily.export`, :meth:`TrainFamily.checkpoint_bytes`) and how a resume checks the
  checkpoints already in a run folder (:meth:`TrainFamily.check_checkpoints`);
- the cost of a step (:meth:`TrainFamily.step_flop`, :meth:`TrainFamily.run_bytes`) for thread
  counts, chunking and ``--max-memory``;
- optionally ``model_config(cfg)``: the family's own model config built from the ``TrainConfig``
  (what ``TrainConfig.model_config()`` returns; without it, a
  :class:`~mechinterp_modadd.model.ModelConfig` of the config's fields).

Adding a family, one file ``training/family_NAME.py``::

    from .family import TrainFamily, register_train_family

    class ConcatMLPFamily(TrainFamily):
        symmetric = False                  # logits(x, y) != logits(y, x): all p^2 ordered pairs
        def batch_key(self, cfg): ...      # what runs stacked together must share (widths, activation)
        def init_params(self, cfg): ...    # {name: tensor} of one run, as module(cfg) names them
        def module(self, cfg): ...         # nn.Module; module(inputs) -> [n, p] logits
        def checkpoint_bytes(self, model, step, metrics, run_id): ...
        def check_checkpoints(self, files, cfg, run_id): ...
        def step_flop(self, cfg): ...
        def run_bytes(self, cfg, steps_buffered): ...

    register_train_family("concat_mlp", ConcatMLPFamily())

and one line in ``training/__init__.py``, ``from . import family_NAME`` (the package imports its
families, so they are registered whenever training is imported, and the import graph shows it).
Then ``TrainConfig(family="concat_mlp")`` trains with ``train`` and ``train_many``, alone or
batched, with every optimizer of :mod:`.optim`.

Bits: the generic step is exact autograd arithmetic, but ``vmap`` turns each product into a
batched product whose BLAS may sum in another order than the single product, so a run trained
batched agrees with the same run trained alone to rounding (tested within 1e-5 relative on the
MLP and on a test family), not necessarily bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ["TrainFamily", "ParamLayout", "GenericStep", "BatchedStep", "register_train_family",
           "get_train_family", "TRAIN_FAMILIES"]

#: A batched step: fills the stack's gradient storage for the current parameters and writes each
#: run's log-probability at the label ([S, n, 1] float64) and arg-max ([S, n] long) into the two
#: given tensors (the step's metric inputs).
BatchedStep = Callable[[Tensor, Tensor], None]

#: name -> registered family
TRAIN_FAMILIES: dict[str, TrainFamily] = {}


def register_train_family(name: str, family: TrainFamily) -> TrainFamily:
    """Register ``family`` (an instance) under ``name`` (its ``name`` attribute becomes ``name``)."""
    if not isinstance(family, TrainFamily):
        raise TypeError(f"register_train_family({name!r}, ...) needs a TrainFamily instance")
    family.name = name
    TRAIN_FAMILIES[name] = family
    return family


def get_train_family(name: str) -> TrainFamily:
    """The family registered as ``name`` (raises :class:`ConfigError` naming the known ones)."""
    if name not in TRAIN_FAMILIES:
        raise ConfigError(f"unknown training family {name!r}; known: {', '.join(sorted(TRAIN_FAMILIES))}")
    return TRAIN_FAMILIES[name]


class ParamLayout:
    """How S runs' parameters are stored: one tensor [S, *shape] per parameter (run axis 0).

    A family may store several parameters in one tensor so that the optimizer's element-wise
    passes run once over them (subclass it: :attr:`run_dims`, :meth:`pack`, :meth:`views`).

    Args:
        names: the parameter names, in the module's ``named_parameters`` order (the order of the
            optimizer state in ``resume.safetensors``).
    """

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)

    @property
    def run_dims(self) -> list[int]:
        """The run axis of each storage tensor."""
        return [0] * len(self.names)

    def pack(self, runs: Sequence[dict[str, Tensor]]) -> list[Tensor]:
        """Storage tensors holding the runs' parameters (new memory)."""
        return [torch.stack([r[k].detach() for r in runs]) for k in self.names]

    def views(self, storage: Sequence[Tensor]) -> dict[str, Tensor]:
        """Parameter name -> [S, *shape] view into storage-shaped tensors (weights, gradients or
        optimizer state)."""
        return dict(zip(self.names, storage, strict=True))

    def n_norms(self) -> int:
        """How many rows :meth:`norms` writes."""
        return len(self.names)

    def norms(self, storage: Sequence[Tensor], out: Tensor) -> None:
        """Per-run L2 norms of the parameters into ``out`` [n_norms, S] float64; the parameter
        norm is the root of the sum of their squares (float32 weights accumulated in float64)."""
        for k, (_, v) in enumerate(self.views(storage).items()):
            torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), dtype=torch.float64, out=out[k])


class TrainFamily(ABC):
    """A kind of network the engine trains (see the module docstring).

    Attributes:
        name: the value of ``TrainConfig.family``.
        symmetric: ``True`` when the network's logits are symmetric in (x, y), so that the
            objective is evaluated on the p(p + 1)/2 unordered pairs (:mod:`.objective`).
        max_threads: the most CPU intra-op threads the automatic choice may give this family's
            runs (``None``: no cap). A family whose bits change with the thread count sets 1, so
            that a seed gives the same run whatever the machine's load and core count (an explicit
            ``threads=`` / ``--threads`` still wins).
        parallel_runs: ``True`` when the family's step computes the runs of a CPU stack side by
            side, one intra-op thread each (``Stack.workers`` of them at once): the engine then gives
            a stack of several runs one intra-op thread and its thread budget as workers, so a
            run's bits do not depend on the thread count.
    """

    name: str
    symmetric: bool = False
    max_threads: int | None = None
    parallel_runs: bool = False

    def batch_key(self, cfg: Any) -> tuple:
        """What runs trained in one stack must share (besides p and the optimizer), e.g. widths."""
        return ()

    @abstractmethod
    def init_params(self, cfg: Any) -> dict[str, Tensor]:
        """One run's initial parameters (CPU), named as :meth:`module` names them, in its
        ``named_parameters`` order, drawn from ``cfg.seed`` as the model does alone."""

    def layout(self, cfg: Any) -> ParamLayout:
        """How a stack of runs of ``cfg``'s shape stores its parameters (default: one tensor each)."""
        return ParamLayout([k for k, _ in self.module(cfg).named_parameters()])

    @abstractmethod
    def module(self, cfg: Any) -> nn.Module:
        """The network of one run with any values (the generic step swaps the parameters in with
        ``functional_call``; buffers, if any, stay the template's constants); ``module(inputs)``
        gives [n, p] logits."""

    def inputs(self, pairs: Tensor, cfg: Any) -> Tensor:
        """What the module reads for the objective's rows ``pairs`` [n, 2] (default: the pairs)."""
        return pairs

    def make_step(self, stack: Any) -> BatchedStep | None:
        """A hand-written batched step for ``stack`` (:class:`~.stack.Stack`), or ``None`` for
        the generic one. Called again whenever the batch shrinks."""
        return None

    def export(self, cfg: Any, params: dict[str, Tensor]) -> nn.Module:
        """One run's model (CPU) holding ``params``, as its checkpoints and ``train()`` return it."""
        model = self.module(cfg)
        model.load_state_dict(params, strict=True)
        return model

    def param_shapes(self, cfg: Any) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape of one run (what a resume state must hold)."""
        return {k: tuple(v.shape) for k, v in self.module(cfg).named_parameters()}

    @abstractmethod
    def checkpoint_bytes(self, model: nn.Module, step: int, metrics: dict[str, float], run_id: str | None) -> bytes:
        """The bytes of ``checkpoints/step_NNNNNN.safetensors`` for ``model`` (a file
        :func:`mechinterp_modadd.load_checkpoint` or the family's own loader reads)."""

    @abstractmethod
    def check_checkpoints(self, files: list[Path], cfg: Any, run_id: str | None) -> None:
        """Raise :class:`~mechinterp_modadd.errors.CheckpointError` when the checkpoint files of a
        run folder do not belong to the run ``cfg`` / ``run_id`` (read before a resume)."""

    def cache_runs(self, cfg: Any) -> int | None:
        """On a CPU, at most this many runs per chunk (their activations in cache); ``None``: no cap."""
        return None

    @abstractmethod
    def step_flop(self, cfg: Any) -> float:
        """Floating-point operations of one run's step (for thread counts)."""

    @abstractmethod
    def run_bytes(self, cfg: Any, steps_buffered: int) -> int:
        """Bytes one run of a stack holds (upper estimate; chunking and ``max_memory``)."""


class GenericStep:
    """Every run's gradients by ``torch.func``: ``vmap`` over the run axis of ``grad`` of one run's
    training loss, the module evaluated by ``functional_call`` with that run's parameters.

    The loss is :mod:`.objective`'s: float64 log-softmax of the logits, the train-weighted mean of
    the negative log-probability at the label.
    """

    def __init__(self, family: TrainFamily, stack: Any) -> None:
        from torch.func import functional_call, grad, vmap

        cfg0 = stack.cfgs[0]
        self.stack = stack
        module = family.module(cfg0).to(stack.device)
        inputs = family.inputs(stack.pairs, cfg0)
        label_index = stack.labels[:, None]

        def loss(params: dict[str, Tensor], w_train: Tensor, n_train: Tensor):
            logits = functional_call(module, params, (inputs,))
            logp = torch.log_softmax(logits.double(), dim=-1)
            at_label = logp.gather(1, label_index)  # [n, 1]
            return -(at_label[:, 0] * w_train).sum() / n_train, (at_label, logits.argmax(dim=-1))

        self._one = grad(loss, has_aux=True)
        self._fn = vmap(self._one)

    def __call__(self, label_logp_out: Tensor, argmax_out: Tensor) -> None:
        st = self.stack
        params = {k: v.detach() for k, v in st.layout.views(st.P).items()}
        if st.S == 1:  # one run: no batching to do, and vmap's overhead saved
            grads, (at_label, argmax) = self._one({k: v[0] for k, v in params.items()}, st.w_train[0], st.n_train[0])
            grads = {k: g[None] for k, g in grads.items()}
            at_label, argmax = at_label[None], argmax[None]
        else:
            grads, (at_label, argmax) = self._fn(params, st.w_train, st.n_train)
        gviews = st.layout.views(st.G)
        with torch.no_grad():
            for k, g in grads.items():
                gviews[k].copy_(g)
            label_logp_out.copy_(at_label)
            argmax_out.copy_(argmax)
