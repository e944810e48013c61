"""Devices and thread choice (mechinterp_modadd.runtime)."""

import pytest
import torch

from mechinterp_modadd import ConfigError, ModAddMLP, ModelConfig, load_checkpoint, save_checkpoint
from mechinterp_modadd.runtime import (
    SMALL_WORK_FLOP,
    auto_threads,
    cpu_model,
    requested_threads,
    resolve_device,
    step_flop,
    thread_scope,
    user_threads,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device must be"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA"):
            resolve_device("cuda")


def test_thread_choice_follows_the_problem_size(monkeypatch):
    from mechinterp_modadd import runtime

    assert step_flop(23, 512) < SMALL_WORK_FLOP < step_flop(97, 1024)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with thread_scope(runtime._STARTUP_THREADS):  # torch's own default: no user choice to respect
        if runtime._STARTUP_THREADS == runtime._natural_threads():
            assert user_threads() is None
            assert auto_threads(step_flop(23, 512)) == 1  # small: one thread, whatever the load
    assert 1 <= auto_threads(step_flop(97, 1024), sample_load=False) <= max(1, torch.get_num_threads())
    assert auto_threads(step_flop(23, 512), threads=3) == 3  # an explicit count wins
    with pytest.raises(ConfigError, match="threads"):
        auto_threads(1.0, threads=0)
    with requested_threads(2):  # what --threads 2 sets for a whole command
        assert auto_threads(step_flop(23, 512)) == 2 and torch.get_num_threads() == 2


def test_user_set_num_threads_is_respected_and_restored():
    before = torch.get_num_threads()
    if before < 2:
        pytest.skip("needs 2 threads to tell a user's choice from the default")
    torch.set_num_threads(before - 1)
    try:
        assert user_threads() == before - 1
        assert auto_threads(step_flop(97, 1024)) == before - 1
        with thread_scope(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == before - 1  # restored
    finally:
        torch.set_num_threads(before)


def test_model_and_checkpoint_take_a_device(tmp_path):
    cfg = ModelConfig(p=7, d_mlp=8)
    a = ModAddMLP(cfg, seed=3, device="cpu")
    b = ModAddMLP(cfg, seed=3)
    assert torch.equal(a.W_in, b.W_in) and a.W_in.device.type == "cpu"
    save_checkpoint(a, tmp_path / "m.safetensors")
    ck = load_checkpoint(tmp_path / "m.safetensors", device="cpu")
    assert torch.equal(ck.model.W_out, a.W_out)
    assert cpu_model(a) is a


@needs_cuda
def test_cuda_model_same_weights_and_same_diagnosis(tmp_path):
    from mechinterp_modadd.diagnose import diagnose

    cfg = ModelConfig(p=11, d_mlp=32)
    cpu, gpu = ModAddMLP(cfg, seed=1), ModAddMLP(cfg, seed=1, device="cuda")
    assert gpu.W_in.device.type == "cuda" and torch.equal(cpu.W_in, gpu.W_in.cpu())
    save_checkpoint(cpu, tmp_path / "m.safetensors")
    assert load_checkpoint(tmp_path / "m.safetensors", device="cuda").model.W_in.device.type == "cuda"
    a, b = diagnose(cpu), diagnose(gpu)
    assert a.accuracy == b.accuracy
    for name in a.claims:
        assert a.claims[name].to_dict() == b.claims[name].to_dict()
