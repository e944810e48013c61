"""The package's import graph, built from the source with ``ast``: no cycle, and imports point one
way between layers (README, Architecture).

Every import statement counts: at module level and inside functions, relative and absolute, under
``if TYPE_CHECKING:`` and inside ``try``. ``from a.b import c`` is an edge to the module ``a.b.c``
when there is one, else to ``a.b``. Importing ``a.b.c`` also runs ``a/__init__.py`` and
``a/b/__init__.py``; those implicit parent edges are not counted (a package that imports its own
submodules would otherwise be in a cycle with each of them).

Layers (every module of the package must have one, see :func:`layer_of`):

==========  ==========================================================================================
core        the package root, _version, constants, errors, data, fourier, fourier2d, neurons, families/, model,
            tlens, checkpoint, forward, layout, runtime, memory, schemas, outputs, notebook, fileio, inputs, locks,
            hyperparams
analysis    analysis/ (pure computation, typed results)
results     diagnose, series, dynamics (result objects built from analysis)
training    training/
sweeps      sweeps/
plots       plots/ (result -> figure)
pages       pages/ (results -> HTML)
commands    commands/ (one module per sub-command)
cli         cli, __main__
==========  ==========================================================================================

Rules (:data:`FORBIDDEN`: a layer never imports these layers):

- core imports no analysis, results, training, sweeps, plots, pages, commands, cli;
- analysis imports no training, sweeps, plots, pages, commands, cli;
- results import no sweeps, plots, pages, commands, cli;
- training imports no sweeps, plots, pages, commands, cli;
- sweeps import no plots, pages, commands, cli;
- plots import no pages, training, sweeps, commands, cli;
- pages import no training, sweeps, commands, cli: they draw finished results only, reading finished
  runs through ``series`` and sweep tables through ``analysis.sweep``;
- commands import no cli (imports run cli -> commands -> registry and never back).
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "mechinterp_modadd"
NAME = PKG.name

#: top-level modules of the core layer
CORE = {"", "_version", "constants", "errors", "data", "fourier", "fourier2d", "neurons", "families", "model", "tlens",
        "transformer", "transformer_io",
        "checkpoint", "forward", "layout", "runtime", "memory", "schemas", "outputs", "notebook", "fileio", "inputs",
        "locks", "hyperparams"}
#: top-level modules of the results layer
RESULTS = {"diagnose", "series", "dynamics"}
#: sub-packages that are a layer of their own
PACKAGES = {"analysis", "training", "sweeps", "plots", "pages", "commands"}

#: layer -> the layers it must never import
FORBIDDEN: dict[str, set[str]] = {
    "core": {"analysis", "results", "training", "sweeps", "plots", "pages", "commands", "cli"},
    "analysis": {"training", "sweeps", "plots", "pages", "commands", "cli"},
    "results": {"sweeps", "plots", "pages", "commands", "cli"},
    "training": {"sweeps", "plots", "pages", "commands", "cli"},
    "sweeps": {"plots", "pages", "commands", "cli"},
    "plots": {"pages", "training", "sweeps", "commands", "cli"},
    "pages": {"training", "sweeps", "commands", "cli"},
    "commands": {"cli"},
    "cli": set(),
}

#: Import cycles known and owned by another change, allowed until they are gone (each entry is the
#: set of modules of one strongly connected component); test_no_import_cycle fails once an entry is
#: stale, so that it is deleted then. None at present.
KNOWN_CYCLES: list[set[str]] = []

#: import paths that were removed; an import of any of them (or of a name inside them) fails
OLD_MODULES = {f"{NAME}.story": f"{NAME}.pages.report", f"{NAME}.report": f"{NAME}.pages.html / {NAME}.pages.report"}


# ------------------------------------------------------------------------------ building the graph
def module_name(path: Path, pkg: Path = PKG) -> str:
    """``PKG/a/b.py`` -> ``mechinterp_modadd.a.b``; ``PKG/a/__init__.py`` -> ``mechinterp_modadd.a``."""
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_statements(path: Path, pkg: Path = PKG) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import statement anywhere in ``path``, in source order, with
    relative imports resolved: ``import a.b`` -> ``("a.b", [])``, ``from .m import x, y`` ->
    ``("PACKAGE.m", ["x", "y"])``."""
    name = module_name(path, pkg)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: list[tuple[str, list[str]]] = []
    nodes = [n for n in ast.walk(ast.parse(path.read_text(), filename=str(path)))
             if isinstance(n, (ast.Import, ast.ImportFrom))]
    for node in sorted(nodes, key=lambda n: (n.lineno, n.col_offset)):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif node.level:
            if node.level > len(package):
                raise ValueError(f"{path}: relative import beyond the top package")
            base = package[: len(package) - node.level + 1]
            out.append((".".join([*base, node.module] if node.module else base), [a.name for a in node.names]))
        else:
            out.append((node.module or "", [a.name for a in node.names]))
    return out


