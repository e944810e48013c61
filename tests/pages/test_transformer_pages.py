"""The transformer's own views on the pages: ``modadd report`` of a small trained transformer shows
the embedding's Fourier spectrum and the attention at '=' per head (and the restricted / excluded
loss beside the grokking stages); an MLP page shows none of them."""

import json

import pytest
from helpers import DATA
from test_pages import check_page_against_json, numeric_untagged, tagged_numbers

from mechinterp_modadd import diagnose as dg
from mechinterp_modadd import load_checkpoint
from mechinterp_modadd.analysis.transformer_views import AttentionPatterns, EmbeddingSpectrum
from mechinterp_modadd.cli import main
from mechinterp_modadd.pages.diagnosis import render
from mechinterp_modadd.plots.transformer import attention_heatmaps, embedding_spectrum_bars
from mechinterp_modadd.schemas import validate
from mechinterp_modadd.training import preset, train

SPECTRUM_TITLE = "Embedding Fourier spectrum"
ATTENTION_TITLE = "on x over the inputs (x, y), per head"
SECTION = "Embedding and attention (transformer)"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tf") / "nanda_small_p11"
    train(preset("nanda_small", p=11, steps=300, save_every=100, seed=0), out, progress=False, device="cpu")
    return out


def test_figures_draw_the_results():
    emb = EmbeddingSpectrum(holds=True, p=11, norms=[0.1, 2.0, 0.1, 0.1, 1.0], gini=0.6, key_frequencies=[2, 5],
                            key_energy_share=0.95, n_keys=2)
    fig = embedding_spectrum_bars(emb)
    assert list(fig.data[0].y) == emb.norms and "Gini 0.600" in fig.layout.title.text
    assert [c == "#d62728" for c in fig.data[0].marker.color] == [False, True, False, False, True]
    import torch

    pattern = torch.rand(6, 3, 11, 11, dtype=torch.float64)
    att = AttentionPatterns(p=11, n_heads=6, pattern=pattern, mean_weight=pattern.mean((-1, -2)),
                            x_best_frequency=[1, 0, 2, 3, 4, 5], x_best_fraction=[0.5] * 6)
    fig = attention_heatmaps(att)
    assert len(fig.data) == 6 and [list(r) for r in fig.data[3].z] == pattern[3, 0].tolist()
    assert sum(bool(t.showscale) for t in fig.data) == 1  # one shared colour bar
    titles = [a.text for a in fig.layout.annotations]
    assert titles[1].startswith("head 1: flat") and titles[2].startswith("head 2: k=2 (50%)")
    assert fig.layout.height == 140 + 300 * 3  # six heads wrap onto three rows of two


def test_report_of_a_transformer_shows_its_views(run, tmp_path, capsys):
    rh, rj = tmp_path / "r.html", tmp_path / "r.json"
    assert main(["report", str(run), "--out", str(rh), "--json", str(rj), "--quiet"]) == 0
    doc = json.loads(rj.read_text())
    validate(doc)
    html = rh.read_text()
    assert SECTION in html and SPECTRUM_TITLE in html and ATTENTION_TITLE in html
    check_page_against_json(html, doc, min_numbers=3)
    assert numeric_untagged(html) == []
    # restricted / excluded loss drawn beside the grokking stages (the loss figure)
    assert '"name":"restricted_loss"' in html and '"name":"excluded_loss"' in html

    # the checkpoint alone, through diagnose --html
    ck = sorted((run / "checkpoints").glob("*.safetensors"))[-1]
    dh = tmp_path / "d.html"
    assert main(["diagnose", str(ck), "--html", str(dh)]) == 0
    assert SPECTRUM_TITLE in dh.read_text() and ATTENTION_TITLE in dh.read_text()


def test_track_page_of_a_transformer_shows_its_views(run, tmp_path, capsys):
    th, tj = tmp_path / "t.html", tmp_path / "t.json"
    assert main(["track", str(run), "--html", str(th), "--json", str(tj), "--quiet"]) == 0
    out = capsys.readouterr().out
    html = th.read_text()
    doc = json.loads(tj.read_text())
    validate(doc)
    assert sorted(doc["transformer_views"]["embedding_spectra"]) == ["0", "300"]
    assert len(doc["transformer_views"]["attention"]["mean_weight"]) == 4
    check_page_against_json(html, doc, min_numbers=6)  # the Gini, key count and key share of both steps
    assert sum(p.startswith("transformer_views.") for p, _ in tagged_numbers(html).tagged) == 6
    assert SECTION in html and ATTENTION_TITLE in html
    assert html.count(SPECTRUM_TITLE) == 2 and "<p>Step 0: Gini coefficient" in html
    assert "<p>Step 300: Gini coefficient" in html
    # the text and the page read the same results
    last = next(line for line in out.splitlines() if line.startswith("step 300: embedding_sparse"))
    assert last.split("Gini ")[1][:5] in html.split("<p>Step 300: Gini coefficient")[1][:200]


def test_mlp_pages_show_no_transformer_views(tmp_path):
    d = dg.diagnose(load_checkpoint(DATA / "standard_p23" / "checkpoints" / "step_005000.safetensors").model)
    html = render(d).render()
    assert SECTION not in html and SPECTRUM_TITLE not in html and ATTENTION_TITLE not in html


def test_explore_of_a_transformer_run_shows_its_views(run, tmp_path, capsys):
    """`modadd explore` on a transformer run used to stop with an internal error (the ablation
    panel read an MLP-only attribute); it writes its page now, with the transformer's views."""
    out = tmp_path / "e.html"
    assert main(["explore", str(run), "--out", str(out), "--quiet"]) == 0
    html = out.read_text()
    assert '"family":"transformer"' in html
    assert SECTION in html and ATTENTION_TITLE in html and html.count(SPECTRUM_TITLE) == 2
    assert "<p>Step 0: Gini coefficient" in html and "<p>Step 300: Gini coefficient" in html


def test_explorer_data_carries_the_views_only_for_transformers(run):
    from mechinterp_modadd.analysis.explorer import explorer_data

    d = explorer_data(run)
    assert sorted(d.embedding_spectra) == [0, 300] and d.attention.pattern.shape == (4, 3, 11, 11)
    doc = json.loads(json.dumps(d.to_dict()))
    assert doc["embedding_spectra"]["300"]["gini"] == pytest.approx(d.embedding_spectra[300].gini)
    mlp = explorer_data(DATA / "standard_p23" / "checkpoints" / "step_005000.safetensors")
    assert mlp.embedding_spectra is None and mlp.attention is None
    # the ablation panel keeps what no MLP neuron carries (the path around the MLP): every group at
    # fraction 1 is the whole model, whose accuracy the steps panel shows
    for data in (d, explorer_data(run / "checkpoints" / "step_000000.safetensors")):  # at step 0 the path
        whole = data.ablation_accuracy[-1, data.group_set_index(list(range(1, data.K + 1)))]  # changes the argmax
        assert whole == pytest.approx(float(data.correct[-1].mean()))
