"""Execute the tutorials in place, so that they are committed with their outputs.

    python tutorials/execute.py                 # every tutorial
    python tutorials/execute.py 08_explorer     # the ones whose name starts so

Each notebook runs from tutorials/ (as CI runs it); plotly figures carry a PNG fallback (see
mechinterp_modadd.notebook), so GitHub and nbviewer show them. Volatile metadata (execution times)
is dropped so that re-running changes only what the code printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    for c in nb.cells:
        c.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return path.stat().st_size


if __name__ == "__main__":
    chosen = [p for p in sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
              if not sys.argv[1:] or any(p.stem.startswith(a) for a in sys.argv[1:])]
    for p in chosen:
        print(f"{p.name}: {execute(p) / 1024:.0f} KiB", flush=True)
