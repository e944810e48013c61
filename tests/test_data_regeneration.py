"""The shipped runs in data/ are what data/README.md says: a short prefix, re-trained with the same
command, reproduces the shipped weights bit for bit (on the same machine)."""

import json

import pandas as pd
import pytest
import torch
from helpers import DATA

from mechinterp_modadd import load_checkpoint
from mechinterp_modadd.training import TrainConfig, train
from mechinterp_modadd.training.trainer import checkpoint_path


@pytest.mark.parametrize("run,step", [("grokking_p23", 500), ("standard_p23", 1000), ("quad_random_p23", 250)])
def test_prefix_reproduces_shipped_weights(run, step):
    folder = DATA / run
    cfg = TrainConfig.from_dict(json.loads((folder / "config.json").read_text())["train"])
    res = train(cfg.replace(steps=step), progress=False)
    shipped = load_checkpoint(checkpoint_path(folder, step)).model
    for k, v in shipped.state_dict().items():
        assert torch.equal(res.model.state_dict()[k], v), f"{run} step {step}: {k} differs"
    metrics = pd.read_csv(folder / "metrics.csv.gz")
    pd.testing.assert_frame_equal(res.metrics, metrics.iloc[: step + 1].reset_index(drop=True))


def test_data_folder_is_small():
    total = sum(f.stat().st_size for f in DATA.rglob("*") if f.is_file())
    assert total < 10 * 2**20, f"data/ holds {total / 2**20:.1f} MiB"


def test_grokking_split_matches_config():
    folder = DATA / "grokking_p23"
    split = json.loads((folder / "split.json").read_text())
    assert split["p"] == 23 and len(split["train_pairs"]) == 396
