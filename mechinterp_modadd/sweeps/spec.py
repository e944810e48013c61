"""Sweep specifications: a TOML file (or a preset) naming a grid of training runs and the analyses.

Format (every key optional except ``grid``; unknown keys are refused)::

    name = "my sweep"                  # free text
    page = "grokking"                  # research page of `modadd report DIR`: lottery | grokking | primes
    analyses = ["diagnose", "lottery", "progress"]   # what each finished run is analysed with
    threads = 1                        # torch intra-op threads per batch (same on every executor)

    [grid]                             # each value: one value or a non-empty list (the Cartesian product)
    preset = ["standard", "quad_random"]
    p = [23]
    d_mlp = "rule"                     # "rule" = max(512, ceil(512 p^2 / 529)), or widths, e.g. [512]
    seed = "0-63"                      # also a list of integers or one integer
    activation = "relu"                # default: the preset's
    lr = [5e-5]                        # default: the preset's; likewise the next four
    weight_decay = [0.0, 1.0]
    train_fraction = [0.5, 0.75]
    init_scale = [0.1]
    steps = 5000
    save_every = 1000
    stop_accuracy = 0.99               # optional early stop (TrainConfig): end a run once train and test
    stop_window = 1000                 # accuracy held >= 0.99 over the last 1000 steps (checked every 1000)
    optimizer = "sgd"                  # default: the preset's (adamw | sgd, training.optim)
    momentum = [0.0, 0.9]              # SGD's momentum (sgd runs only)
    betas = [[0.9, 0.98], [0.9, 0.999]]   # AdamW's betas (adamw runs only); one pair or a list of pairs

Every optimizer hyper-parameter declared in :data:`mechinterp_modadd.hyperparams.HYPER` is a grid
key (``betas`` and ``momentum`` above), checked against its declared interval; one whose value is a
tuple takes one tuple or a list of them, like ``betas``.

Analyses: ``diagnose`` (every registered claim on the final checkpoint: key number and verdict),
``lottery`` (the four winner predictors, step 0 against the final checkpoint) and ``progress``
(restricted / excluded loss of the final checkpoint). Every row also gets the final metrics, the
grokking step and the stage boundaries, read from the run's per-step ``metrics.csv``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

from ..constants import MAX_RUNS as _MAX_RUNS
from ..errors import ConfigError, ModAddError, ModAddWarning
from ..hyperparams import HYPER

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with the tomli backport (a dependency there)
    import tomli as tomllib

__all__ = ["SweepSpec", "RunPlan", "SpecError", "parse_spec", "load_spec", "spec_from_dict", "ANALYSES", "PAGES",
           "GRID_KEYS", "MAX_RUNS", "spec_differences"]

#: analyses a sweep can run on each finished run
ANALYSES = ("diagnose", "lottery", "progress")
#: research pages a sweep can declare
PAGES = ("lottery", "grokking", "primes")
#: grid axes, in the order runs are expanded (the last varies fastest)
GRID_KEYS = ("preset", "p", "d_mlp", "activation", "optimizer", *HYPER, "init_scale", "lr",
             "weight_decay", "train_fraction", "steps", "save_every", "stop_accuracy", "stop_window", "seed")
_TOP_KEYS = ("name", "page", "analyses", "threads", "grid")
#: most runs one sweep may plan (:data:`mechinterp_modadd.constants.MAX_RUNS`): a larger grid is
#: refused, with its count, before anything is built or written (split it into several sweeps)
MAX_RUNS = _MAX_RUNS
_FLOAT_KEYS = ("lr", "weight_decay", "train_fraction", "init_scale", "stop_accuracy")
#: TrainConfig keys added after run names were first hashed: left out of the hash at their defaults,
#: so that runs which do not use them keep their names (every optimizer hyper-parameter but betas)
_LATER_KEYS = ("family", *(k for k in HYPER if k != "betas"))
_INT_KEYS = ("p", "steps", "save_every", "stop_window", "seed")


class SpecError(ModAddError, ValueError):
    """A sweep specification that cannot be used (the message names the file and the key)."""


@dataclass(frozen=True)
class RunPlan:
    """One run of a sweep: its folder name, its training configuration and its grid values."""

    name: str
    config: Any  # TrainConfig (imported lazily: the spec parser stays light)
    values: dict[str, Any]

    @property
    def shape(self) -> tuple:
        """Runs with equal shapes can be trained together by the batched trainer."""
        c = self.config
        return (c.family, c.p, c.model_config().d_mlp, c.activation, c.optimizer, c.init, c.steps, c.save_every,
                c.stop_window)


@dataclass(frozen=True)
class SweepSpec:
    """A validated, normalised sweep specification (see the module docstring)."""

    grid: dict[str, list[Any]]
    name: str = ""
    page: str | None = None
    analyses: tuple[str, ...] = ANALYSES
    threads: int = 1
    source: str = "<spec>"
    runs: tuple[RunPlan, ...] = field(default=(), repr=False, compare=False)
    #: warnings about the grid (e.g. a composite p), raised by :func:`run_sweep` only once the sweep
    #: passed every check: a refused sweep prints its one error line alone
    notes: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The normalised spec (what ``DIR/sweep.json`` stores and compares)."""
        return {"name": self.name, "page": self.page, "analyses": list(self.analyses), "threads": self.threads,
                "grid": {k: list(v) for k, v in self.grid.items()}}

    def to_toml(self) -> str:
        """The spec as TOML text (what ``--print-spec`` writes; parses back to the same spec)."""
        def val(v: Any) -> str:
            if isinstance(v, list):
                return "[" + ", ".join(val(x) for x in v) + "]"
            if isinstance(v, str):
                return json.dumps(v)
            if isinstance(v, bool):
                return "true" if v else "false"
            return repr(v)

        lines = [f"name = {val(self.name)}"]
        if self.page:
            lines.append(f"page = {val(self.page)}")
        lines += [f"analyses = {val(list(self.analyses))}", f"threads = {self.threads}", "", "[grid]"]
        lines += [f"{k} = {val(v)}" for k, v in self.grid.items()]
        return "\n".join(lines) + "\n"


