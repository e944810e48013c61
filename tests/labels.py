"""Where a plotly figure's labels land in a real browser, and which of them collide.

:func:`label_boxes` draws figures in headless Chromium (Playwright driving Debian's
``/usr/bin/chromium``, offline: plotly.js is inlined) at a given width and returns the screen boxes
of every text the reader must read: the title, axis titles, tick labels, annotations (subplot
titles and line labels included), legend entries, colour-bar title and ticks, text on bars and in
heat-map cells. The legend and the colour bar also count as boxes of their own; the plot area
(``nsewdrag``) is returned too but never counts as a collision.
:func:`collisions` lists the pairs of boxes that overlap by more than a pixel each way.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import dataclass

import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

#: JS: every readable label of the figure div ``gd``: [kind, text, x0, y0, x1, y1] (screen pixels)
_COLLECT = """
(gd) => {
  const out = [];
  const add = (kind, el, text) => {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0) out.push([kind, text, r.left, r.top, r.right, r.bottom]);
  };
  const texts = (sel, kind) => gd.querySelectorAll(sel).forEach(el => {
    if (kind !== 'colorbar text' && el.closest('.colorbar')) return;  // counted with the colour bar
    const t = (el.textContent || '').trim();
    if (t && getComputedStyle(el).opacity !== '0' && el.getAttribute('visibility') !== 'hidden') add(kind, el, t);
  });
  texts('.gtitle', 'title');
  texts('.g-xtitle text, .g-ytitle text, [class^="g-x"][class$="title"] text, [class^="g-y"][class$="title"] text',
        'axis title');
  texts('.xtick text, .ytick text, [class$="tick"] > text', 'tick');
  texts('.annotation-text-g text', 'annotation');
  texts('.legendtext', 'legend text');
  texts('.cbtitle text, .cbaxis text', 'colorbar text');
  texts('.textpoint text, .bartext, .heatmaplayer text', 'data text');
  gd.querySelectorAll('.nsewdrag').forEach(el => add('plot area', el, 'plot area'));
  gd.querySelectorAll('.legend .bg').forEach(el => add('legend box', el, 'legend'));
  gd.querySelectorAll('.colorbar').forEach(el => add('colorbar box', el, 'colorbar'));
  return out;
}
"""


@dataclass(frozen=True)
class Box:
    figure: str
    kind: str
    text: str
    x0: float
    y0: float
    x1: float
    y1: float

    def overlap(self, other: Box) -> tuple[float, float]:
        return (min(self.x1, other.x1) - max(self.x0, other.x0), min(self.y1, other.y1) - max(self.y0, other.y0))


def chromium_or_skip() -> str:
    for exe in CHROMIUM_CANDIDATES:
        if os.path.exists(exe):
            return exe
    exe = shutil.which("chromium")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return exe


def label_boxes(figures: dict, width: int = 1000) -> dict[str, list[Box]]:
    """Draw each ``{name: figure}`` in its own ``width``-pixel div; return ``{name: [Box, ...]}``."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from plotly.offline import get_plotlyjs

    exe = chromium_or_skip()
    divs, calls = [], []
    for i, fig in enumerate(figures.values()):
        divs.append(f"<div id='f{i}' style='width:{width}px'></div>")
        calls.append(f"await Plotly.newPlot('f{i}', {fig.to_json()}.data, {fig.to_json()}.layout, "
                     f"{{responsive: false}});")
    html = (f"<html><head><meta charset='utf-8'><script>{get_plotlyjs()}</script></head><body>{''.join(divs)}"
            f"<script>window.done = false; (async () => {{ {' '.join(calls)} window.done = true; }})();"
            f"</script></body></html>")
    out: dict[str, list[Box]] = {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": width + 100, "height": 1000})
            page.set_content(html)
            page.wait_for_function("window.done === true", timeout=60_000)
            for i, name in enumerate(figures):
                rows = page.evaluate(_COLLECT, page.query_selector(f"#f{i}"))
                out[name] = [Box(name, *r) for r in rows]
        finally:
            browser.close()
    return out


def collisions(boxes: list[Box], tolerance: float = 1.0) -> list[str]:
    """Pairs of boxes overlapping by more than ``tolerance`` pixels in both directions (a text and
    the legend or colour bar that holds it do not count; nor do two boxes of one legend)."""
    bad = []
    for a, b in itertools.combinations(boxes, 2):
        if {a.kind, b.kind} in ({"legend text", "legend box"}, {"colorbar text", "colorbar box"}) \
                or "plot area" in (a.kind, b.kind):
            continue
        dx, dy = a.overlap(b)
        if dx > tolerance and dy > tolerance:
            bad.append(f"{a.figure}: {a.kind} {a.text!r} overlaps {b.kind} {b.text!r} ({dx:.0f} x {dy:.0f} px)")
    return bad


def dump(boxes: list[Box]) -> str:
    return json.dumps([b.__dict__ for b in boxes], indent=1)


def ticks_off_cells(boxes: list[Box], n_columns: int, n_rows: int, tolerance: float = 3.0) -> list[str]:
    """Tick labels of a one-panel heat-map that do not sit at the centre of a column (x ticks) or a
    row (y ticks) of its ``n_columns`` x ``n_rows`` cells, which split the plot area evenly."""
    area = [b for b in boxes if b.kind == "plot area"]
    assert len(area) == 1, "one panel expected"
    a = area[0]
    xs = [a.x0 + (i + 0.5) * (a.x1 - a.x0) / n_columns for i in range(n_columns)]
    ys = [a.y0 + (i + 0.5) * (a.y1 - a.y0) / n_rows for i in range(n_rows)]
    bad = []
    for b in boxes:
        if b.kind != "tick":
            continue
        below = b.y0 >= a.y1 - 1  # an x tick label under the plot area; else a y tick label beside it
        centre, centres = ((b.x0 + b.x1) / 2, xs) if below else ((b.y0 + b.y1) / 2, ys)
        if min(abs(centre - c) for c in centres) > tolerance:
            bad.append(f"{b.figure}: tick {b.text!r} is between cells")
    return bad
