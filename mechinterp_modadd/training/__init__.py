"""Training: one engine for one run or many, split by job (nothing in analysis imports this).

============================  ==========================================================================
:mod:`.config`                TrainConfig and the paper's presets
:mod:`.objective`             the pairs a step sees, each run's weights, the early-stop rule
:mod:`.optim`                 stacked optimizers (AdamW, SGD) and their registry
:mod:`.family`                the training-family protocol, its registry and the generic torch.func step
:mod:`.family_mlp`            the ``mlp`` family and its hand-written batched step
:mod:`.family_transformer`    the ``transformer`` family (Nanda et al.'s) and its hand-batched step
:mod:`.stack`                 the stacked state of S runs and one step of all of them
:mod:`.loop`                  a chunk of runs trained together: metrics, stops, saves
:mod:`.runfolder`             every file of a run folder, locks, resume checks, runs.csv
:mod:`.estimate`              every cost formula (memory, chunking) and the timed estimate
:mod:`.api`                   :func:`train` and :func:`train_many`
============================  ==========================================================================
"""

# the training families (each registers itself; one line per family)
from . import family_mlp  # noqa: F401, I001
from . import family_transformer  # noqa: F401, I001
from . import family_concat  # noqa: F401, I001
from ..layout import checkpoint_path
from .api import ManyResult, TrainResult, load_run_model, train, train_many
from .config import PRESETS, TrainConfig, preset
from .family import TrainFamily, get_train_family, register_train_family
from .optim import OPTIMIZERS

__all__ = ["PRESETS", "TrainConfig", "preset", "TrainResult", "load_run_model", "train", "train_many",
           "ManyResult", "TrainFamily", "register_train_family", "get_train_family", "OPTIMIZERS",
           "checkpoint_path"]