def _fail(source: str, key: str, msg: str) -> SpecError:
    return SpecError(f"{source}: {key}: {msg}")


def _seeds(source: str, v: Any) -> list[int]:
    if isinstance(v, str):
        out: list[int] = []
        for part in v.replace(" ", "").split(","):
            a, sep, b = part.partition("-")
            try:
                lo, hi = int(a), int(b) if sep else int(a)
            except ValueError:
                raise _fail(source, "grid.seed", f"expected integers or ranges like '0-63', got {v!r}") from None
            if hi < lo:
                raise _fail(source, "grid.seed", f"empty range {part!r}")
            if hi - lo + 1 > MAX_RUNS:
                raise _fail(source, "grid.seed", f"{part!r} names {hi - lo + 1:,} seeds; a sweep plans at most "
                            f"{MAX_RUNS:,} runs (split it into several sweeps)")
            out += range(lo, hi + 1)
        return out
    return _as_list(source, "seed", v)


def _as_list(source: str, key: str, v: Any) -> list[Any]:
    if key in HYPER and HYPER[key].size and isinstance(v, list) and v and not isinstance(v[0], list):
        v = [v]  # one tuple (e.g. one pair of betas)
    vals = list(v) if isinstance(v, list) else [v]
    if not vals:
        raise _fail(source, f"grid.{key}", "empty list: give at least one value")
    return vals


