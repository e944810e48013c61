"""Folders of many runs for ``modadd track`` and ``modadd diagnose``: claims stated over seeds.

Two kinds of folder hold runs that differ by seed (or by any config field):

- a **sweep folder** (``sweep.json`` and ``results.csv``, written by ``modadd sweep``): its table
  is read as it is;
- a **batch folder** (``runs.csv`` of :func:`~mechinterp_modadd.training.train_many`, e.g. from
  ``modadd train --seed 0-5``): every finished run folder in it is analysed here, as a sweep
  analyses its runs (:func:`~mechinterp_modadd.sweeps.runner.analyse_run`), into the same table.

The distributions themselves (median, interval, share of seeds holding) are computed by
:mod:`mechinterp_modadd.analysis.sweep` (:func:`~mechinterp_modadd.analysis.sweep.run_distributions`,
:func:`~mechinterp_modadd.analysis.sweep.claims_over_seeds`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

__all__ = ["folder_kind", "seed_table"]


def folder_kind(path: str | os.PathLike) -> str | None:
    """``"sweep"``, ``"batch"`` or None (a single run folder, a checkpoint, anything else)."""
    p = Path(path)
    if not p.is_dir():
        return None
    if (p / "sweep.json").is_file():
        return "sweep"
    if (p / "runs.csv").is_file():
        return "batch"
    return None


def seed_table(path: str | os.PathLike, analyses: list[str], *, progress: bool = True):
    """The results table (:class:`~mechinterp_modadd.analysis.sweep.SweepTable`) of a sweep or batch
    folder; for a batch folder the runs are analysed with ``analyses`` (``progress``, ``lottery``,
    ``diagnose``; see :mod:`mechinterp_modadd.sweeps.spec`)."""
    import pandas as pd
    from tqdm.auto import tqdm

    from ..analysis.sweep import SweepTable
    from ..training.runfolder import read_run_config
    from .runner import analyse_run
    from .spec import RunPlan

    kind = folder_kind(path)
    if kind == "sweep":
        return SweepTable.from_folder(path)
    if kind != "batch":
        raise InputError(f"{path}: neither a sweep folder (sweep.json) nor a batch folder (runs.csv)")
    root = Path(path)
    runs = pd.read_csv(root / "runs.csv")
    if "folder" not in runs:
        raise InputError(f"{root / 'runs.csv'}: no 'folder' column (not written by train_many?)")
    rows = []
    for name in tqdm(list(runs["folder"]), desc="runs", disable=not progress):
        run_dir = root / str(name)
        if not (run_dir / "config.json").is_file():
            continue  # listed but not started
        cfg = read_run_config(run_dir)[0]
        rows.append(analyse_run(run_dir, RunPlan(name=str(name), config=cfg, values={}), analyses))
    if not rows:
        raise InputError(f"{root}: no finished run folder listed in runs.csv")
    return SweepTable.from_rows(rows, spec={"name": root.name, "grid": {}}, n_planned=len(runs))
