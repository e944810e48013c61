"""Training: presets, the full-batch trainer and run folders. Nothing in analysis imports this."""

from .many import ManyResult, train_many
from .presets import PRESETS, TrainConfig, preset
from .trainer import FullBatchObjective, TrainResult, checkpoint_path, load_run_model, train

__all__ = ["PRESETS", "TrainConfig", "preset", "FullBatchObjective", "TrainResult", "checkpoint_path",
           "load_run_model", "train", "train_many", "ManyResult"]
