"""The HTML pages render in a real browser, offline: every plotly figure draws its SVG and the page
asks the network for nothing."""

import plotly.graph_objects as go
import pytest
from browser import load_page, screenshot

from mechinterp_modadd.report import HtmlReport

pytestmark = pytest.mark.slow


def test_report_page_renders_every_figure_offline(tmp_path):
    page = HtmlReport("browser check")
    page.heading("two figures")
    page.figure(go.Figure(go.Scatter(y=[1, 3, 2])))
    page.figure(go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])))
    path = page.save(tmp_path / "page.html")
    load = load_page(path)
    figs = load.figure_divs()
    assert len(figs) == 2
    assert all('class="main-svg"' in f for f in figs)
    assert load.page_requests == []


def test_the_check_detects_a_page_that_needs_the_network(tmp_path):
    # a page that pulls plotly from a server (loopback, nothing listens): no figure, a request logged
    path = tmp_path / "online.html"
    path.write_text('<html><body><div class="plotly-graph-div" id="f"></div>'
                    '<script src="http://127.0.0.1:9/plotly.min.js"></script></body></html>')
    load = load_page(path, budget_ms=3000)
    assert any("127.0.0.1:9/plotly.min.js" in u for u in load.page_requests)
    assert not any('class="main-svg"' in f for f in load.figure_divs())


def test_report_on_the_shipped_grokking_run_renders_every_figure(tmp_path):
    from helpers import DATA

    from mechinterp_modadd.cli import main

    out = tmp_path / "grokking.html"
    assert main(["report", str(DATA / "grokking_p23"), "--out", str(out), "--quiet"]) == 0
    load = load_page(out, budget_ms=30000)
    figs = load.figure_divs()
    assert len(figs) >= 15  # diagnosis, ablation and dynamics figures
    missing = [i for i, f in enumerate(figs) if 'class="main-svg"' not in f]
    assert missing == [], f"figures {missing} did not render"
    assert load.page_requests == []
    assert "Grokking stages" in load.dom and "Majority vote by intervention" in load.dom
    shot = screenshot(out, tmp_path / "grokking.png", size="1200,3000")
    assert shot.stat().st_size > 50_000  # a real rendering, not a blank page
