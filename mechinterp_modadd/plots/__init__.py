"""Plotly figures built from analysis results, one module per topic (e.g. ``plots.spectrum``).

Submodules are not imported here, so importing the package stays cheap; import the one you need:
``from mechinterp_modadd.plots import spectrum``.
"""
