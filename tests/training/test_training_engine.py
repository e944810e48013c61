"""The one training engine against a frozen copy of the old single-run loop (tests/frozen_single_loop.py),
batched against alone, the generic torch.func step against the hand-written one, a family and an
optimizer added by registration alone.

Bits: on a machine whose fingerprint data/fingerprint.json records (torch, BLAS, CPU; the machine
that checks the shipped data bit for bit) the engine must give the frozen loop's weights and losses
bit for bit; elsewhere a BLAS may sum a batched product in another order, and the tests ask for
losses within 1e-6 relative and weights within 1e-4 (AdamW turns rounding into visible weight
differences slowly; a few hundred steps stay far inside that).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from frozen_single_loop import frozen_train
from helpers import DATA, cpu_fingerprint
from safetensors.torch import load_file
from torch import nn

from mechinterp_modadd import ConfigError
from mechinterp_modadd.layout import checkpoint_path
from mechinterp_modadd.training import TrainConfig, preset, train, train_many
from mechinterp_modadd.training.family import (
    GenericStep,
    TrainFamily,
    get_train_family,
    register_train_family,
)
from mechinterp_modadd.training.optim import OPTIMIZERS, StackedOptimizer, register
from mechinterp_modadd.training.stack import Stack


def _bits_machine() -> bool:
    doc = json.loads((DATA / "fingerprint.json").read_text())
    return any(r["fingerprint"] == cpu_fingerprint() for r in doc["records"])


BITS = _bits_machine()


@pytest.fixture(autouse=True)
def _one_thread():
    """Both sides on one intra-op thread: the frozen loop would otherwise run on torch's default count
    while the engine picks its own from the machine's load, and a product split over two threads sums
    in another order (different bits, same numbers to rounding)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _same(model_a, model_b, metrics_a: pd.DataFrame, metrics_b: pd.DataFrame, *, bits: bool = BITS,
          rel: float = 1e-6, wtol: float = 1e-4) -> None:
    """Weights and per-step losses of two runs: equal bit for bit (``bits``), else losses within
    ``rel`` relative and each weight within ``wtol`` in relative Frobenius norm."""
    sa, sb = model_a.state_dict(), model_b.state_dict()
    assert sorted(sa) == sorted(sb)
    assert len(metrics_a) == len(metrics_b)
    la, lb = metrics_a["train_loss"].to_numpy(), metrics_b["train_loss"].to_numpy()
    if bits:
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
        assert np.array_equal(la, lb)
        for c in ("test_loss", "train_accuracy", "test_accuracy", "lr"):
            assert np.array_equal(metrics_a[c].to_numpy(), metrics_b[c].to_numpy(), equal_nan=True), c
    else:
        assert float(np.max(np.abs(la - lb) / np.abs(lb))) <= rel
        for k in sa:
            d = float((sa[k].double() - sb[k].double()).norm() / sb[k].double().norm())
            assert d <= wtol, (k, d)
    # the parameter norm is a metric only; the engine sums W_in's squares in another order
    np.testing.assert_allclose(metrics_a["param_norm"], metrics_b["param_norm"], rtol=1e-12 if bits else wtol)


# ------------------------------------------------------------------ engine == frozen single loop
@pytest.mark.parametrize("cfg", [
    preset("grokking", p=23, steps=150),                                   # AdamW, ReLU, test split
    preset("quad_random", p=23, steps=150),                                # AdamW, quad
    preset("quad_single_freq", p=23, steps=150),                           # SGD, quad, single-freq init
    preset("relu_single_freq", p=23, steps=150, momentum=0.9, lr=0.005),   # SGD with momentum, ReLU
    preset("grokking", p=11, d_mlp=32, steps=150, warmup_steps=0),         # toy size: plain products
], ids=["adamw-relu", "adamw-quad", "sgd-quad", "sgd-momentum-relu", "adamw-toy"])
def test_train_equals_the_frozen_single_loop(cfg):
    res = train(cfg, progress=False, device="cpu")
    model, metrics = frozen_train(cfg)
    _same(res.model, model, res.metrics, metrics)


