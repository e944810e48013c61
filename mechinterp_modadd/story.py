"""Old import path of the ``modadd report`` page (now :mod:`mechinterp_modadd.pages.report`)."""

from .pages.report import ReportResults, build_report, compute_report, render_report

__all__ = ["build_report", "compute_report", "render_report", "ReportResults"]
