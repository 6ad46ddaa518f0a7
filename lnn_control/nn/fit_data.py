"""The data side of :func:`lnn_control.nn.fit.fit`: datasets of (x, y[, dt]) sequences, checked and batched.

- :func:`as_dataset`: a ``Dataset`` or a tuple of arrays ``(X, Y[, DT])`` -> a checked ``Dataset``;
- :func:`split_dataset`: a seeded train/validation split;
- :func:`make_loader`: batches x (B, T, in), y (B, T, ...), dt (B, T) or None;
- :class:`Placement`: moves batches to the model's device and float dtype.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset, random_split

from lnn_control.checks import nonnegative_values

__all__ = ["Batch", "Placement", "as_dataset", "make_loader", "split_dataset"]

Batch = tuple[Tensor, Tensor, Tensor | None]


@dataclass(frozen=True)
class Placement:
    """Where batches go: the training device, and the model's float dtype for floating point data."""

    device: torch.device
    dtype: torch.dtype

    def batches(self, loader: DataLoader) -> Iterator[Batch]:
        for x, y, dt in loader:
            yield self._move(x), self._move(y), None if dt is None else self._move(dt)

    def _move(self, t: Tensor) -> Tensor:
        dtype = (
            self.dtype if t.is_floating_point() else t.dtype
        )  # integer targets (class labels) stay as they are
        return t.to(self.device, dtype, non_blocking=True)


def as_dataset(data: Dataset | Sequence[Tensor], name: str) -> Dataset:
    """A ``Dataset`` of (x, y[, dt]) items; tensor tuples are shape-checked and wrapped in a TensorDataset."""
    if isinstance(data, Dataset):
        try:
            size = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                f"{name} must have a length (a map-style Dataset), got {type(data).__name__}"
            ) from None
        if size == 0:
            raise ValueError(f"{name} is empty: expected at least one sequence")
        _check_item(data[0], f"{name}[0]")
        return data
    arrays = (Tensor, np.ndarray)
    if not isinstance(data, (tuple, list)) or not all(isinstance(t, arrays) for t in data):
        kind = type(data).__name__
        raise TypeError(
            f"{name} must be a torch Dataset or a tuple of tensors (X, Y) / (X, Y, DT), got {kind}"
        )
    if len(data) not in (2, 3):
        raise ValueError(f"{name} must hold 2 tensors (X, Y) or 3 (X, Y, DT), got {len(data)}")
    X, Y = torch.as_tensor(data[0]), torch.as_tensor(data[1])
    if X.dim() != 3:
        raise ValueError(f"{name}: X must be (N, T, in), got shape {tuple(X.shape)}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: X has shape {tuple(X.shape)}, expected at least one sequence")
    n, steps = X.shape[0], X.shape[1]
    if Y.dim() < 2 or Y.shape[:2] != (n, steps):
        raise ValueError(
            f"{name}: Y must be (N, T, out) = ({n}, {steps}, out) to match X, got shape {tuple(Y.shape)}"
        )
    tensors = [X, Y]
    if len(data) == 3:
        DT = torch.as_tensor(data[2])
        if DT.dim() == 3 and DT.shape[-1] == 1:
            DT = DT.squeeze(-1)
        if DT.shape != (n, steps):
            raise ValueError(
                f"{name}: DT must be (N, T) or (N, T, 1) = ({n}, {steps}) to match X, "
                f"got shape {tuple(data[2].shape)}"
            )
        nonnegative_values(f"{name}: DT", DT)
        tensors.append(DT)
    if not X.is_floating_point():
        raise TypeError(f"{name}: X must be a floating point tensor, got dtype {X.dtype}")
    return TensorDataset(*tensors)


def _check_item(item: Any, name: str) -> None:
    """Check one (x, y[, dt]) item: x (T, in), y (T, ...), dt (T,) / (T, 1)."""
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise ValueError(f"{name} must be a tuple (x, y) or (x, y, dt), got {_describe(item)}")
    x, y = (torch.as_tensor(v) for v in item[:2])
    if x.dim() != 2:
        raise ValueError(f"{name}: x must be (T, in), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: x must be a floating point tensor, got dtype {x.dtype}")
    steps = x.shape[0]
    if y.dim() < 1 or y.shape[0] != steps:
        raise ValueError(f"{name}: y must be (T, out) with T={steps} as in x, got shape {tuple(y.shape)}")
    if len(item) == 3:
        dt = torch.as_tensor(item[2])
        if dt.shape not in ((steps,), (steps, 1)):
            raise ValueError(
                f"{name}: dt must be (T,) or (T, 1) with T={steps} as in x, got shape {tuple(dt.shape)}"
            )


def _collate(items: list[Any]) -> tuple[Tensor, Tensor, Tensor | None]:
    """Stack (x, y[, dt]) items into x (B, T, in), y (B, T, ...), dt (B, T) or None."""
    width = len(items[0])
    if any(len(item) != width for item in items):
        raise ValueError("dataset items mix (x, y) and (x, y, dt) tuples; expected one form throughout")
    columns = []
    for k, label in enumerate(("x", "y", "dt")[:width]):
        parts = [torch.as_tensor(item[k]) for item in items]
        shapes = {tuple(p.shape) for p in parts}
        if len(shapes) > 1:
            raise ValueError(
                f"sequences in a batch must have equal shapes, got {label} shapes {sorted(shapes)}; "
                "pad them to a common length or use batch_size=1"
            )
        columns.append(torch.stack(parts))
    dt = None
    if width == 3:
        dt = columns[2].squeeze(-1) if columns[2].dim() == 3 else columns[2]
    return columns[0], columns[1], dt


def make_loader(
    data: Dataset, batch_size: int, shuffle: bool, generator: torch.Generator | None
) -> DataLoader:
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=_collate)


def split_dataset(data: Dataset, val_fraction: float, seed: int | None) -> tuple[Dataset, Dataset]:
    size = len(data)  # type: ignore[arg-type]
    n_val = round(size * val_fraction)
    if n_val < 1 or n_val >= size:
        raise ValueError(
            f"val_fraction={val_fraction} of {size} sequences leaves {size - n_val} for training and "
            f"{n_val} for validation; expected at least one of each"
        )
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    train, val = random_split(data, [size - n_val, n_val], generator=generator)
    return train, val


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__