def _check_value(source: str, key: str, v: Any) -> Any:
    where = f"grid.{key}"
    if key == "preset":
        from ..constants import PRESET_NAMES

        if v not in PRESET_NAMES:
            raise _fail(source, where, f"unknown preset {v!r}; known: {', '.join(PRESET_NAMES)}")
        return v
    if key == "activation":
        from ..constants import ACTIVATION_ALIASES, ACTIVATION_NAMES

        if not isinstance(v, str) or (v.lower() not in ACTIVATION_NAMES and v.lower() not in ACTIVATION_ALIASES):
            raise _fail(source, where, f"unknown activation {v!r}; known: {', '.join(ACTIVATION_NAMES)}")
        return ACTIVATION_ALIASES.get(v.lower(), v.lower())
    if key == "optimizer":
        if not isinstance(v, str) or not v.isidentifier():
            raise _fail(source, where, f"expected an optimizer name such as \"adamw\" or \"sgd\", got {v!r}")
        return v
    if key in HYPER:
        hp = HYPER[key]
        try:
            return hp.to_json(hp.value(v))
        except ValueError as e:
            raise _fail(source, where, str(e)) from None
    if key == "d_mlp":
        if v == "rule":
            return v
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise _fail(source, where, f"expected a positive integer or \"rule\", got {v!r}")
        return v
    if key in _INT_KEYS:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _fail(source, where, f"expected an integer, got {v!r}")
        lo = {"p": 3, "steps": 1, "save_every": 1, "stop_window": 1, "seed": 0}[key]
        if v < lo:
            raise _fail(source, where, f"must be >= {lo}, got {v}")
        if key == "p" and v % 2 == 0:
            raise _fail(source, where, f"p must be odd, got {v}")
        return v
    if key in _FLOAT_KEYS:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _fail(source, where, f"expected a number, got {v!r}")
        v = float(v)
        if key in ("train_fraction", "stop_accuracy") and not 0 < v <= 1:
            raise _fail(source, where, f"must be in (0, 1], got {v}")
        if key in ("lr", "init_scale") and v <= 0:
            raise _fail(source, where, f"must be > 0, got {v}")
        if key == "weight_decay" and v < 0:
            raise _fail(source, where, f"must be >= 0, got {v}")
        return v
    raise AssertionError(key)  # pragma: no cover


def spec_from_dict(doc: dict[str, Any], source: str = "<spec>") -> SweepSpec:
    """Validate a parsed TOML document and expand its runs (raises :class:`SpecError`)."""
    unknown = sorted(set(doc) - set(_TOP_KEYS))
    if unknown:
        raise _fail(source, unknown[0], f"unknown key; known top-level keys: {', '.join(_TOP_KEYS)}")
    if "grid" not in doc or not isinstance(doc["grid"], dict):
        raise _fail(source, "grid", "missing [grid] table (the runs to train)")
    grid_in = doc["grid"]
    bad = sorted(set(grid_in) - set(GRID_KEYS))
    if bad:
        raise _fail(source, f"grid.{bad[0]}", f"unknown key; known grid keys: {', '.join(GRID_KEYS)}")
    grid: dict[str, list[Any]] = {}
    for key in GRID_KEYS:
        if key not in grid_in:
            continue
        raw = _seeds(source, grid_in[key]) if key == "seed" else _as_list(source, key, grid_in[key])
        vals = [_check_value(source, key, v) for v in raw]
        if len(set(map(json.dumps, vals))) != len(vals):
            raise _fail(source, f"grid.{key}", f"repeated values in {raw}")
        grid[key] = vals
    grid.setdefault("preset", ["standard"])
    grid.setdefault("p", [23])
    grid.setdefault("seed", [0])
    n_runs = math.prod(len(v) for v in grid.values())
    if n_runs > MAX_RUNS:
        sizes = " x ".join(f"{len(v)} {k}" for k, v in grid.items() if len(v) > 1)
        raise _fail(source, "grid", f"{n_runs:,} runs ({sizes}); a sweep plans at most {MAX_RUNS:,} runs (split "
                    f"the grid into several sweeps)")
    name = doc.get("name", "")
    if not isinstance(name, str):
        raise _fail(source, "name", f"expected a string, got {name!r}")
    page = doc.get("page")
    if page is not None and page not in PAGES:
        raise _fail(source, "page", f"unknown page {page!r}; known: {', '.join(PAGES)}")
    analyses = doc.get("analyses", list(ANALYSES))
    if not isinstance(analyses, list) or any(a not in ANALYSES for a in analyses):
        raise _fail(source, "analyses", f"expected a list drawn from {', '.join(ANALYSES)}, got {analyses!r}")
    threads = doc.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise _fail(source, "threads", f"expected a positive integer, got {threads!r}")
    spec = SweepSpec(grid=grid, name=name, page=page, analyses=tuple(dict.fromkeys(analyses)), threads=threads,
                     source=source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ModAddWarning)
        runs = _expand(spec)
    _check_page(spec, runs)
    notes = tuple(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, ModAddWarning)))
    return SweepSpec(grid=grid, name=name, page=page, analyses=spec.analyses, threads=threads, source=source,
                     runs=tuple(runs), notes=notes)