def test_mixed_batch_equals_each_run_in_the_frozen_loop(tmp_path):
    """One batch mixing lr, weight decay, init scale and kind, split and warm-up: every run is the
    frozen loop's run (the optimizer's per-run factors broadcast along the run axis)."""
    base = preset("grokking", p=23, steps=120, save_every=60)
    cfgs = [base, base.replace(seed=1, lr=3e-3, weight_decay=0.5),
            base.replace(seed=2, init_scale=0.3, train_fraction=0.5, split_seed=7),
            base.replace(seed=3, init="single_freq", init_scale=0.05, weight_decay=0.0, train_fraction=1.0),
            base.replace(seed=4, warmup_steps=0, lr=1e-3)]
    res = train_many(cfgs, tmp_path / "b", progress=False, device="cpu")
    for cfg, folder in zip(cfgs, res.runs, strict=True):
        model, metrics = frozen_train(cfg)
        from mechinterp_modadd import load_checkpoint

        _same(load_checkpoint(checkpoint_path(folder, 120)).model, model, pd.read_csv(folder / "metrics.csv"),
              metrics)


def test_sgd_momentum_batch_with_mixed_lr_and_decay(tmp_path):
    base = preset("quad_single_freq", p=23, steps=120, save_every=120, momentum=0.9, lr=0.01)
    cfgs = [base, base.replace(seed=1, lr=0.02), base.replace(seed=2, weight_decay=1e-3)]
    res = train_many(cfgs, tmp_path / "b", progress=False, device="cpu")
    from mechinterp_modadd import load_checkpoint

    for cfg, folder in zip(cfgs, res.runs, strict=True):
        model, metrics = frozen_train(cfg)
        _same(load_checkpoint(checkpoint_path(folder, 120)).model, model, pd.read_csv(folder / "metrics.csv"),
              metrics)
    # the momentum matters: without it the same run ends elsewhere
    plain, _ = frozen_train(cfgs[0].replace(momentum=0.0))
    assert not torch.equal(plain.mlp.W_in, load_checkpoint(checkpoint_path(res.runs[0], 120)).model.mlp.W_in)


def test_early_stop_in_a_batch_equals_the_frozen_loop(tmp_path):
    base = preset("grokking", p=11, d_mlp=64, steps=600, save_every=600, lr=1e-2, weight_decay=2.0,
                  train_fraction=0.9, stop_accuracy=0.75, stop_window=100)
    cfgs = [base.replace(seed=s) for s in range(4)]
    res = train_many(cfgs, tmp_path / "b", progress=False, device="cpu")
    done = list(res.table["steps_done"])
    assert min(done) < 600  # the rule fired for at least one run
    from mechinterp_modadd import load_checkpoint

    for cfg, folder, d in zip(cfgs, res.runs, done, strict=True):
        model, metrics = frozen_train(cfg)
        assert len(metrics) == d + 1
        _same(load_checkpoint(checkpoint_path(folder, d)).model, model, pd.read_csv(folder / "metrics.csv"), metrics)


@pytest.mark.parametrize("name", ["grokking", "quad_single_freq"])
def test_resume_in_mid_run_equals_the_frozen_loop(tmp_path, name):
    """A run stopped after step 30 and resumed to 70 (momentum on for SGD, so the buffer round-trips
    through resume.safetensors) ends as the frozen loop's uninterrupted run."""
    over = {"momentum": 0.9, "lr": 0.01} if name == "quad_single_freq" else {}
    cfg = preset(name, p=23, steps=70, save_every=10, **over)
    train(cfg.replace(steps=30), tmp_path / "r", progress=False, device="cpu")
    state = load_file(tmp_path / "r" / "resume.safetensors")
    assert ("optim.0.momentum_buffer" in state) == ("momentum" in over)
    resumed = train(cfg, tmp_path / "r", resume=True, progress=False, device="cpu")
    model, metrics = frozen_train(cfg)
    _same(resumed.model, model, resumed.metrics, metrics)


