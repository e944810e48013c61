"""The claims on the concatenated-input MLP, Gromov's idealised network and its negative controls."""

import copy
import json
import math

import pytest
import torch

from mechinterp_modadd.analysis import claims as registry
from mechinterp_modadd.analysis.concat import (
    concat_flawed_indicator,
    concat_phase_alignment,
    concat_phase_symmetry,
    concat_single_frequency,
    concat_spectrum_of,
    gromov_network,
    predicted_ghost_ratio,
)
from mechinterp_modadd.analysis.family_ablation import concat_majority_vote
from mechinterp_modadd.diagnose import diagnose
from mechinterp_modadd.errors import ConfigError
from mechinterp_modadd.families import neuron_view
from mechinterp_modadd.families.concat_mlp import ConcatMLP, ConcatMLPConfig
from mechinterp_modadd.schemas import validate

P = 23


@pytest.fixture(scope="module")
def ideal():
    return gromov_network(P, 16)


def test_view_agrees_with_closed_form(ideal):
    # the linear terms of the 2D Fourier analysis of pre = u[x] + v[y] are u's and v's coefficients
    model = ConcatMLP(ConcatMLPConfig(p=P, d_mlp=30), seed=2)
    s = concat_spectrum_of(model)
    f = neuron_view(model).fourier2d("pre")
    k = torch.arange(1, (P - 1) // 2 + 1)
    lin = torch.stack([f.linear(int(q)) for q in k], 1) / math.sqrt(P)  # [n, K, 4]: cos x, sin x, cos y, sin y
    ex = lin[..., 0] ** 2 + lin[..., 1] ** 2
    ey = lin[..., 2] ** 2 + lin[..., 3] ** 2
    assert torch.allclose(ex, s.energy_x, atol=1e-10) and torch.allclose(ey, s.energy_y, atol=1e-10)
    phi_x = torch.atan2(-lin[..., 1], lin[..., 0])
    assert torch.allclose(torch.cos(phi_x - s.phi_x), torch.ones_like(phi_x), atol=1e-8)
    # the logits of the view are the model's
    from mechinterp_modadd.data import all_pairs

    assert torch.allclose(neuron_view(ideal).logits(), ideal(all_pairs(P)), atol=1e-9)


def test_idealised_network_holds_every_claim(ideal):
    d = diagnose(ideal)
    assert d.family == "concat_mlp" and d.accuracy == 1.0
    assert d.verdicts == {name: True for name in d.claims}, d.to_text()
    assert d["phase_alignment"].mean_abs_sin_d < 1e-12
    assert d["flawed_indicator"].ghost_ratio == pytest.approx(d["flawed_indicator"].predicted_ghost_ratio, abs=0.01)
    doc = json.loads(d.to_json())
    validate(doc)
    assert doc["family"] == "concat_mlp" and "alpha_y" in doc["neurons"] and doc["fourier2d"]["pre"]["median"] > 0.99


def test_concentrated_phases_break_phase_symmetry():
    m = gromov_network(P, 16, phases="concentrated")
    r = concat_phase_symmetry(m)
    assert not r.holds and r.corrected_p < 1e-6
    assert concat_phase_alignment(m).holds  # the alignment psi = phi_x + phi_y is untouched
    assert not concat_majority_vote(m).holds


def test_shuffled_output_phases_break_phase_alignment():
    m = gromov_network(P, 16, output="shuffled")
    r = concat_phase_alignment(m)
    assert not r.holds and r.mean_abs_sin_d > 0.5
    assert concat_phase_symmetry(m).holds


def test_tied_phases_bring_back_the_paper_ghosts():
    # phi_x = phi_y is the paper's network: the (1, -1) moment is 1, ghosts at 2x, 2y of height 1/2
    m = gromov_network(P, 16, phases="tied")
    s = concat_spectrum_of(m)
    assert predicted_ghost_ratio(s) == pytest.approx(0.5, abs=1e-12)
    lg = neuron_view(m).logits()
    fi = concat_flawed_indicator(m, lg)
    assert fi.holds and fi.ghost_ratio == pytest.approx(0.5, abs=0.02)
    ps = concat_phase_symmetry(m)
    assert not ps.holds
    assert ps.per_frequency[0]["moments"][ps.combinations.index([1, -1])] == pytest.approx(1.0)
    # Gromov's random phase differences cancel the ghosts
    r = gromov_network(P, 16)
    assert predicted_ghost_ratio(concat_spectrum_of(r)) < 0.05


def test_step0_fails():
    m = ConcatMLP(ConcatMLPConfig(p=P, d_mlp=256), seed=0)
    d = diagnose(m)
    assert not d.holds_all
    for name in ("single_frequency", "phase_alignment", "flawed_indicator", "majority_vote"):
        assert not d[name].holds, name
    assert d.fourier2d.pre["median"] < 0.4


def test_claim_table_and_undefined():
    t = registry.claim_table()
    assert list(t.columns) == ["claim", "mlp", "concat_mlp", "transformer"]
    assert list(t["claim"]) == [c.name for c in registry.claims("model")]
    assert t.set_index("claim").loc["phase_alignment", "concat_mlp"].startswith("D = psi - phi_x - phi_y")
    checks = registry.checks("model", family="no_such_family")
    r = checks["single_frequency"](None, None)
    assert r.holds is None and not r.defined and "no definition" in r.details()
    with pytest.raises(ConfigError, match="either a check or an undefined reason"):
        registry.register_family_check("single_frequency", "x_family")
    with pytest.raises(ConfigError, match="already has a definition"):
        registry.register_family_check("single_frequency", "concat_mlp", undefined="no")
    try:
        registry.register_family_check("phase_alignment", "x_family", undefined="no phases here")
        assert registry.claim_table().set_index("claim").loc["phase_alignment", "x_family"] == \
            "undefined: no phases here"
    finally:
        registry.CLAIMS["phase_alignment"].families.pop("x_family", None)


def test_single_frequency_needs_u_v_and_xi_to_agree(ideal):
    # moving each neuron's output to another frequency keeps u and v single-frequency but breaks the claim
    m = gromov_network(P, 16)
    with torch.no_grad():
        m.mlp.W_out.copy_(torch.roll(m.mlp.W_out, shifts=16, dims=1))
    r = concat_single_frequency(m)
    assert not r.holds and r.same_frequency_fraction == 0.0
    assert concat_single_frequency(ideal).fraction_single == 1.0


# ----------------------------------------------------------------------------- commands
def _plain_concat(path, p=P, width=64, seed=0):
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2 * p, width), nn.Linear(width, p))
    torch.save(net.state_dict(), path)


