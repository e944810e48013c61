"""Bad inputs of round 3 (issue 23): outputs onto an input's files, pipes and devices, sweep specs in
other encodings, oversized grids, impossible budgets, a locked sweep folder, a stale results table.

Every case follows the contract of :mod:`test_cli_corpus` (exit code 2, one line on stderr naming
the file, flag or key, no traceback, nothing under the test folder added, removed or changed).
Further tests: argument and path errors answer before torch is imported; the folder lock excludes
across processes and leaves nothing to break when its holder dies; atomic writes fsync the folder.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_cli_corpus import RUN_ARGS, Bad, Workspace, _write, base, check_bad_input  # noqa: F401

from mechinterp_modadd.cli import main

REPO = Path(__file__).resolve().parents[2]
SPEC_TINY = "analyses = ['progress']\n[grid]\npreset = 'standard'\np = 5\nd_mlp = 8\nsteps = 2\nseed = '0-3'\n"


# ------------------------------------------------------------------------------- builders
def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _socket_file(path: Path) -> Path:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    return path


def _run_with_pipe(ws: Workspace) -> Path:
    run = ws.copy_run("piped")
    _fifo(run / "checkpoints" / "step_000003.safetensors")
    return run


def _sweep(ws: Workspace, spec: str | bytes, *extra: str, out: Path | None = None) -> list[str]:
    f = _write(ws.root / "spec.toml", spec)
    return ["sweep", str(f), "--out", str(out if out is not None else ws.root / "sw"), "--executor", "local",
            "--quiet", *extra]


def _other_run(ws: Workspace) -> Path:
    return ws.copy_run("other")


@pytest.fixture(scope="module")
def sweep_done(tmp_path_factory) -> Path:
    """A finished 4-run sweep (p = 5, two steps, progress analysis only)."""
    root = tmp_path_factory.mktemp("corpus3_sweep")
    spec = _write(root / "tiny.toml", SPEC_TINY)
    assert main(["sweep", str(spec), "--out", str(root / "sw"), "--executor", "local", "--quiet"]) == 0
    return root / "sw"


def _sweep_copy(ws: Workspace, src: Path, damage) -> Path:
    dst = ws.root / "swcopy"
    shutil.copytree(src, dst)
    damage(dst)
    return dst


def _half_results(folder: Path) -> None:
    lines = (folder / "results.csv").read_text().splitlines(keepends=True)
    (folder / "results.csv").write_text("".join(lines[: 1 + (len(lines) - 1) // 2]))


def _run_gone(folder: Path) -> None:
    shutil.rmtree(sorted((folder / "runs").iterdir())[0])


BATCH_ARGS = [*RUN_ARGS, "--seed", "0-3"]


@pytest.fixture(scope="module")
def batch_done(tmp_path_factory) -> Path:
    """A finished batch of four runs (seeds 0-3, p = 7, two steps)."""
    out = tmp_path_factory.mktemp("corpus3_batch") / "batch"
    assert main(["train", *BATCH_ARGS, "--steps", "2", "--out", str(out), "--quiet"]) == 0
    return out


def _batch_copy(ws: Workspace, damage=lambda b: None) -> Path:
    dst = ws.root / "batch"
    shutil.copytree(ws.batch, dst)
    damage(dst)
    return dst


def _batch_resume(out: Path, *extra: str) -> list[str]:
    return ["train", *BATCH_ARGS, "--steps", "4", "--out", str(out), "--resume", "--quiet", *extra]


_HOLDER = textwrap.dedent("""
    import sys, time
    from mechinterp_modadd.locks import FolderLock
    lock = FolderLock(sys.argv[1], purpose="modadd sweep", what="sweep folder").acquire()
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
""")


def _hold_lock(folder: Path, seconds: float = 60.0) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), str(seconds)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "held"
    _HOLDERS.append(proc)
    return proc


_HOLDERS: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _stop_holders():
    yield
    while _HOLDERS:
        p = _HOLDERS.pop()
        p.kill()
        p.wait()


def _locked_sweep(ws: Workspace) -> list[str]:
    """A sweep folder of this very spec, held by another live process, with its batch in .work/."""
    from mechinterp_modadd.sweeps import parse_spec

    sw = ws.root / "sw"
    _write(sw / "sweep.json", json.dumps(parse_spec(SPEC_TINY).to_dict(), indent=1))
    _write(sw / ".work" / "b_0123456789ab" / "standard_p5_seed0" / "metrics.csv", "step\n0\n")
    _hold_lock(sw)
    return _sweep(ws, SPEC_TINY, out=sw)


CORPUS3: list[Bad] = [
    # ---- outputs onto the files of an input (run folder, checkpoint, sweep folder)
    Bad("diagnose-json-onto-the-runs-config", "diagnose",
        lambda ws: ["diagnose", str(ws.ckpt), "--json", str(ws.run / "config.json")]),
    Bad("diagnose-html-onto-another-checkpoint", "diagnose",
        lambda ws: ["diagnose", str(ws.ckpt), "--html", str(ws.run / "checkpoints" / "step_000001.safetensors")]),
    Bad("diagnose-json-onto-a-checkpoint-elsewhere", "diagnose",
        lambda ws: ["diagnose", str(ws.ckpt), "--json", str(ws.quad)]),
    Bad("diagnose-json-onto-another-runs-metrics", "diagnose",
        lambda ws: ["diagnose", str(ws.ckpt), "--json", str(_other_run(ws) / "metrics.csv")]),
    Bad("report-json-onto-the-runs-split", "report",
        lambda ws: ["report", str(ws.run), "--out", str(ws.root / "r.html"), "--json", str(ws.run / "split.json")]),
    Bad("report-out-onto-the-runs-resume-state", "report",
        lambda ws: ["report", str(ws.run), "--out", str(ws.run / "resume.safetensors")]),
    Bad("track-json-onto-the-runs-metrics", "track",
        lambda ws: ["track", str(ws.run), "--json", str(ws.run / "metrics.csv"), "--quiet"]),
    Bad("track-html-onto-a-checkpoint-of-the-run", "track",
        lambda ws: ["track", str(ws.run), "--html", str(ws.run / "checkpoints" / "step_000000.safetensors")]),
    Bad("ablate-json-onto-the-runs-config", "ablate",
        lambda ws: ["ablate", str(ws.ckpt), "--json", str(ws.run / "config.json")]),
    Bad("explore-out-onto-a-file-of-the-run", "explore",
        lambda ws: ["explore", str(ws.run), "--out", str(_write(ws.run / "old.html", "<p>mine</p>"))]),
    Bad("report-sweep-json-onto-its-results", "report",
        lambda ws: ["report", str(_sweep_copy(ws, ws.sweep, lambda d: None)), "--out", str(ws.root / "r.html"),
                    "--json", str(ws.root / "swcopy" / "results.csv")]),
    Bad("diagnose-json-is-a-pipe", "diagnose",
        lambda ws: ["diagnose", str(ws.ckpt), "--json", str(_fifo(ws.root / "out.fifo"))]),
    # ---- report --png/--svg validated before anything is written
    Bad("report-png-is-a-file", "report",
        lambda ws: ["report", str(ws.ckpt), "--out", str(ws.root / "r.html"), "--png", str(ws.afile)]),
    Bad("report-png-under-a-file", "report",
        lambda ws: ["report", str(ws.ckpt), "--out", str(ws.root / "r.html"), "--svg", str(ws.afile / "figs")]),
    Bad("report-png-is-the-input-run", "report",
        lambda ws: ["report", str(ws.run), "--out", str(ws.root / "r.html"), "--png", str(ws.run)]),
    # ---- paths that cannot be a checkpoint, run or spec: refused, never read
    Bad("diagnose-named-pipe", "diagnose", lambda ws: ["diagnose", str(_fifo(ws.root / "ck.safetensors"))]),
    Bad("diagnose-character-device", "diagnose", lambda ws: ["diagnose", "/dev/zero"]),
    Bad("ablate-named-pipe", "ablate", lambda ws: ["ablate", str(_fifo(ws.root / "ck.pth")), "--activation", "relu"]),
    Bad("report-socket", "report",
        lambda ws: ["report", str(_socket_file(ws.root / "s.sock")), "--out", str(ws.root / "r.html")]),
    Bad("track-pipe-inside-the-run", "track", lambda ws: ["track", str(_run_with_pipe(ws)), "--quiet"]),
    Bad("explore-pipe-inside-the-run", "explore",
        lambda ws: ["explore", str(_run_with_pipe(ws)), "--out", str(ws.root / "x.html"), "--quiet"]),
    Bad("sweep-spec-is-a-pipe", "sweep",
        lambda ws: ["sweep", str(_fifo(ws.root / "s.toml")), "--out", str(ws.root / "sw"), "--executor", "local"]),
    Bad("sweep-spec-is-a-folder", "sweep",
        lambda ws: ["sweep", str(ws.run), "--out", str(ws.root / "sw"), "--executor", "local"]),
    # ---- sweep specs: encodings, grid size, budget, lock
    Bad("sweep-spec-latin-1", "sweep",
        lambda ws: _sweep(ws, "name = 'r\u00e9sum\u00e9'\n[grid]\np = 5\n".encode("latin-1"))),
    Bad("sweep-spec-binary", "sweep", lambda ws: _sweep(ws, bytes(range(256)) * 4)),
    Bad("sweep-grid-300003-seeds", "sweep", lambda ws: _sweep(ws, "[grid]\np = 5\nseed = '0-300002'\n")),
    Bad("sweep-grid-product-above-the-limit", "sweep",
        lambda ws: _sweep(ws, "[grid]\np = 5\nseed = '0-999'\nweight_decay = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, "
                              "3.5, 4.0, 4.5, 5.0]\n")),
    Bad("sweep-p-100001", "sweep", lambda ws: _sweep(ws, "[grid]\np = 100001\n")),
    Bad("sweep-disk-budget", "sweep",
        lambda ws: _sweep(ws, "[grid]\np = 5\nd_mlp = 8\nsteps = 1000000000\nsave_every = 1\n")),
    Bad("sweep-folder-locked-by-another-sweep", "sweep", _locked_sweep),
    Bad("sweep-address-where-nothing-answers", "sweep",
        lambda ws: ["sweep", str(_write(ws.root / "spec.toml", SPEC_TINY)), "--out", str(ws.root / "sw"),
                    "--executor", "ray", "--address", "127.0.0.1:1", "--quiet"]),
    # ---- train: grids counted before anything is built; files --resume reads are no pipes
    Bad("train-seed-0-100000", "train", lambda ws: ["train", *RUN_ARGS, "--seed", "0-100000", "--out",
                                                    str(ws.root / "many")]),
    Bad("train-grid-product-above-the-limit", "train",
        lambda ws: ["train", *RUN_ARGS, "--seed", "0-999", "--lr", *[f"{i}e-3" for i in range(1, 12)], "--out",
                    str(ws.root / "many")]),
    Bad("train-resume-pipe-in-the-run", "train",
        lambda ws: ["train", *RUN_ARGS, "--steps", "4", "--out", str(_run_with_pipe(ws)), "--resume", "--quiet"]),
    # ---- train --resume of a batch: only batch folders, members checked before any trains
    Bad("train-batch-resume-into-a-users-folder", "train",
        lambda ws: _batch_resume(_write(ws.root / "mine" / "thesis.txt", "chapter 1").parent)),
    Bad("train-batch-resume-into-a-single-run", "train", lambda ws: _batch_resume(ws.copy_run("single"))),
    Bad("train-batch-resume-into-a-sweep-folder", "train",
        lambda ws: _batch_resume(_sweep_copy(ws, ws.sweep, lambda d: None))),
    Bad("train-batch-resume-member-replaced-by-p11", "train", lambda ws: _batch_resume(_batch_copy(
        ws, lambda b: (shutil.rmtree(b / "seed1"), shutil.copytree(ws.others / "p11", b / "seed1"))))),
    Bad("train-batch-resume-stray-file", "train",
        lambda ws: _batch_resume(_batch_copy(ws, lambda b: _write(b / "notes.txt", "mine")))),
    # ---- report SWEEP: results.csv cross-checked against sweep.json and runs/
    Bad("report-sweep-results-truncated", "report",
        lambda ws: ["report", str(_sweep_copy(ws, ws.sweep, _half_results)), "--out", str(ws.root / "r.html")]),
    Bad("report-sweep-run-folder-gone", "report",
        lambda ws: ["report", str(_sweep_copy(ws, ws.sweep, _run_gone)), "--out", str(ws.root / "r.html")]),
    Bad("report-sweep-results-missing", "report",
        lambda ws: ["report", str(_sweep_copy(ws, ws.sweep, lambda d: (d / "results.csv").unlink())),
                    "--out", str(ws.root / "r.html")]),
    Bad("report-sweep-spec-not-json", "report",
        lambda ws: ["report", str(_sweep_copy(ws, ws.sweep, lambda d: _write(d / "sweep.json", "{oops"))),
                    "--out", str(ws.root / "r.html")]),
]

#: what the one line must name, per case (the file, flag or key)
NAMES: dict[str, str] = {
    "diagnose-json-onto-the-runs-config": "--json", "diagnose-html-onto-another-checkpoint": "--html",
    "diagnose-json-onto-a-checkpoint-elsewhere": "checkpoint file",
    "diagnose-json-onto-another-runs-metrics": "run folder",
    "report-json-onto-the-runs-split": "split.json", "report-out-onto-the-runs-resume-state": "--out",
    "track-json-onto-the-runs-metrics": "metrics.csv", "report-png-is-a-file": "--png",
    "report-png-under-a-file": "--svg", "report-png-is-the-input-run": "--png",
    "diagnose-named-pipe": "named pipe", "diagnose-character-device": "character device",
    "report-socket": "socket", "track-pipe-inside-the-run": "step_000003.safetensors",
    "sweep-spec-is-a-pipe": "named pipe", "sweep-spec-latin-1": "not UTF-8", "sweep-spec-binary": "not a text file",
    "sweep-grid-300003-seeds": "300,003", "sweep-grid-product-above-the-limit": "11,000 runs",
    "sweep-p-100001": "grid.p", "sweep-disk-budget": "of disk",
    "sweep-folder-locked-by-another-sweep": "another process", "sweep-address-where-nothing-answers": "--address",
    "report-sweep-results-truncated": "results.csv",
    "report-sweep-run-folder-gone": "results.csv", "report-sweep-results-missing": "results.csv",
    "report-sweep-spec-not-json": "sweep.json", "train-seed-0-100000": "100,001",
    "train-grid-product-above-the-limit": "11,000 runs", "train-resume-pipe-in-the-run": "named pipe",
    "train-batch-resume-into-a-users-folder": "thesis.txt", "train-batch-resume-into-a-single-run": "single run",
    "train-batch-resume-into-a-sweep-folder": "sweep folder", "train-batch-resume-member-replaced-by-p11": "seed1",
    "train-batch-resume-stray-file": "notes.txt",
}


@pytest.mark.parametrize("case", CORPUS3, ids=[c.id for c in CORPUS3])
def test_bad_input_round3(case, base, sweep_done, batch_done, tmp_path, capsys):  # noqa: F811
    ws_root = tmp_path / "ws"
    real_build = case.build

    def build(ws: Workspace) -> list[str]:
        ws.sweep, ws.batch = sweep_done, batch_done
        return real_build(ws)

    line = check_bad_input(Bad(case.id, case.command, build, case.skip_as_root), ws_root, base, capsys)
    if case.id in NAMES:
        assert NAMES[case.id] in line, line
    assert "--max-memory" not in line or case.command != "sweep", line
    if case.command == "sweep" and case.id != "sweep-folder-locked-by-another-sweep":
        assert not (ws_root / "sw").exists(), "a refused sweep left its folder behind"


def test_locked_sweep_leaves_the_first_sweeps_work_alone(base, tmp_path, capsys):  # noqa: F811
    ws = Workspace(root=tmp_path, run=tmp_path, ckpt=tmp_path, quad=tmp_path, afile=tmp_path, others=tmp_path)
    argv = _locked_sweep(ws)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"pid {_HOLDERS[-1].pid}" in err and "modadd sweep" in err, err
    assert (tmp_path / "sw" / ".work" / "b_0123456789ab" / "standard_p5_seed0" / "metrics.csv").is_file()


def test_batch_resumed_for_some_runs_keeps_every_run_in_runs_csv(batch_done, tmp_path, capsys):
    out = tmp_path / "batch"
    shutil.copytree(batch_done, out)
    assert main(["train", *RUN_ARGS, "--seed", "0-1", "--steps", "4", "--out", str(out), "--resume", "--quiet"]) == 0
    import pandas as pd

    tab = pd.read_csv(out / "runs.csv")
    assert list(tab["folder"]) == ["seed0", "seed1", "seed2", "seed3"]
    assert list(tab["steps_done"]) == [4, 4, 2, 2]
    # and the whole batch still resumes as one
    assert main(_batch_resume(out)) == 0
    assert list(pd.read_csv(out / "runs.csv")["steps_done"]) == [4, 4, 4, 4]


def test_a_lock_left_by_a_killed_training_does_not_block(base, tmp_path, capsys):  # noqa: F811
    """The lock dies with its holder: what a SIGKILLed training leaves (its holder JSON) is replaced
    by the next writer, with no --break-lock (the old corpus cases 'stale lock' now succeed)."""
    from test_cli_corpus import HOLDERS, _held

    ws = Workspace(root=tmp_path, run=base / "run", ckpt=tmp_path, quad=tmp_path, afile=tmp_path,
                   others=base / "_others")
    run = _held(ws, "r")
    child = HOLDERS.pop()
    child.kill()
    child.wait()
    assert main(["train", *RUN_ARGS, "--steps", "4", "--out", str(run), "--resume", "--quiet"]) == 0
    assert not (run / ".modadd.lock.json").exists()


def test_report_sweep_still_works_and_says_how_many_runs(sweep_done, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["report", str(sweep_done), "--out", str(out)]) == 0
    assert "4 runs" in out.read_text()


def test_new_file_inside_the_input_run_is_allowed_once(base, tmp_path, capsys):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    ckpt = run / "checkpoints" / "step_000002.safetensors"
    assert main(["diagnose", str(ckpt), "--json", str(run / "diagnosis.json")]) == 0
    assert main(["diagnose", str(ckpt), "--json", str(run / "diagnosis.json")]) == 2
    assert "is a file of the run folder" in capsys.readouterr().err


# ------------------------------------------------------------------- before torch loads
EARLY = [
    ["diagnose", "/nonexistent.safetensors"],
    ["track", "/nonexistent"],
    ["report", "/nonexistent", "--out", "/tmp/x.html"],
    ["diagnose", "{ws}/fifo"],
    ["diagnose", "{ckpt}", "--json", "{run}/config.json"],
    ["report", "{ckpt}", "--out", "{ws}/r.html", "--png", "{ws}/afile"],
    ["sweep", "{ws}/fifo", "--out", "{ws}/sw"],
    ["diagnose", "--threads", "-1"],
    ["train", "--preset", "standard", "--seed", "0-100000"],
    ["train", "--preset", "standard", "--seed", "0-999", "--lr", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10",
     "11", "--out", "{ws}/many"],
]


def test_argument_and_path_errors_come_before_torch(base, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    os.mkfifo(tmp_path / "fifo")
    _write(tmp_path / "afile", "x")
    subs = {"ws": str(tmp_path), "run": str(run), "ckpt": str(run / "checkpoints" / "step_000002.safetensors")}
    for argv in EARLY:
        argv = [a.format(**subs) for a in argv]
        code = ("import sys; from mechinterp_modadd.cli import main\n"
                "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
                "print(rc, 'torch' in sys.modules)")
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO,
                              timeout=120)
        assert proc.stdout.split() == ["2", "False"], (argv, proc.stdout, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ------------------------------------------------------------------------------ the lock
def test_folder_lock_excludes_other_processes_and_dies_with_its_holder(tmp_path):
    from mechinterp_modadd.errors import RunFolderError
    from mechinterp_modadd.locks import OWNER_NAME, FolderLock

    holder = _hold_lock(tmp_path)
    info = json.loads((tmp_path / OWNER_NAME).read_text())
    assert info["pid"] == holder.pid and info["purpose"] == "modadd sweep"
    with pytest.raises(RunFolderError, match=f"another process is writing this sweep folder .*pid {holder.pid}"):
        FolderLock(tmp_path, what="sweep folder").acquire()
    holder.kill()
    holder.wait()
    with FolderLock(tmp_path, purpose="test") as lock:  # no stale lock to break: the OS released it
        assert json.loads((tmp_path / OWNER_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(RunFolderError, match="this process already holds"):
            FolderLock(tmp_path).acquire()
    assert not lock.held and not (tmp_path / OWNER_NAME).exists()


_RACER = textwrap.dedent("""
    import os, sys, time
    from mechinterp_modadd.errors import RunFolderError
    from mechinterp_modadd.locks import FolderLock
    folder, go, stop = sys.argv[1:4]
    print("ready", flush=True)
    while not os.path.exists(go):
        pass
    try:
        lock = FolderLock(folder).acquire()  # kept referenced: a collected lock is released
        print("won", flush=True)
        while not os.path.exists(stop):  # hold the lock until every racer has tried
            time.sleep(0.01)
    except RunFolderError:
        print("lost", flush=True)
