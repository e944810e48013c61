"""Headless Chromium for the browser tests: load a page, dump its DOM, log its network requests.

Chromium (Debian's package) is started with the flags of a closed network and a fresh profile,
and ``--log-net-log`` records every URL request. Requests the browser makes for itself (update
checks, account pings) carry the initiator "not an origin"; anything else was asked for by the
page, which for a self-contained report must be nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync", "--disable-quic", "--hide-scrollbars"]


def chromium_or_skip() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return exe


@dataclass
class PageLoad:
    dom: str
    page_requests: list[str]

    def figure_divs(self) -> list[str]:
        """The inner HTML of each plotly figure div (``class="plotly-graph-div"``)."""
        starts = [m.start() for m in re.finditer(r'<div[^>]*class="[^"]*plotly-graph-div', self.dom)]
        return [self.dom[a:b] for a, b in zip(starts, starts[1:] + [len(self.dom)], strict=True)]


def _run(exe: str, args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def load_page(html: Path, budget_ms: int = 15000) -> PageLoad:
    """Load ``html`` in headless Chromium; return the DOM after load and the page's own requests."""
    exe = chromium_or_skip()
    with tempfile.TemporaryDirectory() as tmp:
        netlog = Path(tmp) / "net.json"
        res = _run(exe, [f"--log-net-log={netlog}", f"--virtual-time-budget={budget_ms}", "--dump-dom",
                         Path(html).resolve().as_uri()])
        if res.returncode != 0 or not res.stdout:
            raise RuntimeError(f"chromium failed ({res.returncode}): {res.stderr[-2000:]}")
        log = json.loads(netlog.read_text())
    names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    requests = [e["params"]["url"] for e in log["events"]
                if names.get(e["type"]) == "URL_REQUEST_START_JOB"
                and e.get("params", {}).get("initiator") != "not an origin" and "url" in e["params"]]
    return PageLoad(dom=res.stdout, page_requests=requests)


def screenshot(html: Path, out: Path, size: str = "1200,2400", budget_ms: int = 15000) -> Path:
    exe = chromium_or_skip()
    _run(exe, [f"--screenshot={out}", f"--window-size={size}", f"--virtual-time-budget={budget_ms}",
               Path(html).resolve().as_uri()])
    if not out.exists():
        raise RuntimeError("chromium wrote no screenshot")
    return out


_WIDTHS_SCRIPT = """<script>window.addEventListener('load', function () { setTimeout(function () {
  var rows = Array.from(document.querySelectorAll('table')).map(function (t) {
    return {id: t.id || '', scrollWidth: t.scrollWidth, clientWidth: t.clientWidth,
            container: t.parentElement.clientWidth}; });
  var out = document.createElement('pre'); out.id = 'table-widths-probe';
  out.textContent = JSON.stringify(rows); document.body.appendChild(out); }, 0); });</script>"""


def table_widths(html: Path, width: int = 1400, budget_ms: int = 15000) -> list[dict]:
    """Widths of every ``<table>`` of ``html`` laid out in a ``width``-pixel window: ``scrollWidth``,
    ``clientWidth`` and the ``container``'s clientWidth (a probe script is added to a copy of the page)."""
    exe = chromium_or_skip()
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.html"
        probe.write_text(Path(html).read_text().replace("</body>", _WIDTHS_SCRIPT + "</body>"))
        res = _run(exe, [f"--window-size={width},1000", f"--virtual-time-budget={budget_ms}", "--dump-dom",
                         probe.as_uri()])
    m = re.search(r'<pre id="table-widths-probe">(.*?)</pre>', res.stdout, re.S)
    if m is None:
        raise RuntimeError(f"the width probe did not run ({res.returncode}): {res.stderr[-2000:]}")
    import html as _html

    return json.loads(_html.unescape(m.group(1)))


def overflowing_tables(html: Path, width: int = 1400) -> list[dict]:
    """Tables wider than their container, or scrolling inside themselves (scrollWidth > clientWidth)."""
    return [t for t in table_widths(html, width)
            if t["scrollWidth"] > t["clientWidth"] or t["scrollWidth"] > t["container"]]
