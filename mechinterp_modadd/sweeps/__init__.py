"""Sweeps: a grid of training runs, trained in batches on a local executor or on Ray, analysed run
by run, collected into one results table (``modadd sweep``).

Layout: :mod:`.spec` (TOML specs, validation, expansion into runs), :mod:`.presets` (the three
research sweeps), :mod:`.runner` (train and analyse one batch, atomic completion per run; Ray
workers train in a scratch folder of their own), :mod:`.storage` (``--storage``: a location every
Ray node reaches, through fsspec), :mod:`.executors` (grouping into batches, local and Ray
execution, results files). Ray is an optional extra (``pip install 'mechinterp_modadd[sweep]'``)
imported only inside the Ray executor; without it the default executor runs locally.
"""

from .executors import collect_table, group_batches, run_sweep
from .presets import SWEEP_PRESETS, preset_spec
from .spec import RunPlan, SpecError, SweepSpec, load_spec, parse_set, parse_spec, spec_from_dict

__all__ = ["run_sweep", "group_batches", "collect_table", "SWEEP_PRESETS", "preset_spec", "RunPlan", "SpecError",
           "SweepSpec", "load_spec", "parse_set", "parse_spec", "spec_from_dict"]