# --------------------------------------------------------------------- learned embeddings
def test_learned_embeddings_train_batched_as_alone(tmp_path):
    """Learned-embedding runs go through the generic step on the dense rows e_x + e_y. A run alone
    (no vmap: one run's grad) is the frozen loop's run; in a batch vmap turns the products into
    batched ones, so a batched run agrees with its run alone to rounding (AdamW's normalised steps
    amplify rounding in the weights whose gradients are near 0: measured 0 here, allowed 1e-2 in
    relative Frobenius norm)."""
    base = preset("standard", p=11, d_mlp=32, steps=80, save_every=80, embedding="learned", d_model=16, lr=1e-3)
    cfgs = [base, base.replace(seed=1, weight_decay=0.1), base.replace(seed=2, lr=3e-3)]
    res = train_many(cfgs, tmp_path / "b", progress=False, device="cpu")
    from mechinterp_modadd import load_checkpoint

    for cfg, folder in zip(cfgs, res.runs, strict=True):
        batched = load_checkpoint(checkpoint_path(folder, 80)).model
        alone = train(cfg, progress=False, device="cpu")
        _same(batched, alone.model, pd.read_csv(folder / "metrics.csv"), alone.metrics, bits=False, wtol=1e-2)
        model, metrics = frozen_train(cfg)
        _same(alone.model, model, alone.metrics, metrics)
        assert batched.W_E is not None and batched.W_E.shape == (16, 11)


# ------------------------------------------------------------------ generic vs hand-written
class _GenericMLP(TrainFamily):
    """The mlp family without its hand-written step (the generic torch.func step instead)."""

    def __init__(self) -> None:
        self.base = get_train_family("mlp")
        self.symmetric = True

    def batch_key(self, cfg):
        return self.base.batch_key(cfg)

    def init_params(self, cfg):
        return self.base.init_params(cfg)

    def layout(self, cfg):
        return self.base.layout(cfg)  # the merged [2, S, p, M] storage, through its views

    def module(self, cfg):
        return self.base.module(cfg)

    def inputs(self, pairs, cfg):
        return self.base.inputs(pairs, cfg)

    def export(self, cfg, params):
        return self.base.export(cfg, params)

    def checkpoint_bytes(self, model, step, metrics, run_id):
        return self.base.checkpoint_bytes(model, step, metrics, run_id)

    def check_checkpoints(self, files, cfg, run_id):
        self.base.check_checkpoints(files, cfg, run_id)

    def step_flop(self, cfg):
        return self.base.step_flop(cfg)

    def run_bytes(self, cfg, steps_buffered):
        return self.base.run_bytes(cfg, steps_buffered)


register_train_family("mlp_generic", _GenericMLP())


def test_generic_step_gradients_match_the_hand_written_step():
    cfgs = [preset("grokking", p=23, seed=s, train_fraction=0.5 + 0.1 * s) for s in range(3)]
    fam = get_train_family("mlp")
    st = Stack(cfgs, [fam.init_params(c) for c in cfgs], [None] * 3, 0, torch.device("cpu"))
    n, S = st.n, st.S
    out = [(torch.empty(S, n, 1, dtype=torch.float64), torch.empty(S, n, dtype=torch.long)) for _ in range(2)]
    st.step(*out[0])
    hand = [g.clone() for g in st.G]
    GenericStep(fam, st)(*out[1])
    for a, b in zip(hand, st.G, strict=True):
        rel = float((a - b).norm() / a.norm())
        assert rel <= 1e-5, rel
    assert torch.allclose(out[0][0], out[1][0], rtol=1e-6, atol=1e-9)
    assert torch.equal(out[0][1], out[1][1])


def test_generic_step_trains_the_mlp_like_the_hand_written_step():
    cfg = preset("grokking", p=23, steps=100)
    hand = train(cfg, progress=False, device="cpu")
    gen = train(cfg.replace(family="mlp_generic"), progress=False, device="cpu")
    la, lb = hand.metrics["train_loss"].to_numpy(), gen.metrics["train_loss"].to_numpy()
    assert float(np.max(np.abs(la - lb) / la)) <= 1e-5
    assert not np.array_equal(la, frozen_train(cfg.replace(seed=1))[1]["train_loss"].to_numpy())  # not vacuous


# --------------------------------------------------------------------------- a test family
class _Concat(nn.Module):
    """logits(x, y) = W_out relu(A[:, x] + B[:, y] + b): not symmetric in (x, y)."""

    def __init__(self, p: int, width: int) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.zeros(width, p))
        self.B = nn.Parameter(torch.zeros(width, p))
        self.b = nn.Parameter(torch.zeros(width))
        self.W_out = nn.Parameter(torch.zeros(p, width))

    def forward(self, pairs):
        h = torch.relu(self.A.t()[pairs[:, 0]] + self.B.t()[pairs[:, 1]] + self.b)
        return h @ self.W_out.t()


