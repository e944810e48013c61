"""The optimizers' hyper-parameters, declared once, without torch.

Every stacked optimizer (:mod:`mechinterp_modadd.training.optim`) reads ``lr`` and
``weight_decay``; the other numbers it reads are declared here, one :class:`HyperParam` each:
name, default, the interval each number must lie in, help text, CLI metavar and the short tag of
batch folder names. Everything else is derived from :data:`HYPER`:

- a :class:`~mechinterp_modadd.training.config.TrainConfig` field of that name and default
  (after ``weight_decay``), its type and range checked and coerced by :meth:`HyperParam.value`;
  ``config.json`` holds a tuple as a JSON list (:meth:`HyperParam.to_json`);
- the ``modadd train`` flag ``--NAME`` (underscores as dashes), parsed by :meth:`HyperParam.parse`;
  this module imports nothing heavy, so the parser stays light;
- the sweep grid key ``NAME`` (:mod:`mechinterp_modadd.sweeps.spec`);
- the tag of the field in the folder names of a batch whose runs differ in it
  (:func:`mechinterp_modadd.training.api.run_name`).

An optimizer names the hyper-parameters it reads in its class attribute ``hyper``; a config that
sets another optimizer's hyper-parameter away from its default is refused.

Adding an optimizer touches two files: its :class:`HyperParam` entries here when it brings new
hyper-parameters, and its stacked arithmetic in ``training/optim.py`` (a ``StackedOptimizer``
subclass decorated with ``@register``). One that reads only hyper-parameters declared already
touches ``training/optim.py`` alone.

A value is a number (``default`` a float) or a fixed number of numbers (``default`` a tuple of
floats, e.g. AdamW's ``betas``); every number must lie in ``interval``, written as in mathematics:
``"[0, 1)"``, ``"(0, inf)"``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real
from types import MappingProxyType
from typing import Any

__all__ = ["HyperParam", "HYPER"]

_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s\])]+)\s*([\])])\s*$")
_COUNT = {2: "two", 3: "three", 4: "four"}


def _fmt(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class HyperParam:
    """One optimizer hyper-parameter (see the module docstring).

    Attributes:
        name: the TrainConfig field and sweep grid key (a Python identifier); the CLI flag is
            ``--`` + name with underscores as dashes.
        default: a float, or a tuple of floats (the value then has exactly that many numbers).
        interval: where each number must lie, e.g. ``"[0, 1)"``; an infinite end is open.
        help: the flag's help line (the default is appended).
        metavar: the flag's placeholder (default: the name in capitals; for a tuple
            ``NAME1,NAME2,...``).
        short: the tag of the field in batch folder names (default: the name).
    """

    name: str
    default: float | tuple[float, ...]
    interval: str
    help: str
    metavar: str = ""
    short: str = ""
    low: float = field(init=False, repr=False)
    high: float = field(init=False, repr=False)
    closed: tuple[bool, bool] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name.startswith("_"):
            raise ValueError(f"HyperParam name must be a Python identifier, got {self.name!r}")
        m = _INTERVAL.match(self.interval)
        try:
            lo, hi = float(m.group(2)), float(m.group(3))  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            raise ValueError(f"HyperParam {self.name}: interval must read like '[0, 1)' or '(0, inf)', "
                             f"got {self.interval!r}") from None
        closed = (m.group(1) == "[", m.group(4) == "]")  # type: ignore[union-attr]
        if math.isnan(lo) or math.isnan(hi) or lo >= hi or (closed[0] and math.isinf(lo)) \
                or (closed[1] and math.isinf(hi)):
            raise ValueError(f"HyperParam {self.name}: {self.interval!r} is not an interval with open "
                             f"infinite ends")
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)
        object.__setattr__(self, "closed", closed)
        if isinstance(self.default, tuple):
            if len(self.default) < 2 or not all(type(x) is float for x in self.default):
                raise ValueError(f"HyperParam {self.name}: a tuple default holds two or more floats, "
                                 f"got {self.default!r}")
        elif type(self.default) is not float:
            raise ValueError(f"HyperParam {self.name}: default must be a float or a tuple of floats, "
                             f"got {self.default!r}")
        if not self.metavar:
            stem = self.name.upper()
            object.__setattr__(self, "metavar", ",".join(f"{stem}{i + 1}" for i in range(self.size))
                               if self.size else stem)
        if not self.short:
            object.__setattr__(self, "short", self.name)
        self.value(self.default)  # the default lies in the interval

    # ------------------------------------------------------------------------------ derived
    @property
    def size(self) -> int:
        """How many numbers a value holds: 0 for a single number."""
        return len(self.default) if isinstance(self.default, tuple) else 0

    @property
    def flag(self) -> str:
        """The ``modadd train`` flag."""
        return "--" + self.name.replace("_", "-")

    @property
    def annotation(self) -> str:
        """The TrainConfig field's type."""
        return f"tuple[{', '.join(['float'] * self.size)}]" if self.size else "float"

    @property
    def describe(self) -> str:
        """What a value is, in words: ``a pair of numbers in [0, 1) such as [0.9, 0.98]``."""
        if not self.size:
            return f"a number in {self.interval}"
        words = "a pair of numbers" if self.size == 2 else f"{_COUNT.get(self.size, self.size)} numbers"
        return f"{words} in {self.interval} such as {list(self.default)}"

    def contains(self, x: float) -> bool:
        """Whether the number ``x`` lies in :attr:`interval`."""
        lo_ok = x >= self.low if self.closed[0] else x > self.low
        hi_ok = x <= self.high if self.closed[1] else x < self.high
        return lo_ok and hi_ok

    # -------------------------------------------------------------------------- checking
    def value(self, raw: Any) -> float | tuple[float, ...]:
        """``raw`` as TrainConfig holds it (a float, or a tuple of floats from a list or tuple).

        Raises:
            ValueError: with a reason that reads after the name, e.g. ``must be in [0, 1), got 1.5``.
        """
        if self.size:
            ok = isinstance(raw, (list, tuple)) and len(raw) == self.size and all(
                isinstance(x, Real) and not isinstance(x, bool) and self.contains(float(x)) for x in raw)
            if not ok:
                raise ValueError(f"must be {self.describe}, got {raw!r}")
            return tuple(float(x) for x in raw)
        if isinstance(raw, bool) or not isinstance(raw, Real):
            raise ValueError(f"must be a number, got {raw!r}")
        if not self.contains(float(raw)):
            raise ValueError(f"must be in {self.interval}, got {raw!r}")
        return float(raw)

    def parse(self, text: str) -> float | tuple[float, ...]:
        """The flag's text as a value (numbers only; :meth:`value` checks the range).

        Raises:
            ValueError: naming what was expected, e.g. ``expected two numbers B1,B2 such as 0.9,0.98``.
        """
        parts = [t.strip() for t in str(text).split(",")]
        try:
            if self.size:
                if len(parts) != self.size:
                    raise ValueError
                return tuple(float(t) for t in parts)
            if len(parts) != 1:
                raise ValueError
            return float(parts[0])
        except ValueError:
            if self.size:
                count = _COUNT.get(self.size, self.size)
                raise ValueError(f"expected {count} numbers {self.metavar} such as {self.text(self.default)}, "
                                 f"got {text!r}") from None
            raise ValueError(f"expected a number, got {text!r}") from None

    def to_json(self, v: float | tuple[float, ...]) -> float | list[float]:
        """The value as ``config.json`` and a sweep grid hold it (a tuple as a list)."""
        return list(v) if isinstance(v, tuple) else v

    def text(self, v: float | tuple[float, ...]) -> str:
        """The value as the flag would take it: ``0.9,0.98``."""
        return ",".join(_fmt(x) for x in v) if isinstance(v, tuple) else _fmt(v)


def _table(*params: HyperParam) -> dict[str, HyperParam]:
    out: dict[str, HyperParam] = {}
    for hp in params:
        if hp.name in out:
            raise ValueError(f"hyper-parameter {hp.name!r} declared twice")
        out[hp.name] = hp
    return out


#: name -> declaration, in TrainConfig field order (after ``weight_decay``); several optimizers may
#: read one entry (then they share its default and range). Read-only: TrainConfig's fields are made
#: from it once, so a hyper-parameter is declared here, not added at run time.
HYPER: Mapping[str, HyperParam] = MappingProxyType(_table(
    HyperParam("betas", (0.9, 0.98), "[0, 1)", "AdamW's moment decay rates (adamw only)", metavar="B1,B2"),
    HyperParam("momentum", 0.0, "[0, 1)", "SGD's momentum, heavy ball without dampening (sgd only; "
               "0: plain gradient descent)", metavar="M", short="mom"),
))
