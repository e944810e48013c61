"""p: even moduli are refused with a clear message; odd composite ones work with a warning."""

from __future__ import annotations

import warnings

import pytest
import torch

import mechinterp_modadd.model as model_mod
from mechinterp_modadd.cli import main
from mechinterp_modadd.errors import ConfigError, InputError, ModAddWarning
from mechinterp_modadd.fourier import neuron_spectrum, spectrum_from_weights
from mechinterp_modadd.model import ModAddMLP, ModelConfig
from mechinterp_modadd.training import preset


@pytest.mark.parametrize("p", [4, 24, 100])
def test_even_p_is_refused_everywhere(p):
    with pytest.raises(ConfigError, match=f"p = {p} is even: the frequency k = p/2 = {p // 2} has a cosine"):
        ModelConfig(p=p, d_mlp=8)
    with pytest.raises(ConfigError, match="is even"):
        preset("standard", p=p)
    with pytest.raises(InputError, match=f"p = {p} \\(even\\)"):
        spectrum_from_weights(torch.zeros(3, p), torch.zeros(3, p))


def test_cli_refuses_p24_in_one_line(tmp_path, capsys):
    assert main(["train", "--preset", "standard", "--p", "24", "--steps", "2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "p = 24 is even" in err[0] and "k = p/2 = 12" in err[0]
    assert not (tmp_path / "r").exists()


def test_odd_composite_p_works_with_one_warning(monkeypatch):
    monkeypatch.setattr(model_mod, "_WARNED_COMPOSITE", set())
    with pytest.warns(ModAddWarning, match="p = 15 is not prime.*assumes prime p"):
        m = ModAddMLP(ModelConfig(p=15, d_mlp=16), seed=0)
    spec = neuron_spectrum(m)
    assert spec.K == 7 and spec.counts().sum() == 16  # k = 1..7 all analysed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ModelConfig(p=15, d_mlp=4)  # once per p and process
        ModelConfig(p=23, d_mlp=4)  # primes never warn
        ModelConfig(p=3, d_mlp=4)
