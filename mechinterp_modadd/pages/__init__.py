"""Presentation: pages are rendered from finished results and compute nothing.

- :mod:`~mechinterp_modadd.pages.html`: :class:`~mechinterp_modadd.pages.html.HtmlReport`, a
  self-contained offline page (plotly.js inlined once), with optional static export of its figures;
- :mod:`~mechinterp_modadd.pages.diagnosis`: the page of a
  :class:`~mechinterp_modadd.diagnose.Diagnosis` (``render(diagnosis, path)``) and the registry of
  its sections (``SECTIONS``, added with the decorator ``@page_section(name)``);
- :mod:`~mechinterp_modadd.pages.ablation`: the section of an ablation suite;
- :mod:`~mechinterp_modadd.pages.dynamics`: the sections of a
  :class:`~mechinterp_modadd.dynamics.RunDynamics` (progress, stages, lottery, flow);
- :mod:`~mechinterp_modadd.pages.report`: ``modadd report``, the whole story of a checkpoint or run;
- :mod:`~mechinterp_modadd.pages.explorer` (``modadd explore``) and :mod:`~mechinterp_modadd.pages.sweep`
  (``modadd report SWEEP_DIR``).

The flow is one way: core -> analysis -> results (``Diagnosis``, ``AblationSuite``,
``RunDynamics``) -> ``plots`` (result -> Figure) -> ``pages`` (results -> HTML) -> ``commands``.
Pages never import ``training`` or ``sweeps``: finished runs are read through
:mod:`~mechinterp_modadd.series` and sweep tables through :mod:`~mechinterp_modadd.analysis.sweep`
(``tests/project/test_import_graph.py`` checks it).
Numbers printed on a page carry the JSON path of their value (``data-json``), so tests check that a
page and the JSON document of the same command agree.

Submodules are imported on demand (they import plotly).
"""
