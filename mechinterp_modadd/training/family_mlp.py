"""The ``mlp`` training family: the paper's ``logits = W_out sigma(W_in (e_x + e_y))``
(:class:`~mechinterp_modadd.model.ModAddMLP`), with its hand-written batched step.

One-hot runs train through :class:`MLPStep`; learned-embedding runs through the generic step of
:mod:`.family` on the dense rows e_x + e_y (``input_logits``, the single-run trainer's pass; alone,
bit-identical to it; measured 1.1-1.4x its time per step at p = 23 on a busy 2-core machine, the
torch.func wrappers' overhead). The hand-written step, for runs s = 1..S (X: the [n, p] rows
e_x + e_y of the n = p(p + 1)/2 unordered pairs, shared by all runs)::

    pre    = X @ W_in[s]^T            [S, n, M]
    post   = sigma(pre)
    logits = post @ W_out[s]^T        [S, n, p]
    loss_s = (sum_i w_train[s, i] * nll[s, i]) / n_train[s]   (float64 log-softmax)

with the backward pass written out. It repeats the arithmetic autograd performs for one run, so a
run's bits do not depend on the batch it trains in: the forward product with the one-hot X as the
exact gather-add it amounts to, the other products in an orientation that gives the same bits
(:func:`transposed_products`), the float64 loss head through the kernels autograd calls. On the
development machine (MKL, 1 or 2 threads, p = 11 and 23) a run is bit-identical to the single-run
trainer through 1,000 steps (weights, losses, accuracies); the parameter norm, a metric only,
agrees to 1e-15 relative (W_in is stored transposed, so ``vector_norm`` sums its squares in
another order). Where a BLAS sums a batched product in another order than a single one the runs
agree to rounding only.

Storage (:class:`MergedLayout`): one [2, S, p, M] buffer holds both weights: [0] is W_in stored
transposed (the code sees the [S, M, p] view), [1] is W_out. Gradients and optimizer state share
that layout, so the products run in their fast orientation and the optimizer's element-wise passes
run once over both weights.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..checkpoint import check_run_checkpoints
from ..checkpoint import checkpoint_bytes as _mlp_checkpoint_bytes
from ..forward import input_logits, pair_inputs
from ..model import ModAddMLP, get_activation
from ..runtime import step_flop as mlp_step_flop
from .estimate import cache_runs, run_bytes
from .family import ParamLayout, TrainFamily, register_train_family

__all__ = ["MLPFamily", "MLPStep", "MergedLayout", "transposed_products"]


class MergedLayout(ParamLayout):
    """One-hot MLP storage: a single [2, S, p, M] tensor (W_in^T, W_out); run axis 1."""

    def __init__(self) -> None:
        super().__init__(["mlp.W_in", "mlp.W_out"])

    @property
    def run_dims(self) -> list[int]:
        return [1]

    def pack(self, runs: Sequence[dict[str, Tensor]]) -> list[Tensor]:
        return [torch.stack([torch.stack([r["mlp.W_in"].detach().t() for r in runs]),
                             torch.stack([r["mlp.W_out"].detach() for r in runs])])]

    def views(self, storage: Sequence[Tensor]) -> dict[str, Tensor]:
        (B,) = storage
        return {"mlp.W_in": B[0].transpose(1, 2), "mlp.W_out": B[1]}

    def n_norms(self) -> int:
        return 2

    def norms(self, storage: Sequence[Tensor], out: Tensor) -> None:
        torch.linalg.vector_norm(storage[0], dim=(2, 3), dtype=torch.float64, out=out)


class _DenseInputMLP(ModAddMLP):
    """The training view of :class:`ModAddMLP` (same parameters and names): it reads the dense
    rows e_x + e_y and runs :func:`~mechinterp_modadd.forward.input_logits`, one product per layer
    (a product with those rows beats a gather on a CPU, whose backward is a scatter-add)."""

    def forward(self, inputs: Tensor) -> Tensor:  # type: ignore[override]
        return input_logits(self, inputs)


class MLPFamily(TrainFamily):
    """:class:`~mechinterp_modadd.model.ModAddMLP` runs; see the module docstring."""

    symmetric = True

    def batch_key(self, cfg: Any) -> tuple:
        m = cfg.model_config()
        return (m.d_mlp, m.activation, m.embedding, m.d_model)

    def init_params(self, cfg: Any) -> dict[str, Tensor]:
        model = ModAddMLP(cfg.model_config(), seed=cfg.seed)
        return {k: v.detach() for k, v in model.named_parameters()}

    def layout(self, cfg: Any) -> ParamLayout:
        if cfg.embedding == "one_hot":
            return MergedLayout()
        return super().layout(cfg)

    def module(self, cfg: Any) -> nn.Module:
        return _DenseInputMLP(cfg.model_config(), seed=None)

    def inputs(self, pairs: Tensor, cfg: Any) -> Tensor:
        return pair_inputs(pairs.cpu(), cfg.p).to(pairs.device)

    def export(self, cfg: Any, params: dict[str, Tensor]) -> nn.Module:
        model = ModAddMLP(cfg.model_config(), seed=None)
        model.load_state_dict(params, strict=True)
        return model

    def make_step(self, stack: Any) -> MLPStep | None:
        return MLPStep(stack) if isinstance(stack.layout, MergedLayout) else None

    def checkpoint_bytes(self, model: nn.Module, step: int, metrics: dict[str, float], run_id: str | None) -> bytes:
        return _mlp_checkpoint_bytes(model, step=step, metrics=metrics, run_id=run_id)

    def check_checkpoints(self, files: list[Path], cfg: Any, run_id: str | None) -> None:
        m = cfg.model_config()
        check_run_checkpoints(files, p=m.p, d_mlp=m.d_mlp, activation=m.activation, run_id=run_id,
                              where="config.json")

    def cache_runs(self, cfg: Any) -> int | None:
        return cache_runs(cfg.p, cfg.model_config().d_mlp) if cfg.embedding == "one_hot" else None

    def step_flop(self, cfg: Any) -> float:
        return mlp_step_flop(cfg.p, cfg.model_config().d_mlp)

    def run_bytes(self, cfg: Any, steps_buffered: int) -> int:
        return run_bytes(cfg.p, cfg.model_config().d_mlp, steps_buffered)


@functools.lru_cache(maxsize=64)
def transposed_products(S: int, n: int, M: int, p: int, device: str) -> tuple[bool, bool]:
    """Whether to run the two narrow-output products transposed (logits^T = W_out @ post^T and
    dW_in^T = X^T @ dpre): on a CPU only, and only where a probe on random data of this shape gives
    bit for bit what the single-run products give (``post @ W_out^T``, ``dpre^T @ X``).
    A BLAS sums in an order fixed by shape, not data, so one probe decides; MKL agrees at the
    sizes that matter (p = 23, d_mlp = 512 and up) but not at toy sizes (p = 11, d_mlp = 32)."""
    if device != "cpu":
        return False, False
    g = torch.Generator().manual_seed(0)
    X = (torch.rand(n, p, generator=g) < 2 / p).float()
    W_out = torch.randn(S, p, M, generator=g)
    post = torch.rand(S, n, M, generator=g)
    dpre = torch.randn(S, n, M, generator=g)
    fwd = torch.equal(torch.bmm(W_out, post.transpose(1, 2)).transpose(1, 2),
                      torch.stack([post[s] @ W_out[s].t() for s in range(S)]))
    bwd = torch.equal(torch.bmm(X.t().expand(S, p, n), dpre).transpose(1, 2),
                      torch.stack([dpre[s].t() @ X for s in range(S)]))
    return fwd, bwd


#: per-run size (rows x d_mlp x p) from which a CPU step runs its products through oneDNN
ONEDNN_MIN_MACS = 2 ** 24


@functools.lru_cache(maxsize=1)
def onednn_linear() -> Any:
    """torch's oneDNN matrix product on dense CPU tensors, ``f(x, w) = x @ w^T`` (the op torch's
    compiler uses for linear layers), or ``None`` where this torch build lacks it or it disagrees
    with the plain product on a small exact case. On the AMD EPYC development machine it ran the
    step's products 1.4-2.2x faster than torch's default BLAS (MKL), whose AVX-512 paths are not
    taken there (benchmarks/bench_train.py)."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        a, w = torch.arange(12.0).view(3, 4), torch.arange(8.0).view(2, 4)
        if not torch.equal(op(a, w, None, "none", [], ""), a @ w.t()):
            return None
    except Exception:
        return None
    return lambda x, w: op(x, w, None, "none", [], "")


