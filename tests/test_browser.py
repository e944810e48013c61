"""The HTML pages render in a real browser, offline: every plotly figure draws its SVG and the page
asks the network for nothing."""

import pandas as pd
import plotly.graph_objects as go
import pytest
from browser import load_page, overflowing_tables, screenshot, table_widths

from mechinterp_modadd.pages.html import HtmlReport

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
    # no table overflows its container at 1400 px (the 14-column progress table included)
    widths = table_widths(out, 1400)
    assert {"claims", "progress", "lottery"} <= {t["id"] for t in widths}
    assert overflowing_tables(out, 1400) == []


def test_the_overflow_check_detects_a_table_wider_than_the_page(tmp_path):
    page = HtmlReport("wide")
    page.raw("<table id='wide'><tr>" + "".join(f"<td>{10**9 + i}</td>" for i in range(40)) + "</tr></table>")
    page.table(pd.DataFrame({"a_long_column_name_that_breaks": [1.5], "b": ["x"]}), table_id="narrow")
    path = page.save(tmp_path / "wide.html")
    assert [t["id"] for t in overflowing_tables(path, 1400)] == ["wide"]
