"""Old import path of :class:`~mechinterp_modadd.pages.html.HtmlReport` (kept for notebooks and tests)."""

from .pages.html import HtmlReport

__all__ = ["HtmlReport"]
