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
    assert res.run_dir is not None and not (tmp_path / "empty" / LOCK_NAME).exists()


def test_run_id_is_written_everywhere(run):
    rid = json.loads((run / "config.json").read_text())["run_id"]
    assert len(rid) == 32
    assert read_checkpoint_header(checkpoint_path(run, 0)).run_id == rid
    assert read_checkpoint_header(checkpoint_path(run, 3)).run_id == rid
    train(CFG, run, resume=True, progress=False)
    assert read_checkpoint_header(checkpoint_path(run, 6)).run_id == rid
    assert json.loads((run / "config.json").read_text())["run_id"] == rid


def test_live_lock_refuses_a_second_writer(run):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK_NAME).write_text(json.dumps({"pid": child.pid, "host": socket.gethostname(),
                                                 "started": "now"}))
        before = _hashes(run)
        with pytest.raises(RunFolderError, match=f"another process is writing this run \\(pid {child.pid}"):
            train(CFG, run, resume=True, progress=False)
        with pytest.raises(RunFolderError, match="another process"):  # never broken while alive
            train(CFG, run, resume=True, progress=False, break_lock=True)
        assert _hashes(run) == before
    finally:
        child.kill()
        child.wait()


def test_stale_lock_is_reported_and_taken_over_on_request(run):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a pid that no longer runs
    (run / LOCK_NAME).write_text(json.dumps({"pid": child.pid, "host": socket.gethostname(), "started": "t"}))
    with pytest.raises(RunFolderError, match=f"stale lock of pid {child.pid}.*--break-lock"):
        train(CFG, run, resume=True, progress=False)
    res = train(CFG, run, resume=True, progress=False, break_lock=True)
    assert int(res.metrics["step"].iloc[-1]) == 6 and not (run / LOCK_NAME).exists()


def test_lock_of_another_host_or_garbage_needs_break_lock(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getpid(), "host": "elsewhere", "started": "t"}))
    with pytest.raises(RunFolderError, match="another host"):
        RunLock(tmp_path).acquire()
    (tmp_path / LOCK_NAME).write_text("garbage")
    with pytest.raises(RunFolderError, match="unreadable lock file"):
        RunLock(tmp_path).acquire()
    with RunLock(tmp_path, break_lock=True) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


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
