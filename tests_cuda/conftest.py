"""Checks that need a CUDA device: ``make test-cuda`` (or ``pytest tests_cuda``) on a GPU machine.

They are not part of ``make test``: CI machines have no GPU, and on CI a skipped test is a
failure (see ``tests/conftest.py``). Here a missing CUDA device is an error, never a skip, so
a run on a machine without one cannot pass by accident.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # tests/helpers.py


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.fail("tests_cuda needs a CUDA device (torch.cuda.is_available() is False)", pytrace=False)