class _ConcatFamily(TrainFamily):
    """A builder-only family: nothing but this class and its registration."""

    symmetric = False

    def batch_key(self, cfg):
        return (cfg.d_mlp,)

    def init_params(self, cfg):
        g = torch.Generator().manual_seed(cfg.seed)
        m = self.module(cfg)
        return {k: cfg.init_scale * torch.randn(v.shape, generator=g) for k, v in m.named_parameters()}

    def module(self, cfg):
        return _Concat(cfg.p, cfg.d_mlp)

    def checkpoint_bytes(self, model, step, metrics, run_id):
        from safetensors.torch import save

        return save({k: v.contiguous() for k, v in model.state_dict().items()}, metadata={"step": str(step)})

    def check_checkpoints(self, files, cfg, run_id):
        for f in files:
            assert sorted(load_file(f)) == ["A", "B", "W_out", "b"]

    def step_flop(self, cfg):
        return 6.0 * cfg.p ** 2 * cfg.d_mlp * cfg.p

    def run_bytes(self, cfg, steps_buffered):
        return 64 * cfg.p ** 2 * cfg.d_mlp + 64 * steps_buffered


register_train_family("test_concat", _ConcatFamily())


def test_a_registered_family_trains_batched_as_alone(tmp_path):
    base = TrainConfig(family="test_concat", p=11, d_mlp=24, lr=3e-3, weight_decay=0.1, train_fraction=0.7,
                       steps=60, save_every=30, init_scale=0.3)
    cfgs = [base, base.replace(seed=1, lr=1e-3), base.replace(seed=2, optimizer="sgd", betas=(0.9, 0.98),
                                                              lr=0.3, momentum=0.5)]
    res = train_many(cfgs[:2], tmp_path / "b", progress=False, device="cpu")
    for cfg, folder in zip(cfgs[:2], res.runs, strict=True):
        alone = train(cfg, progress=False, device="cpu")
        m = pd.read_csv(folder / "metrics.csv")
        la, lb = m["train_loss"].to_numpy(), alone.metrics["train_loss"].to_numpy()
        assert float(np.max(np.abs(la - lb) / lb)) <= 1e-6
        w = load_file(checkpoint_path(folder, 60))
        for k, v in alone.model.state_dict().items():
            torch.testing.assert_close(w[k], v, rtol=1e-5, atol=1e-7)
        assert lb[-1] < lb[0]  # it learns
    # the objective over the p^2 ordered pairs: row 0 is the train cross-entropy of the initial model
    cfg = cfgs[0]
    fam = get_train_family("test_concat")
    model = fam.export(cfg, fam.init_params(cfg))
    from mechinterp_modadd.data import all_pairs, random_split

    P = all_pairs(11)
    tr = random_split(11, 0.7, 0).train_mask
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(model(P).double(), (P[:, 0] + P[:, 1]) % 11, reduction="none")
    first = train(cfg.replace(steps=0), progress=False, device="cpu").metrics.iloc[0]
    assert first["train_loss"] == pytest.approx(float(ce[tr].mean()), rel=1e-6)
    assert first["test_loss"] == pytest.approx(float(ce[~tr].mean()), rel=1e-6)
    # SGD with momentum, a run folder and a resume work for it too
    sgd = train(cfgs[2].replace(steps=30), tmp_path / "s", progress=False, device="cpu")
    more = train(cfgs[2], tmp_path / "s", resume=True, progress=False, device="cpu")
    full = train(cfgs[2], progress=False, device="cpu")
    assert np.array_equal(more.metrics["train_loss"].to_numpy(), full.metrics["train_loss"].to_numpy())
    assert len(sgd.metrics) == 31
    with pytest.raises(ConfigError, match="unknown training family"):
        train(base.replace(family="no_such_family"), progress=False)


def test_a_generic_batch_that_shrinks_follows_each_run_alone(tmp_path):
    """An early stop drops a run from a batch trained by the generic step; the generic step is
    rebuilt for the smaller batch and the other runs go on as alone."""
    base = TrainConfig(family="test_concat", p=11, d_mlp=24, lr=3e-3, train_fraction=0.7, steps=40,
                       save_every=40, init_scale=0.3, stop_window=10)
    cfgs = [base.replace(stop_accuracy=1e-6, train_fraction=1.0), base.replace(seed=1), base.replace(seed=2, lr=1e-3)]
    res = train_many(cfgs, tmp_path / "b", progress=False, device="cpu")
    assert list(res.table["steps_done"]) == [10, 40, 40]
    for cfg, folder in zip(cfgs, res.runs, strict=True):
        alone = train(cfg, progress=False, device="cpu")
        m = pd.read_csv(folder / "metrics.csv")
        la, lb = m["train_loss"].to_numpy(), alone.metrics["train_loss"].to_numpy()
        assert len(la) == len(lb) and float(np.max(np.abs(la - lb) / lb)) <= 1e-6


