"""Every sub-command over a corpus of bad inputs: exit code 2, exactly one line on stderr, no
traceback, and no file under the test folder added, removed or changed.

The corpus is a table (:data:`CORPUS`): each row is a :class:`Bad` with an id, the sub-command and a
builder ``build(Workspace) -> argv``. The builder may create files in ``ws.root`` (copies of a
small valid run, damaged on purpose); they are hashed before the command runs. Helpers adding a
sub-command append rows (or extend the table from their own test module with ``CORPUS + [...]``
and :func:`check_bad_input`). Every case runs in-process through ``cli.main``.

Permission cases are built so they fail as root too (a path under a regular file; a folder where
a file must go); the one case that relies on a read-only folder skips when run as root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mechinterp_modadd.cli import main
from mechinterp_modadd.errors import CheckpointError
from mechinterp_modadd.model import ModAddMLP, ModelConfig
from mechinterp_modadd.training import checkpoint_path, preset, train

#: the valid run every case starts from: standard preset, p = 7, d_mlp = 8, steps 0..2
RUN_ARGS = ["--preset", "standard", "--p", "7", "--d-mlp", "8", "--save-every", "1"]


@dataclass
class Workspace:
    """A test folder with a fresh copy of the valid run (``run``), its last checkpoint (``ckpt``),
    a quad-activation checkpoint (``quad``) and a regular file (``afile``)."""

    root: Path
    run: Path
    ckpt: Path
    quad: Path
    afile: Path
    others: Path  # other valid runs (read-only): p11, seed3, quad

    def copy_run(self, name: str) -> Path:
        dst = self.root / name
        shutil.copytree(self.run, dst)
        return dst


@dataclass(frozen=True)
class Bad:
    id: str
    command: str
    build: Callable[[Workspace], list[str]]
    skip_as_root: bool = False


# ------------------------------------------------------------------------------- builders
def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return path


def _with_meta(ws: Workspace, name: str, **changes: str | None) -> Path:
    """A copy of the valid checkpoint with metadata keys replaced (None: removed)."""
    with safe_open(str(ws.ckpt), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        else:
            meta[k] = v
    out = ws.root / name
    save_file(tensors, str(out), metadata=meta)
    return out


def _with_tensors(ws: Workspace, name: str, fn: Callable[[dict], None]) -> Path:
    with safe_open(str(ws.ckpt), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k).clone() for k in f.keys()}
    fn(tensors)
    out = ws.root / name
    save_file(tensors, str(out), metadata=meta)
    return out


def _authors(ws: Workspace, name: str, ps=(7, 7, 7)) -> Path:
    path = ws.root / name
    path.mkdir()
    for step, p in enumerate(ps):
        m = ModAddMLP(ModelConfig(p=p, d_mlp=8, activation="quad"), seed=step)
        torch.save({"model": dict(m.state_dict()), "epoch": step}, path / f"{step}.pth")
    return path


def _mixed(ws: Workspace, name: str, other: str) -> Path:
    run = ws.copy_run(name)
    src = ws.others / other
    (run / "checkpoints" / "step_000001.safetensors").write_bytes(checkpoint_path(src, 1).read_bytes())
    return run


_HOLD = """
import sys, time
from mechinterp_modadd.training.runfolder import RunLock
lock = RunLock(sys.argv[1]).acquire()  # kept referenced: a collected lock is released
print("held", flush=True)
time.sleep(120)
"""
#: holder processes started by cases, stopped after each test
HOLDERS: list[subprocess.Popen] = []


def _held(ws: Workspace, name: str) -> Path:
    """A copy of the run whose lock another live process holds (as a training writing it would)."""
    run = ws.copy_run(name)
    child = subprocess.Popen([sys.executable, "-c", _HOLD, str(run)], stdout=subprocess.PIPE, text=True)
    HOLDERS.append(child)
    assert child.stdout.readline().strip() == "held"
    return run


@pytest.fixture(autouse=True)
def _stop_holders():
    yield
    while HOLDERS:
        child = HOLDERS.pop()
        child.kill()
        child.wait()


def _damage(ws: Workspace, name: str, fn: Callable[[Path], None]) -> Path:
    run = ws.copy_run(name)
    fn(run)
    return run


def _resume(run: Path, *extra: str) -> list[str]:
    return ["train", *RUN_ARGS, "--steps", "4", "--out", str(run), "--resume", "--quiet", *extra]


def _readonly_dir(ws: Workspace) -> Path:
    ro = ws.root / "rodir"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


def _readonly_run(ws: Workspace) -> Path:
    run = ws.copy_run("rorun")
    run.chmod(0o555)
    return run


def _readonly(ws: Workspace) -> list[str]:
    ro = ws.root / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ["diagnose", str(ws.ckpt), "--json", str(ro / "out.json")]


SWEEP_OK = "[grid]\npreset = 'standard'\np = 5\nd_mlp = 8\nsteps = 2\n"


def _sweep(ws: Workspace, spec: str, *extra: str, out: Path | None = None) -> list[str]:
    """``modadd sweep`` on a spec written into the workspace (``--out`` default: an absent folder)."""
    f = _write(ws.root / "spec.toml", spec)
    return ["sweep", str(f), "--out", str(out if out is not None else ws.root / "sw"), "--executor", "local",
            "--quiet", *extra]


CORPUS: list[Bad] = [
    # ---- diagnose: checkpoint files
    Bad("diagnose-missing-file", "diagnose", lambda ws: ["diagnose", str(ws.root / "nope.safetensors")]),
    Bad("diagnose-empty-file", "diagnose", lambda ws: ["diagnose", str(_write(ws.root / "e.safetensors", b""))]),
    Bad("diagnose-truncated", "diagnose",
        lambda ws: ["diagnose", str(_write(ws.root / "t.safetensors", ws.ckpt.read_bytes()[:100]))]),
    Bad("diagnose-text-file", "diagnose", lambda ws: ["diagnose", str(_write(ws.root / "notes.txt", "hello there"))]),
    Bad("diagnose-folder", "diagnose", lambda ws: ["diagnose", str(ws.run)]),
    Bad("diagnose-pth-no-activation", "diagnose", lambda ws: ["diagnose", str(_authors(ws, "a") / "2.pth")]),
    Bad("diagnose-garbage-zip", "diagnose",
        lambda ws: ["diagnose", str(_write(ws.root / "g.pth", b"PK\x03\x04junkjunk")), "--activation", "relu"]),
    Bad("diagnose-bad-step", "diagnose", lambda ws: ["diagnose", str(_with_meta(ws, "s.safetensors", step='"ten"'))]),
    Bad("diagnose-negative-step", "diagnose", lambda ws: ["diagnose", str(_with_meta(ws, "s.safetensors", step="-3"))]),
    Bad("diagnose-config-not-json", "diagnose",
        lambda ws: ["diagnose", str(_with_meta(ws, "c.safetensors", config="{p: 7"))]),
    Bad("diagnose-config-missing", "diagnose",
        lambda ws: ["diagnose", str(_with_meta(ws, "c.safetensors", config=None))]),
    Bad("diagnose-config-unknown-key", "diagnose",
        lambda ws: ["diagnose", str(_with_meta(ws, "c.safetensors", config='{"p": 7, "d_mlp": 8, "colour": 1}'))]),
    Bad("diagnose-metrics-not-object", "diagnose",
        lambda ws: ["diagnose", str(_with_meta(ws, "m.safetensors", metrics="[1, 2]"))]),
    Bad("diagnose-foreign-format", "diagnose",
        lambda ws: ["diagnose", str(_with_meta(ws, "f.safetensors", format="pt"))]),
    Bad("diagnose-even-p", "diagnose",
        lambda ws: ["diagnose", str(_with_meta(ws, "p.safetensors", config='{"p": 8, "d_mlp": 8}'))]),
    Bad("diagnose-nan-weights", "diagnose",
        lambda ws: ["diagnose", str(_with_tensors(ws, "n.safetensors", lambda t: t["mlp.W_in"].fill_(float("nan"))))]),
    Bad("diagnose-wrong-shape", "diagnose",
        lambda ws: ["diagnose", str(_with_tensors(ws, "w.safetensors",
                                                  lambda t: t.update({"mlp.W_out": torch.zeros(7, 9)})))]),
    Bad("diagnose-contradicting-activation", "diagnose", lambda ws: ["diagnose", str(ws.quad), "--activation", "relu"]),
    Bad("diagnose-unknown-activation", "diagnose", lambda ws: ["diagnose", str(ws.ckpt), "--activation", "swish9"]),
    Bad("diagnose-json-under-a-file", "diagnose",
        lambda ws: ["diagnose", str(ws.ckpt), "--json", str(ws.afile / "out.json")]),
    Bad("diagnose-json-is-a-folder", "diagnose", lambda ws: ["diagnose", str(ws.ckpt), "--json", str(ws.root)]),
    Bad("diagnose-html-same-as-json", "diagnose",
        lambda ws: ["diagnose", str(ws.ckpt), "--json", str(ws.root / "o"), "--html", str(ws.root / "o")]),
    Bad("diagnose-json-overwrites-input", "diagnose", lambda ws: ["diagnose", str(ws.ckpt), "--json", str(ws.ckpt)]),
    Bad("diagnose-html-under-a-file", "diagnose",
        lambda ws: ["diagnose", str(ws.ckpt), "--json", str(ws.root / "ok.json"), "--html", str(ws.afile / "x.html")]),
    Bad("diagnose-json-read-only-folder", "diagnose", _readonly, skip_as_root=True),
    Bad("diagnose-max-memory-words", "diagnose", lambda ws: ["diagnose", str(ws.ckpt), "--max-memory", "lots"]),
    Bad("diagnose-max-memory-zero", "diagnose", lambda ws: ["diagnose", str(ws.ckpt), "--max-memory", "0"]),
    Bad("diagnose-threads-negative", "diagnose", lambda ws: ["diagnose", str(ws.ckpt), "--threads", "-2"]),
    Bad("diagnose-device-unknown", "diagnose", lambda ws: ["diagnose", str(ws.ckpt), "--device", "tpu"]),
    Bad("diagnose-unknown-flag", "diagnose", lambda ws: ["diagnose", str(ws.ckpt), "--jsno", "x.json"]),
    # ---- ablate
    Bad("ablate-missing-file", "ablate", lambda ws: ["ablate", str(ws.root / "nope.safetensors")]),
    Bad("ablate-seed-not-int", "ablate", lambda ws: ["ablate", str(ws.ckpt), "--seed", "abc"]),
    Bad("ablate-json-under-a-file", "ablate", lambda ws: ["ablate", str(ws.ckpt), "--json", str(ws.afile / "a.json")]),
    Bad("ablate-contradicting-activation", "ablate", lambda ws: ["ablate", str(ws.quad), "--activation", "relu"]),
    Bad("ablate-no-checkpoint", "ablate", lambda ws: ["ablate"]),
    # ---- track: run folders
    Bad("track-missing-folder", "track", lambda ws: ["track", str(ws.root / "nope"), "--quiet"]),
    Bad("track-a-file", "track", lambda ws: ["track", str(ws.ckpt), "--quiet"]),
    Bad("track-empty-folder", "track",
        lambda ws: ["track", str(_write(ws.root / "e" / ".keep", "").parent), "--quiet"]),
    Bad("track-mixed-p", "track", lambda ws: ["track", str(_mixed(ws, "mp", "p11")), "--quiet"]),
    Bad("track-foreign-run-id", "track", lambda ws: ["track", str(_mixed(ws, "mr", "seed3")), "--quiet"]),
    Bad("track-mixed-activation", "track", lambda ws: ["track", str(_mixed(ws, "ma", "quad")), "--quiet"]),
    Bad("track-bad-config", "track",
        lambda ws: ["track", str(_damage(ws, "bc", lambda r: _write(r / "config.json", "{oops"))), "--quiet"]),
    Bad("track-bad-split", "track",
        lambda ws: ["track", str(_damage(ws, "bs", lambda r: _write(r / "split.json", '{"p": 7}'))), "--quiet"]),
    Bad("track-empty-metrics", "track",
        lambda ws: ["track", str(_damage(ws, "em", lambda r: _write(r / "metrics.csv", ""))), "--quiet"]),
    Bad("track-contradicting-activation", "track",
        lambda ws: ["track", str(ws.run), "--activation", "quad", "--quiet"]),
    Bad("track-html-under-a-file", "track",
        lambda ws: ["track", str(ws.run), "--json", str(ws.root / "t.json"), "--html", str(ws.afile / "t.html")]),
    Bad("track-authors-name-contradicts", "track",
        lambda ws: ["track", str(_authors(ws, "p_7_dmlp_8_Quad_random_x")), "--activation", "relu", "--quiet"]),
    Bad("track-authors-mixed-p", "track", lambda ws: ["track", str(_authors(ws, "am", (7, 11, 7))), "--activation",
                                                       "quad", "--quiet"]),
    Bad("track-authors-no-activation", "track", lambda ws: ["track", str(_authors(ws, "an")), "--quiet"]),
    Bad("track-neuron-not-int", "track", lambda ws: ["track", str(ws.run), "--neuron", "first"]),
    # ---- report
    Bad("report-missing-path", "report",
        lambda ws: ["report", str(ws.root / "nope"), "--out", str(ws.root / "r.html")]),
    Bad("report-out-under-a-file", "report", lambda ws: ["report", str(ws.ckpt), "--out", str(ws.afile / "r.html")]),
    Bad("report-out-is-a-folder", "report", lambda ws: ["report", str(ws.ckpt), "--out", str(ws.root)]),
    Bad("report-mixed-folder", "report",
        lambda ws: ["report", str(_mixed(ws, "rm", "p11")), "--out", str(ws.root / "r.html"), "--quiet"]),
    Bad("report-bad-metadata", "report",
        lambda ws: ["report", str(_with_meta(ws, "b.safetensors", step="1.5")), "--out", str(ws.root / "r.html")]),
    Bad("report-no-out", "report", lambda ws: ["report", str(ws.ckpt)]),
    Bad("report-json-under-a-file", "report",
        lambda ws: ["report", str(ws.ckpt), "--out", str(ws.root / "r.html"), "--json", str(ws.afile / "r.json")]),
    Bad("report-json-same-as-out", "report",
        lambda ws: ["report", str(ws.ckpt), "--out", str(ws.root / "r.html"), "--json", str(ws.root / "r.html")]),
    # ---- explore
    Bad("explore-out-not-html", "explore", lambda ws: ["explore", str(ws.ckpt), "--out", str(ws.root / "x.txt")]),
    Bad("explore-mixed-folder", "explore",
        lambda ws: ["explore", str(_mixed(ws, "xm", "p11")), "--out", str(ws.root / "x.html"), "--quiet"]),
    Bad("explore-out-under-a-file", "explore", lambda ws: ["explore", str(ws.ckpt), "--out", str(ws.afile / "x.html")]),
    Bad("explore-missing-path", "explore",
        lambda ws: ["explore", str(ws.root / "nope"), "--out", str(ws.root / "x.html")]),
    Bad("explore-draws-zero", "explore",
        lambda ws: ["explore", str(ws.ckpt), "--out", str(ws.root / "x.html"), "--draws", "0"]),
    Bad("explore-no-out", "explore", lambda ws: ["explore", str(ws.ckpt)]),
    Bad("explore-out-is-a-folder", "explore",
        lambda ws: ["explore", str(ws.ckpt), "--out", str(_write(ws.root / "d.html" / "keep", "x").parent)]),
    Bad("explore-authors-without-activation", "explore",
        lambda ws: ["explore", str(_authors(ws, "au")), "--out", str(ws.root / "x.html"), "--quiet"]),
    # ---- train: flags, folders, resume
    Bad("train-checkpoint-steps-abc", "train",
        lambda ws: ["train", *RUN_ARGS, "--steps", "2", "--checkpoint-steps", "abc", "--out", str(ws.root / "n")]),
    Bad("train-even-p", "train",
        lambda ws: ["train", "--preset", "standard", "--p", "24", "--out", str(ws.root / "n")]),
    Bad("train-p-not-int", "train", lambda ws: ["train", "--preset", "standard", "--p", "abc"]),
    Bad("train-stop-accuracy-above-1", "train",
        lambda ws: ["train", *RUN_ARGS, "--steps", "2", "--stop-accuracy", "1.5", "--out", str(ws.root / "n")]),
    Bad("train-stop-window-0", "train",
        lambda ws: ["train", *RUN_ARGS, "--steps", "2", "--stop-accuracy", "0.9", "--stop-window", "0",
                    "--out", str(ws.root / "n")]),
    Bad("train-unknown-preset", "train", lambda ws: ["train", "--preset", "nope", "--out", str(ws.root / "n")]),
    Bad("train-seed-range-bad", "train",
        lambda ws: ["train", *RUN_ARGS, "--steps", "2", "--seed", "0-x", "--out", str(ws.root / "n")]),
    Bad("train-lr-list-bad", "train",
        lambda ws: ["train", *RUN_ARGS, "--steps", "2", "--lr", "1e-3", "abc", "--out", str(ws.root / "n")]),
    Bad("train-negative-lr", "train", lambda ws: ["train", *RUN_ARGS, "--lr", "-1", "--out", str(ws.root / "n")]),
    Bad("train-negative-steps", "train", lambda ws: ["train", *RUN_ARGS, "--steps", "-5", "--out", str(ws.root / "n")]),
    Bad("train-foreign-folder", "train",
        lambda ws: ["train", *RUN_ARGS, "--steps", "2", "--quiet",
                    "--out", str(_write(ws.root / "f" / "checkpoints" / "step_000000.safetensors", b"x").parents[1])]),
    Bad("train-existing-run", "train", lambda ws: ["train", *RUN_ARGS, "--steps", "2", "--out", str(ws.copy_run("e"))]),
    Bad("train-out-under-a-file", "train",
        lambda ws: ["train", *RUN_ARGS, "--steps", "2", "--out", str(ws.afile / "r")]),
    Bad("train-out-is-a-file", "train", lambda ws: ["train", *RUN_ARGS, "--steps", "2", "--out", str(ws.afile)]),
    Bad("train-resume-missing-folder", "train", lambda ws: _resume(ws.root / "nope")),
    Bad("train-resume-no-metrics", "train",
        lambda ws: _resume(_damage(ws, "r1", lambda r: (r / "metrics.csv").unlink()))),
    Bad("train-resume-damaged-metrics", "train",
        lambda ws: _resume(_damage(ws, "r2", lambda r: _write(r / "metrics.csv", "step,train_loss\n0,x\n")))),
    Bad("train-resume-no-state", "train",
        lambda ws: _resume(_damage(ws, "r3", lambda r: (r / "resume.safetensors").unlink()))),
    Bad("train-resume-bad-state", "train",
        lambda ws: _resume(_damage(ws, "r4", lambda r: _write(r / "resume.safetensors", b"\x00" * 64)))),
    Bad("train-resume-no-config", "train",
        lambda ws: _resume(_damage(ws, "r5", lambda r: (r / "config.json").unlink()))),
    Bad("train-resume-other-lr", "train", lambda ws: _resume(ws.copy_run("r6"), "--lr", "0.5")),
    Bad("train-resume-fewer-steps", "train",
        lambda ws: ["train", *RUN_ARGS, "--steps", "1", "--out", str(ws.copy_run("r7")), "--resume", "--quiet"]),
    Bad("train-resume-live-lock", "train", lambda ws: _resume(_held(ws, "r8"))),
    Bad("train-resume-live-lock-break-lock", "train", lambda ws: _resume(_held(ws, "r9"), "--break-lock")),
    Bad("train-resume-foreign-checkpoint", "train", lambda ws: _resume(_mixed(ws, "r10", "seed3"))),
    Bad("train-out-read-only-folder", "train", lambda ws: ["train", *RUN_ARGS, "--steps", "2", "--out",
                                                           str(_readonly_dir(ws) / "run")], skip_as_root=True),
    Bad("train-resume-read-only-run", "train", lambda ws: _resume(_readonly_run(ws)), skip_as_root=True),
    Bad("sweep-no-spec-no-preset", "sweep", lambda ws: ["sweep", "--out", str(ws.root / "sw")]),
    Bad("sweep-spec-and-preset", "sweep",
        lambda ws: ["sweep", str(_write(ws.root / "s.toml", SWEEP_OK)), "--preset", "lottery", "--out",
                    str(ws.root / "sw")]),
    Bad("sweep-missing-spec", "sweep", lambda ws: ["sweep", str(ws.root / "nope.toml"), "--out", str(ws.root / "sw")]),
    Bad("sweep-not-toml", "sweep", lambda ws: _sweep(ws, "[grid\np = 5")),
    Bad("sweep-unknown-key", "sweep", lambda ws: _sweep(ws, "[grid]\nseeds = [0, 1]")),
    Bad("sweep-unknown-top-key", "sweep", lambda ws: _sweep(ws, "colour = 'red'\n[grid]\np = 5")),
    Bad("sweep-empty-grid-axis", "sweep", lambda ws: _sweep(ws, "[grid]\nweight_decay = []")),
    Bad("sweep-no-grid", "sweep", lambda ws: _sweep(ws, "name = 'x'")),
    Bad("sweep-even-p", "sweep", lambda ws: _sweep(ws, "[grid]\np = [5, 6]")),
    Bad("sweep-bad-seed-range", "sweep", lambda ws: _sweep(ws, "[grid]\nseed = '9-2'")),
    Bad("sweep-impossible-combination", "sweep", lambda ws: _sweep(ws, "[grid]\np = 3\ntrain_fraction = 0.01")),
    Bad("sweep-page-without-test-set", "sweep", lambda ws: _sweep(ws, "page = 'grokking'\n[grid]\np = 5")),
    Bad("sweep-unknown-analysis", "sweep", lambda ws: _sweep(ws, "analyses = ['all']\n[grid]\np = 5")),
    Bad("sweep-unknown-preset", "sweep", lambda ws: ["sweep", "--preset", "nope", "--out", str(ws.root / "sw")]),
    Bad("sweep-no-out", "sweep", lambda ws: ["sweep", str(_write(ws.root / "s.toml", SWEEP_OK))]),
    Bad("sweep-out-is-a-file", "sweep", lambda ws: _sweep(ws, SWEEP_OK, out=ws.afile)),
    Bad("sweep-out-is-a-run-folder", "sweep", lambda ws: _sweep(ws, SWEEP_OK, out=ws.run)),
    Bad("sweep-changed-spec", "sweep",
        lambda ws: _sweep(ws, SWEEP_OK, out=_write(ws.root / "sw" / "sweep.json", '{"grid": {"p": [7]}}').parent)),
    Bad("sweep-address-with-local", "sweep", lambda ws: _sweep(ws, SWEEP_OK, "--executor", "local", "--address", "x")),
    Bad("sweep-zero-workers", "sweep", lambda ws: _sweep(ws, SWEEP_OK, "--workers", "0")),
    # ---- sweep
    Bad("sweep-no-spec", "sweep", lambda ws: ["sweep", "--out", str(ws.root / "s")]),
    Bad("sweep-workers-not-int", "sweep", lambda ws: ["sweep", "--preset", "x", "--workers", "many"]),
]


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus_base")
    train(preset("standard", p=7, d_mlp=8, steps=2, save_every=1), root / "run", progress=False)
    others = root / "_others"
    train(preset("standard", p=11, d_mlp=8, steps=1), others / "p11", progress=False)
    train(preset("standard", p=7, d_mlp=8, steps=1, seed=3), others / "seed3", progress=False)
    train(preset("quad_random", p=7, d_mlp=8, steps=1), others / "quad", progress=False)
    return root


def _hashes(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def check_bad_input(case: Bad, ws_root: Path, base: Path, capsys) -> str:
    """Build ``case`` in ``ws_root``, run it and assert the contract; returns the stderr line."""
    if case.skip_as_root and hasattr(os, "geteuid") and os.geteuid() == 0:
        pytest.skip("root ignores folder permissions; the other output cases cover this as root")
    ws_root.mkdir()
    run = ws_root / "run"
    shutil.copytree(base / "run", run)
    shutil.copy(checkpoint_path(base / "_others" / "quad", 1), ws_root / "quad.safetensors")
    ws = Workspace(root=ws_root, run=run, ckpt=checkpoint_path(run, 2), quad=ws_root / "quad.safetensors",
                   afile=_write(ws_root / "afile", "a regular file"), others=base / "_others")
    argv = case.build(ws)
    before = _hashes(ws_root)
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse
        rc = e.code
    out = capsys.readouterr()
    lines = [ln for ln in out.err.splitlines() if ln.strip()]
    assert rc == 2, f"{case.id}: exit code {rc}; stderr: {out.err!r}"
    assert len(lines) == 1, f"{case.id}: expected one line on stderr, got {lines}"
    assert "Traceback" not in out.err and "Traceback" not in out.out
    assert lines[0].startswith((f"modadd {case.command}: error: ", "modadd: error: ")), lines[0]
    assert _hashes(ws_root) == before, f"{case.id}: files under the test folder changed"
    return lines[0]


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_bad_input(case, base, tmp_path, capsys):
    check_bad_input(case, tmp_path / "ws", base, capsys)


def test_corpus_covers_every_command_and_is_large():
    from mechinterp_modadd.cli import COMMANDS, _load_plugins

    _load_plugins()
    assert len(CORPUS) >= 40
    assert set(COMMANDS) <= {c.command for c in CORPUS}, "add bad inputs for the new sub-command"
    assert len({c.id for c in CORPUS}) == len(CORPUS)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        main(["--debug", "diagnose", str(tmp_path / "nope.safetensors")])
    with pytest.raises(CheckpointError):
        main(["diagnose", str(tmp_path / "nope.safetensors"), "--debug"])
