"""Self-contained HTML pages: plotly figures, tables and text, plotly.js inlined once.

The page works offline (no CDN, no network request): plotly.js is embedded in a ``<script>``
tag and every figure is a ``div`` plus the call that draws it. Build a page with
:class:`HtmlReport` and write it with :meth:`HtmlReport.save` (atomic).

Numbers that come from a JSON document of the same command carry the document path of their value
in a ``data-json`` attribute (``claims.phase_alignment.mean_abs_sin_d``, ``train_loss.3``): the
tests read the page back and compare every such number with the JSON. Tables never grow wider
than the page: long column names break after their underscores.

Example:
    >>> import plotly.graph_objects as go
    >>> page = HtmlReport("demo", subtitle="a/b/c")
    >>> page.heading("A figure")
    >>> page.figure(go.Figure(go.Scatter(y=[1, 3, 2])))
    >>> "a/b/c" in page.render()
    True
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError, ModAddError
from ..fileio import atomic_rename, atomic_write_text

__all__ = ["HtmlReport", "STATIC_FORMATS", "breakable", "cell", "number", "check_static_export"]

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1150px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; margin-bottom: .1em; overflow-wrap: anywhere; }
p.subtitle { color: #666; font-size: .85em; margin-top: .2em; overflow-wrap: anywhere; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table.dataframe { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; max-width: 100%; }
table.dataframe th, table.dataframe td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
table.dataframe th { background: #f0f0f0; vertical-align: bottom; }
table.dataframe td.text { text-align: left; }
.holds { color: #1a7f37; font-weight: bold; } .fails { color: #b42318; font-weight: bold; }
.figure { margin: 1em 0; max-width: 100%; } p.note { color: #555; font-size: .92em; }
"""

#: Static image formats of :meth:`HtmlReport.export_figures`.
STATIC_FORMATS = ("png", "svg")


def breakable(text: str) -> str:
    """Escaped ``text`` that may break after its underscores (long names like
    ``train_both_orders_accuracy`` wrap there instead of widening their table)."""
    return "_<wbr>".join(html.escape(part) for part in str(text).split("_"))


def number(text: str, json_path: str | None = None, cls: str | None = None) -> str:
    """An inline ``<span>`` holding a formatted number, tagged with its JSON path."""
    attrs = (f' data-json="{html.escape(json_path)}"' if json_path else "") + (f' class="{cls}"' if cls else "")
    return f"<span{attrs}>{html.escape(text)}</span>"


def cell(text: str, json_path: str | None = None, cls: str | None = None) -> str:
    """A ``<td>`` holding ``text`` (text cells may break after underscores), tagged with its JSON path."""
    attrs = (f' data-json="{html.escape(json_path)}"' if json_path else "") + (f' class="{cls}"' if cls else "")
    return f"<td{attrs}>{breakable(text) if cls == 'text' else html.escape(text)}</td>"


