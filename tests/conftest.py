import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from helpers import trained_small  # noqa: E402


@pytest.fixture(autouse=True)
def _fixed_threads():
    # the suite runs on 2 cores in CI; keep torch deterministic in thread count
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield


@pytest.fixture(scope="session")
def small_run():
    """A p = 13 standard model trained once per session (see helpers.trained_small)."""
    return trained_small()


@pytest.fixture(scope="session")
def small_model(small_run):
    return small_run.model
