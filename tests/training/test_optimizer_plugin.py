"""Adding an optimizer with a new hyper-parameter touches two files: ``hyperparams.py`` (the
declaration) and ``training/optim.py`` (the stacked arithmetic).

The test copies the package, edits those two files only (a Lion-like optimizer whose
hyper-parameter ``lion_betas`` exists nowhere else) and shows, in a fresh interpreter on the copy:
TrainConfig takes the new field (checked, refused for another optimizer, written to config.json
and read back), ``modadd train`` has the flag (the parser still without torch) and refuses a bad
value in one line with exit code 2, the sweep grid key expands and is checked, runs train (alone,
batched with folder names that show the new field, resumed bit for bit), and names of sweep runs
that do not use it are those the unedited package gives.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mechinterp_modadd.errors import ConfigError
from mechinterp_modadd.hyperparams import HYPER
from mechinterp_modadd.sweeps.spec import parse_spec
from mechinterp_modadd.training import TrainConfig
from mechinterp_modadd.training.optim import StackedOptimizer, register

PKG = Path(__file__).resolve().parents[2] / "mechinterp_modadd"

#: the edit to hyperparams.py: one declaration, the last entry of HYPER
DECLARATION = '''
    HyperParam("lion_betas", (0.9, 0.99), "[0, 1)", "Lion's interpolation and moment decay rates (lion only)",
               metavar="B1,B2", short="lb"),'''

#: the edit to training/optim.py: the stacked arithmetic
OPTIMIZER = '''

@register
class Lion(StackedOptimizer):
    """Lion, per run: p <- p (1 - lr wd) - lr sign(b1 m + (1 - b1) g);  m <- b2 m + (1 - b2) g."""

    name = "lion"
    hyper = ("lion_betas",)
    state_names = ("exp_avg",)

    def schedule(self, lr):
        self._lr = lr.float()  # [T, S]

    def keep(self, ix, idx):
        super().keep(ix, idx)
        self._lr = self._lr.index_select(1, ix)

    @torch.no_grad()
    def update(self, i, grads):
        b1, b2 = self.cfgs[0].lion_betas
        wd = torch.tensor(self._wd, dtype=torch.float32, device=self._lr.device)
        for j, (P, G) in enumerate(zip(self.params, grads, strict=True)):
            shape = self.factor_shape(j)
            lr = self._lr[i].view(shape)
            M = self.state["exp_avg"][j]
            P.mul_(1 - lr * wd.view(shape))
            P.sub_(torch.sign(torch.lerp(G, M, b1)) * lr)
            M.lerp_(G, 1 - b2)
        self.updates += 1
'''

#: what runs on the edited copy
SCRIPT = r'''
import json, sys
from pathlib import Path

import mechinterp_modadd
from mechinterp_modadd.cli import main

out = Path(sys.argv[1])
assert Path(mechinterp_modadd.__file__).resolve().parent == Path(sys.argv[2]).resolve(), mechinterp_modadd.__file__
report = {}

# the CLI: the flag is listed, and parsing stays free of torch
try:
    main(["train", "--help"])
except SystemExit as e:
    report["help_rc"] = e.code
report["help_light"] = "torch" not in sys.modules

from mechinterp_modadd.errors import ConfigError
from mechinterp_modadd.hyperparams import HYPER
from mechinterp_modadd.sweeps.spec import SpecError, parse_spec
from mechinterp_modadd.training import OPTIMIZERS, TrainConfig, preset, train, train_many

# TrainConfig: the field, its check, its JSON form
cfg = preset("standard", p=7, d_mlp=16, steps=30, save_every=10, lr=3e-3, optimizer="lion",
             lion_betas=[0.8, 0.95])
assert "lion" in OPTIMIZERS and cfg.lion_betas == (0.8, 0.95)
assert TrainConfig().lion_betas == (0.9, 0.99)
d = cfg.to_dict()
assert d["lion_betas"] == [0.8, 0.95] and TrainConfig.from_dict(d) == cfg
assert list(d)[list(d).index("momentum") + 1] == "lion_betas"
errors = {}
for name, kw in {"range": dict(optimizer="lion", lion_betas=(1.5, 0.9)),
                 "other": dict(optimizer="adamw", lion_betas=(0.8, 0.9)),
                 "shape": dict(optimizer="lion", lion_betas=0.9)}.items():
    try:
        TrainConfig(**kw)
    except ConfigError as e:
        errors[name] = str(e)
report["config_errors"] = errors

# the CLI: one run trains, and bad values are refused
base = ["train", "--preset", "standard", "--p", "7", "--d-mlp", "16", "--steps", "30", "--lr", "3e-3",
        "--quiet", "--optimizer", "lion"]
report["cli_rc"] = main([*base, "--lion-betas", "0.8,0.95", "--out", str(out / "cli")])
report["cli_config"] = json.loads((out / "cli" / "config.json").read_text())["train"]["lion_betas"]
import pandas as pd
loss = pd.read_csv(out / "cli" / "metrics.csv")["train_loss"]
report["cli_loss"] = [float(loss.iloc[0]), float(loss.iloc[-1])]
report["cli_range_rc"] = main([*base, "--lion-betas", "1.5,0.9", "--out", str(out / "bad")])
report["cli_other_rc"] = main(["train", "--preset", "standard", "--p", "7", "--d-mlp", "16", "--steps", "3",
                               "--quiet", "--lion-betas", "0.8,0.9", "--out", str(out / "bad2")])
try:
    main([*base, "--lion-betas", "0.9", "--out", str(out / "bad3")])
except SystemExit as e:
    report["cli_parse_rc"] = e.code
report["bad_folders"] = [p.name for p in out.iterdir() if p.name.startswith("bad")]

# the sweep grid key
spec = parse_spec('[grid]\npreset = "standard"\np = 7\nd_mlp = 16\nsteps = 30\noptimizer = "lion"\n'
                  'lion_betas = [[0.9, 0.99], [0.8, 0.95]]\nlr = 3e-3')
report["grid_values"] = [list(r.config.lion_betas) for r in spec.runs]
report["grid_names"] = [r.name for r in spec.runs]
one = parse_spec('[grid]\npreset = "standard"\np = 7\noptimizer = "lion"\nlion_betas = [0.8, 0.95]')
report["grid_one"] = [list(r.config.lion_betas) for r in one.runs]
try:
    parse_spec('[grid]\noptimizer = "lion"\nlion_betas = [0.9]', "bad.toml")
except SpecError as e:
    report["grid_error"] = str(e)
report["plain_names"] = [r.name for r in parse_spec(sys.argv[3]).runs]

# batched: the runs differ in the new field only; alone == batched; a resumed run == a straight one
res = train_many([r.config for r in spec.runs], out / "many", progress=False, device="cpu")
report["many_folders"] = [p.name for p in res.runs]
import numpy as np
same = []
for r, folder in zip(spec.runs, res.runs):
    alone = train(r.config, progress=False, device="cpu")
    same.append(bool(np.array_equal(pd.read_csv(folder / "metrics.csv")["train_loss"].to_numpy(),
                                     alone.metrics["train_loss"].to_numpy())))
report["many_equal_alone"] = same
train(cfg.replace(steps=10), out / "resume", progress=False, device="cpu")
more = train(cfg, out / "resume", resume=True, progress=False, device="cpu")
full = train(cfg, progress=False, device="cpu")
report["resume_equal"] = bool(np.array_equal(more.metrics["train_loss"].to_numpy(),
                                             full.metrics["train_loss"].to_numpy()))
print(json.dumps(report))
'''

#: a sweep without the new optimizer: its run names must not change
PLAIN_SPEC = ('[grid]\npreset = ["standard", "quad_single_freq"]\np = 7\nseed = [0, 1]\n'
              'momentum = 0.0\nweight_decay = [0.0, 1.0]')


def _copy_with_lion(root: Path) -> Path:
    pkg = root / PKG.name
    shutil.copytree(PKG, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    decl = pkg / "hyperparams.py"
    text = decl.read_text()
    assert text.endswith("\n))\n")  # the end of HYPER's table
    decl.write_text(text[:-4] + DECLARATION + "\n))\n")
    with open(pkg / "training" / "optim.py", "a") as f:
        f.write(OPTIMIZER)
    return pkg


def _changed_files(a: Path, b: Path) -> list[str]:
    out = []
    for path in sorted(a.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            other = b / path.relative_to(a)
            if not other.exists() or not filecmp.cmp(path, other, shallow=False):
                out.append(path.relative_to(a).as_posix())
    return out + [p.relative_to(b).as_posix() for p in sorted(b.rglob("*.py")) if not (a / p.relative_to(b)).exists()]


def test_an_optimizer_with_a_new_hyper_parameter_touches_two_files(tmp_path):
    pkg = _copy_with_lion(tmp_path / "copy")
    assert _changed_files(pkg, PKG) == ["hyperparams.py", "training/optim.py"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "copy"), "OMP_NUM_THREADS": "1"}
    (tmp_path / "out").mkdir()
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "out"), str(pkg), PLAIN_SPEC],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    help_text, rep = "\n".join(lines[:-1]), json.loads(lines[-1])
    # the flag, parsed without torch
    assert rep["help_rc"] == 0 and rep["help_light"]
    assert "--lion-betas B1,B2" in help_text and "default 0.9,0.99" in " ".join(help_text.split())
    # TrainConfig
    assert rep["config_errors"] == {
        "range": "lion_betas must be a pair of numbers in [0, 1) such as [0.9, 0.99], got (1.5, 0.9)",
        "other": "lion_betas = (0.8, 0.9) is a hyper-parameter of optimizer lion, not of 'adamw' (--lion-betas, "
                 "sweep grid key 'lion_betas')",
        "shape": "lion_betas must be a pair of numbers in [0, 1) such as [0.9, 0.99], got 0.9"}
    # the CLI trains, refuses bad values with exit code 2 and writes nothing for them
    assert rep["cli_rc"] == 0 and rep["cli_config"] == [0.8, 0.95]
    assert rep["cli_loss"][1] < rep["cli_loss"][0]
    assert (rep["cli_range_rc"], rep["cli_other_rc"], rep["cli_parse_rc"]) == (2, 2, 2)
    assert rep["bad_folders"] == []
    err = proc.stderr
    assert "error: argument --lion-betas: expected two numbers B1,B2 such as 0.9,0.99, got '0.9'" in err
    assert "lion_betas must be a pair of numbers in [0, 1) such as [0.9, 0.99], got (1.5, 0.9)\n" in err
    # the sweep grid key
    assert rep["grid_values"] == [[0.9, 0.99], [0.8, 0.95]] and len(set(rep["grid_names"])) == 2
    assert rep["grid_one"] == [[0.8, 0.95]]
    assert rep["grid_error"] == ("bad.toml: grid.lion_betas: must be a pair of numbers in [0, 1) such as "
                                 "[0.9, 0.99], got [0.9]")
    # runs that do not use the new hyper-parameter keep their names
    assert rep["plain_names"] == [r.name for r in parse_spec(PLAIN_SPEC).runs]
    # batched: folder names show the new field; each run as alone; resume bit for bit
    assert rep["many_folders"] == ["lb0.9-0.99", "lb0.8-0.95"]
    assert rep["many_equal_alone"] == [True, True] and rep["resume_equal"]


def test_without_the_declaration_the_optimizer_is_refused():
    """Negative control: the unedited package knows neither the optimizer nor its hyper-parameter."""

    class Undeclared(StackedOptimizer):
        name = "test_undeclared"
        hyper = ("lion_betas",)

        def schedule(self, lr):
            pass

        def update(self, i, grads):
            pass

    with pytest.raises(ValueError, match=r"\['lion_betas'\], which are not declared in mechinterp_modadd"):
        register(Undeclared)
    with pytest.raises(TypeError, match="lion_betas"):
        TrainConfig(lion_betas=(0.9, 0.99))
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        TrainConfig(optimizer="lion")
    with pytest.raises(TypeError):  # declared in hyperparams.py only, never at run time
        HYPER["lion_betas"] = HYPER["betas"]  # type: ignore[index]
