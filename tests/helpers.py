"""Small factories shared by the tests: tiny trained models, idealised networks, reference paths."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pytest

from mechinterp_modadd.analysis.idealised import idealised_network
from mechinterp_modadd.checkpoint import load_checkpoint
from mechinterp_modadd.training import preset, train

REPO = Path(__file__).resolve().parents[1]
#: the paper authors' checkpoints (never copied into the repository): $MODADD_REFERENCE_DIR (or its
#: older name $MODADD_REFERENCE), else the ``shared/reference`` folder beside the repository's parent
REFERENCE = Path(os.environ.get("MODADD_REFERENCE_DIR") or os.environ.get("MODADD_REFERENCE")
                 or REPO.parent / "shared" / "reference")
DATA = REPO / "data"

#: activation of each reference run (the files do not record it)
REFERENCE_ACTIVATION = {
    "standard_relu_p23": "relu",
    "grokking_relu_p23": "relu",
    "quad_random_p23": "quad",
    "quad_single_freq_p23": "quad",
}


def reference_path(run: str, name: str = "final.pth") -> Path:
    """Path of a reference checkpoint; skips the calling test when REFERENCE is absent."""
    path = REFERENCE / run / name
    if not path.exists():
        pytest.skip(f"reference checkpoints not available ({path}; set MODADD_REFERENCE_DIR to their folder)")
    return path


def load_reference(run: str, name: str = "final.pth"):
    return load_checkpoint(reference_path(run, name), activation=REFERENCE_ACTIVATION[run]).model


@lru_cache(maxsize=8)
def trained_small(p: int = 13, preset_name: str = "standard", d_mlp: int = 128, steps: int = 1500,
                  lr: float = 1e-3, seed: int = 0):
    """A small model trained in about a second (cached per process). Returns a TrainResult.

    Default: p = 13, 128 neurons, AdamW 1e-3, 1,500 steps of the standard preset; it reaches
    accuracy 1.0 on all pairs with a clean Fourier solution.
    """
    cfg = preset(preset_name, p=p, d_mlp=d_mlp, steps=steps, lr=lr, seed=seed)
    return train(cfg, progress=False)


def idealised(p: int = 13, n: int = 8, **kw):
    return idealised_network(p, n, **kw)


def cpu_fingerprint() -> dict[str, str]:
    """What decides the bits of a CPU training run: torch version, BLAS, the kernels' CPU capability
    and the CPU model (the trainer's bits do not depend on its thread count at p = 23). Recorded in
    data/fingerprint.json with the bits re-training gives there."""
    import platform
    import re

    import torch

    show = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=([^,\s]+)", show)
    mkl = re.search(r"Math Kernel Library Version (\S+)", show)
    model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "blas": (blas.group(1) if blas else "unknown") + (f" {mkl.group(1)}" if mkl else ""),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_model": model,
        "machine": platform.machine(),
    }
