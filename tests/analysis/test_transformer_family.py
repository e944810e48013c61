"""Family ``transformer``: the neuron view reproduces the model and its ablations, detection from
the keys of foreign state dicts, and the claims say "no" on an untrained transformer."""

from __future__ import annotations

import torch
from foreign_transformers import write_hooked_transformer, write_nanda

from mechinterp_modadd.analysis.transformer_claims import (
    effective_inputs,
    input_phase_tie,
    key_frequencies,
    transformer_claims,
    transformer_spectrum,
)
from mechinterp_modadd.analysis.transformer_views import attention_patterns, embedding_spectrum
from mechinterp_modadd.families import detect_family, family_of, get_family
from mechinterp_modadd.families.transformer import transformer_view_parts
from mechinterp_modadd.transformer import ModAddTransformer, TransformerConfig, all_pair_tokens

CFG = TransformerConfig(p=11, d_model=32, n_heads=4, d_head=8, d_mlp=48)


def test_view_reproduces_the_model_and_its_neuron_ablations():
    model = ModAddTransformer(CFG, seed=0).eval()
    fam = family_of(model)
    assert fam is get_family("transformer") and fam.name == "transformer"
    view = fam.neuron_view(model)
    assert view.pre.shape == (121, 48) and view.W.shape == (48, 11)
    tokens = all_pair_tokens(11)
    with torch.no_grad():
        logits = model(tokens).double()
    assert torch.allclose(view.logits(), logits, atol=1e-5)
    # zero-ablating neurons 3 and 7 at '=' in the model = in the view
    def ablate(act, hook):
        act = act.clone()
        act[:, -1, [3, 7]] = 0
        return act
    with torch.no_grad():
        ablated = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.mlp.hook_post", ablate)]).double()
    assert torch.allclose(view.ablate([3, 7]), ablated, atol=1e-5)
    # a subset view moves the other neurons into rest: same logits
    sub = fam.neuron_view(model, neurons=[1, 2, 5])
    assert torch.allclose(sub.logits(), view.logits(), atol=1e-9)
    # W is W_out W_U, rest is the residual before the MLP through W_U
    parts = transformer_view_parts(model)
    assert torch.allclose(parts["W"], (model.W_out @ model.W_U).double(), atol=1e-6)


def test_foreign_state_dicts_are_detected_as_transformers(tmp_path):
    write_hooked_transformer(tmp_path / "ht.pt", wrap="bare")
    write_nanda(tmp_path / "n.pth")
    for sd in (torch.load(tmp_path / "ht.pt", weights_only=True),
               torch.load(tmp_path / "n.pth", weights_only=True)["model"]):
        fam = detect_family(sd, where="x")
        assert fam.name == "transformer"
        model = fam.from_state_dict(sd, where="x")
        assert isinstance(model, ModAddTransformer) and model.cfg.p == 7
    assert not get_family("transformer").detect({"mlp.W_in": torch.ones(4, 7), "mlp.W_out": torch.ones(7, 4)})


def test_effective_inputs_recover_an_additive_table():
    model = ModAddTransformer(CFG, seed=1).eval()
    view = get_family("transformer").neuron_view(model)
    u, v, share = effective_inputs(view)
    p = 11
    grid = view.pre.T.reshape(-1, p, p)
    rebuilt = grid.mean((1, 2), keepdim=True) + u[:, :, None] + v[:, None, :]
    resid = grid - rebuilt
    # the interaction is orthogonal to the main effects: shares add up
    total = (grid - grid.mean((1, 2), keepdim=True)).pow(2).sum((1, 2))
    assert torch.allclose(share + resid.pow(2).sum((1, 2)) / total, torch.ones_like(share), atol=1e-9)


def test_claims_say_no_on_an_untrained_transformer():
    model = ModAddTransformer(TransformerConfig(p=23), seed=0).eval()
    view = get_family("transformer").neuron_view(model)
    results = {r.claim: r for r in transformer_claims(view, draws=3)}
    for claim in ("single_frequency_2d", "single_frequency", "key_frequencies", "phase_alignment",
                  "majority_vote"):
        assert not results[claim].holds, claim
    assert not embedding_spectrum(model.W_E, 23).holds
    assert key_frequencies(view).n_keys > 11 // 2
    # at initialisation attention is near uniform: x and y reach a neuron alike (tied phases)
    assert input_phase_tie(transformer_spectrum(view)).holds


def test_embedding_spectrum_and_attention_on_planted_structure():
    p = 23
    model = ModAddTransformer(TransformerConfig(p=p), seed=0).eval()
    x = torch.arange(p, dtype=torch.float64)
    planted = torch.zeros(p + 1, 128, dtype=torch.float64)
    for j, k in enumerate((3, 7)):
        planted[:p, 2 * j] = torch.cos(2 * torch.pi * k * x / p)
        planted[:p, 2 * j + 1] = torch.sin(2 * torch.pi * k * x / p)
    spec = embedding_spectrum(planted, p)
    assert spec.holds and spec.key_frequencies == [3, 7] and spec.gini > 0.8
    _, cache = model.run_with_cache(all_pair_tokens(p))
    att = attention_patterns(cache["blocks.0.attn.hook_pattern"][:, :, -1, :], p)
    assert att.pattern.shape == (4, 3, p, p)
    assert torch.allclose(att.pattern.sum(1), torch.ones(4, p, p, dtype=torch.float64))


def test_cli_diagnoses_foreign_transformer_files(tmp_path, capsys):
    import json

    from mechinterp_modadd.cli import main

    write_hooked_transformer(tmp_path / "ht.pt", p=11, wrap="bare", steps=2)
    write_nanda(tmp_path / "nanda.pth", p=11, steps=2)
    (tmp_path / "cfg.json").write_text(json.dumps({"n_layers": 1, "d_vocab": 12, "d_vocab_out": 11, "d_model": 16,
                                                   "act_fn": "relu", "normalization_type": None}))
    assert main(["diagnose", str(tmp_path / "ht.pt"), "--family", "transformer", "--config",
                 str(tmp_path / "cfg.json"), "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    assert "family transformer" in out and "majority_vote" in out and "embedding_sparse" in out
    doc = json.loads((tmp_path / "d.json").read_text())
    assert doc["family"] == "transformer" and set(doc["extras"]) >= {"key_frequencies", "embedding_sparse"}
    assert all(c.get("holds") in (True, False) for c in doc["claims"].values())
    assert main(["diagnose", str(tmp_path / "nanda.pth")]) == 0  # detected from the keys
    assert "family transformer" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text(json.dumps({"n_layers": 2, "d_model": 16}))
    assert main(["diagnose", str(tmp_path / "ht.pt"), "--config", str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "n_layers = 2" in err and len(err.strip().splitlines()) == 1
