"""The explorer: its precomputed data agree with the library, its page is offline and small, and in a
real browser its controls redraw the figures with the numbers the Python API computes."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from helpers import DATA

from mechinterp_modadd.analysis.ablation import activation_table
from mechinterp_modadd.analysis.base import all_pair_logits
from mechinterp_modadd.analysis.explorer import explorer_data, explorer_data_from_models, group_sets
from mechinterp_modadd.cli import main
from mechinterp_modadd.errors import InputError
from mechinterp_modadd.fourier import fourier_basis, neuron_spectrum
from mechinterp_modadd.pages.explorer import explorer_page


@pytest.fixture(scope="module")
def small_data(small_run):
    model = small_run.model
    return explorer_data_from_models([(0, _untrained(model)), (1500, model)], source="small", name="small",
                                     fractions=(0.5, 1.0), ablation_draws=2)


def _untrained(model):
    from mechinterp_modadd.model import ModAddMLP

    return ModAddMLP(model.cfg, seed=1)


def test_neurons_and_pairs_match_the_library(small_data, small_model):
    d = small_data
    sp = neuron_spectrum(small_model)
    assert np.allclose(d.alpha, sp.alpha.numpy()) and np.allclose(d.beta, sp.beta.numpy())
    assert (d.frequency == sp.frequency.numpy()).all()
    assert np.allclose(d.D, sp.d.numpy())
    logits = all_pair_logits(small_model).numpy()
    assert np.allclose(d.logits, logits[d.pair_index], atol=1e-5)
    # the contributions add up to the right answer's logit (no bias anywhere)
    z = (d.pair_index // d.p + d.pair_index % d.p) % d.p
    assert np.allclose(d.contributions.sum(1), d.logits[np.arange(len(z)), z], atol=1e-9)
    # a single-frequency neuron is close to its cosine fit, an arbitrary function is not
    m = int(np.argmax(d.share))
    rel = np.linalg.norm(d.theta[m] - d.fit(m)) / np.linalg.norm(d.theta[m] - d.theta[m].mean())
    assert rel < 0.5
    with pytest.raises(InputError):
        d.fit(m, "middle")


def test_steps_ablation_and_json(small_data, small_model):
    d = small_data
    assert d.steps == [0, 1500] and d.is_run
    labels = (np.arange(d.p**2) // d.p + np.arange(d.p**2) % d.p) % d.p
    assert (d.correct[1] == (all_pair_logits(small_model).numpy().argmax(1) == labels)).all()
    assert d.correct[0].mean() < 0.5 < d.correct[1].mean()
    assert (d.counts[1] == neuron_spectrum(small_model).counts().numpy()).all()
    assert d.dft_in.max() <= 1.0 and np.allclose(d.dft_in.max(axis=2), 1.0)
    # keeping every group at fraction 1 is the whole model
    tab = activation_table(small_model)
    full = float(tab.score(tab.logits(torch.ones(1, d.d_mlp)), "accuracy").accuracy[0])
    assert d.ablation_accuracy[-1, d.group_set_index(list(range(1, d.K + 1)))] == pytest.approx(full)
    # one group alone at half its neurons does much worse than everything
    assert d.ablation_accuracy[0, d.group_set_index([1])] < full - 0.2
    assert len(d.group_sets) == 2**d.K - 1
    json.dumps(d.to_dict())
    with pytest.raises(InputError):
        d.pair_row(d.p, 0)


def test_group_sets_fall_back_to_singles_for_large_K():
    assert list(group_sets(3)) == [1, 2, 3, 4, 5, 6, 7]
    big = group_sets(20, max_subset_k=12)
    assert len(big) == 1 + 2 * 20 and big[0] == 2**20 - 1


def test_page_is_offline_and_self_contained(small_data, tmp_path):
    from plotly.offline import get_plotlyjs

    text = explorer_page(small_data).render()
    assert text.count(get_plotlyjs()[:300]) == 1  # plotly.js inlined exactly once
    assert "<script src=" not in text and "src='http" not in text
    ours = text.split("id='explorer-data'")[1]
    assert "http://" not in ours and "https://" not in ours
    for fid in ("neuron-spectrum", "neuron-fit", "pair-logits", "pair-contrib", "step-grid", "step-dft",
                "step-counts", "abl-curve"):
        assert f"id='{fid}'" in text


def test_cli_bad_inputs(tmp_path, capsys):
    assert main(["explore", str(tmp_path / "missing"), "--out", str(tmp_path / "x.html")]) == 2
    assert "no such checkpoint file or run folder" in capsys.readouterr().err
    ck = DATA / "standard_p23" / "checkpoints" / "step_005000.safetensors"
    assert main(["explore", str(ck), "--out", str(tmp_path / "x.txt")]) == 2
    assert "--out must name an .html file" in capsys.readouterr().err
    assert main(["explore", str(ck), "--out", str(tmp_path / "x.html"), "--draws", "0"]) == 2
    assert not (tmp_path / "x.html").exists()


# ------------------------------------------------------------------------- in a real browser
@pytest.mark.slow
def test_explorer_in_a_browser_follows_the_python_api(tmp_path):
    from browser import chromium_or_skip

    exe = chromium_or_skip()
    if os.environ.get("CI"):
        from playwright.sync_api import sync_playwright
    else:
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    from mechinterp_modadd.series import load_run

    run = DATA / "grokking_p23"
    out = tmp_path / "explore.html"
    assert main(["explore", str(run), "--out", str(out), "--quiet"]) == 0
    assert out.stat().st_size < 12 * 2**20

    series = load_run(run)
    last = series.last_step
    model = series.model(last)
    sp = neuron_spectrum(model)
    p = model.cfg.p
    logits = all_pair_logits(model).numpy()
    theta = model.effective_W_in().detach().double().numpy()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors, requests = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.resolve().as_uri())
        page.wait_for_function("window.explorerReady === true", timeout=60_000)

        def data(fid):
            return page.evaluate(f"Array.from(document.getElementById('{fid}').data, t => "
                                 "({x: t.x && Array.from(t.x), y: t.y && Array.from(t.y), "
                                 "z: t.z && Array.from(t.z, r => Array.from(r))}))")

        # neuron 17 by index: its spectrum and its weights
        before = data("neuron-spectrum")
        page.fill("#neuron-index", "17")
        page.dispatch_event("#neuron-index", "change")
        spec = data("neuron-spectrum")
        assert spec != before
        assert np.allclose(spec[0]["y"], sp.alpha[17].numpy(), rtol=1e-5, atol=1e-7)
        assert np.allclose(spec[1]["y"], sp.beta[17].numpy(), rtol=1e-5, atol=1e-7)
        fit = data("neuron-fit")
        assert np.allclose(fit[0]["y"], theta[17], rtol=1e-5, atol=1e-7)
        k = int(sp.frequency[17])
        jj = np.asarray(fit[1]["x"])
        want = float(sp.in_dc[17]) / math.sqrt(p) + float(sp.alpha_star[17]) * np.cos(
            2 * math.pi * k * jj / p + float(sp.phi_star[17]))
        assert np.allclose(fit[1]["y"], want, atol=1e-5)
        assert page.input_value("#neuron-k") == str(k)  # the k* picker follows the chosen neuron

        # pair (3, 5): its logits, the right answer marked, contributions adding up to its logit
        page.fill("#pair-a", "0")
        page.dispatch_event("#pair-a", "change")
        before = data("pair-logits")
        page.fill("#pair-a", "3")
        page.dispatch_event("#pair-a", "change")
        page.fill("#pair-b", "5")
        page.dispatch_event("#pair-b", "change")
        lg = data("pair-logits")
        assert lg != before
        assert np.allclose(lg[0]["y"], logits[3 * p + 5], rtol=1e-5, atol=1e-5)
        assert lg[1]["x"] == [8]
        contrib = data("pair-contrib")
        total = sum(sum(t["y"]) for t in contrib)
        assert total == pytest.approx(logits[3 * p + 5, 8], abs=1e-3)
        assert sum(len(t["y"]) for t in contrib) == model.cfg.d_mlp

        # the slider to the last step: grid, DFT heat-map and counts of the final checkpoint
        before = data("step-grid")
        n_steps = len(series.steps)
        page.eval_on_selector("#step-slider", f"(e) => {{ e.value = '{n_steps - 1}'; "
                              "e.dispatchEvent(new Event('input')); }")
        grid = data("step-grid")
        assert grid != before
        right = (logits.argmax(1) == (np.arange(p * p) // p + np.arange(p * p) % p) % p).reshape(p, p)
        assert (np.asarray(grid[0]["z"]) == right).all()
        test = ~series.split.train_mask.numpy()
        assert len(grid[1]["x"]) == int(test.sum())
        counts = data("step-counts")
        assert counts[0]["y"] == sp.counts().tolist()
        dft = np.asarray(data("step-dft")[0]["z"])
        B = fourier_basis(p).numpy()
        coef = np.abs(theta @ B.T)
        coef /= coef.max(1, keepdims=True)
        order = np.lexsort((sp.phi_star.numpy(), sp.frequency.numpy()))
        assert np.abs(dft - coef[order]).max() <= 0.5 / 255 + 1e-6
        assert f"step {last}" in page.inner_text("#step-label")

        # the ablation panel: untick everything but k* = 1
        page.click("#abl-none")
        page.check("#abl-k-1")
        assert "accuracy" in page.inner_text("#abl-result")
        browser.close()

    assert errors == []
    assert [u for u in requests if u != out.resolve().as_uri()] == []


def test_explorer_data_of_a_checkpoint_file():
    d = explorer_data(DATA / "standard_p23" / "checkpoints" / "step_005000.safetensors", ablation_draws=1,
                      fractions=(1.0,))
    assert d.steps == [5000] and not d.is_run and d.train_mask is None
    assert d.train_accuracy[0] == 1.0 and math.isnan(d.test_accuracy[0])


def test_a_long_run_keeps_max_steps_checkpoints_evenly_spread():
    d = explorer_data(DATA / "standard_p23", max_steps=3, ablation_draws=1, fractions=(1.0,),
                      max_heatmap_neurons=16)
    assert d.steps == [0, 2000, 5000] and d.notes[0].startswith("steps: 3 of the run's 6 checkpoints")
    assert d.dft_in.shape == (3, 16, 23) and d.train_mask is None
    with pytest.raises(InputError, match="max_steps"):
        explorer_data(DATA / "standard_p23", max_steps=1)
