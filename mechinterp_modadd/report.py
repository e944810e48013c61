"""Self-contained HTML pages: plotly figures, tables and text, plotly.js inlined once.

The page works offline (no CDN, no network request): plotly.js is embedded in a ``<script>``
tag and every figure is a ``div`` plus the call that draws it. Build a page with
:class:`HtmlReport` and write it with :meth:`HtmlReport.save` (atomic).

Example:
    >>> import plotly.graph_objects as go
    >>> page = HtmlReport("demo")
    >>> page.heading("A figure")
    >>> page.figure(go.Figure(go.Scatter(y=[1, 3, 2])))
    >>> "main-svg" in page.render() or True
    True
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import pandas as pd

from .checkpoint import atomic_write_text

__all__ = ["HtmlReport"]

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table.dataframe { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
table.dataframe th, table.dataframe td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
table.dataframe th { background: #f0f0f0; }
.holds { color: #1a7f37; font-weight: bold; } .fails { color: #b42318; font-weight: bold; }
.figure { margin: 1em 0; } p.note { color: #555; font-size: .92em; }
"""


class HtmlReport:
    """An HTML page built section by section; figures are plotly ``Figure`` objects."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []
        self._n_figures = 0

    @property
    def n_figures(self) -> int:
        return self._n_figures

    def heading(self, text: str, level: int = 2) -> HtmlReport:
        self._parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
        return self

    def text(self, text: str, cls: str | None = None) -> HtmlReport:
        """A paragraph of plain text (escaped)."""
        c = f' class="{cls}"' if cls else ""
        self._parts.append(f"<p{c}>{html.escape(text)}</p>")
        return self

    def raw(self, fragment: str) -> HtmlReport:
        """Trusted HTML produced by this package."""
        self._parts.append(fragment)
        return self

    def table(self, df: pd.DataFrame, float_format: str = "{:.4g}", index: bool = False) -> HtmlReport:
        def fmt_one(v, f=float_format):
            return f.format(v) if isinstance(v, float) else str(v)

        fmt = {c: fmt_one for c in df.columns}
        self._parts.append(df.to_html(index=index, formatters=fmt, border=0, escape=True))
        return self

    def figure(self, fig: Any, caption: str | None = None) -> HtmlReport:
        """Add a plotly figure (drawn by the inlined plotly.js when the page loads)."""
        div_id = f"fig{self._n_figures}"
        self._n_figures += 1
        body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                           config={"displaylogo": False, "responsive": True})
        cap = f"<p class='note'>{html.escape(caption)}</p>" if caption else ""
        self._parts.append(f"<div class='figure'>{body}{cap}</div>")
        return self

    def render(self) -> str:
        from plotly.offline import get_plotlyjs

        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(self.title)}</h1>" + "\n".join(self._parts) + "</body></html>\n"
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page atomically; returns the path."""
        return atomic_write_text(path, self.render())
