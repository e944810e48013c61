"""The wheel is self-contained: built from a clean copy of the repository, installed into a fresh
virtual environment, ``modadd diagnose`` works from any directory on the packaged checkpoint."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLAIMS = ["single_frequency", "phase_alignment", "phase_symmetry", "frequency_diversification",
          "magnitude_homogeneity", "flawed_indicator", "majority_vote"]


def _tracked_copy(dest: Path) -> Path:
    """The files git tracks (plus untracked, not-ignored ones), without build leftovers."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True, timeout=60).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git is needed to copy the repository's tracked files")
    for rel in filter(None, out):
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "tutorials/", "benchmarks/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PIP_NO_INDEX"] = "1"  # offline: dependencies come from this interpreter's site-packages
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.mark.slow
def test_wheel_installs_and_diagnoses_anywhere(tmp_path):
    src = _tracked_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    env = _clean_env()
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(src)], capture_output=True, text=True, env=env, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("mechinterp_modadd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "mechinterp_modadd/py.typed" in names
    assert "mechinterp_modadd/_data/standard_p23_step_005000.safetensors" in names
    assert not any(n.startswith(("tests/", "data/")) for n in names)
    # the MIT licence text travels with the wheel (PEP 639: dist-info/licenses/LICENSE)
    lic = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert lic and zipfile.ZipFile(wheel).read(lic[0]).decode().startswith("MIT License")

    # a fresh venv that sees this interpreter's third-party packages (torch, transformer-lens, ...)
    # through a .pth line; that line does not run the site-packages' own .pth files, so an editable
    # install of the checkout there stays invisible and the wheel is what gets imported
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300, env=env)
    vpy = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    vsite = Path(subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True, env=env).stdout.strip())
    (vsite / "_host_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(vpy), "install", "--no-deps", "-q",
                           str(wheel)], capture_output=True, text=True, env=env, timeout=600)
    if inst.returncode != 0 and "no such option: --python" in inst.stderr:
        inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(vsite),
                               str(wheel)], capture_output=True, text=True, env=env, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([str(vpy), "-c", "import mechinterp_modadd; print(mechinterp_modadd.__file__)"],
                           capture_output=True, text=True, env=env, cwd=elsewhere, timeout=120)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    run = subprocess.run([str(vpy), "-m", "mechinterp_modadd", "diagnose"], capture_output=True, text=True,
                         env=env, cwd=elsewhere, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "_data" in run.stdout and "p = 23, d_mlp = 512" in run.stdout
    for name in CLAIMS:
        line = next(ln for ln in run.stdout.splitlines() if ln.startswith(name))
        assert line.rstrip().endswith("holds"), line
    script = venv / ("Scripts/modadd.exe" if os.name == "nt" else "bin/modadd")
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env, cwd=elsewhere,
                             timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("modadd "), version.stderr
    assert list(elsewhere.iterdir()) == []