class MLPStep:
    """The hand-written batched step of one-hot MLP runs (see the module docstring).

    * pre-activations: row (x, y) of X @ W_in^T is W_in[:, x] + W_in[:, y] (2 W_in[:, x] when
      x = y). A product with the one-hot X sums exactly these terms and zeros, so the gather-add
      ``embedding_bag(mode="sum")`` gives the same bits at a fraction of the cost.
    * the backward pass is written out with the products autograd performs for one run
      (dW_out = dlogits^T @ post, d post = dlogits @ W_out, dW_in = dpre^T @ X), each in whichever
      orientation the CPU BLAS runs fastest: products with a narrow p-column output are computed
      transposed where :func:`transposed_products` finds it gives the same bits.
    * from :data:`ONEDNN_MIN_MACS` per run on a CPU (e.g. p = 97, d_mlp = 1024; not the shipped
      p = 23 runs), the three dense products run through oneDNN (:func:`onednn_linear`) and
      dW_in = dpre^T @ X as the two row additions it amounts to (``index_add_``), one run at a
      time: bits then differ from the single-run trainer's BLAS products (to float32 rounding) but
      not between a run alone and in a batch, nor with the thread count (tested).
    * the loss head calls the kernels autograd calls for the objective (float64 log-softmax, its
      backward with the constant gradient of the weighted mean at the labels, the cast of the
      gradient to float32), without building a graph; ReLU's derivative is autograd's
      ``threshold_backward``, other activations go through autograd.

    Buffers are allocated once per batch (no large allocation, and no page faults, per step).
    """

    def __init__(self, stack: Any) -> None:
        self.stack = st = stack
        (B,) = st.P
        S, n, M, p = st.S, st.n, B.shape[-1], st.p
        self.act = get_activation(st.cfgs[0].activation)
        self.relu = self.act is torch.relu  # the registry entry of "relu"
        self.fast_fwd, self.fast_bwd = transposed_products(S, n, M, p, st.device.type)
        self.onednn = onednn_linear() if st.device.type == "cpu" and n * M * p >= ONEDNN_MIN_MACS else None
        if self.onednn is not None:
            self.fast_fwd = False
        new = B.new_empty
        X = pair_inputs(st.pairs.cpu(), p).to(st.device)
        # rows of the [S * p, M] table of every run's W_in^T that sum to each run's pre-activations:
        # bag i (run s, pair (x, y)) is rows s p + x and s p + y of the table
        self.rows = (st.pairs[None] + p * torch.arange(S, device=st.device)[:, None, None]).reshape(-1)
        self.bags = torch.arange(0, 2 * S * n, 2, device=st.device)
        # d(sum_s train_loss_s)/d log p at the labels, as autograd forms it: -(1/n_train) w_train,
        # scattered (scatter_add into zeros) to the label column; the same every step
        inv = torch.ones_like(st.n_train) / st.n_train
        dlogp = torch.zeros(S, n, p, dtype=torch.float64, device=st.device)
        dlogp.scatter_add_(2, st.labels.expand(S, n)[..., None], (-(inv[:, None] * st.w_train))[..., None])
        self.dlogp = dlogp
        self.dhidden, self.dlogits = new(S, n, M), new(S, n, p)
        # the loss head's float64 tensors: reused, since a fresh one can cost a page fault per 4 KiB
        self.z, self.logp, self.dz = dlogp.new_empty(S, n, p), dlogp.new_empty(S, n, p), dlogp.new_empty(S, n, p)
        self.logits = new(S, p, n) if self.fast_fwd else new(S, n, p)
        self.g_in = None if self.fast_bwd else new(S, M, p)
        self.X, self.X_t = X.expand(S, n, p), X.t().expand(S, p, n)
        self.label_index = st.labels.expand(S, n)[..., None]

    @torch.no_grad()
    def __call__(self, label_logp_out: Tensor, argmax_out: Tensor) -> None:
        st = self.stack
        (B,), (G,) = st.P, st.G
        S, n, M = st.S, st.n, B.shape[-1]
        W_out = B[1]
        table = B[0].view(S * st.p, M)
        # torch.nn.functional.embedding_bag(mode="sum") without its argument checks
        pre = torch.embedding_bag(table, self.rows, self.bags, False, 0, False, None, False)[0].view(S, n, M)
        if self.relu:
            post = pre.relu_()  # in place: relu's backward needs only post > 0
        else:
            pre = pre.detach().requires_grad_(True)
            with torch.enable_grad():
                post = self.act(pre)
        hidden = post.detach()
        if self.onednn is not None:
            self._onednn_rest(post, pre, hidden, W_out, G, label_logp_out, argmax_out)
            return
        if self.fast_fwd:
            logits = torch.bmm(W_out, hidden.transpose(1, 2), out=self.logits).transpose(1, 2)
        else:
            logits = torch.bmm(hidden, W_out.transpose(1, 2), out=self.logits)  # [S, n, p]
        # float64 copy in [S, n, p] layout (float32 -> float64 is exact), then what autograd runs
        z, logp, dlogits = self._loss_head(logits)
        torch.bmm(dlogits.transpose(1, 2), hidden, out=G[1])  # dW_out [S, p, M]
        dpost = torch.bmm(dlogits, W_out, out=self.dhidden)  # [S, n, M]
        if self.relu:  # autograd's threshold_backward: the gradient where the output is > 0, else 0
            dpre = torch.ops.aten.threshold_backward.grad_input(dpost, hidden, 0, grad_input=dpost)
        else:
            with torch.enable_grad():
                (dpre,) = torch.autograd.grad(post, pre, dpost)
        if self.fast_bwd:
            torch.bmm(self.X_t, dpre, out=G[0])  # dW_in^T [S, p, M]
        else:
            G[0].transpose(1, 2).copy_(torch.bmm(dpre.transpose(1, 2), self.X, out=self.g_in))
        self._metric_inputs(z, logp, label_logp_out, argmax_out)

    def _loss_head(self, logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """float64 copy of the [S, n, p] logits, then what autograd runs for the objective:
        log-softmax, its backward with the constant gradient at the labels, the cast to float32."""
        z = self.z.copy_(logits)
        logp = torch._log_softmax(z, 2, False, out=self.logp)
        dz = torch._log_softmax_backward_data(self.dlogp, logp, 2, torch.float64, out=self.dz)
        return z, logp, self.dlogits.copy_(dz)

    def _metric_inputs(self, z: Tensor, logp: Tensor, label_logp_out: Tensor, argmax_out: Tensor) -> None:
        torch.gather(logp, 2, self.label_index, out=label_logp_out)
        torch.argmax(z, dim=-1, out=argmax_out)

    def _onednn_rest(self, post: Tensor, pre: Tensor, hidden: Tensor, W_out: Tensor, G: list[Tensor],
                     label_logp_out: Tensor, argmax_out: Tensor) -> None:
        """The step after the activation with the products through oneDNN, run by run."""
        lin, S = self.onednn, self.stack.S

        def per_run(f: Any) -> Tensor:  # [S, ...] without a copy for one run
            return f(0)[None] if S == 1 else torch.stack([f(s) for s in range(S)])

        logits = per_run(lambda s: lin(hidden[s], W_out[s]))  # [S, n, p]
        z, logp, dlogits = self._loss_head(logits)
        for s in range(S):
            G[1][s].copy_(lin(dlogits[s].t(), hidden[s].t()))  # dW_out [p, M]
        dpost = per_run(lambda s: lin(dlogits[s], W_out[s].t()))  # [S, n, M]
        if self.relu:
            dpre = torch.ops.aten.threshold_backward.grad_input(dpost, hidden, 0, grad_input=dpost)
        else:
            with torch.enable_grad():
                (dpre,) = torch.autograd.grad(post, pre, dpost)
        x, y = self.stack.pairs[:, 0], self.stack.pairs[:, 1]
        for s in range(S):  # dW_in^T [p, M] = X^T dpre, X one-hot: each pair's row added at x and at y
            G[0][s].zero_().index_add_(0, x, dpre[s]).index_add_(0, y, dpre[s])
        self._metric_inputs(z, logp, label_logp_out, argmax_out)


register_train_family("mlp", MLPFamily())
