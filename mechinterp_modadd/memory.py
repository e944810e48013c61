"""A memory budget for the analyses, and the sizes of the chunks it allows.

Every analysis that would hold a [pairs, neurons] or [masks, classes, neurons] tensor at once streams
over pairs (or masks) in chunks sized from one budget in bytes. The budget comes from, in order:
an explicit ``max_memory`` argument, the innermost :func:`memory_budget` block (what the CLI's
``--max-memory`` sets), or :data:`DEFAULT_MAX_MEMORY`.

The budget bounds the large temporaries of the analyses, not the whole process: Python, torch and
the model itself come on top (about 0.3-0.5 GB), so the default of 3 GiB keeps a whole command
under 4 GB of resident memory.

Parsing (:func:`parse_memory`): a number with an optional unit, case-insensitive, with or without a
space: ``B``, ``KB``/``MB``/``GB``/``TB`` (powers of 1000), ``K``/``M``/``G``/``T`` and
``KiB``/``MiB``/``GiB``/``TiB`` (powers of 1024). ``"4GB"`` = 4e9 bytes, ``"500MB"`` = 5e8, ``"2G"`` =
2 GiB, ``"1.5GiB"``; a plain number is bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import math
import re
from collections.abc import Iterator

from .errors import ConfigError

__all__ = [
    "DEFAULT_MAX_MEMORY",
    "MIN_MEMORY",
    "parse_memory",
    "format_bytes",
    "memory_budget",
    "current_budget",
    "rows_per_chunk",
    "add_max_memory_argument",
]

#: default budget of the analyses' large temporaries: 3 GiB (the process stays under 4 GB)
DEFAULT_MAX_MEMORY: int = 3 * 2**30
#: smallest budget accepted (below it even one row of a large model would not fit)
MIN_MEMORY: int = 50 * 10**6

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")

_BUDGET: contextvars.ContextVar[int | None] = contextvars.ContextVar("modadd_memory_budget", default=None)


def parse_memory(value: str | int | float, what: str = "--max-memory") -> int:
    """Bytes from ``"4GB"``, ``"500MB"``, ``"2GiB"``, ``"1.5G"`` or a number of bytes (see the module
    docstring for the units). Raises :class:`ConfigError` naming ``what`` on anything else or on a
    budget below :data:`MIN_MEMORY` (50 MB)."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a size such as 4GB or 500MB, got {value!r}")
    if isinstance(value, (int, float)):
        n = float(value)
    else:
        m = _PATTERN.match(str(value))
        if not m or m.group(2).lower() not in _UNITS:
            raise ConfigError(f"{what}: expected a size such as 4GB, 500MB or 2GiB, got {value!r}")
        n = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not math.isfinite(n) or n < MIN_MEMORY:
        raise ConfigError(f"{what}: the memory budget must be at least {format_bytes(MIN_MEMORY)}, got {value!r}")
    return int(n)


def format_bytes(n: float) -> str:
    """``1.50 GB`` style (powers of 1000)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def current_budget(max_memory: int | str | None = None) -> int:
    """The budget in bytes: ``max_memory`` if given, else the innermost :func:`memory_budget`, else
    :data:`DEFAULT_MAX_MEMORY`."""
    if max_memory is not None:
        return parse_memory(max_memory, "max_memory")
    v = _BUDGET.get()
    return DEFAULT_MAX_MEMORY if v is None else v


@contextlib.contextmanager
def memory_budget(max_memory: int | str | None) -> Iterator[int]:
    """Inside the block, analyses that take no explicit ``max_memory`` use this budget (``None``
    keeps the current one). Yields the budget in bytes."""
    if max_memory is None:
        yield current_budget()
        return
    token = _BUDGET.set(parse_memory(max_memory))
    try:
        yield _BUDGET.get()
    finally:
        _BUDGET.reset(token)


def rows_per_chunk(bytes_per_row: float, *, budget: int | None = None, share: float = 1.0,
                   total: int | None = None) -> int:
    """How many rows of ``bytes_per_row`` bytes fit in ``share`` of the budget (at least 1, at most
    ``total`` when given)."""
    b = current_budget(budget) * share
    n = max(1, int(b // max(1.0, float(bytes_per_row))))
    return n if total is None else max(1, min(n, int(total)))


def _argparse_memory(text: str) -> int:
    try:
        return parse_memory(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--max-memory: ")) from None


def add_max_memory_argument(ap: argparse.ArgumentParser, *, training: bool = False) -> None:
    """Add ``--max-memory SIZE`` (parsed to bytes; default None = :data:`DEFAULT_MAX_MEMORY`)."""
    if training:
        text = ("refuse to start when one full-batch step needs more memory than this (e.g. 4GB); "
                "default: the memory available. With several runs, also the budget of one batch chunk "
                "(default 2 GiB): the runs are trained in chunks that fit it")
    else:
        text = (f"memory budget of the analyses' large temporaries, e.g. 4GB, 500MB, 2GiB (default "
                f"{DEFAULT_MAX_MEMORY / 2**30:g} GiB); work is streamed in chunks, and pairs are sampled "
                f"(with confidence intervals) where exact computation would not fit")
    ap.add_argument("--max-memory", type=_argparse_memory, default=None, metavar="SIZE", help=text)