class HtmlReport:
    """An HTML page built section by section; figures are plotly ``Figure`` objects.

    ``title`` is the page's heading (a run's name, short); ``subtitle`` a smaller line under it
    (e.g. the path of the checkpoint).
    """

    def __init__(self, title: str, subtitle: str | None = None) -> None:
        self.title = title
        self.subtitle = subtitle
        self._parts: list[str] = []
        self.figures: list[tuple[Any, str | None]] = []

    @property
    def n_figures(self) -> int:
        return len(self.figures)

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

    def table(self, df: pd.DataFrame, float_format: str = "{:.4g}", index: bool = False,
              json_path: Callable[[int, str], str | None] | None = None, table_id: str | None = None) -> HtmlReport:
        """A table of ``df``; floats through ``float_format``.

        ``json_path(row, column)`` names the JSON path of a cell's value (or None); the cell then
        carries it as ``data-json``. Text columns are left-aligned and wrap.
        """
        if index:
            df = df.reset_index()
        cols = list(df.columns)
        head = "".join(f"<th>{breakable(c)}</th>" for c in cols)
        body = []
        for i, row in enumerate(df.itertuples(index=False)):
            tds = []
            for c, v in zip(cols, row, strict=True):
                if isinstance(v, float):
                    txt, cls = ("" if v != v else float_format.format(v)), None
                else:
                    txt, cls = str(v), (None if isinstance(v, int) else "text")
                tds.append(cell(txt, json_path(i, str(c)) if json_path else None, cls))
            body.append("<tr>" + "".join(tds) + "</tr>")
        tid = f' id="{html.escape(table_id)}"' if table_id else ""
        self._parts.append(f"<table class='dataframe'{tid}><thead><tr>{head}</tr></thead><tbody>"
                           + "".join(body) + "</tbody></table>")
        return self

    def figure(self, fig: Any, caption: str | None = None) -> HtmlReport:
        """Add a plotly figure (drawn by the inlined plotly.js when the page loads)."""
        div_id = f"fig{len(self.figures)}"
        self.figures.append((fig, caption))
        body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                           config={"displaylogo": False, "responsive": True})
        cap = f"<p class='note'>{html.escape(caption)}</p>" if caption else ""
        self._parts.append(f"<div class='figure'>{body}{cap}</div>")
        return self

    def render(self) -> str:
        from plotly.offline import get_plotlyjs

        sub = f"<p class='subtitle'>{html.escape(self.subtitle)}</p>" if self.subtitle else ""
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            f"<h1>{html.escape(self.title)}</h1>{sub}" + "\n".join(self._parts) + "</body></html>\n"
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page atomically; returns the path."""
        return atomic_write_text(path, self.render())

    def export_figures(self, folder: str | os.PathLike, fmt: str = "png", *, width: int = 1100,
                       scale: float = 1.0) -> list[Path]:
        """Write every figure as a static image ``fig00.png``, ``fig01.png``, ... into ``folder``.

        Needs plotly's static exporter, kaleido (``pip install 'mechinterp_modadd[export]'``), which
        drives a Chrome or Chromium browser. Raises :class:`~mechinterp_modadd.errors.ModAddError`
        with one line naming the extra when kaleido is missing or cannot start its browser.
        """
        if fmt not in STATIC_FORMATS:
            raise ConfigError(f"static export format must be one of {', '.join(STATIC_FORMATS)}, got {fmt!r}")
        check_static_export()
        import plotly.io as pio

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"fig{i:02d}.{fmt}" for i in range(len(self.figures))]
        # written under temporary names and renamed once all succeeded: no partial set of images
        tmps = [path.with_name(f".{path.stem}.tmp.{fmt}") for path in paths]
        figs = [fig for fig, _ in self.figures]
        try:
            if hasattr(pio, "write_images"):  # plotly >= 6.1: one browser session for every figure
                pio.write_images(figs, tmps, format=fmt, width=width, scale=scale,
                                 height=[fig.layout.height or 500 for fig in figs])
            else:
                for fig, tmp in zip(figs, tmps, strict=True):
                    fig.write_image(tmp, format=fmt, width=width, height=fig.layout.height or 500, scale=scale)
        except Exception as e:  # kaleido reports a missing browser with assorted exception types
            for tmp in tmps:
                tmp.unlink(missing_ok=True)
            msg = str(e).splitlines()[0] if str(e) else "no message"
            raise ModAddError(f"static export to {out} failed ({type(e).__name__}: {msg}); kaleido needs Chrome or "
                              f"Chromium (plotly_get_chrome installs one)") from None
        for tmp, path in zip(tmps, paths, strict=True):
            atomic_rename(tmp, path)
        return paths


def check_static_export() -> None:
    """Raise a one-line :class:`~mechinterp_modadd.errors.ModAddError` when kaleido is not installed."""
    import importlib.util

    if importlib.util.find_spec("kaleido") is None:
        raise ModAddError("static figure export (--png/--svg) needs kaleido: pip install 'mechinterp_modadd[export]'")
