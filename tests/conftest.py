"""Shared fixtures: tiny models and inputs, and the model-state snapshot helper."""

from __future__ import annotations

import pytest
import torch
from helpers import ModelSnapshot  # noqa: F401  (re-exported for tests)

# Tiny models in tests: one intra-op thread is as fast and never oversubscribes the cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
