"""The science the code cites lives in the repository: every citation of docs/science.md names a
section that exists, and nothing tracked points outside the repository for it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "science.md"
# written in pieces so that this file does not match its own search
OUTSIDE = ["SCIENCE" + ".md", ".." + "/shared"]
CITATION = re.compile(r"docs/science\.md(?:\)?,? (?:section |s\.|§)?)(\d+(?:\.\d+)?)")


def _tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                             text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git is needed to list the repository's files")
    keep = (".py", ".md", ".ipynb", ".toml", ".txt", ".json", ".yml", ".yaml", ".html")
    return [REPO / f for f in out.splitlines() if f.endswith(keep) and (REPO / f).is_file()]


def _sections() -> set[str]:
    heads = re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", PAGE.read_text(), flags=re.M)
    return set(heads)


def test_science_page_has_its_sections():
    assert {str(n) for n in range(1, 10)} | {f"3.{n}" for n in range(1, 9)} <= _sections()


def test_citations_point_to_existing_sections():
    sections, cited = _sections(), []
    for f in _tracked_text_files():
        for m in CITATION.finditer(f.read_text(errors="replace")):
            cited.append((f.relative_to(REPO).as_posix(), m.group(1)))
    assert len({f for f, _ in cited}) >= 15, cited  # the analyses, plots, notebooks and tests cite it
    missing = [(f, s) for f, s in cited if s not in sections]
    assert not missing, missing


def test_nothing_points_outside_the_repository():
    bad = [(f.relative_to(REPO).as_posix(), s) for f in _tracked_text_files() for s in OUTSIDE
           if s in f.read_text(errors="replace")]
    assert not bad, bad