# ------------------------------------------------------------------------ an added optimizer
def test_an_optimizer_added_by_registration_alone():
    """A stacked optimizer defined and registered here (no other file) trains through train()."""

    class SignDescent(StackedOptimizer):
        name = "test_sign"

        def schedule(self, lr):
            self._lr = lr.tolist()

        @torch.no_grad()
        def update(self, i, grads):
            for P, G in zip(self.params, grads, strict=True):
                P.add_(torch.sign(G), alpha=-self._lr[i][0])
            self.updates += 1

    register(SignDescent)
    try:
        cfg = preset("standard", p=11, d_mlp=32, steps=20, optimizer="test_sign", lr=1e-3)
        res = train(cfg, progress=False, device="cpu")
        assert res.metrics["train_loss"].iloc[-1] < res.metrics["train_loss"].iloc[0]
        with pytest.raises(ConfigError, match="momentum"):
            cfg.replace(momentum=0.5)  # a hyper-parameter it does not read
    finally:
        del OPTIMIZERS["test_sign"]
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        preset("standard", optimizer="test_sign")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_generic_and_hand_written_steps_match_the_cpu():
    """On a GPU: the hand-written step, the generic step (learned embeddings) and a registered
    family train as on the CPU, to rounding."""
    for cfg in (preset("grokking", p=23, steps=100),
                preset("standard", p=11, d_mlp=32, steps=100, embedding="learned", d_model=16, lr=1e-3),
                TrainConfig(family="test_concat", p=11, d_mlp=24, lr=3e-3, steps=100, train_fraction=0.7)):
        gpu = train(cfg, progress=False, device="cuda")
        cpu = train(cfg, progress=False, device="cpu")
        la, lb = gpu.metrics["train_loss"].to_numpy(), cpu.metrics["train_loss"].to_numpy()
        assert float(np.max(np.abs(la - lb) / lb)) <= 1e-5, cfg.family


@pytest.mark.parametrize("activation", ["relu", "quad"])
def test_large_runs_take_onednn_products_with_bits_free_of_batch_and_threads(activation):
    """From ONEDNN_MIN_MACS per run (p = 97, d_mlp = 1024) a CPU step runs its products through
    oneDNN and dW_in as row additions: its gradients equal the BLAS step's to float32 rounding, and
    its bits are the same alone and in a batch, on one thread and on two."""
    from mechinterp_modadd.training import family_mlp

    if family_mlp.onednn_linear() is None:
        pytest.skip("this torch build has no oneDNN linear op")
    cfgs = [preset("grokking", p=97, d_mlp=1024, seed=s, activation=activation) for s in range(2)]
    assert 97 * 98 // 2 * 1024 * 97 >= family_mlp.ONEDNN_MIN_MACS > 23 * 24 // 2 * 512 * 23  # shipped runs: BLAS
    fam = get_train_family("mlp")

    def grads(runs, threads, onednn=True):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            st = Stack(runs, [fam.init_params(c) for c in runs], [None] * len(runs), 0, torch.device("cpu"))
            step = st.step
            assert step.onednn is not None
            if not onednn:
                step.onednn = None
            out = torch.empty(st.S, st.n, 1, dtype=torch.float64), torch.empty(st.S, st.n, dtype=torch.long)
            step(*out)
            return st.G[0].clone(), out
        finally:
            torch.set_num_threads(before)

    alone, (lp, am) = grads(cfgs[:1], 1)
    assert torch.equal(alone, grads(cfgs[:1], 2)[0])
    batch, (lp2, am2) = grads(cfgs, 2)
    assert torch.equal(alone[:, 0], batch[:, 0]) and torch.equal(lp[0], lp2[0]) and torch.equal(am[0], am2[0])
    blas = grads(cfgs[:1], 1, onednn=False)[0]
    assert float((alone - blas).abs().max()) <= 1e-5 * float(blas.abs().max())  # float32 rounding (measured 2e-6)
    assert not torch.equal(alone, blas)  # a different sum order: the path taken is the oneDNN one
