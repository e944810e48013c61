"""The command line answers --help, --version and argument errors without importing torch or
transformer-lens (checked through ``sys.modules`` in a fresh interpreter), and the light names
the parser offers agree with the heavy registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mechinterp_modadd
from mechinterp_modadd import constants
from mechinterp_modadd.cli import COMMAND_MODULES, COMMANDS, _load_plugins

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
from mechinterp_modadd.cli import main
try:
    rc = main({argv!r})
except SystemExit as e:
    rc = e.code
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformer_lens'))
print(json.dumps({{"rc": rc, "heavy": heavy[:5]}}))
"""


def _probe(argv: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv)], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _all_commands() -> list[str]:
    _load_plugins()
    return sorted(COMMANDS)


def test_every_command_module_registers():
    names = _all_commands()
    assert set(COMMAND_MODULES) <= set(names) and "train" in names


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["no-such-command"], ["train", "--preset", "nope"],
                                  ["diagnose", "--no-such-flag"], ["track"]])
def test_parser_paths_stay_light(argv):
    res = _probe(argv)
    assert res["rc"] in (0, 2)
    assert res["heavy"] == [], f"{argv} imported {res['heavy']}"


def test_each_command_help_stays_light():
    for name in _all_commands():
        res = _probe([name, "--help"])
        assert res["rc"] == 0
        assert res["heavy"] == [], f"{name} --help imported {res['heavy']}"


def test_probe_detects_heavy_imports():
    # negative control: the probe reports torch when a command does run
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "import sys, mechinterp_modadd; mechinterp_modadd.ModelConfig; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == "True", out.stderr


def test_version(capsys):
    from mechinterp_modadd.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"modadd {constants.version()}"
    assert constants.version().split(".")[0].isdigit()
    assert mechinterp_modadd.__version__ == constants.__version__


def test_python_m_version():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "mechinterp_modadd", "--version"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("modadd "), out.stderr


def test_light_names_match_registries():
    from mechinterp_modadd.model import ACTIVATIONS, canonical_activation
    from mechinterp_modadd.training import PRESETS

    assert tuple(sorted(ACTIVATIONS)) == constants.ACTIVATION_NAMES
    assert set(constants.ACTIVATION_ALIASES.values()) <= set(ACTIVATIONS)
    assert canonical_activation("X^2") == "quad"
    assert tuple(PRESETS) == constants.PRESET_NAMES


def test_lazy_public_names():
    from mechinterp_modadd import ModelConfig, load_checkpoint  # noqa: F401

    assert set(mechinterp_modadd.__all__) <= set(dir(mechinterp_modadd))
    for name in mechinterp_modadd.__all__:
        assert getattr(mechinterp_modadd, name) is not None
    with pytest.raises(AttributeError):
        mechinterp_modadd.no_such_name  # noqa: B018
