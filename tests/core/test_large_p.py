"""Memory budget, pair sampling with intervals, and the large-p paths (run here on small p, forced
by a tiny budget, and compared with the exact paths)."""

from __future__ import annotations

import json

import pytest
import torch

from mechinterp_modadd.analysis.idealised import idealised_network
from mechinterp_modadd.analysis.majority import noise_scaling, run_ablation_suite, vote_split
from mechinterp_modadd.analysis.sampling import PairSample, ablation_pair_count, wilson_interval
from mechinterp_modadd.cli import main
from mechinterp_modadd.errors import ConfigError
from mechinterp_modadd.forward import CHUNK_SHARE, bytes_per_pair, chunk_size, logits
from mechinterp_modadd.memory import (
    DEFAULT_MAX_MEMORY,
    current_budget,
    memory_budget,
    parse_memory,
    rows_per_chunk,
)
from mechinterp_modadd.model import ModAddMLP, ModelConfig, default_d_mlp


@pytest.mark.parametrize("text,value", [("4GB", 4 * 10**9), ("500MB", 500 * 10**6), ("2GiB", 2 << 30),
                                        ("1.5 g", 3 << 29), ("123456789", 123456789), (10**8, 10**8)])
def test_parse_memory_units(text, value):
    assert parse_memory(text) == value


@pytest.mark.parametrize("bad", ["4XB", "", "-1GB", "GB", "0", "10MB", True])
def test_parse_memory_names_the_flag(bad):
    with pytest.raises(ConfigError, match="--max-memory"):
        parse_memory(bad, "--max-memory")


