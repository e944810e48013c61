"""diagnose(): the JSON contract, the renderings, the registries, the verdict matrix and `modadd diagnose`."""

import json
from functools import lru_cache

import pandas as pd
import pytest
from helpers import DATA, REFERENCE_ACTIVATION, load_reference, reference_path

from mechinterp_modadd import ModAddMLP, ModelConfig, load_checkpoint
from mechinterp_modadd import diagnose as dg
from mechinterp_modadd.analysis import claims as claim_registry
from mechinterp_modadd.analysis.base import ClaimResult
from mechinterp_modadd.analysis.perturb import concentrate_phases, remove_frequencies
from mechinterp_modadd.cli import main
from mechinterp_modadd.errors import CheckpointError, ConfigError

SHIPPED = DATA / "standard_p23" / "checkpoints" / "step_005000.safetensors"
SHIPPED_STEP0 = DATA / "standard_p23" / "checkpoints" / "step_000000.safetensors"
CLAIMS = ["single_frequency", "phase_alignment", "phase_symmetry", "frequency_diversification",
          "magnitude_homogeneity", "flawed_indicator"]
NEURON_KEYS = ["frequency", "share", "family_share", "ipr", "alpha", "beta", "phi", "psi", "d"]


@lru_cache(maxsize=16)
def ref_diagnosis(run, name="final.pth"):
    return dg.diagnose(load_reference(run, name), claims=CLAIMS)


# ------------------------------------------------------------------------------------ contract
def test_json_contract(small_model):
    d = dg.diagnose(small_model, claims=CLAIMS)
    out = json.loads(d.to_json())
    assert {"p", "d_mlp", "activation", "accuracy", "loss", "neurons", "claims"} <= set(out)
    assert out["p"] == 13 and out["d_mlp"] == 128 and out["activation"] == "relu"
    assert out["accuracy"] == 1.0 and out["loss"] < 0.01
    assert list(out["neurons"]) == NEURON_KEYS
    assert all(len(v) == 128 for v in out["neurons"].values())
    assert all(1 <= k <= 6 for k in out["neurons"]["frequency"])
    assert list(out["claims"]) == CLAIMS
    for name in CLAIMS:
        assert isinstance(out["claims"][name]["holds"], bool)
    c = out["claims"]
    assert isinstance(c["phase_alignment"]["mean_abs_sin_d"], float)
    per = c["phase_symmetry"]["per_frequency"]
    assert [r["k"] for r in per] == list(range(1, 7))
    assert all(isinstance(r["n"], int) and len(r["moments"]) == 4 for r in per)
    assert sum(r["n"] for r in per) == 128
    assert c["frequency_diversification"]["counts"] == [r["n"] for r in per]
    assert isinstance(c["magnitude_homogeneity"]["cv"], float)
    assert isinstance(c["flawed_indicator"]["ghost_ratio"], float)


def test_json_is_strict_even_with_non_finite_numbers(tmp_path):
    # step 0 of a tiny model: infinities/NaNs must become null, never invalid JSON
    d = dg.diagnose(ModAddMLP(ModelConfig(p=7, d_mlp=3), seed=0), claims=CLAIMS)
    path = tmp_path / "d.json"
    d.to_json(path)
    json.loads(path.read_text())


def test_renderings(small_model):
    d = dg.diagnose(small_model, claims=CLAIMS, source="tiny.safetensors")
    df = d.to_frame()
    assert isinstance(df, pd.DataFrame) and list(df["claim"]) == CLAIMS
    assert list(df.columns) == ["claim", "metric", "value", "verdict", "details"]
    assert set(df["verdict"]) == {"holds"}
    md = d.to_markdown()
    assert md.count("\n| ") == len(CLAIMS) + 1 and "tiny.safetensors" in md
    txt = d.to_text()
    assert all(name in txt for name in CLAIMS) and "holds" in txt
    assert d.verdicts == {n: True for n in CLAIMS} and d.holds_all
    with pytest.raises(KeyError, match="no claim"):
        d["nope"]


