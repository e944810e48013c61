"""Our ModAddTransformer against TransformerLens 4's TransformerBridge, side by side.

The transformer family could be built on ``transformer_lens.model_bridge.sources.native.boot``
(TransformerLens 4's offline TransformerBridge) or on our own ``HookedRootModule`` with
TransformerLens's names (mechinterp_modadd/transformer.py). This script measures what decides it,
on Nanda et al.'s configuration (d_model 128, 4 heads of 32, d_mlp 512, ReLU, biases frozen):

1. time of one full-batch AdamW step (forward, backward, update) on the training pairs, for the
   bridge, our hooked ``forward`` and our ``forward_last`` (the training path), interleaved
   round by round so that load from other processes hits all three alike (medians, and the
   ratios to ours);
2. bit-stability: two models built from the same seed and trained the same steps, compared
   bit for bit (and whether the seed alone fixes the initial weights);
3. batched training: whether ``torch.func.vmap`` over ``functional_call`` with parameters stacked
   along a seed axis runs on the model, and the time of one batched gradient of S seeds against
   S single gradients.

    python benchmarks/bench_transformer.py [--p 113] [--frac 0.3] [--rounds 5] [--seeds 8]

Timings depend on the machine and its load; the ratios of one run are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mechinterp_modadd.transformer import ModAddTransformer, TransformerConfig, all_pair_tokens  # noqa: E402


def boot_bridge(cfg: TransformerConfig, seed: int) -> torch.nn.Module:
    from transformer_lens.model_bridge.sources.native import boot

    bridge = boot(dict(d_model=cfg.d_model, n_layers=1, n_heads=cfg.n_heads, d_head=cfg.d_head, d_mlp=cfg.d_mlp,
                       d_vocab=cfg.d_vocab, d_vocab_out=cfg.d_vocab_out, n_ctx=cfg.n_ctx, act_fn=cfg.act_fn,
                       normalization_type=None, seed=seed))
    for name, param in bridge.named_parameters():
        if name.endswith("bias"):
            param.requires_grad_(False)  # biases frozen at zero, as in the paper's runs
            with torch.no_grad():
                param.zero_()
    return bridge


def make_data(p: int, frac: float) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = all_pair_tokens(p)
    labels = (tokens[:, 0] + tokens[:, 1]) % p
    n = int(frac * p * p)
    idx = torch.randperm(p * p, generator=torch.Generator().manual_seed(0))[:n]
    return tokens[idx], labels[idx]


def last_logits_fn(model: torch.nn.Module, kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    if kind == "bridge":
        return lambda t: model(t)[:, -1]
    if kind == "ours_hooked":
        return lambda t: model(t)
    return model.forward_last


def stepper(model: torch.nn.Module, kind: str, tokens: torch.Tensor, labels: torch.Tensor) -> Callable[[], float]:
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    logits_of = last_logits_fn(model, kind)

    def step() -> float:
        loss = F.cross_entropy(logits_of(tokens).double(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def build(kind: str, cfg: TransformerConfig, seed: int) -> torch.nn.Module:
    return boot_bridge(cfg, seed) if kind == "bridge" else ModAddTransformer(cfg, seed=seed)


KINDS = ("bridge", "ours_hooked", "ours_last")


def bench_speed(cfg: TransformerConfig, tokens: torch.Tensor, labels: torch.Tensor, rounds: int) -> dict[str, float]:
    steps = {k: stepper(build(k, cfg, 0), k, tokens, labels) for k in KINDS}
    for s in steps.values():  # warm-up
        s()
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    for _ in range(rounds):
        for k in KINDS:
            t = time.perf_counter()
            steps[k]()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_bits(cfg: TransformerConfig, tokens: torch.Tensor, labels: torch.Tensor, n_steps: int) -> dict[str, str]:
    out = {}
    for kind in ("bridge", "ours_last"):
        models = [build(kind, cfg, 7) for _ in range(2)]
        same_init = all(torch.equal(a, b) for a, b in zip(models[0].state_dict().values(),
                                                          models[1].state_dict().values(), strict=True))
        for m in models:
            s = stepper(m, kind, tokens, labels)
            for _ in range(n_steps):
                s()
        same_after = all(torch.equal(a, b) for a, b in zip(models[0].state_dict().values(),
                                                           models[1].state_dict().values(), strict=True))
        other = build(kind, cfg, 8)
        seed_matters = not all(torch.equal(a, b) for a, b in zip(build(kind, cfg, 7).state_dict().values(),
                                                                  other.state_dict().values(), strict=True))
        out[kind] = (f"same seed -> identical initial weights: {same_init}; identical after {n_steps} steps: "
                     f"{same_after}; another seed -> other weights: {seed_matters}")
    return out


def bench_vmap(cfg: TransformerConfig, tokens: torch.Tensor, labels: torch.Tensor, seeds: int) -> dict[str, str]:
    from torch.func import functional_call, grad, vmap

    out = {}
    for kind in ("bridge", "ours_last"):
        models = [build(kind, cfg, s) for s in range(seeds)]
        base = models[0]
        names = [n for n, q in base.named_parameters() if q.requires_grad]
        stacked = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]) for n in names}
        kwargs = {"last_only": True} if kind == "ours_last" else {}

        def loss_fn(params: dict[str, torch.Tensor], base=base, kwargs=kwargs) -> torch.Tensor:
            logits = functional_call(base, params, (tokens,), kwargs)
            return F.cross_entropy((logits[:, -1] if logits.dim() == 3 else logits).double(), labels)

        try:
            batched = vmap(grad(loss_fn))
            single = grad(loss_fn)
            batched(stacked)  # warm-up of both paths
            single({n: stacked[n][0] for n in names})
            t = time.perf_counter()
            g = batched(stacked)
            t_batched = time.perf_counter() - t
            t = time.perf_counter()
            ref = [single({n: stacked[n][i] for n in names}) for i in range(seeds)]
            t_single = time.perf_counter() - t
            err = max(float((g[n][i] - ref[i][n]).abs().max()) for n in names for i in range(seeds))
            out[kind] = (f"works; {seeds} seeds batched {t_batched * 1e3:.0f} ms vs one by one "
                         f"{t_single * 1e3:.0f} ms ({t_single / t_batched:.2f}x); max |batched - single| "
                         f"gradient {err:.1e}")
        except Exception as exc:  # noqa: BLE001 - the point is to report what fails
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            out[kind] = f"FAILS: {type(exc).__name__}: {first[:300]}"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--frac", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--bit-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TransformerConfig(p=args.p)
    tokens, labels = make_data(args.p, args.frac)
    print(f"p = {args.p}, {len(tokens)} training pairs, {args.threads} thread(s), torch {torch.__version__}")

    speed = bench_speed(cfg, tokens, labels, args.rounds)
    print(f"\n1. one full-batch AdamW step (median of {args.rounds}, interleaved):")
    for k, v in speed.items():
        print(f"   {k:12s} {v * 1e3:8.1f} ms   {v / speed['ours_last']:.2f}x ours_last")

    print(f"\n2. bit-stability ({args.bit_steps} steps):")
    for k, v in bench_bits(cfg, tokens, labels, args.bit_steps).items():
        print(f"   {k:12s} {v}")

    print(f"\n3. torch.func.vmap(grad(loss)) over {args.seeds} stacked seeds:")
    for k, v in bench_vmap(cfg, tokens, labels, args.seeds).items():
        print(f"   {k:12s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
