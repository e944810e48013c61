"""A sweep folder read back: ``results.csv`` cross-checked against ``sweep.json`` and ``runs/``.

``modadd report DIR`` renders what ``results.csv`` says; :func:`check_sweep_folder` first makes sure
that file tells the truth about the folder, and refuses in one line naming the file otherwise:

- ``sweep.json`` must be a readable spec (it is expanded again into the planned runs);
- ``results.csv`` must be a readable table with a ``name`` column, no name twice, every name a
  run planned by ``sweep.json``;
- its names must be exactly the planned runs complete in ``runs/`` (``runs/<name>/sweep_row.json``):
  a truncated or stale table (a run missing from it, a row whose run folder is gone) is refused,
  with the fix: rerun ``modadd sweep`` with the same spec and ``--out DIR``, which trains nothing
  that is complete and rewrites the results files.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .runner import ROW_FILE
from .spec import SpecError, spec_from_dict

__all__ = ["SweepFolderCheck", "check_sweep_folder"]


@dataclass(frozen=True)
class SweepFolderCheck:
    """A sweep folder found consistent: ``n_planned`` runs in the spec, ``n_complete`` of them in
    ``runs/`` and in ``results.csv``."""

    path: Path
    n_planned: int
    n_complete: int


def _names(names: list[str], limit: int = 3) -> str:
    more = f", +{len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_sweep_folder(path: str | os.PathLike) -> SweepFolderCheck:
    """Cross-check ``results.csv`` against ``sweep.json`` and ``runs/`` (see the module docstring).

    Raises:
        SpecError: one line naming the file and what disagrees.
    """
    import pandas as pd

    from ..inputs import check_input_path

    path = Path(path)
    spec_f = check_input_path(path / "sweep.json", what="stored sweep spec (sweep.json)", error=SpecError)
    try:
        doc = json.loads(spec_f.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise SpecError(f"{spec_f}: unreadable stored spec ({' '.join(str(e).split())})") from None
    if not isinstance(doc, dict):
        raise SpecError(f"{spec_f}: unreadable stored spec (expected a JSON object)")
    spec = spec_from_dict(doc, str(spec_f))
    planned = [r.name for r in spec.runs]
    res_f = path / "results.csv"
    if not res_f.exists():
        raise SpecError(f"{res_f}: missing; run modadd sweep on {path} to completion first")
    check_input_path(res_f, what="results table (results.csv)", error=SpecError)
    try:
        frame = pd.read_csv(res_f)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise SpecError(f"{res_f}: unreadable results table ({' '.join(str(e).split())[:200]})") from None
    if "name" not in frame.columns:
        raise SpecError(f"{res_f}: no 'name' column; not the results table of a sweep")
    names = [str(n) for n in frame["name"].tolist()]
    fix = f"rerun modadd sweep with the same spec and --out {path} to rewrite it (complete runs are not retrained)"
    dup = sorted(n for n, k in Counter(names).items() if k > 1)
    if dup:
        raise SpecError(f"{res_f}: lists run {dup[0]} more than once; {fix}")
    unknown = [n for n in names if n not in set(planned)]
    if unknown:
        raise SpecError(f"{res_f}: lists {len(unknown)} run(s) that sweep.json does not plan ({_names(unknown)}); "
                        f"{fix}")
    complete = [n for n in planned if (path / "runs" / n / ROW_FILE).is_file()]
    missing = [n for n in complete if n not in set(names)]
    if missing:
        raise SpecError(f"{res_f}: lists {len(names)} runs but {len(complete)} runs of sweep.json are complete in "
                        f"{path / 'runs'} (not listed: {_names(missing)}); {fix}")
    gone = [n for n in names if n not in set(complete)]
    if gone:
        raise SpecError(f"{res_f}: lists {len(gone)} run(s) with no complete folder in {path / 'runs'} "
                        f"({_names(gone)}); {fix}")
    return SweepFolderCheck(path=path, n_planned=len(planned), n_complete=len(complete))
