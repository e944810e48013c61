"""The whole story of one checkpoint or one training run, as one self-contained HTML page.

For a checkpoint file: the diagnosis (every claim with its verdict, the spectrum, phases,
magnitudes, the flawed indicator) and the majority vote by ablation, i.e. every section of
:data:`mechinterp_modadd.pages.diagnosis.SECTIONS`.

For a run folder (ours or the paper authors'): the same for the last checkpoint, followed by the
training dynamics: progress measures at every checkpoint, the grokking stages, DFT snapshots, the
frequency race of one neuron, the lottery table when step 0 is present, and the decoupled flow.

Compute once, render twice: :func:`compute_report` returns a :class:`ReportResults` (a
:class:`~mechinterp_modadd.diagnose.Diagnosis` with its ablation suite and, for a run, a
:class:`~mechinterp_modadd.dynamics.RunDynamics`); :func:`render_report` draws the page and
:meth:`ReportResults.to_dict` is the JSON document (schema ``report``) with the same numbers.
The page works offline (plotly.js is inlined by :class:`~mechinterp_modadd.pages.html.HtmlReport`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..diagnose import Diagnosis, diagnose
from ..dynamics import RunDynamics, run_dynamics
from ..errors import CheckpointError
from ..families import family_of
from .html import HtmlReport

__all__ = ["ReportResults", "compute_report", "render_report", "build_report"]


@dataclass
class ReportResults:
    """What a report shows: the diagnosis (with its ablation suite) and, for a run, its dynamics."""

    kind: str  # "checkpoint" or "run"
    title: str
    path: str
    diagnosis: Diagnosis
    dynamics: RunDynamics | None = None
    description: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema ``report``, without its stamp): ``kind``, ``title``, ``path``,
        ``diagnosis`` (the ``diagnose`` document) and ``dynamics`` (the ``track`` document or null)."""
        return {"kind": self.kind, "title": self.title, "path": self.path, "diagnosis": self.diagnosis.to_dict(),
                "dynamics": None if self.dynamics is None else self.dynamics.to_dict()}

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the stamped JSON document atomically."""
        from ..schemas import write_json

        return write_json(path, self.to_dict(), "report")


def compute_report(path: str | os.PathLike, activation: str | None = None, *, neuron: int | None = None,
                   progress: bool = False, force: bool = False) -> ReportResults:
    """Compute everything the report of a checkpoint file or a run folder shows (once).

    Args:
        path: a checkpoint (own ``.safetensors`` or the authors' ``.pth``) or a run folder.
        activation: required for the authors' files; for ours it swaps the stored activation.
        neuron: the neuron whose frequency race is shown (runs only; default the largest one).
        progress: show a progress bar while the run's checkpoints are measured.
        force: accept an ``activation`` that contradicts the recorded one (see ``load_run``).
    """
    from ..checkpoint import load_checkpoint

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file or run folder")
    if path.is_file():
        ck = load_checkpoint(path, activation=activation, force=force)
        step = f" (step {ck.step})" if ck.step is not None else ""
        d = diagnose(ck.model, source=f"{path}{step}", ablation=family_of(ck.model).name == "mlp")
        return ReportResults(kind="checkpoint", title=d.name, path=str(path), diagnosis=d)

    from ..series import load_run

    series = load_run(path, activation=activation, force=force)
    dyn = run_dynamics(series, neuron=neuron, progress=progress)
    last = series.last_step
    d = diagnose(series.model(last), source=f"{series.file(last)} (step {last})",
                 ablation=family_of(series.model(last)).name == "mlp")
    return ReportResults(kind="run", title=path.resolve().name, path=str(path), diagnosis=d, dynamics=dyn,
                         description=series.describe())


def render_report(results: ReportResults) -> HtmlReport:
    """The page of :class:`ReportResults` (numbers tagged with their paths in the ``report`` JSON)."""
    from .diagnosis import render
    from .dynamics import add_dynamics_sections

    r = results
    page = HtmlReport(r.title, subtitle=str(Path(r.path).resolve()))
    if r.description:
        page.text(r.description)
    if r.dynamics is not None:
        page.heading(f"The trained network (step {r.dynamics.steps[-1]})", level=2)
    render(r.diagnosis, page=page, prefix="diagnosis.")  # numbers tagged with the nested JSON paths
    if r.dynamics is not None:
        page.heading("Training dynamics", level=2)
        add_dynamics_sections(page, r.dynamics, json_prefix="dynamics.")
    return page


def build_report(path: str | os.PathLike, activation: str | None = None, *, neuron: int | None = None,
                 progress: bool = False, force: bool = False) -> HtmlReport:
    """The report page of a checkpoint file or a run folder: :func:`render_report` of :func:`compute_report`."""
    return render_report(compute_report(path, activation, neuron=neuron, progress=progress, force=force))