def raw_imports(path: Path, pkg: Path = PKG) -> list[str]:
    """Every absolute name imported in ``path``, in source order: for ``from m import n`` both ``m``
    and ``m.n``."""
    out: dict[str, None] = {}
    for mod, names in import_statements(path, pkg):
        out[mod] = None
        out.update((f"{mod}.{n}", None) for n in names if n != "*")
    return list(out)


def build_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    """module -> the package's modules it imports (see the module docstring)."""
    files = {module_name(p, pkg): p for p in sorted(pkg.rglob("*.py"))}

    def nearest(target: str) -> str | None:
        while target not in files and "." in target:
            target = target.rsplit(".", 1)[0]
        return target if target in files else None

    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        targets: set[str] = set()
        for imported, names in import_statements(path, pkg):
            if imported != pkg.name and not imported.startswith(pkg.name + "."):
                continue
            # ``from m import n``: the submodule m.n when there is one, else m itself
            found = [f"{imported}.{n}" for n in names if f"{imported}.{n}" in files]
            if len(found) < len(names) or not names:
                found.append(nearest(imported))
            targets.update(t for t in found if t is not None and t != mod)
        graph[mod] = targets
    return graph


def cycle_groups(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a module importing itself),
    by Tarjan's algorithm, each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle ``[a, b, ..., a]`` per strongly connected component (:func:`cycle_groups`)."""
    return [_cycle_path(graph, comp) for comp in cycle_groups(graph)]


