"""mechinterp_modadd: mechanistic interpretability of two-layer networks learning x + y mod p.

The public names below are loaded lazily (PEP 562): ``import mechinterp_modadd`` and the
``modadd`` command line's argument parsing import neither torch nor transformer-lens; the first
access to, e.g., ``mechinterp_modadd.load_checkpoint`` imports the module that defines it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import CheckpointError, ConfigError, InputError, ModAddError

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from .data import all_pairs, labels, mirror_partitions, random_split
    from .fourier import NeuronSpectrum, fourier_basis, neuron_spectrum, wrap
    from .model import ACTIVATIONS, ModAddMLP, ModelConfig
    from .notebook import data_dir

#: public name -> submodule that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "all_pairs": "data", "labels": "data", "mirror_partitions": "data", "random_split": "data",
    "NeuronSpectrum": "fourier", "fourier_basis": "fourier", "neuron_spectrum": "fourier", "wrap": "fourier",
    "ACTIVATIONS": "model", "ModAddMLP": "model", "ModelConfig": "model",
    "data_dir": "notebook",
}

__all__ = [
    "ACTIVATIONS", "Checkpoint", "CheckpointError", "ConfigError", "InputError", "ModAddError",
    "ModAddMLP", "ModelConfig", "NeuronSpectrum", "__version__", "all_pairs", "data_dir", "fourier_basis", "labels",
    "load_checkpoint", "mirror_partitions", "neuron_spectrum", "random_split", "save_checkpoint",
    "wrap",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mechinterp_modadd' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
