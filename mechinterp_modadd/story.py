"""The whole story of one checkpoint or one training run, as one self-contained HTML page.

For a checkpoint file: the diagnosis (every claim with its verdict, the spectrum, phases,
magnitudes, the flawed indicator) and the majority vote by ablation, i.e. every section of
:data:`mechinterp_modadd.diagnose.HTML_SECTIONS`.

For a run folder (ours or the paper authors'): the same for the last checkpoint, followed by the
training dynamics: progress measures at every checkpoint, the grokking stages, DFT snapshots, the
frequency race of one neuron, the lottery table when step 0 is present, and the decoupled flow.

The page works offline (plotly.js is inlined by :class:`~mechinterp_modadd.report.HtmlReport`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .checkpoint import load_checkpoint
from .diagnose import diagnose
from .errors import CheckpointError
from .report import HtmlReport

__all__ = ["build_report"]


def build_report(path: str | os.PathLike, activation: str | None = None, *, neuron: int | None = None,
                 progress: bool = False, force: bool = False) -> HtmlReport:
    """Build the report page of a checkpoint file or a run folder (see the module docstring).

    Args:
        path: a checkpoint (own ``.safetensors`` or the authors' ``.pth``) or a run folder.
        activation: required for the authors' files; for ours it swaps the stored activation.
        neuron: the neuron whose frequency race is shown (runs only; default the largest one).
        progress: show a progress bar while the run's checkpoints are measured.
        force: accept an ``activation`` that contradicts the recorded one (see ``load_run``).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or run folder")
    if path.is_file():
        ck = load_checkpoint(path, activation=activation, force=force)
        step = f" (step {ck.step})" if ck.step is not None else ""
        page = HtmlReport(f"modadd report: {path.name}")
        diagnose(ck.model, source=f"{path}{step}").to_html(page=page)
        return page

    from .analysis.grokking import grokking_stages, progress_measures
    from .analysis.lottery import lottery_from_series
    from .plots.dynamics import add_dynamics_sections
    from .series import load_run

    series = load_run(path, activation=activation, force=force)
    page = HtmlReport(f"modadd report: {path.resolve().name}")
    page.text(series.describe())
    last = series.last_step
    page.heading(f"The trained network (step {last})", level=2)
    diagnose(series.model(last), source=f"{series.file(last)} (step {last})").to_html(page=page)
    page.heading("Training dynamics", level=2)
    measures = progress_measures(series, progress=progress)
    stages = grokking_stages(measures)
    lottery = lottery_from_series(series) if series.has_step0 else None
    add_dynamics_sections(page, series, measures, stages, lottery, neuron)
    return page