def _expand(spec: SweepSpec) -> list[RunPlan]:
    from ..training import TrainConfig, preset

    keys = [k for k in GRID_KEYS if k in spec.grid]
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    runs: list[RunPlan] = []
    for combo in itertools.product(*(spec.grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        over = {k: v for k, v in values.items() if k != "preset"}
        if over.get("d_mlp") == "rule":
            over["d_mlp"] = None
        try:
            cfg: TrainConfig = preset(values["preset"], **over)
            cfg.model_config()
        except ConfigError as e:
            desc = ", ".join(f"{k} = {v}" for k, v in values.items())
            raise _fail(spec.source, "grid", f"impossible combination ({desc}): {e}") from None
        if cfg.train_fraction < 1.0:
            n_train = round(cfg.train_fraction * cfg.p * cfg.p)
            if n_train < 1 or n_train >= cfg.p * cfg.p:
                raise _fail(spec.source, "grid", f"impossible combination (p = {cfg.p}, train_fraction = "
                            f"{cfg.train_fraction}): the split would leave no train or no test pairs")
        d = cfg.to_dict()
        if cfg.stop_accuracy is None:  # runs without an early stop keep the names they had before it existed
            del d["stop_accuracy"], d["stop_window"]
        for k in _LATER_KEYS:  # likewise keys added later, at their defaults
            if getattr(cfg, k) == defaults[k]:
                del d[k]
        blob = json.dumps(d, sort_keys=True)
        tag = hashlib.sha256(blob.encode()).hexdigest()[:8]
        runs.append(RunPlan(name=f"{values['preset']}_p{cfg.p}_seed{cfg.seed}_{tag}", config=cfg, values=values))
    return runs


def _check_page(spec: SweepSpec, runs: list[RunPlan]) -> None:
    src = spec.source
    if spec.page == "lottery" and "lottery" not in spec.analyses:
        raise _fail(src, "page", "the lottery page needs the 'lottery' analysis in analyses")
    if spec.page == "primes" and "diagnose" not in spec.analyses:
        raise _fail(src, "page", "the primes page needs the 'diagnose' analysis in analyses")
    if spec.page == "grokking" and all(r.config.train_fraction >= 1.0 for r in runs):
        raise _fail(src, "page", "the grokking page needs runs with train_fraction < 1 (a test set)")


def parse_spec(text: str, source: str = "<spec>", overrides: dict[str, Any] | None = None) -> SweepSpec:
    """Parse TOML text into a :class:`SweepSpec`; ``overrides`` replace grid keys (see :func:`parse_set`)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source}: not valid TOML ({e})") from None
    if overrides:
        grid = doc.get("grid")
        doc["grid"] = {**(grid if isinstance(grid, dict) else {}), **overrides}
    return spec_from_dict(doc, source)


def load_spec(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """Read and parse a TOML spec file (``overrides``: grid keys to replace)."""
    from ..inputs import check_input_path

    path = check_input_path(path, what="sweep spec", kind="file", error=SpecError)  # stat only: no pipe is read
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SpecError(f"{path}: cannot read the sweep spec ({e.strerror})") from None
    return parse_spec(decode_spec(data, str(path)), str(path), overrides)


def decode_spec(data: bytes, source: str) -> str:
    """The text of a spec file: UTF-8 (TOML's encoding), with a leading BOM allowed; binary content
    or another encoding is refused in one line naming the file and the first bad byte."""
    if b"\x00" in data[:8192]:
        raise SpecError(f"{source}: not a text file (it holds NUL bytes); a sweep spec is TOML text in UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise SpecError(f"{source}: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}); a sweep spec is "
                        f"TOML in UTF-8: save it as UTF-8") from None


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` options as grid overrides; VALUE is a TOML value (``steps=50000``,
    ``seed="0-9"``, ``p=[5, 7]``). Keys are checked with the rest of the spec."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE with a grid key, e.g. steps=50000")
        try:
            out[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            raise SpecError(f"--set {item!r}: {value!r} is not a TOML value (numbers, \"strings\", "
                            f"[lists])") from None
    return out


def spec_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two normalised specs (``key: old -> new``)."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{d}" for d in spec_differences(a, b)]
        elif a != b:
            out.append(f"{k}: {json.dumps(a)} -> {json.dumps(b)}")
    return out