def test_html_is_self_contained(small_model, tmp_path):
    from mechinterp_modadd.pages.diagnosis import render

    d = dg.diagnose(small_model, claims=CLAIMS)
    d.ensure_ablation()
    page = render(d, tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text()
    assert page.n_figures >= 8
    assert text.startswith("<!DOCTYPE html>") and "Plotly" in text
    from plotly.offline import get_plotlyjs

    assert text.count(get_plotlyjs()) == 1  # plotly.js inlined once
    rest = text.replace(get_plotlyjs(), "")
    assert "<script src" not in rest and "http://" not in rest and "https://" not in rest
    for name in CLAIMS:
        assert name in text


def test_registries_are_extensible(small_model, monkeypatch):
    class Dummy(ClaimResult):
        key_metric = "holds"
        claim = "dummy"

    from mechinterp_modadd.pages import diagnosis as page_sections

    monkeypatch.setattr(claim_registry, "CLAIMS", dict(claim_registry.CLAIMS))
    claim_registry.register("dummy", lambda model, ctx: Dummy(holds=ctx.accuracy > 0.5))
    with pytest.raises(ConfigError, match="already registered"):
        claim_registry.register("dummy", lambda model, ctx: Dummy(holds=False))
    with pytest.raises(ConfigError, match="identifiers"):
        claim_registry.register("bad name", lambda model, ctx: Dummy(holds=False))
    seen = []
    monkeypatch.setattr(page_sections, "SECTIONS", {})
    page_sections.page_section("seen")(lambda page, diagnosis, prefix="": seen.append(diagnosis.p))
    with pytest.raises(ConfigError, match="already registered"):
        page_sections.page_section("seen")(lambda page, diagnosis, prefix="": None)
    d = dg.diagnose(small_model, claims=CLAIMS + ["dummy"])
    assert list(d.claims)[-1] == "dummy" and d.to_dict()["claims"]["dummy"] == {"holds": True}
    page_sections.render(d)
    assert seen == [13]


def test_unknown_claim_and_detached_diagnosis(small_model):
    with pytest.raises(ConfigError, match="unknown claims"):
        dg.diagnose(small_model, claims=["nope"])
    from mechinterp_modadd.pages.diagnosis import render

    d = dg.diagnose(small_model, claims=["phase_alignment"])
    d.context = None
    with pytest.raises(ConfigError, match="no model attached"):
        d.ensure_ablation()
    d.views = None
    with pytest.raises(ConfigError, match="no figure data"):
        render(d)


def test_context_is_shared_once(small_model, monkeypatch):
    calls = []
    real = dg.build_context
    monkeypatch.setattr(dg, "build_context", lambda m: calls.append(1) or real(m))
    dg.diagnose(small_model, claims=CLAIMS)
    assert calls == [1]


# ------------------------------------------------------------------------------ verdict matrix
@pytest.mark.parametrize("run", ["standard_relu_p23", "grokking_relu_p23"])
def test_all_claims_hold_on_trained_relu_references(run):
    d = ref_diagnosis(run)
    assert d.holds_all, d.to_text(details=True)


def test_all_claims_hold_on_our_shipped_run():
    d = dg.diagnose(load_checkpoint(SHIPPED).model, claims=CLAIMS)
    assert d.holds_all, d.to_text(details=True)


def test_quad_single_freq_final():
    v = ref_diagnosis("quad_single_freq_p23").verdicts
    assert v["single_frequency"] and v["frequency_diversification"]
    assert not v["magnitude_homogeneity"]  # cv 2.18: a few neurons carry it (reported, not forced)


def test_quad_random_final_reports_its_weak_points():
    v = ref_diagnosis("quad_random_p23").verdicts
    assert not v["magnitude_homogeneity"] and not v["single_frequency"]


@pytest.mark.parametrize("run", sorted(REFERENCE_ACTIVATION))
def test_step0_fails_single_frequency_alignment_and_homogeneity(run):
    v = ref_diagnosis(run, "0.pth").verdicts
    assert not v["phase_alignment"] and not v["magnitude_homogeneity"]
    # the single-frequency init plants one frequency per neuron: that claim holds there by construction
    assert v["single_frequency"] == (run == "quad_single_freq_p23")


def test_our_step0_fails():
    v = dg.diagnose(load_checkpoint(SHIPPED_STEP0).model, claims=CLAIMS).verdicts
    assert not v["single_frequency"] and not v["phase_alignment"] and not v["magnitude_homogeneity"]


@pytest.mark.parametrize("run", ["standard_relu_p23", "grokking_relu_p23"])
def test_interventions_fail_exactly_their_claim(run):
    m = load_reference(run)
    conc = dg.diagnose(concentrate_phases(m, 0.5), claims=CLAIMS).verdicts
    assert not conc["phase_symmetry"]
    assert conc["single_frequency"] and conc["phase_alignment"] and conc["frequency_diversification"]
    rem = dg.diagnose(remove_frequencies(m, [1, 6, 11]), claims=CLAIMS).verdicts
    assert not rem["frequency_diversification"]
    assert rem["single_frequency"] and rem["phase_alignment"] and rem["phase_symmetry"]


# ------------------------------------------------------------------------------------------ CLI
def test_cli_default_checkpoint(capsys):
    assert main(["diagnose"]) == 0
    out = capsys.readouterr().out
    assert "step_005000.safetensors" in out and "p = 23, d_mlp = 512" in out
    for name in CLAIMS:
        line = next(ln for ln in out.splitlines() if ln.startswith(name))
        assert line.rstrip().endswith("holds")


def test_cli_writes_json_and_html(tmp_path, capsys):
    j, h = tmp_path / "out" / "d.json", tmp_path / "d.html"
    assert main(["diagnose", str(SHIPPED_STEP0), "--json", str(j), "--html", str(h), "--details"]) == 0
    out = capsys.readouterr().out
    assert "fails" in out and "need" in out  # --details prints the thresholds
    d = json.loads(j.read_text())
    assert d["p"] == 23 and not d["claims"]["phase_alignment"]["holds"]
    assert "step 0" in d["source"]
    assert h.read_text().startswith("<!DOCTYPE html>")


def test_cli_nothing_written_unless_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["diagnose", str(SHIPPED)]) == 0
    assert list(tmp_path.iterdir()) == []


