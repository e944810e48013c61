"""Shared styling of the figures: log axes with readable ticks."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def log_axis(values: Iterable[float] | None = None, **kw) -> dict:
    """Layout of a log axis whose tick labels do not crowd.

    Plotly labels every digit 1..9 of each decade when a log axis spans little; that is where the
    labels collide. Spanning >= 2 decades: one label per decade (``dtick=1``); less: labels at 1, 2
    and 5 (``dtick="D2"``) with unlabelled minor ticks.
    """
    axis = dict(type="log", exponentformat="power", minor=dict(ticks="inside", ticklen=3, showgrid=False), **kw)
    if values is not None:
        v = np.asarray([x for x in np.ravel(np.asarray(list(values), dtype=float)) if math.isfinite(x) and x > 0])
        if v.size:
            span = math.log10(v.max() / v.min()) if v.min() > 0 else 0.0
            axis["dtick"] = 1 if span >= 2 else "D2"
    else:
        axis["dtick"] = "D2"
    return axis
