"""Every tutorial notebook runs top to bottom against the checkpoints shipped in data/."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = sorted((Path(__file__).resolve().parents[1] / "tutorials").glob("[0-9][0-9]_*.ipynb"))


def test_tutorials_are_numbered_once_each():
    nums = [int(p.name[:2]) for p in TUTORIALS]
    assert nums[:7] == list(range(1, 8)) and len(set(nums)) == len(nums)
    assert "09_sweeps.ipynb" in [p.name for p in TUTORIALS]


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