def test_budget_context_sets_and_restores():
    assert current_budget() == DEFAULT_MAX_MEMORY
    with memory_budget("100MiB") as b:
        assert b == current_budget() == 100 << 20
        assert rows_per_chunk(1 << 20) == 100
        # forward's chunks follow the budget (CHUNK_SHARE of it) when no max_memory is given
        assert chunk_size(10**9, 1 << 20) == int((100 << 20) * CHUNK_SHARE // (1 << 20))
    assert current_budget() == DEFAULT_MAX_MEMORY
    assert current_budget("1GiB") == 1 << 30


def test_cli_rejects_a_bad_budget_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["diagnose", "--max-memory", "lots"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-memory" in err[0] and "lots" in err[0]


def test_streamed_all_pair_logits_match_the_whole_pass():
    m = ModAddMLP(ModelConfig(p=11, d_mlp=40), seed=3)
    whole = logits(m, hooks=True)  # one chunk at the default budget: the plain pass
    streamed = logits(m, hooks=True, max_memory=7 * bytes_per_pair(40, 11))  # many chunks: mirrored halves
    assert torch.allclose(whole, streamed, rtol=0, atol=1e-13)
    x = torch.arange(11)
    assert torch.equal(streamed.reshape(11, 11, 11)[x[:, None], x[None, :]],
                       streamed.reshape(11, 11, 11)[x[None, :], x[:, None]])  # f(x, y) = f(y, x) exactly
    keep = (torch.rand(3, 40, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    assert torch.allclose(logits(m, scale=keep), logits(m, scale=keep, max_memory=5 * bytes_per_pair(120, 11, 3)),
                          rtol=0, atol=1e-13)


def test_wilson_interval():
    lo, hi = wilson_interval(0.9, 100)
    assert lo < 0.9 < hi and 0.8 < float(lo) and float(hi) < 0.96
    lo2, hi2 = wilson_interval(0.9, 1000)
    assert hi2 - lo2 < hi - lo  # more pairs, narrower
    lo, hi = wilson_interval(1.0, 500)
    assert float(hi) == 1.0 and 0.98 < float(lo) < 1.0  # a perfect score still has a lower bound
    lo, hi = wilson_interval(0.7, 50, population=50)
    assert float(lo) == float(hi) == pytest.approx(0.7)  # a census is exact
    lo_f, hi_f = wilson_interval(0.5, 400, population=500)
    lo_i, hi_i = wilson_interval(0.5, 400)
    assert hi_f - lo_f < hi_i - lo_i  # finite-population correction


def test_pair_count_rule():
    assert ablation_pair_count(23, 512, 155) is None
    assert ablation_pair_count(97, default_d_mlp(97), 155) is None  # exact up to p = 97 at the default width
    n = ablation_pair_count(199, default_d_mlp(199), 155)
    assert n is not None and 256 <= n < 199 * 200 // 2
    assert ablation_pair_count(199, default_d_mlp(199), 155, max_memory="1GB") <= n


def test_sampled_suite_reports_size_and_intervals(small_model):
    exact = run_ablation_suite(small_model, draws=3, phase_draws=3, noise=False)
    assert exact.sample.exact and "sampling" not in exact.to_dict()  # small p: output as before
    assert "ci_low" not in exact.random.summary() and "accuracy_ci" not in exact.to_dict()["random"][0]
    assert exact.claim.exact and exact.claim.half_accuracy_ci is None
    sub = run_ablation_suite(small_model, draws=3, phase_draws=3, noise=False, max_pairs=40)
    assert not sub.sample.exact and sub.sample.n_pairs == 40 and sub.sample.population == 13 * 14 // 2
    doc = json.loads(json.dumps(sub.to_dict(), allow_nan=False))
    assert doc["sampling"]["n_pairs"] == 40 and doc["sampling"]["exact"] is False
    for entry in doc["random"] + doc["phase_biased"] + doc["keep_group"]:
        lo, hi = entry["accuracy_ci"]
        assert lo <= entry["accuracy_mean" if "keep" in entry else "accuracy"] <= hi
    assert set(doc["activation_swap_ci"]) == set(doc["activation_swap"])
    s = sub.random.summary()
    assert (s["ci_low"] <= s["accuracy_mean"]).all() and (s["accuracy_mean"] <= s["ci_high"]).all()
    c = sub.claim
    assert c.n_pairs == 40 and c.half_accuracy_ci[0] <= c.half_accuracy <= c.half_accuracy_ci[1]
    assert "sample of 40 of 91 unordered pairs, random-50% 95% CI" in c.details()
    assert c.to_dict()["half_accuracy_ci"] == c.half_accuracy_ci
    # same seed, same keep masks: the exact random-half accuracy lies inside the sampled interval
    assert c.half_accuracy_ci[0] <= exact.claim.half_accuracy <= c.half_accuracy_ci[1]


def test_pair_sample_of_exact_table_has_point_intervals():
    s = PairSample(n_pairs=10, population=10, n_eff=9.5, seed=0, exact=True)
    lo, hi = s.interval(0.3)
    assert float(lo) == float(hi) == pytest.approx(0.3)
    assert s.describe().startswith("exact")


def test_noise_scaling_gram_path_matches_explicit(small_model):
    a = noise_scaling(small_model, draws=3)
    b = noise_scaling(small_model, draws=3, max_memory=1000)  # far too small for one group's votes
    diff = (a.rows[["coherent", "residual"]] - b.rows[["coherent", "residual"]]).abs().to_numpy().max()
    assert diff < 1e-9 * a.rows["coherent"].max()
    assert b.noise_exponent == pytest.approx(a.noise_exponent, abs=1e-9)
    # an exactly cancelling population: explicit residual ~1e-14, Gram path at its documented floor
    ide = idealised_network(13, 6)
    keep = torch.ones(1, ide.cfg.d_mlp, dtype=torch.bool)
    exp, gram = vote_split(ide, keep), vote_split(ide, keep, max_memory=1000)
    assert float(exp.residual.max()) < 1e-12 and float(gram.residual.max()) < 1e-6 * float(gram.coherent.max())
    assert torch.allclose(exp.coherent, gram.coherent, rtol=1e-12)


def test_train_refuses_a_step_over_the_budget_before_writing(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--preset", "standard", "--p", "199", "--out", str(out), "--max-memory", "100MB"])
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err
    assert "--max-memory" in err and "d_mlp = 38329" in err


def test_train_prints_an_estimate_for_long_runs(tmp_path, capsys, monkeypatch):
    from mechinterp_modadd.training import estimate

    monkeypatch.setattr(estimate, "REPORT_AFTER_S", 0.0)
    rc = main(["train", "--preset", "standard", "--p", "7", "--d-mlp", "16", "--steps", "2", "--quiet",
               "--out", str(tmp_path / "run")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "per step (timed over 2 steps)" in out and "for 2 steps" in out


def test_estimate_skips_timing_for_short_runs():
    from mechinterp_modadd.training import preset
    from mechinterp_modadd.training.estimate import estimate_training, run_bytes

    est = estimate_training(preset("standard", p=13, steps=10))
    assert not est.timed and est.total_seconds < 1
    timed = estimate_training(preset("standard", p=7, d_mlp=16, steps=3), force_timing=True)
    assert timed.timed and timed.seconds_per_step > 0
    assert timed.total_seconds == pytest.approx(3 * timed.seconds_per_step)
    assert run_bytes(199, 38329) > 10e9


def test_diagnose_table_names_a_sampled_estimate(small_model):
    import math

    from mechinterp_modadd.diagnose import diagnose

    assert "sample" not in diagnose(small_model).to_text()  # p = 13: exact, table as before
    p, M = 37, 444
    k = (torch.arange(M) % 18 + 1).double()[:, None]
    phi = 2 * math.pi * torch.rand(M, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = 2 * math.pi * k * torch.arange(p, dtype=torch.float64)[None, :] / p
    m = ModAddMLP(ModelConfig(p=p, d_mlp=M), seed=None)
    with torch.no_grad():
        m.mlp.W_in.copy_(torch.cos(w + phi).float())
        m.mlp.W_out.copy_(torch.cos(w + 2 * phi).float().T)
    text = diagnose(m).to_text()
    assert "majority_vote: estimated on a seeded sample of 512 of 703 unordered pairs; half_accuracy 95% CI [" in text
