"""Run folders: only absent/empty folders for new runs, one writer at a time, resume checks first."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys

import pytest

from mechinterp_modadd.checkpoint import read_checkpoint_header
from mechinterp_modadd.errors import CheckpointError, ConfigError, RunFolderError
from mechinterp_modadd.layout import LOCK_OWNER
from mechinterp_modadd.training import checkpoint_path, preset, train
from mechinterp_modadd.training.runfolder import LOCK_NAME, RunLock, check_new_folder, validate_resume

CFG = preset("standard", p=7, d_mlp=8, steps=6, save_every=3)


def _hashes(root):
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


@pytest.fixture
def run(tmp_path):
    out = tmp_path / "run"
    train(CFG.replace(steps=3), out, progress=False)
    return out


def test_new_run_refuses_any_non_empty_folder(tmp_path):
    foreign = tmp_path / "foreign"
    (foreign / "checkpoints").mkdir(parents=True)
    (foreign / "checkpoints" / "step_000000.safetensors").write_bytes(b"someone else's")
    before = _hashes(foreign)
    with pytest.raises(RunFolderError, match=r"foreign: folder is not empty \(holds checkpoints/\)"):
        train(CFG, foreign, progress=False)
    assert _hashes(foreign) == before and not (foreign / LOCK_NAME).exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunFolderError, match="not a folder"):
        check_new_folder(tmp_path / "afile")
    (tmp_path / "empty").mkdir()
    res = train(CFG, tmp_path / "empty", progress=False)  # an empty folder is fine
    # the (empty) OS lock file stays; the holder's JSON goes with the writer
    assert res.run_dir is not None and not (tmp_path / "empty" / LOCK_OWNER).exists()
    assert (tmp_path / "empty" / LOCK_NAME).read_bytes() == b""


def test_run_id_is_written_everywhere(run):
    rid = json.loads((run / "config.json").read_text())["run_id"]
    assert len(rid) == 32
    assert read_checkpoint_header(checkpoint_path(run, 0)).run_id == rid
    assert read_checkpoint_header(checkpoint_path(run, 3)).run_id == rid
    train(CFG, run, resume=True, progress=False)
    assert read_checkpoint_header(checkpoint_path(run, 6)).run_id == rid
    assert json.loads((run / "config.json").read_text())["run_id"] == rid


_HOLD = """
import sys, time
from mechinterp_modadd.training.runfolder import RunLock
lock = RunLock(sys.argv[1]).acquire()  # kept referenced: a collected lock is released
print("held", flush=True)
time.sleep(120)
"""


def _holder(folder) -> subprocess.Popen:
    """Another process holding the run lock of ``folder`` (as a training writing it would)."""
    child = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_live_lock_refuses_a_second_writer_even_with_break_lock(run):
    child = _holder(run)
    try:
        info = json.loads((run / LOCK_OWNER).read_text())
        assert info["pid"] == child.pid and info["host"] == socket.gethostname()
        before = _hashes(run)
        with pytest.raises(RunFolderError, match=f"another process is writing this run \\(pid {child.pid}"):
            train(CFG, run, resume=True, progress=False)
        with pytest.raises(RunFolderError, match="another process"):  # never broken while alive
            train(CFG, run, resume=True, progress=False, break_lock=True)
        assert _hashes(run) == before
        # exclusion is the OS lock's, not the JSON's: without the JSON, or with garbage in it, still refused
        (run / LOCK_OWNER).unlink()
        with pytest.raises(RunFolderError, match="holder unknown"):
            RunLock(run).acquire()
        (run / LOCK_OWNER).write_text("garbage")
        with pytest.raises(RunFolderError, match="another process"):
            RunLock(run, break_lock=True).acquire()
    finally:
        child.kill()
        child.wait()


def test_a_killed_writer_leaves_nothing_to_break(run):
    child = _holder(run)
    child.kill()  # SIGKILL: no clean-up runs, its holder JSON stays behind
    child.wait()
    assert json.loads((run / LOCK_OWNER).read_text())["pid"] == child.pid
    res = train(CFG, run, resume=True, progress=False)  # the OS released the lock: no --break-lock needed
    assert int(res.metrics["step"].iloc[-1]) == 6 and not (run / LOCK_OWNER).exists()


def test_old_lock_files_of_another_host_or_garbage_do_not_block(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere", "started": "t"}))
    (tmp_path / LOCK_OWNER).write_text("garbage")
    with RunLock(tmp_path) as lock:
        assert json.loads(lock.owner_path.read_text())["pid"] == os.getpid()
        with pytest.raises(RunFolderError, match="this process already holds"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_OWNER).exists()


_RACE = """
import os, sys, time
from mechinterp_modadd.errors import RunFolderError
from mechinterp_modadd.training.runfolder import RunLock
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    pass
try:
    lock = RunLock(sys.argv[1], break_lock=True).acquire()
    print("won", flush=True)
    while not os.path.exists(sys.argv[3]):
        time.sleep(0.01)
except RunFolderError:
    print("lost", flush=True)
"""


def test_two_break_locks_racing_cannot_both_win(run, tmp_path):
    go, stop = tmp_path / "go", tmp_path / "stop"
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(run), str(go), str(stop)], stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    try:
        assert all(p.stdout.readline().strip() == "ready" for p in procs)
        go.touch()
        assert sorted(p.stdout.readline().strip() for p in procs) == ["lost", "lost", "won"]
    finally:
        stop.touch()
        for p in procs:
            p.wait(timeout=60)


@pytest.mark.parametrize("damage", ["no_metrics", "bad_metrics", "short_metrics", "no_resume", "bad_resume",
                                    "no_split", "bad_config", "foreign_checkpoint", "lost_checkpoint"])
def test_resume_validates_before_writing(run, tmp_path, damage):
    if damage == "no_metrics":
        (run / "metrics.csv").unlink()
    elif damage == "bad_metrics":
        (run / "metrics.csv").write_text("step,train_loss\n0,abc\n")
    elif damage == "short_metrics":
        lines = (run / "metrics.csv").read_text().splitlines()
        (run / "metrics.csv").write_text("\n".join(lines[:2]) + "\n")
    elif damage == "no_resume":
        (run / "resume.safetensors").unlink()
    elif damage == "bad_resume":
        (run / "resume.safetensors").write_bytes(b"\x00" * 40)
    elif damage == "no_split":
        (run / "split.json").unlink()
    elif damage == "bad_config":
        (run / "config.json").write_text("{not json")
    elif damage == "foreign_checkpoint":
        other = tmp_path / "other"
        train(CFG.replace(steps=1, seed=5), other, progress=False)
        (run / "checkpoints" / "step_000002.safetensors").write_bytes(checkpoint_path(other, 1).read_bytes())
    elif damage == "lost_checkpoint":
        checkpoint_path(run, 3).unlink()
    before = _hashes(run)
    with pytest.raises((RunFolderError, CheckpointError, ConfigError)) as e:
        train(CFG, run, resume=True, progress=False)  # steps 3 -> 6 would rewrite config.json
    assert str(run) in str(e.value) and "\n" not in str(e.value)
    assert _hashes(run) == before, f"{damage}: resume changed files before failing"


def test_validate_resume_plan(run):
    plan = validate_resume(run, CFG)
    assert plan.start == 3 and len(plan.metrics) == 3 and plan.saved.steps == 3
