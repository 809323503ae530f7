"""Read GAD's training data from a Dataset, a DataLoader or an ``(x, y)`` pair."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..core.progress import NO_TASK, progress_bar
from ..errors import DataError

__all__ = ["collect_training_data"]


def _as_batches(data: Any) -> tuple[Iterable[Any], int | None]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        return [tuple(data)], 1
    if isinstance(data, DataLoader):
        return data, len(data) if hasattr(data, "__len__") else None
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        loader = DataLoader(data, batch_size=256, shuffle=False)
        return loader, len(loader)
    if isinstance(data, Iterable):
        return data, None
    raise DataError(
        f"fit() takes a torch Dataset, a DataLoader or an (x, y) pair of tensors, got {type(data).__name__}"
    )


def _check_batch(batch: Any, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise DataError(
            f"batch {index} of the training data is a {type(batch).__name__}, not an (images, labels) pair; "
            "the loader must yield (x, y) with x of shape (N, C, H, W) and y of shape (N,)"
        )
    x, y = batch[0], batch[1]
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise DataError(f"batch {index}: images must be a float tensor of shape (N, C, H, W), got {shape}")
    if not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    if y.dim() != 1 or y.shape[0] != x.shape[0] or y.is_floating_point() or y.dtype == torch.bool:
        raise DataError(
            f"batch {index}: labels must be integer class indices of shape ({x.shape[0]},), got "
            f"{y.dtype} of shape {tuple(y.shape)} (one-hot labels: pass y.argmax(1))"
        )
    return x, y.long()


def collect_training_data(
    data: Any, classes: Sequence[int] | None, progress: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read every image whose label is in ``classes`` (all if None); returns ``(x, y)`` on the CPU.

    The filtered training set is held in memory (it is read once to compute the
    distancing targets and then many times for training). Raises :class:`DataError`
    for a source that does not yield ``(images, labels)`` pairs, inconsistent image
    shapes, or a class of ``classes`` without any image.
    """
    batches, total = _as_batches(data)
    wanted = None if classes is None else torch.tensor(list(classes))
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    shape = None
    with progress_bar(quiet=not progress, transient=True) as bar:
        task = bar.add_task("GAD: reading training data", total=total, info="") if bar else NO_TASK
        for i, batch in enumerate(batches):
            x, y = _check_batch(batch, i)
            if shape is None:
                shape = x.shape[1:]
            elif x.shape[1:] != shape:
                raise DataError(f"batch {i}: images of shape {tuple(x.shape[1:])}, earlier ones {tuple(shape)}")
            x, y = x.detach().cpu(), y.cpu()
            if wanted is not None:
                keep = torch.isin(y, wanted)
                x, y = x[keep], y[keep]
            xs.append(x)
            ys.append(y)
            if bar:
                bar.advance(task)
    if not xs:
        raise DataError("the training data is empty")
    x, y = torch.cat(xs), torch.cat(ys)
    missing = [c for c in classes if not bool((y == c).any())] if classes is not None else []
    if classes is not None and missing:
        raise DataError(
            f"the training data has no image of class(es) {missing}; GAD needs images of every class "
            f"concerned {tuple(classes)}"
        )
    return x, y
