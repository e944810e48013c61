"""Compute once, render twice: the pages and the JSON documents of diagnose, ablate, track and report
show the same numbers, every JSON output validates against its shipped schema, and the pages
compute nothing."""

import json
import math
import re
from html.parser import HTMLParser

import pytest
from helpers import DATA

from mechinterp_modadd import diagnose as dg
from mechinterp_modadd import load_checkpoint
from mechinterp_modadd.cli import main
from mechinterp_modadd.pages.diagnosis import render
from mechinterp_modadd.schemas import SchemaError, load_schema, schema_names, stamp, validate, write_json

SHIPPED = DATA / "standard_p23" / "checkpoints" / "step_005000.safetensors"


# ------------------------------------------------------------------ reading numbers off a page
class _Tagged(HTMLParser):
    """Collects (data-json path, text) of every element that carries a ``data-json`` attribute, and
    the text of every cell of every table (to check that numeric cells are tagged)."""

    def __init__(self):
        super().__init__()
        self.tagged: list[tuple[str, str]] = []
        self.untagged_cells: list[str] = []
        self._stack: list[tuple[str, str | None, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("span", "td"):
            self._stack.append((tag, dict(attrs).get("data-json"), []))

    def handle_endtag(self, tag):
        if tag in ("span", "td") and self._stack and self._stack[-1][0] == tag:
            _, path, text = self._stack.pop()
            t = "".join(text).strip()
            if path is not None:
                self.tagged.append((path, t))
            elif tag == "td":
                self.untagged_cells.append(t)
            if self._stack:
                self._stack[-1][2].append(t)

    def handle_data(self, data):
        if self._stack:
            self._stack[-1][2].append(data)


def tagged_numbers(html: str) -> _Tagged:
    p = _Tagged()
    p.feed(html)
    return p


def lookup(doc, path: str):
    for part in path.split("."):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def agrees(text: str, value) -> bool:
    """Whether a number as printed on the page is ``value`` rounded to the digits shown."""
    if text in ("holds", "fails"):
        return value is (text == "holds")
    if text in ("", "None", "nan"):
        return value is None
    if value is None or isinstance(value, bool):
        return False
    scale = 0.01 if text.endswith("%") else 1.0
    body = text.rstrip("%")
    mant, _, exp = body.partition("e")
    decimals = len(mant.split(".")[1]) if "." in mant else 0
    tol = 0.5 * 10.0 ** (-decimals + (int(exp) if exp else 0)) * scale
    return math.isclose(float(body) * scale, float(value), abs_tol=tol * (1 + 1e-9) + 1e-15)


def check_page_against_json(html: str, doc: dict, min_numbers: int) -> int:
    found = tagged_numbers(html)
    bad = [(p, t, lookup(doc, p)) for p, t in found.tagged if not agrees(t, lookup(doc, p))]
    assert bad == [], f"numbers on the page that differ from the JSON: {bad[:5]}"
    assert len(found.tagged) >= min_numbers
    return len(found.tagged)


def numeric_untagged(html: str) -> list[str]:
    num = re.compile(r"^-?\d+(\.\d+)?(e[-+]?\d+)?%?$")
    return [t for t in tagged_numbers(html).untagged_cells if num.match(t)]


# ------------------------------------------------------------------------------------- diagnose
def test_diagnose_page_shows_the_numbers_of_its_json(tmp_path, capsys):
    j, h = tmp_path / "d.json", tmp_path / "d.html"
    assert main(["diagnose", str(SHIPPED), "--json", str(j), "--html", str(h)]) == 0
    doc = json.loads(j.read_text())
    validate(doc)
    assert doc["schema"] == {"name": "diagnose", "version": 2} and doc["mechinterp_modadd_version"]
    assert doc["ablation"]["majority_vote"]["holds"] and len(doc["ablation"]["random"]) >= 5
    html = h.read_text()
    # header (4) + every claim's value and verdict (2 x 7) + majority line (7)
    check_page_against_json(html, doc, min_numbers=4 + 14 + 7)
    assert numeric_untagged(html) == []
    # the title is the run's name; the path goes in the smaller line under it
    assert "<h1>standard_p23, step 5000</h1>" in html and "<p class='subtitle'>" in html


def test_the_comparison_catches_a_page_that_disagrees(tmp_path):
    d = dg.diagnose(load_checkpoint(SHIPPED).model, claims=["phase_alignment", "single_frequency"])
    from mechinterp_modadd.pages import diagnosis as sections
    from mechinterp_modadd.pages.html import HtmlReport

    page = HtmlReport("t")
    sections.summary_section(page, d)
    doc = d.to_dict()
    check_page_against_json(page.render(), doc, min_numbers=8)
    doc["claims"]["phase_alignment"]["mean_abs_sin_d"] += 0.002  # a different number, same rounding width
    with pytest.raises(AssertionError, match="differ from the JSON"):
        check_page_against_json(page.render(), doc, min_numbers=8)
    assert agrees("0.820", 0.8204) and not agrees("0.820", 0.8206)
    assert agrees("7.3%", 0.0731) and not agrees("7.3%", 0.0741)
    assert agrees("1.23e-05", 1.234e-5) and not agrees("1.23e-05", 1.24e-5)


def test_the_page_computes_nothing(monkeypatch):
    """Once diagnose(..., ablation=True) returned, rendering calls no analysis."""
    import mechinterp_modadd.analysis.majority as majority
    import mechinterp_modadd.fourier as fourier

    calls = {"spectrum": 0, "suite": 0}
    real_spec, real_suite = fourier.spectrum_from_weights, majority.run_ablation_suite

    def spec(*a, **k):
        calls["spectrum"] += 1
        return real_spec(*a, **k)

    def suite(*a, **k):
        calls["suite"] += 1
        return real_suite(*a, **k)

    monkeypatch.setattr(fourier, "spectrum_from_weights", spec)
    monkeypatch.setattr(majority, "run_ablation_suite", suite)
    d = dg.diagnose(load_checkpoint(SHIPPED).model, ablation=True)
    assert calls == {"spectrum": 1, "suite": 1}  # one spectrum for the claims, the views and the suite

    def forbidden(*a, **k):
        raise AssertionError("the page computed something")

    import mechinterp_modadd.fourier2d as fourier2d

    for mod, name in [(fourier, "spectrum_from_weights"), (majority, "run_ablation_suite"),
                      (dg, "build_context"), (dg, "build_views"), (dg, "fourier2d_summary"),
                      (fourier2d, "fourier2d")]:
        monkeypatch.setattr(mod, name, forbidden)
    d.context = None  # no model to compute from
    page = render(d)
    assert page.n_figures == 14  # 13 and the 2D Fourier histogram
    assert json.loads(d.to_json())["ablation"] is not None


# --------------------------------------------------------------------------------------- ablate
def test_ablate_json_validates_and_matches_its_page(tmp_path, capsys):
    j, h = tmp_path / "a.json", tmp_path / "a.html"
    assert main(["ablate", str(SHIPPED), "--json", str(j), "--html", str(h)]) == 0
    doc = json.loads(j.read_text())
    validate(doc)
    assert doc["schema"]["name"] == "ablate" and doc["p"] == 23
    check_page_against_json(h.read_text(), doc, min_numbers=7)


# --------------------------------------------------------------------------------------- schemas
def test_schemas_ship_with_the_package_and_reject_bad_documents(tmp_path):
    assert {"ablate", "diagnose", "report", "track"} <= set(schema_names())
    for name in schema_names():
        assert load_schema(name)["properties"]["schema"]["properties"]["name"]["const"] == name
    doc = stamp({"run": "r"}, "track")
    assert list(doc)[:2] == ["schema", "mechinterp_modadd_version"]
    with pytest.raises(SchemaError, match=r"track\.schema\.json at \(top level\): 'source_format' is a required"):
        validate(doc)
    with pytest.raises(SchemaError, match="no schema.name"):
        validate({"run": "r"})
    with pytest.raises(SchemaError, match="no JSON schema named 'nope'"):
        stamp({}, "nope")
    ok = {"p": 5, "d_mlp": 3, "activation": "relu", "source": None, "random": [], "drop_group": [],
          "keep_group": [], "phase_biased": [], "activation_swap": {}, "noise_scaling":
          {"signal_exponent": None, "noise_exponent": None}, "majority_vote": {
              "holds": True, "half_accuracy": 1.0, "best_single_group_accuracy": 0.3, "phase_drop": 0.2,
              "top_vote_share": 0.1}}
    validate(stamp(ok, "ablate"))
    bad = dict(ok, drop_group=[{"k": 1.5, "accuracy": 1.0}])
    with pytest.raises(SchemaError, match="drop_group/0/k"):
        validate(stamp(bad, "ablate"))
    path = write_json(tmp_path / "x.json", ok, "ablate")
    validate(json.loads(path.read_text()))
    with pytest.raises(ValueError):
        write_json(tmp_path / "y.json", dict(ok, p=float("nan")), "ablate")
    assert not (tmp_path / "y.json").exists()


# ------------------------------------------------------------------------------ track and report
@pytest.mark.slow
def test_track_and_report_render_one_result_each(tmp_path, capsys):
    tj, th = tmp_path / "t.json", tmp_path / "t.html"
    assert main(["track", str(DATA / "grokking_p23"), "--json", str(tj), "--html", str(th), "--quiet"]) == 0
    track = json.loads(tj.read_text())
    validate(track)
    assert track["race"]["neuron"] >= 0 and track["snapshot_steps"][0] == 0
    n = check_page_against_json(th.read_text(), track, min_numbers=len(track["steps"]) * 12)
    assert numeric_untagged(th.read_text()) == []

    rj, rh = tmp_path / "r.json", tmp_path / "r.html"
    assert main(["report", str(DATA / "grokking_p23"), "--out", str(rh), "--json", str(rj), "--quiet"]) == 0
    report = json.loads(rj.read_text())
    validate(report)
    assert report["kind"] == "run" and report["diagnosis"]["ablation"] is not None
    html = rh.read_text()
    check_page_against_json(html, report, min_numbers=n + 25)
    assert numeric_untagged(html) == []
    assert "<h1>grokking_p23</h1>" in html
    # the same run, the same numbers in both documents
    assert report["dynamics"]["train_loss"] == track["train_loss"] and report["dynamics"]["stages"] == track["stages"]


def test_report_of_a_checkpoint_writes_json(tmp_path, capsys):
    rj, rh = tmp_path / "r.json", tmp_path / "r.html"
    assert main(["report", str(SHIPPED), "--out", str(rh), "--json", str(rj)]) == 0
    doc = json.loads(rj.read_text())
    validate(doc)
    assert doc["kind"] == "checkpoint" and doc["dynamics"] is None
    check_page_against_json(rh.read_text(), doc, min_numbers=25)


def test_static_export_without_kaleido_is_one_clear_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "kaleido" else real(name, *a))
    out = tmp_path / "r.html"
    assert main(["report", str(SHIPPED), "--out", str(out), "--png", str(tmp_path / "png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'mechinterp_modadd[export]'" in err and "kaleido" in err
    assert not out.exists() and not (tmp_path / "png").exists()  # refused before any work


def test_static_export_format_is_checked(tmp_path):
    from mechinterp_modadd.errors import ConfigError
    from mechinterp_modadd.pages.html import HtmlReport

    with pytest.raises(ConfigError, match="png, svg"):
        HtmlReport("t").export_figures(tmp_path, "gif")


def test_static_export_failure_is_one_clear_line(tmp_path, monkeypatch):
    pytest.importorskip("kaleido")
    import plotly.graph_objects as go
    import plotly.io as pio

    from mechinterp_modadd.errors import ModAddError
    from mechinterp_modadd.pages.html import HtmlReport

    def no_browser(*a, **k):
        raise RuntimeError("Kaleido requires Google Chrome to be installed.\nmore text")

    monkeypatch.setattr(pio, "write_images", no_browser)
    page = HtmlReport("t")
    page.figure(go.Figure(go.Scatter(y=[1, 2])))
    with pytest.raises(ModAddError, match=r"^static export to .* failed \(RuntimeError: Kaleido requires Google "
                                          r"Chrome to be installed\.\); kaleido needs Chrome or Chromium") as e:
        page.export_figures(tmp_path / "png", "png")
    assert "\n" not in str(e.value) and list((tmp_path / "png").iterdir()) == []


@pytest.mark.slow
def test_report_exports_every_figure_as_svg(tmp_path, capsys):
    pytest.importorskip("kaleido")
    svg = tmp_path / "svg"
    assert main(["report", str(SHIPPED), "--out", str(tmp_path / "r.html"), "--svg", str(svg)]) == 0
    files = sorted(svg.iterdir())
    assert [f.name for f in files] == [f"fig{i:02d}.svg" for i in range(14)]
    assert all(f.read_text().lstrip().startswith("<svg") for f in files)
    assert "14 SVG figures written" in capsys.readouterr().out
