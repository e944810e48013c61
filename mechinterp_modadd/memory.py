"""A memory budget for the analyses, and the sizes of the chunks it allows.

Every analysis that would hold a [pairs, neurons] or [masks, classes, neurons] tensor at once streams
over pairs (or masks) in chunks sized from one budget in bytes. The budget comes from, in order:
an explicit ``max_memory`` argument, the innermost :func:`memory_budget` block (what the CLI's
``--max-memory`` sets), or :data:`DEFAULT_MAX_MEMORY`.

The budget bounds the large temporaries of the analyses, not the whole process: Python, torch and
the model itself come on top (about 0.3-0.5 GB), so the default of 3 GiB keeps a whole command
under 4 GB of resident memory.

Parsing (:func:`parse_memory`): a number with an optional unit, case-insensitive, with or without a
space, in binary units: ``B``; ``K``, ``KB``, ``KiB`` (1024); ``M``, ``MB``, ``MiB``; ``G``, ``GB``,
``GiB``; ``T``, ``TB``, ``TiB``. ``"4GB"`` = 4 GiB, ``"500MB"`` = 500 MiB, ``"1.5G"``; a plain number
is bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import math
import re
from collections.abc import Iterator

from .errors import InputError

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
#: smallest budget the command line accepts (below it even one row of a large model would not fit)
MIN_MEMORY: int = 50 * 2**20

_UNITS = {"": 1, "B": 1}
for _i, _letter in enumerate("KMGT", start=1):
    for _suffix in ("", "B", "IB"):
        _UNITS[_letter + _suffix] = 1 << (10 * _i)
_PATTERN = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*")

_BUDGET: contextvars.ContextVar[int | None] = contextvars.ContextVar("modadd_memory_budget", default=None)


def parse_memory(value: str | int | float, what: str = "memory size") -> int:
    """Bytes from ``"4GB"``, ``"500MB"``, ``"2GiB"``, ``"1.5G"`` or a number of bytes (binary units,
    see the module docstring). Raises :class:`InputError` starting with ``what`` and the value on
    anything else, or on a size that is not positive."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        n = float(value)
    else:
        m = _PATTERN.fullmatch(str(value))
        if m is None or m.group(2).upper() not in _UNITS:
            raise InputError(f"{what} {value!r}: expected a number with an optional unit "
                             f"(B, K, M, G, T, also KB/KiB...; e.g. 4GB or 500MB)")
        n = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if not math.isfinite(n) or n < 1:
        raise InputError(f"{what} {value!r}: expected a positive size in bytes")
    return int(n)


def format_bytes(n: float) -> str:
    """``1.50 GiB`` style (binary units, as :func:`parse_memory` reads them)."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
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
    token = _BUDGET.set(parse_memory(max_memory, "max_memory"))
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
        n = parse_memory(text, "")
    except InputError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None
    if n < MIN_MEMORY:
        raise argparse.ArgumentTypeError(f"{text!r}: the memory budget must be at least {format_bytes(MIN_MEMORY)}")
    return n


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
