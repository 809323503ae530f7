"""Dataset-level summaries that never hide skipped (NaN) images."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Summary", "nan_summary"]


class Summary(NamedTuple):
    """Mean of the defined per-image values and how many images were skipped.

    Attributes:
        mean: mean over the finite values (NaN when every value was skipped).
        n: number of values that entered the mean.
        n_skipped: number of NaN values left out (undefined metric for that image,
            e.g. an empty region).
    """

    mean: float
    n: int
    n_skipped: int

    def __str__(self) -> str:
        s = f"{self.mean:.4g} (n={self.n}"
        return s + (f", {self.n_skipped} skipped)" if self.n_skipped else ")")


def nan_summary(values: torch.Tensor | np.ndarray | list[float]) -> Summary:
    """Mean of ``values`` ignoring NaN entries, with the count of entries ignored.

    Use this instead of ``values.mean()`` for metrics that return NaN for images where
    they are undefined (empty region, all-zero map): the mean is then over the images
    where the metric is defined, and :attr:`Summary.n_skipped` says how many were not.
    """
    v = torch.as_tensor(values, dtype=torch.float64).detach().reshape(-1).cpu()
    ok = ~torch.isnan(v)
    n = int(ok.sum())
    mean = float(v[ok].mean()) if n else float("nan")
    return Summary(mean, n, int(v.numel() - n))
