"""modadd report: one offline page for a checkpoint or a run."""

import pytest
from helpers import DATA

from mechinterp_modadd.cli import main
from mechinterp_modadd.pages.report import build_report


def test_report_of_a_checkpoint_has_the_diagnosis_and_ablation(tmp_path, capsys):
    out = tmp_path / "ckpt.html"
    rc = main(["report", str(DATA / "standard_p23" / "checkpoints" / "step_005000.safetensors"), "--out", str(out)])
    assert rc == 0 and "figures written" in capsys.readouterr().out
    html = out.read_text()
    assert "phase_alignment" in html and "Majority vote by intervention" in html
    assert "Grokking stages" not in html  # no dynamics for a single checkpoint
    assert "<script src" not in html  # plotly.js is inlined (the browser test checks for requests)


@pytest.mark.slow
def test_report_of_a_run_adds_dynamics_and_lottery():
    page = build_report(DATA / "quad_random_p23")
    html = page.render()
    assert "Progress measures" in html and "Lottery ticket" in html and "argmin" in html
    assert page.n_figures >= 15


def test_report_errors_are_clean(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "x.html")]) == 2
    assert "no such" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
