"""Every tutorial notebook runs top to bottom against the checkpoints shipped in data/, and is committed
executed, with outputs that static viewers display (every plotly figure also as a PNG)."""

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import mechinterp_modadd.notebook as nbhelp
from mechinterp_modadd.errors import CheckpointError

REPO = Path(__file__).resolve().parents[2]
TUTORIALS = sorted((REPO / "tutorials").glob("[0-9][0-9]_*.ipynb"))
PLOTLY = "application/vnd.plotly.v1+json"


def test_tutorials_are_numbered_once_each():
    nums = [int(p.name[:2]) for p in TUTORIALS]
    assert nums[:9] == list(range(1, 10)) and len(set(nums)) == len(nums)
    assert {"08_explorer.ipynb", "09_sweeps.ipynb"} <= {p.name for p in TUTORIALS}


def test_tutorials_display_tables_and_use_notebook_progress_bars():
    """Tables are shown with IPython's display (an HTML table in Jupyter), not printed as text; a
    progress bar in a notebook is tqdm.auto's (a widget in Jupyter), not the terminal one."""
    for path in TUTORIALS:
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
            assert ".to_string(" not in cell.source, f"{path.name}, code cell {i}: display(frame), not print(to_string)"
            assert "from tqdm import" not in cell.source, f"{path.name}, code cell {i}: use tqdm.auto"
    import mechinterp_modadd

    # the package's own bars, which a notebook may show: tqdm.auto everywhere
    pkg = Path(mechinterp_modadd.__file__).parent
    uses = {f.relative_to(pkg).as_posix(): f.read_text() for f in pkg.rglob("*.py") if "tqdm" in f.read_text()}
    assert {"series.py", "sweeps/executors.py", "analysis/explorer.py"} <= set(uses)
    plain = re.compile(r"^\s*(from tqdm import tqdm|import tqdm)\s*$", re.M)  # the terminal bar
    assert [f for f, text in uses.items() if plain.search(text)] == []


def _outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_is_committed_executed_with_static_figures(path):
    assert path.stat().st_size < 2 * 2**20, f"{path.name} is {path.stat().st_size / 2**20:.1f} MiB"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "some cells were not executed"
    outs = _outputs(nb)
    assert not [o for o in outs if o.get("output_type") == "error"]
    figures = [o for o in outs if PLOTLY in o.get("data", {})]
    assert all("image/png" in o["data"] for o in figures), "a plotly figure has no static picture"
    # no plotly output that only a JavaScript-running viewer could draw
    assert not [o for o in outs if "text/html" in o.get("data", {}) and "plotly" in o["data"]["text/html"]
                and "image/png" not in o["data"]]
    assert figures or any("image/png" in o.get("data", {}) for o in outs), "no figure at all"
    first = code[0].get("outputs", [])
    assert not [o for o in first if o.get("name") == "stderr" or "Warning" in json.dumps(o)]


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, monkeypatch):
    monkeypatch.setenv("MODADD_STATIC_FIGURES", "0")  # CI checks the code runs; the PNGs are checked above
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    outs = _outputs(nb)
    assert not [o for o in outs if o.get("output_type") == "error"]
    first = next(c for c in nb.cells if c.cell_type == "code").get("outputs", [])
    assert not [o for o in first if o.get("name") == "stderr"], first


def test_data_dir_from_the_root_from_tutorials_and_from_the_environment(tmp_path, monkeypatch):
    import mechinterp_modadd

    assert nbhelp.data_dir(REPO) == REPO / "data"
    assert mechinterp_modadd.data_dir is nbhelp.data_dir  # also exported at the top level
    assert nbhelp.data_dir(REPO / "tutorials") == REPO / "data"
    monkeypatch.setenv("MODADD_DATA", str(REPO / "data"))
    assert nbhelp.data_dir(tmp_path) == REPO / "data"
    monkeypatch.delenv("MODADD_DATA")
    monkeypatch.setattr(nbhelp, "__file__", str(tmp_path / "site" / "mechinterp_modadd" / "notebook.py"))
    with pytest.raises(CheckpointError, match="no data/ folder"):
        nbhelp.data_dir(tmp_path)


def test_renderer_writes_interactive_json_and_optionally_a_png():
    import plotly.graph_objects as go
    import plotly.io as pio

    before = pio.renderers.default
    try:
        assert nbhelp.setup_notebook(static=False) == REPO / "data"
        assert pio.renderers.default == "modadd"
        fig = go.Figure(go.Scatter(y=[1, 3, 2]))
        bundle = pio.renderers["modadd"].to_mimebundle(fig.to_dict())
        assert bundle[PLOTLY]["data"][0]["y"] == [1, 3, 2] and "image/png" not in bundle
    finally:
        pio.renderers.default = before


@pytest.mark.slow
def test_renderer_png_fallback():
    pytest.importorskip("kaleido")
    import plotly.graph_objects as go

    png = nbhelp.static_png(go.Figure(go.Scatter(y=[1, 3, 2])), width=300, height=200)
    if png is None:
        pytest.skip("kaleido found no browser to render with")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_without_a_browser_figures_keep_their_interactive_output_only(monkeypatch):
    """Kaleido's server starts without a browser and then every export waits forever (seen on a fresh
    machine without chromium): no browser found means no PNG, at once."""
    pytest.importorskip("choreographer")
    import plotly.graph_objects as go
    from choreographer.browsers.chromium import Chromium

    monkeypatch.setattr(Chromium, "find_browser", classmethod(lambda cls, **kw: None))
    monkeypatch.setitem(nbhelp._server, "started", False)
    monkeypatch.setitem(nbhelp._server, "failed", False)
    assert nbhelp._browser_found() is False
    assert nbhelp.static_png(go.Figure(go.Scatter(y=[1, 3, 2])), width=300, height=200) is None
    assert nbhelp._server["failed"]
