"""Names the command line offers as choices, importable without torch or transformer-lens.

The CLI builds its parser from this module only, so ``modadd --help`` and argument errors stay
fast; the heavy registries (:data:`mechinterp_modadd.model.ACTIVATIONS`,
:data:`mechinterp_modadd.training.PRESETS`) are built from, or checked against, these names.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["ACTIVATION_NAMES", "ACTIVATION_ALIASES", "PRESETS", "PRESET_NAMES", "MAX_RUNS", "version", "__version__"]

#: Names of the activations of :data:`mechinterp_modadd.model.ACTIVATIONS` (a test checks they agree).
ACTIVATION_NAMES: tuple[str, ...] = ("abs", "cube", "exp", "gelu", "identity", "quad", "quartic", "relu",
                                     "softplus2", "tanh")

#: Other spellings accepted wherever an activation is named (looked up case-insensitively).
ACTIVATION_ALIASES: dict[str, str] = {"x^2": "quad", "square": "quad", "x": "identity", "linear": "identity",
                                      "x^3": "cube", "x^4": "quartic", "|x|": "abs"}

#: The authors' five configurations (full batch, AdamW betas (0.9, 0.98), 10-step warm-up), then
#: ``lottery_sgd`` (their shipped quad_random run: SGD 0.1, 10,000 steps), Gromov's (family
#: concat_mlp, no warm-up) and Nanda et al.'s transformer at two sizes (family transformer); the
#: training presets of
#: :mod:`mechinterp_modadd.training.config` are these dictionaries.
PRESETS: dict[str, dict[str, Any]] = {
    "standard": dict(activation="relu", optimizer="adamw", lr=5e-5, weight_decay=0.0,
                     train_fraction=1.0, steps=5000, init="random", init_scale=0.1),
    "grokking": dict(activation="relu", optimizer="adamw", lr=1e-4, weight_decay=2.0,
                     train_fraction=0.75, steps=50000, init="random", init_scale=0.1),
    "quad_random": dict(activation="quad", optimizer="adamw", lr=5e-5, weight_decay=0.0,
                        train_fraction=1.0, steps=5000, init="random", init_scale=0.1),
    "quad_single_freq": dict(activation="quad", optimizer="sgd", lr=0.1, weight_decay=0.0,
                             train_fraction=1.0, steps=5000, init="single_freq", init_scale=0.02),
    "relu_single_freq": dict(activation="relu", optimizer="sgd", lr=0.01, weight_decay=0.0,
                             train_fraction=1.0, steps=10000, init="single_freq", init_scale=0.002),
    # not in the authors' config table: how their shipped quad_random checkpoints were trained (SGD 0.1,
    # 10,000 epochs; the optimizer state in final.pth says so); the SGD arm of the lottery sweep
    "lottery_sgd": dict(activation="quad", optimizer="sgd", lr=0.1, weight_decay=0.0,
                        train_fraction=1.0, steps=10000, init="random", init_scale=0.1),
    # Gromov 2023's concatenated-input MLP (family concat_mlp; docs/science.md section 10.4)
    "gromov": dict(family="concat_mlp", activation="quad", d_mlp=256, optimizer="adamw", lr=3e-3,
                   weight_decay=1.0, train_fraction=0.5, steps=3000, init="random", init_scale=1.0,
                   warmup_steps=0),
    # Nanda et al.'s one-layer transformer (family "transformer", docs/transformer.md): their p, data
    # fraction, optimiser and step budget (num_epochs of their training code), full batch
    "nanda": dict(family="transformer", p=113, activation="relu", embedding="learned", d_model=128, d_mlp=512,
                  optimizer="adamw", lr=1e-3, weight_decay=1.0, train_fraction=0.3, steps=50000, save_every=500),
    # the same network and optimiser sized to grok on a 2-core CPU in minutes (docs/transformer.md)
    "nanda_small": dict(family="transformer", p=23, activation="relu", embedding="learned", d_model=128, d_mlp=512,
                        optimizer="adamw", lr=1e-3, weight_decay=1.0, train_fraction=0.8, steps=6000,
                        save_every=100),
}

#: The preset names, in the order above.
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


#: Most runs one command plans (``train`` with several values, a ``sweep`` grid): a larger grid is
#: refused with its count before anything is built or written (split it into several commands).
MAX_RUNS: int = 10_000


def version() -> str:
    """The installed distribution's version, or :data:`__version__` when running from a bare checkout."""
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as _dist_version
    except ImportError:  # pragma: no cover - Python >= 3.8 always has it
        return __version__
    try:
        return _dist_version("mechinterp_modadd")
    except PackageNotFoundError:
        return __version__
