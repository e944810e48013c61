"""Shared styling of the figures: log axes with readable ticks."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def log_axis(values: Iterable[float] | None = None, **kw) -> dict:
    """Layout of a log axis whose tick labels do not crowd.

    Plotly labels every digit 1..9 of each decade when a log axis spans little; that is where the
    labels collide. Spanning >= 2 decades: one label per decade (``dtick=1``); less: labels at 1, 2
    and 5 only (``dtick="D2"``). Decades are written as powers of ten.
    """
    axis = dict(type="log", exponentformat="power", dtick="D2", **kw)
    if values is not None:
        v = np.asarray([x for x in np.ravel(np.asarray(list(values), dtype=float)) if math.isfinite(x) and x > 0])
        if v.size and math.log10(v.max() / v.min()) >= 2:
            axis["dtick"] = 1  # one label per decade, no minor ticks
    return axis
