"""Notebook helpers used by the tutorials: find the shipped ``data/`` folder, and show plotly figures
so that they display everywhere a notebook is read.

Why a renderer of our own: a repository browser (GitHub) and a static viewer (nbviewer) run no
JavaScript, so plotly's usual HTML output shows up there as an empty box. :func:`setup_notebook`
registers the renderer ``"modadd"`` that writes every figure twice into the cell output:
``application/vnd.plotly.v1+json`` (JupyterLab, VS Code and Colab draw it interactively) and an
``image/png`` rendered by kaleido (which drives a local Chrome/Chromium); static viewers skip the
plotly mime type they do not know and show the picture. When no browser can be started the figure
keeps only the interactive part (no error, no warning in the output).

Example:
    >>> from mechinterp_modadd.notebook import setup_notebook   # doctest: +SKIP
    >>> DATA = setup_notebook()      # the repository's data/ folder; figures get a PNG fallback
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import warnings
from pathlib import Path

from .errors import CheckpointError

__all__ = ["data_dir", "setup_notebook", "static_png"]

_ENV = "MODADD_DATA"
_server: dict[str, bool] = {"started": False, "failed": False}


def data_dir(start: str | os.PathLike | None = None) -> Path:
    """The folder ``data/`` holding the shipped runs (``standard_p23``, ``grokking_p23``, ...).

    Looked up in this order: the environment variable ``MODADD_DATA``; ``data/`` in ``start``
    (default: the working directory) or any of its parents (so notebooks find it from the
    repository root and from ``tutorials/``); ``data/`` beside the installed package's source
    checkout. Raises :class:`~mechinterp_modadd.errors.CheckpointError` naming the places tried.
    """
    tried: list[str] = []
    env = os.environ.get(_ENV)
    if env:
        p = Path(env).expanduser()
        if (p / "standard_p23").is_dir():
            return p.resolve()
        tried.append(f"${_ENV}={env}")
    here = Path(start if start is not None else Path.cwd()).resolve()
    candidates = [d / "data" for d in (here, *here.parents)]
    candidates.append(Path(__file__).resolve().parents[1] / "data")
    for c in candidates:
        if (c / "standard_p23").is_dir():
            return c
    tried += [str(here / "data"), "its parents' data/", str(candidates[-1])]
    raise CheckpointError("no data/ folder with the shipped runs found (looked in " + ", ".join(tried)
                          + f"); run from a source checkout or set {_ENV}")


def _ensure_server() -> bool:
    """Start kaleido's persistent browser once (fast repeated exports); False if it cannot run."""
    if _server["started"]:
        return True
    if _server["failed"]:
        return False
    if not _browser_found():  # kaleido's server starts without one, then every export waits forever
        _server["failed"] = True
        return False
    try:
        import kaleido

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kaleido.start_sync_server(silence_warnings=True)
        atexit.register(_stop_server)
        _server["started"] = True
        return True
    except Exception:  # no kaleido, no browser: figures keep their interactive output only
        _server["failed"] = True
        return False


def _browser_found() -> bool:
    """Whether kaleido can find a Chromium-based browser (its download, ``BROWSER_PATH`` or the PATH)."""
    try:
        from choreographer.browsers.chromium import Chromium
    except Exception:  # another kaleido back end: let it try
        return True
    try:
        return Chromium.find_browser(skip_local=False) is not None
    except Exception:
        return False


def _stop_server() -> None:
    try:
        import kaleido

        kaleido.stop_sync_server(silence_warnings=True)
    except Exception:
        pass
    _server["started"] = False


def static_png(fig, width: int = 900, height: int | None = None, scale: float = 1.0) -> bytes | None:
    """PNG bytes of a plotly figure (or figure dict) through kaleido, or None when it cannot run.

    ``height`` defaults to the figure's layout height, else 450 px.
    """
    import plotly.io as pio

    if not _ensure_server():
        return None
    if isinstance(fig, dict):
        import plotly.graph_objects as go

        fig = go.Figure(fig)
    h = height or fig.layout.height or 450
    w = fig.layout.width or width
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pio.to_image(fig, format="png", width=int(w), height=int(h), scale=scale)
    except Exception:
        _server["failed"] = True
        return None


def _renderer_class():
    from plotly.io import base_renderers

    class StaticFallbackRenderer(base_renderers.MimetypeRenderer):
        """Interactive plotly JSON plus a PNG picture of the same figure (see the module docstring)."""

        def __init__(self, width: int = 900, scale: float = 1.0, static: bool = True) -> None:
            self.width, self.scale, self.static = width, scale, static

        def to_mimebundle(self, fig_dict):
            from plotly.io import to_json

            bundle = {"application/vnd.plotly.v1+json": json.loads(to_json(fig_dict, validate=False)),
                      "text/plain": "<plotly figure: open the notebook in Jupyter for the interactive view>"}
            png = static_png(fig_dict, width=self.width, scale=self.scale) if self.static else None
            if png is not None:
                bundle["image/png"] = base64.b64encode(png).decode("ascii")
            return bundle

    return StaticFallbackRenderer


def setup_notebook(static: bool | None = None, width: int = 900, scale: float = 1.0) -> Path:
    """Prepare a notebook: plotly figures through the ``"modadd"`` renderer, and return
    :func:`data_dir`.

    ``static``: add the PNG fallback (default: on, unless the environment variable
    ``MODADD_STATIC_FIGURES`` is ``0``). Also silences tqdm's "IProgress not found" notice: without
    ipywidgets, tqdm.auto (imported by transformer-lens) already falls back to text progress bars,
    so the notice says nothing a tutorial reader needs.
    """
    import plotly.io as pio
    from tqdm import TqdmWarning

    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
    if static is None:
        static = os.environ.get("MODADD_STATIC_FIGURES", "1") != "0"
    pio.renderers["modadd"] = _renderer_class()(width=width, scale=scale, static=static)
    pio.renderers.default = "modadd"
    return data_dir()
