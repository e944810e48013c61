"""Training family ``transformer``: the hand-batched step against plain autograd, seeds bit for bit,
batched against alone, resume, checkpoints that load as the model, the presets."""

from __future__ import annotations

import pytest
import torch

from mechinterp_modadd.checkpoint import load_checkpoint
from mechinterp_modadd.errors import ConfigError
from mechinterp_modadd.training import PRESETS, TrainConfig, preset, train, train_many
from mechinterp_modadd.training.family_transformer import stacked_logits, transformer_config
from mechinterp_modadd.transformer import ModAddTransformer, TransformerConfig, all_pair_tokens


def tiny(**kw) -> TrainConfig:
    base = dict(family="transformer", p=7, embedding="learned", d_model=16, d_mlp=24, lr=1e-3, weight_decay=1.0,
                train_fraction=0.7, steps=12, save_every=6)
    return TrainConfig(**{**base, **kw})


def test_stacked_logits_and_gradients_match_the_model():
    cfg = TransformerConfig(p=11, d_model=32, n_heads=4, d_head=8, d_mlp=40)
    models = [ModAddTransformer(cfg, seed=s) for s in range(3)]
    names = [k for k, _ in models[0].named_parameters()]
    params = {k: torch.stack([dict(m.named_parameters())[k].detach() for m in models]).requires_grad_(True)
              for k in names}
    tokens = all_pair_tokens(11)
    labels = (tokens[:, 0] + tokens[:, 1]) % 11
    logits = stacked_logits(params, 11, 1 / 8 ** 0.5, torch.relu)  # all_pair_tokens order: x major
    losses = torch.stack([torch.nn.functional.cross_entropy(lg.double(), labels) for lg in logits])
    grads = torch.autograd.grad(losses.sum(), [params[k] for k in names])
    for s, m in enumerate(models):
        ref = m.forward_last(tokens)
        assert torch.allclose(logits[s], ref, atol=1e-5)
        torch.nn.functional.cross_entropy(ref.double(), labels).backward()
        for k, g in zip(names, grads, strict=True):
            assert torch.allclose(g[s], dict(m.named_parameters())[k].grad, atol=1e-6, rtol=1e-4), k


def test_config_mapping_and_refusals():
    t = transformer_config(preset("nanda"))
    assert (t.p, t.d_model, t.n_heads, t.d_head, t.d_mlp, t.act_fn) == (113, 128, 4, 32, 512, "relu")
    assert PRESETS["nanda"]["train_fraction"] == 0.3 and PRESETS["nanda"]["lr"] == 1e-3
    assert preset("nanda").betas == (0.9, 0.98) and preset("nanda").weight_decay == 1.0
    with pytest.raises(ConfigError, match="embedding='learned'"):
        transformer_config(tiny(embedding="one_hot", d_model=None))
    with pytest.raises(ConfigError, match="multiple of 4"):
        transformer_config(tiny(d_model=18))


def test_runs_reproduce_resume_and_load(tmp_path):
    a = train(tiny(seed=3), tmp_path / "a", progress=False, device="cpu")
    b = train(tiny(seed=3), tmp_path / "b", progress=False, device="cpu")
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    ck = load_checkpoint(tmp_path / "a" / "checkpoints" / "step_000012.safetensors")
    assert isinstance(ck.model, ModAddTransformer) and ck.family == "transformer"
    assert torch.equal(ck.model.W_in, a.model.W_in)
    # resume: 6 steps, then extended to 12, equals 12 at once
    train(tiny(seed=3, steps=6), tmp_path / "c", progress=False, device="cpu")
    c = train(tiny(seed=3), tmp_path / "c", resume=True, progress=False, device="cpu")
    for (k, va), vc in zip(a.model.state_dict().items(), c.model.state_dict().values(), strict=True):
        assert torch.equal(va, vc), k