""")


def test_racing_processes_cannot_both_take_the_lock(tmp_path):
    folder, go, stop = tmp_path / "f", tmp_path / "go", tmp_path / "stop"
    folder.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(folder), str(go), str(stop)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO) for _ in range(4)]
    try:
        assert all(p.stdout.readline().strip() == "ready" for p in procs)
        go.touch()  # all four are spinning: they try at the same moment
        outs = [p.stdout.readline().strip() for p in procs]
        assert sorted(outs) == ["lost", "lost", "lost", "won"], outs
    finally:
        stop.touch()
        for p in procs:
            p.wait(timeout=60)


# --------------------------------------------------------------------------- durable writes
def test_atomic_writes_fsync_the_folder_after_the_rename(tmp_path, monkeypatch):
    import stat

    from mechinterp_modadd import fileio

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        return real_fsync(fd)

    def replace(a, b):
        events.append("rename")
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    fileio.atomic_write_text(tmp_path / "a.json", "{}")
    assert events == ["fsync-file", "rename", "fsync-dir"], events
    events.clear()
    (tmp_path / "d").mkdir()
    fileio.atomic_rename(tmp_path / "d", tmp_path / "e")
    assert events == ["rename", "fsync-dir"] and (tmp_path / "e").is_dir()


def test_outputs_beside_an_authors_checkpoint(tmp_path):
    """An authors' N.pth among their other steps makes its folder an input's (its files are kept);
    a lone .pth in an ordinary folder does not (writing a new report beside it twice is fine)."""
    import torch

    from mechinterp_modadd.errors import OutputError
    from mechinterp_modadd.model import ModAddMLP, ModelConfig
    from mechinterp_modadd.outputs import check_output_files

    authors, downloads = tmp_path / "p_7_dmlp_8_ReLU", tmp_path / "downloads"
    for folder, steps in ((authors, (0, 1)), (downloads, (5,))):
        folder.mkdir()
        for step in steps:
            m = ModAddMLP(ModelConfig(p=7, d_mlp=8), seed=step)
            torch.save({"model": dict(m.state_dict()), "epoch": step}, folder / f"{step}.pth")
        _write(folder / "notes.json", "{}")
    with pytest.raises(OutputError, match="run folder of the input"):
        check_output_files({"--json": authors / "notes.json"}, inputs=[authors / "1.pth"])
    check_output_files({"--json": downloads / "notes.json"}, inputs=[downloads / "5.pth"])
    with pytest.raises(OutputError, match="is a checkpoint file"):  # but never onto a checkpoint
        check_output_files({"--json": authors / "0.pth"}, inputs=[downloads / "5.pth"])
