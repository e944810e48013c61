"""mechinterp_modadd: mechanistic interpretability of two-layer networks learning x + y mod p."""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import all_pairs, labels, mirror_partitions, random_split
from .errors import CheckpointError, ConfigError, InputError, ModAddError
from .fourier import NeuronSpectrum, fourier_basis, neuron_spectrum, wrap
from .model import ACTIVATIONS, ModAddMLP, ModelConfig

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "Checkpoint", "CheckpointError", "ConfigError", "InputError", "ModAddError",
    "ModAddMLP", "ModelConfig", "NeuronSpectrum", "all_pairs", "fourier_basis", "labels",
    "load_checkpoint", "mirror_partitions", "neuron_spectrum", "random_split", "save_checkpoint",
    "wrap",
]