def test_the_batched_gpu_path_equals_the_run_by_run_path():
    """The step's batched form (what a GPU runs: all runs and pairs in one computation, test pairs
    weighted zero) gives the run-by-run form's gradients and metric inputs, checked here on the CPU."""
    from mechinterp_modadd.training.family import get_train_family
    from mechinterp_modadd.training.family_transformer import TransformerStep
    from mechinterp_modadd.training.stack import Stack

    cfgs = [tiny(seed=s, train_fraction=f) for s, f in ((0, 0.7), (1, 0.5), (2, 1.0))]
    fam = get_train_family("transformer")
    st = Stack(cfgs, [fam.init_params(c) for c in cfgs], [None] * 3, 0, torch.device("cpu"))
    step = TransformerStep(st)
    out = [(torch.empty(3, st.n, 1, dtype=torch.float64), torch.empty(3, st.n, dtype=torch.long)) for _ in range(2)]
    step(*out[0])
    by_run = [g.clone() for g in st.G]
    step.batched = True
    step(*out[1])
    for a, b in zip(by_run, st.G, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    assert torch.allclose(out[0][0], out[1][0], atol=1e-5) and torch.equal(out[0][1], out[1][1])
    assert not torch.equal(by_run[0], torch.zeros_like(by_run[0]))


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_seeds_equal_runs_alone_bit_for_bit(tmp_path, threads):
    """On a CPU each run of a stack is computed alone, the stack's threads on runs side by side: a
    seed's bits do not depend on its stack, nor on how many threads the stack had."""
    cfgs = [tiny(seed=s, train_fraction=f) for s, f in ((0, 0.7), (1, 0.5), (2, 1.0))]
    many = train_many(cfgs, tmp_path / "many", progress=False, device="cpu", threads=threads)
    for cfg, folder in zip(cfgs, many.runs, strict=True):
        alone = train(cfg, tmp_path / "alone" / folder.name, progress=False, device="cpu", threads=1)
        model = load_checkpoint(folder / "checkpoints" / "step_000012.safetensors").model
        for (k, va), vb in zip(alone.model.state_dict().items(), model.state_dict().values(), strict=True):
            assert torch.equal(va, vb), k
        assert (folder / "metrics.csv").read_bytes() == (alone.run_dir / "metrics.csv").read_bytes()


def test_threads_of_a_stack_go_to_runs(monkeypatch):
    """A CPU stack of the transformer family runs on one intra-op thread and gives its thread budget to
    runs side by side (at most one each); a single run keeps the intra-op rule (one thread unless told)."""
    from mechinterp_modadd.training.api import _threads

    cpu = torch.device("cpu")
    assert _threads(preset("nanda_small"), 8, 2, cpu) == (1, 2)
    assert _threads(preset("nanda_small"), 2, 4, cpu) == (1, 2)
    assert _threads(preset("nanda_small"), 1, None, cpu) == (1, 1)
    assert _threads(preset("nanda_small"), 1, 2, cpu) == (2, 1)


@pytest.mark.slow
def test_nanda_small_groks_and_the_transferring_claims_hold(tmp_path, capsys):
    """Acceptance: `modadd train --preset nanda_small` groks (docs/transformer.md: test accuracy first
    >= 0.99 at step 1,709 for seed 0, 6,000 steps in about a minute on one core); diagnose on its
    final checkpoint: single frequency, phase alignment and the key-frequency subset hold, and fail at
    step 0; track's restricted loss falls while the excluded loss rises before the test loss falls."""
    import pandas as pd

    from mechinterp_modadd.cli import main
    from mechinterp_modadd.diagnose import diagnose

    out = tmp_path / "nanda_small"
    assert main(["train", "--preset", "nanda_small", "--out", str(out), "--quiet"]) == 0
    m = pd.read_csv(out / "metrics.csv")
    assert m["test_accuracy"].iloc[-1] >= 0.99
    final = load_checkpoint(out / "checkpoints" / "step_006000.safetensors").model
    start = load_checkpoint(out / "checkpoints" / "step_000000.safetensors").model
    d_final, d_start = diagnose(final), diagnose(start)
    for claim in ("single_frequency", "phase_alignment"):
        assert d_final[claim].holds and not d_start[claim].holds, claim
    assert d_final.extras["key_frequencies"].holds and not d_start.extras["key_frequencies"].holds
    assert d_final.extras["embedding_sparse"].holds and not d_start.extras["embedding_sparse"].holds
    assert main(["track", str(out), "--quiet", "--json", str(tmp_path / "t.json")]) == 0
    text = capsys.readouterr().out
    assert "restricted / excluded loss" in text and "attention at '='" in text
    from mechinterp_modadd.analysis.grokking import progress_measures
    from mechinterp_modadd.series import load_run

    pm = progress_measures(load_run(out), progress=False)
    test_falls = int(pm.index[pm["test_loss"] < 0.1][0])
    restricted_low = int(pm.index[pm["restricted_loss"] < 0.1][0])
    low = int(pm["excluded_loss"].idxmin())
    excluded_up = int(pm.index[(pm.index > low) & (pm["excluded_loss"] > 1)][0])
    assert restricted_low < test_falls and excluded_up < test_falls
