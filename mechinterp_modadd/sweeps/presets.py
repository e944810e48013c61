"""The three research sweeps, as specs (``modadd sweep --preset NAME``; ``--print-spec`` shows the TOML).

Defaults are sized to finish on a 2-core CPU in at most about 20 minutes with the batched trainer
(p = 23, d_mlp = 512: about 1 ms of one core per run-step in a batch of 14):

- ``lottery``: two arms of the Quad network at p = 23, 32 seeds each: ``quad_random`` (AdamW 5e-5,
  the authors' config table, 5,000 steps) and ``lottery_sgd`` (SGD 0.1, 10,000 steps: how the
  authors' shipped quad_random checkpoints were trained), plus ``standard`` (ReLU, AdamW, 5,000
  steps) for comparison; checkpoints at step 0 and every 5,000 steps. 96 runs, 32 x 20,000 ~
  0.64 M run-steps ~ 10 core-minutes, ~5-6 minutes on two cores; analysis: the lottery predictors,
  and the verdict over seeds per arm (:func:`~mechinterp_modadd.analysis.sweep.lottery_verdicts`).
- ``grokking``: weight decay {0, 0.5, 1, 2, 4, 8} x train fraction {0.3, 0.4, 0.5, 0.6, 0.75, 0.9}
  x 3 seeds at p = 23 (108 runs), a budget of 18,000 steps with the early stop of
  :class:`~mechinterp_modadd.training.TrainConfig` (a run ends once train and test accuracy held
  >= 0.99 for 500 steps, checked every 500): about 1.9 M run-steps at most, ~32 core-minutes
  (measured: 12 min 19 s on two cores). The paper trains up to 50,000 steps: ``--set steps=50000``
  does that, but on two cores it takes about 34 minutes (projected), since most cells never generalise and
  train the whole budget (measured on 28 of the 108 runs: 24 ran to 50,000 steps, the early stop
  ended 4). Cells whose grokking comes after the budget read "memorisation only".
- ``primes``: standard over the odd primes 3..47 at the authors' width rule d_mlp =
  max(512, ceil(512 p^2 / 529)) (814 neurons at p = 29, 931 at 31, 2,139 at 47), so that neurons per
  frequency stay about what they are at p = 23, 5,000 steps, 1 seed; the page sets our numbers
  beside the authors' published ones where p overlaps (23, 29, 31; 15 with ``--set p=[15, ...]``).
  A step costs about p^2 d_mlp, so under the rule about p^4: 14 runs ~ 8 core-minutes (estimated
  from the per-step cost at p = 23). A fixed width confounds p with neurons per frequency (measured
  at d_mlp = 512: loss 0.075 at step 5,000 at p = 29 and 31, against 0.0036 / 0.0015 at the rule
  widths 814 / 931 and the authors' 0.0032 / 0.0013 there); ``--set 'd_mlp=[512]'`` still gives
  it, and ``--set p=[...]`` reaches p = 61 (3,602 neurons; the p = 61 run alone costs about as much as all of 3..47).
"""

from __future__ import annotations

from typing import Any

__all__ = ["SWEEP_PRESETS", "ODD_PRIMES_TO_61", "ODD_PRIMES_TO_47", "preset_spec"]

ODD_PRIMES_TO_61 = [3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61]
ODD_PRIMES_TO_47 = ODD_PRIMES_TO_61[:14]

SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    "lottery": {
        "name": "lottery ticket statistics over seeds", "page": "lottery", "analyses": ["lottery"],
        "grid": {"preset": ["quad_random", "lottery_sgd", "standard"], "p": [23], "seed": "0-31",
                 "save_every": [5000]},
    },
    "grokking": {
        "name": "grokking phase diagram: weight decay x train fraction", "page": "grokking", "analyses": ["progress"],
        "grid": {"preset": ["grokking"], "p": [23], "weight_decay": [0.0, 0.5, 1.0, 2.0, 4.0, 8.0],
                 "train_fraction": [0.3, 0.4, 0.5, 0.6, 0.75, 0.9], "seed": "0-2", "steps": [18000],
                 "save_every": [18000], "stop_accuracy": [0.99], "stop_window": [500]},
    },
    "primes": {
        "name": "the claims across odd primes p", "page": "primes", "analyses": ["diagnose", "progress"],
        "grid": {"preset": ["standard"], "p": ODD_PRIMES_TO_47, "d_mlp": "rule", "seed": [0], "steps": [5000],
                 "save_every": [5000]},
    },
}


def preset_spec(name: str, **grid_overrides: Any):
    """The named sweep preset as a :class:`~mechinterp_modadd.sweeps.spec.SweepSpec`; grid keys
    may be overridden (e.g. ``seed="0-3"``, ``p=[5, 7]``)."""
    from .spec import SpecError, spec_from_dict

    if name not in SWEEP_PRESETS:
        raise SpecError(f"--preset: unknown sweep preset {name!r}; known: {', '.join(SWEEP_PRESETS)}")
    doc = {**SWEEP_PRESETS[name], "grid": {**SWEEP_PRESETS[name]["grid"], **grid_overrides}}
    return spec_from_dict(doc, f"preset {name}")
