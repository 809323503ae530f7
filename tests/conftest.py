"""Shared fixtures: tiny models and inputs, and the model-state snapshot helper."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import ModelSnapshot  # noqa: F401  (re-exported for tests)

# Two cores on CI: keep intra-op threads modest so parallel test processes do not thrash.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
