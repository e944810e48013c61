"""The ``device`` of the analysis entry points (mechinterp_modadd.runtime.takes_device).

On the CPU the argument must change nothing (same bits); a bad or absent device is one clear
error; the choice holds for the call only. Where torch sees a GPU, the claims computed with
``device="cuda"`` must agree with the CPU's to 1e-9 relative, with the same verdicts.
"""

import contextlib
import inspect
import json
import math

import fake_device
import numpy as np
import pytest
import torch

from mechinterp_modadd import ConfigError, runtime
from mechinterp_modadd import analysis as A
from mechinterp_modadd.analysis import ablation, explorer, grokking, lottery, views
from mechinterp_modadd.analysis import majority as MV
from mechinterp_modadd.diagnose import diagnose
from mechinterp_modadd.forward import all_pair_logits, hidden, logits
from mechinterp_modadd.fourier import neuron_spectrum
from mechinterp_modadd.runtime import analysis_device, compute_device, takes_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

#: every analysis entry point that takes a model or a checkpoint series
ENTRY_POINTS = [
    diagnose, neuron_spectrum, hidden, logits, all_pair_logits,
    A.single_frequency, A.phase_alignment, A.phase_symmetry, A.frequency_diversification,
    A.magnitude_homogeneity, A.flawed_indicator, A.majority_vote, A.lottery_from_series, A.run_claims,
    MV.random_ablation, MV.frequency_group_ablation, MV.phase_biased_ablation, MV.activation_swap,
    MV.vote_split, MV.noise_scaling, MV.run_ablation_suite, ablation.activation_table,
    grokking.measures_of_model, grokking.progress_measures, lottery.frequency_race,
    explorer.explorer_data, explorer.explorer_data_from_models, views.neuron_sample, views.cosine_fits,
]