def test_cli_errors(tmp_path, capsys):
    assert main(["diagnose", str(tmp_path / "missing.safetensors")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["diagnose", str(SHIPPED), "--activation", "nonsense"]) == 2
    assert "unknown activation" in capsys.readouterr().err


def test_cli_authors_checkpoint_needs_activation(capsys):
    path = reference_path("standard_relu_p23")
    assert main(["diagnose", str(path)]) == 2
    assert "activation" in capsys.readouterr().err
    assert main(["diagnose", str(path), "--activation", "relu"]) == 0
    assert "accuracy 1.0000" in capsys.readouterr().out


def test_cli_activation_swap(capsys):
    # the checkpoint records relu: a different --activation is refused unless --force says it is meant
    assert main(["diagnose", str(SHIPPED), "--activation", "identity"]) == 2
    assert "records activation 'relu'" in capsys.readouterr().err
    assert main(["diagnose", str(SHIPPED), "--activation", "identity", "--force"]) == 0
    out = capsys.readouterr().out
    assert "activation identity" in out
    assert "flawed_indicator" in out


def test_default_checkpoint_missing(tmp_path, monkeypatch):
    from mechinterp_modadd.commands import diagnose as cmd

    monkeypatch.chdir(tmp_path)
    # a source checkout finds data/; without it, the copy installed with the package
    assert cmd.default_checkpoint().read_bytes() == SHIPPED.read_bytes()
    monkeypatch.setattr(cmd, "DEFAULT_CHECKPOINT", cmd.DEFAULT_CHECKPOINT.with_name("nope.safetensors"))
    packaged = cmd.default_checkpoint()
    assert packaged.parent.name == "_data" and packaged.read_bytes() == SHIPPED.read_bytes()
    monkeypatch.setattr(cmd, "PACKAGED_CHECKPOINT", cmd.PACKAGED_CHECKPOINT.with_name("nope.safetensors"))
    with pytest.raises(CheckpointError, match="default checkpoint"):
        cmd.default_checkpoint()