def _cycle_path(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """The shortest cycle through the first module of a strongly connected component."""
    members, start = set(comp), comp[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w in members and w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"not a cycle: {comp}")


def layer_of(module: str) -> str | None:
    """The layer of a module of the package (None: not assigned, which a test reports)."""
    parts = module.split(".")[1:]
    top = parts[0] if parts else ""
    if top in PACKAGES:
        return top
    if top in CORE:
        return "core"
    if top in RESULTS:
        return "results"
    if top in ("cli", "__main__"):
        return "cli"
    return None


def layer_violations(graph: dict[str, set[str]], layer=layer_of) -> list[str]:
    """``a (layer) -> b (layer)`` for every edge the rules of :data:`FORBIDDEN` forbid."""
    bad = []
    for mod in sorted(graph):
        src = layer(mod)
        for target in sorted(graph[mod]):
            dst = layer(target)
            if src is not None and dst in FORBIDDEN[src]:
                bad.append(f"{mod} ({src}) -> {target} ({dst})")
    return bad


# ------------------------------------------------------------------------------ the package
GRAPH = build_graph()


def test_the_graph_sees_the_package():
    # a few edges known from the code, one of each kind: absolute, relative, function-level, ``from . import``
    assert len(GRAPH) > 60
    assert f"{NAME}.errors" in GRAPH[f"{NAME}.data"]  # module level, relative
    assert f"{NAME}.pages.diagnosis" in GRAPH[f"{NAME}.commands.diagnose"]  # inside a function
    assert f"{NAME}.commands.ablate" in GRAPH[f"{NAME}.commands"]  # ``from . import ablate``
    assert f"{NAME}.cli" in GRAPH[f"{NAME}.__main__"]


def test_no_import_cycle():
    groups = cycle_groups(GRAPH)
    new = [g for g in groups if set(g) not in KNOWN_CYCLES]
    lines = [" -> ".join(_cycle_path(GRAPH, g)) + f"   (modules in the cycle: {', '.join(g)})" for g in new]
    assert not new, "import cycles:\n" + "\n".join(lines)
    stale = [sorted(k) for k in KNOWN_CYCLES if sorted(k) not in groups]
    assert not stale, f"these known cycles are gone: delete them from KNOWN_CYCLES: {stale}"


def test_every_module_has_a_layer():
    missing = [m for m in GRAPH if layer_of(m) is None]
    assert not missing, f"modules without a layer (add them to CORE, RESULTS or PACKAGES here): {missing}"


def test_imports_follow_the_layers():
    bad = layer_violations(GRAPH)
    assert not bad, "forbidden imports:\n" + "\n".join(bad)


def test_old_import_paths_are_gone():
    for old, new in OLD_MODULES.items():
        assert importlib.util.find_spec(old) is None, f"{old} is back; import {new}"
    imported = {m for p in PKG.rglob("*.py") for m in raw_imports(p)}
    assert f"{NAME}.pages.html.HtmlReport" in imported  # the check reads names inside modules too
    back = sorted(m for m in imported for old in OLD_MODULES if m == old or m.startswith(old + "."))
    assert not back, back
    # nor in tests, benchmarks, docs, the README or the tutorials (code cells and prose)
    pattern = re.compile(r"\b" + re.escape(NAME) + r"\.(story|report)\b|from\s+" + re.escape(NAME)
                         + r"\s+import\s+[^\n]*\b(story|report)\b")
    files = [*(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py"), *(ROOT / "docs").rglob("*.md"),
             *(ROOT / "tutorials").rglob("*.ipynb"), *(ROOT / "tutorials").rglob("*.py"), ROOT / "README.md"]
    hits = [f"{f.relative_to(ROOT)}: {m.group(0)}" for f in files if f.resolve() != Path(__file__).resolve()
            for m in pattern.finditer(f.read_text())]
    assert not hits, hits


def test_removed_registries_and_renderers_stay_removed():
    # one claim registry (analysis.claims), page sections registered in pages.diagnosis
    from mechinterp_modadd import diagnose as dg
    from mechinterp_modadd.analysis import claims
    from mechinterp_modadd.pages import diagnosis as page
    from mechinterp_modadd.plots import ablation

    for gone in ("CLAIM_CHECKS", "register_claim", "HTML_SECTIONS"):
        assert not hasattr(dg, gone), gone
    assert not hasattr(dg.Diagnosis, "to_html") and not hasattr(ablation, "add_ablation_section")
    assert callable(claims.register) and callable(page.page_section) and callable(page.render)


# ------------------------------------------------------------------------------ the checks can fail
def test_checks_fail_on_a_synthetic_graph():
    g = {
        f"{NAME}.data": {f"{NAME}.diagnose"},  # core -> results: forbidden, and a cycle with the next line
        f"{NAME}.diagnose": {f"{NAME}.data", f"{NAME}.analysis.features"},
        f"{NAME}.analysis.features": {f"{NAME}.training.api"},  # analysis -> training: forbidden
        f"{NAME}.training.api": set(),
        f"{NAME}.plots.ablation": {f"{NAME}.pages.ablation"},  # plots -> pages: forbidden
        f"{NAME}.pages.ablation": {f"{NAME}.plots.ablation"},  # allowed, but a cycle
        f"{NAME}.pages.report": {f"{NAME}.diagnose", f"{NAME}.series"},  # allowed
        f"{NAME}.series": set(),
    }
    assert find_cycles(g) == [[f"{NAME}.data", f"{NAME}.diagnose", f"{NAME}.data"],
                              [f"{NAME}.pages.ablation", f"{NAME}.plots.ablation", f"{NAME}.pages.ablation"]]
    assert layer_violations(g) == [
        f"{NAME}.analysis.features (analysis) -> {NAME}.training.api (training)",
        f"{NAME}.data (core) -> {NAME}.diagnose (results)",
        f"{NAME}.plots.ablation (plots) -> {NAME}.pages.ablation (pages)",
    ]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_builder_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / NAME
    (pkg / "plots").mkdir(parents=True)
    (pkg / "pages").mkdir()
    files = {
        "__init__.py": "from .errors import E\n",
        "errors.py": "class E(Exception): ...\n",
        "model.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .fourier import x\n",
        "fourier.py": "def f():\n    from . import model\n",  # function level, ``from . import module``
        "plots/__init__.py": "",
        "plots/a.py": "import os\n\ndef g():\n    try:\n        import mechinterp_modadd.pages.b as b\n"
                      "    except ImportError:\n        pass\n",
        "pages/__init__.py": "",
        "pages/b.py": "from ..plots import a\nfrom ..errors import E\nfrom mechinterp_modadd.fourier import f\n",
    }
    for rel, text in files.items():
        (pkg / rel).write_text(text)
    g = build_graph(pkg)
    n = NAME
    assert g == {
        n: {f"{n}.errors"},
        f"{n}.errors": set(),
        f"{n}.model": {f"{n}.fourier"},
        f"{n}.fourier": {f"{n}.model"},
        f"{n}.plots": set(),
        f"{n}.plots.a": {f"{n}.pages.b"},
        f"{n}.pages": set(),
        f"{n}.pages.b": {f"{n}.plots.a", f"{n}.errors", f"{n}.fourier"},
    }
    assert [c[:-1] for c in find_cycles(g)] == [[f"{n}.fourier", f"{n}.model"], [f"{n}.pages.b", f"{n}.plots.a"]]
    assert layer_violations(g) == [f"{n}.plots.a (plots) -> {n}.pages.b (pages)"]


# ------------------------------------------------------------------------------ other import rules
def test_no_import_hidden_behind_importlib():
    # the package root's lazy attribute loader (PEP 562) is the one use of import_module
    users = [p for p in PKG.rglob("*.py") if "import_module" in p.read_text()]
    assert [p.relative_to(PKG).as_posix() for p in users] == ["__init__.py"]


def test_command_modules_listed_are_the_ones_loaded():
    from mechinterp_modadd import commands

    files = {p.stem for p in (PKG / "commands").glob("*.py")} - {"__init__", "registry"}
    assert set(commands.COMMAND_MODULES) == files
    loaded = [m.split(".")[-1] for m in raw_imports(PKG / "commands" / "__init__.py")
              if m.startswith(f"{NAME}.commands.") and m.count(".") == 2]
    assert loaded == commands.COMMAND_MODULES


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_every_layer_has_modules(layer):
    # a rule about a layer with no module would be a rule that cannot fail
    assert any(layer_of(m) == layer for m in GRAPH)