def test_cli_diagnose_plain_state_dict(tmp_path, capsys):
    from mechinterp_modadd.cli import main

    f = tmp_path / "net.pt"
    _plain_concat(f)
    assert main(["diagnose", str(f), "--activation", "quad"]) == 0
    out = capsys.readouterr().out
    assert "family concat_mlp, p = 23, d_mlp = 64" in out and "2D Fourier" in out
    assert main(["diagnose", str(f), "--activation", "quad", "--family", "concat_mlp",
                 "--json", str(tmp_path / "d.json")]) == 0
    doc = json.loads((tmp_path / "d.json").read_text())
    validate(doc)
    assert doc["family"] == "concat_mlp" and doc["ablation"] is None
    capsys.readouterr()
    assert main(["diagnose", str(f), "--activation", "quad", "--family", "mlp"]) == 2
    err = capsys.readouterr().err
    assert "missing key 'mlp.W_in'" in err and "fc" not in err.split("found")[0] and len(err.strip().splitlines()) == 1
    assert main(["diagnose", str(f)]) == 2
    assert "does not record the activation" in capsys.readouterr().err


def test_cli_own_concat_checkpoint_and_ablate(tmp_path, capsys, ideal):
    from mechinterp_modadd.checkpoint import load_checkpoint, save_checkpoint
    from mechinterp_modadd.cli import main

    f = tmp_path / "gromov.safetensors"
    model = copy.deepcopy(ideal).float()
    save_checkpoint(model, f, step=0)
    ck = load_checkpoint(f)
    assert ck.family == "concat_mlp" and torch.equal(ck.model.W_x, model.W_x)
    assert main(["ablate", str(f)]) == 0
    out = capsys.readouterr().out
    assert "majority_vote: holds" in out and "(a, b) = (1,1)" in out
    # --json / --html: the family's ablation document, validated, and a page rendering it
    j, h = tmp_path / "a.json", tmp_path / "a.html"
    assert main(["ablate", str(f), "--json", str(j), "--html", str(h), "--seed", "3"]) == 0
    doc = json.loads(j.read_text())
    validate(doc)
    assert doc["family"] == "concat_mlp" and doc["settings"]["seed"] == 3 and doc["settings"]["pairs"] == "ordered"
    mv = doc["majority_vote"]
    assert mv["holds"] is True and mv["n_pairs"] == P * P and set(mv["phase_drops"]) == set(mv["phase_angles"])
    assert mv == concat_majority_vote(ck.model, seed=3).to_dict()  # the document is the result, computed once
    page = h.read_text()
    assert "majority_vote: <" in page and "holds" in page and f"{mv['phase_drop']:.4f}" in page
    for angle, drop in mv["phase_drops"].items():
        assert f'<td class="text">{angle}</td>' in page and f"{drop:+.4f}" in page
    # the schema still asks the paper MLP's suite of every other document, and the family's keys of this one
    from mechinterp_modadd.schemas import SchemaError

    with pytest.raises(SchemaError, match="settings"):
        validate({k: v for k, v in doc.items() if k != "settings"})
    with pytest.raises(SchemaError, match="random"):
        validate({**doc, "family": "mlp"})
    with pytest.raises(SchemaError, match="phase_drops"):
        validate({**doc, "majority_vote": {k: v for k, v in mv.items() if k != "phase_drops"}})
    # negative case: an untrained network's document and page say "fails", with the reasons
    g = tmp_path / "init.safetensors"
    save_checkpoint(ConcatMLP(ConcatMLPConfig(p=P, d_mlp=30), seed=2), g, step=0)
    assert main(["ablate", str(g), "--json", str(j), "--html", str(h)]) == 0
    doc = json.loads(j.read_text())
    validate(doc)
    assert doc["majority_vote"]["holds"] is False and doc["majority_vote"]["reasons"]
    page = h.read_text()
    assert 'class="fails"' in page and "fails" in page
    with pytest.raises(Exception, match="holds a 'concat_mlp' model, but family 'mlp' was asked for"):
        load_checkpoint(f, family="mlp")