@pytest.mark.parametrize("fn", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_every_analysis_entry_point_takes_a_device(fn):
    param = inspect.signature(fn).parameters.get("device")
    assert param is not None and param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None
    assert fn.__doc__  # functools.wraps kept the documentation


def test_the_device_holds_for_the_call_only():
    seen = []

    @takes_device
    def probe(x, *, fail=False):
        seen.append(compute_device())
        if fail:
            raise ValueError("inside")
        return x

    assert compute_device().type == "cpu"
    assert probe(1, device="cpu") == 1 and seen[-1].type == "cpu"
    with analysis_device("cpu"):
        probe(2)  # None keeps the enclosing choice
    with pytest.raises(ValueError):
        probe(3, device="cpu", fail=True)
    assert compute_device().type == "cpu"  # restored after an error too
    with pytest.raises(TypeError, match="already has a device"):
        takes_device(lambda *, device=None: device)


def test_a_bad_device_is_one_clear_error(small_model):
    with pytest.raises(ConfigError, match="device must be"):
        A.single_frequency(small_model, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            A.majority_vote(small_model, device="cuda")
    assert compute_device().type == "cpu"


def test_cpu_device_gives_the_same_bits(small_model):
    a = diagnose(small_model, ablation=True)
    b = diagnose(small_model, ablation=True, device="cpu")
    assert json.dumps(a.to_dict(), sort_keys=True, default=str) == json.dumps(b.to_dict(), sort_keys=True, default=str)
    h0, h1 = hidden(small_model), hidden(small_model, device="auto" if not torch.cuda.is_available() else "cpu")
    assert all(torch.equal(x, y) for x, y in zip(h0, h1, strict=True))


def test_cli_device_reaches_the_analyses(monkeypatch, capsys):
    """``--device`` sets the analysis device for the whole command (seen from inside diagnose)."""
    from mechinterp_modadd import cli
    from mechinterp_modadd import diagnose as D

    seen = []
    real = D.build_context

    def spy(model):
        seen.append(compute_device())
        return real(model)

    monkeypatch.setattr(D, "build_context", spy)
    assert cli.main(["diagnose", "--device", "cpu"]) == 0
    assert "single_frequency" in capsys.readouterr().out
    assert [d.type for d in seen] == ["cpu"]
    assert compute_device().type == "cpu"


@contextlib.contextmanager
def _on_the_stand_in():
    """The analyses' heavy passes on the stand-in device of :mod:`fake_device`, for the block."""
    fake_device.SEEN.clear()
    token = runtime._ANALYSIS_DEVICE.set(fake_device.DEVICE)
    try:
        with fake_device.other_device():
            yield
    finally:
        runtime._ANALYSIS_DEVICE.reset(token)


def test_the_stand_in_device_catches_a_mixed_operation():
    with _on_the_stand_in():
        x = torch.ones(3, dtype=torch.float64).to(compute_device())
        assert x.device == fake_device.DEVICE
        assert torch.equal((x * 2).cpu(), torch.full((3,), 2.0, dtype=torch.float64))
        with pytest.raises(fake_device.DeviceMismatch):
            x + torch.ones(3, dtype=torch.float64)
        with pytest.raises(fake_device.DeviceMismatch):
            torch.ones(2, 3, dtype=torch.float64) @ x
        with pytest.raises(TypeError):
            x.numpy()
        fake_device.SYNCS.clear()
        y = x * 3  # stays on the device: no host read
        assert not fake_device.SYNCS
        assert y.sum().item() == 9.0 and bool((y > 0).all()) and y.cpu().device.type == "cpu"
        assert y.nonzero().shape == (3, 1) and y.tolist() == [3.0, 3.0, 3.0]
        assert fake_device.SYNCS == {"_local_scalar_dense": 2, "_to_copy": 1, "nonzero": 1, "tolist": 1}
    assert compute_device().type == "cpu"


def test_heavy_passes_stay_on_the_analysis_device(small_model):
    """diagnose with the ablation suite, the explorer's ablation, a sampled majority vote and a
    hooked forward pass run their heavy passes on the other device without mixing devices (the
    stand-in raises on any mix) and return the CPU's numbers bit for bit."""
    from mechinterp_modadd.analysis.explorer import explorer_data_from_models

    def run():
        seen = []

        def hook(t, hook):
            seen.append(t.device)
            return t * 1.0

        with small_model.hooks(fwd_hooks=[("mlp.hook_post", hook)]):
            L = all_pair_logits(small_model)
        d = diagnose(small_model, ablation=True)
        mv = A.majority_vote(small_model, max_pairs=40, draws=2, phase_draws=2)
        ex = explorer_data_from_models([(None, small_model)], source="m", name="m", ablation_draws=1)
        return L, seen, json.dumps([d.to_dict(), mv.to_dict()], sort_keys=True, default=str), ex

    L0, seen0, js0, ex0 = run()
    with _on_the_stand_in():
        L1, seen1, js1, ex1 = run()
        ops = dict(fake_device.SEEN)
    assert seen0[0].type == "cpu" and seen1[0] == fake_device.DEVICE  # the hook ran on the device
    assert L1.device.type == "cpu" and torch.equal(L0, L1)
    assert js0 == js1
    assert np.array_equal(ex0.ablation_accuracy, ex1.ablation_accuracy)
    # the heavy kernels did run there: forward passes, ablation products and their scores, the DFT
    for op in ("bmm", "mm", "logsumexp", "relu", "gather", "amax"):
        assert ops.get(op, 0) > 0, op


def _numbers(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_numbers(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
        else:
            out[key] = v
    return out


@needs_cuda
def test_claims_on_cuda_agree_with_the_cpu(small_model):
    a = diagnose(small_model, ablation=True)
    b = diagnose(small_model, ablation=True, device="cuda")
    for name in a.claims:
        x, y = _numbers(a.claims[name].to_dict()), _numbers(b.claims[name].to_dict())
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], float) and math.isfinite(x[k]):
                assert y[k] == pytest.approx(x[k], rel=1e-9, abs=1e-12), (name, k)
            else:
                assert x[k] == y[k], (name, k)
    L0, L1 = all_pair_logits(small_model), all_pair_logits(small_model, device="cuda")
    assert L1.device.type == "cpu" and torch.allclose(L0, L1, rtol=1e-12, atol=1e-12)
    ev0 = MV.random_ablation(small_model, draws=3)
    ev1 = MV.random_ablation(small_model, draws=3, device="cuda")
    assert ev0.to_frame().equals(ev1.to_frame()) or \
        (ev0.to_frame().select_dtypes("number") - ev1.to_frame().select_dtypes("number")).abs().max().max() < 1e-9
