"""Imports point one way: no cycle through the CLI, none hidden behind importlib, analysis stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "mechinterp_modadd"


def _imports(path: Path) -> list[str]:
    """Absolute module names imported anywhere in ``path`` (relative imports resolved)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]  # the package a relative import of this file starts from
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, node.module] if node.module else base)
            out.append(mod)
            out += [f"{mod}.{a.name}" for a in node.names]
    return out


def _modules(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("commands"), ids=lambda p: p.name)
def test_command_modules_never_import_the_cli(path):
    assert not any(m == "mechinterp_modadd.cli" or m.startswith("mechinterp_modadd.cli.") for m in _imports(path))


def test_no_import_hidden_behind_importlib():
    # the package root's lazy attribute loader (PEP 562) is the one use of import_module
    users = [p for p in PKG.rglob("*.py") if "import_module" in p.read_text()]
    assert [p.relative_to(PKG).as_posix() for p in users] == ["__init__.py"]


@pytest.mark.parametrize("path", _modules("analysis"), ids=lambda p: p.relative_to(PKG).as_posix())
def test_analysis_imports_no_presentation_training_or_cli(path):
    bad = ("mechinterp_modadd.plots", "mechinterp_modadd.pages", "mechinterp_modadd.commands",
           "mechinterp_modadd.cli", "mechinterp_modadd.training", "mechinterp_modadd.report")
    found = [m for m in _imports(path) if m.startswith(bad)]
    assert not found, found


def test_command_modules_listed_are_the_ones_loaded():
    from mechinterp_modadd import commands

    files = {p.stem for p in (PKG / "commands").glob("*.py")} - {"__init__", "registry"}
    assert set(commands.COMMAND_MODULES) == files
    loaded = [m.split(".")[-1] for m in _imports(PKG / "commands" / "__init__.py")
              if m.startswith("mechinterp_modadd.commands.") and m.count(".") == 2]
    assert loaded == commands.COMMAND_MODULES