def test_view_single_frequency_and_keys(ideal):
    from mechinterp_modadd.analysis.generic import view_key_frequencies, view_single_frequency

    r = view_single_frequency(neuron_view(ideal))
    assert r.holds and r.fraction_single == 1.0 and r.median == pytest.approx(1.0)
    assert sum(r.counts) == ideal.cfg.d_mlp and min(r.counts) == 16
    step0 = view_single_frequency(neuron_view(ConcatMLP(ConcatMLPConfig(p=P, d_mlp=64), seed=0)))
    assert not step0.holds and step0.fraction_single < 0.1
    v = neuron_view(gromov_network(P, 8, freqs=[3, 7]))
    assert view_key_frequencies(v) == [3, 7]
    assert sorted(view_key_frequencies(v, rule="top", k=2)) == [3, 7]
    with pytest.raises(ConfigError, match="needs k"):
        view_key_frequencies(v, rule="top")


def test_cli_report_and_explore_on_concat(tmp_path, capsys, ideal):
    from mechinterp_modadd.checkpoint import save_checkpoint
    from mechinterp_modadd.cli import main

    f = tmp_path / "gromov.safetensors"
    save_checkpoint(copy.deepcopy(ideal).float(), f, step=0)
    assert main(["report", str(f), "--out", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json"),
                 "--quiet"]) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    validate(doc)
    assert doc["diagnosis"]["family"] == "concat_mlp" and doc["diagnosis"]["holds_all"]
    assert main(["explore", str(f), "--out", str(tmp_path / "e.html"), "--quiet"]) == 0
    assert "family concat_mlp" in (tmp_path / "e.html").read_text()
