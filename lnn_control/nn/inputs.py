"""Validation and normalisation of the sequence inputs ``x``, ``dt``, ``resets`` and ``h0``.

Every check raises a ``ValueError`` that names the bad value and the expected form, so that a wrong shape or a
negative time step fails at the call that caused it rather than as a broadcasting error deep in a cell.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lnn_control.checks import nonnegative_number, nonnegative_values

__all__ = ["check_dt_values", "normalize_dt", "normalize_h0", "normalize_resets", "normalize_x"]


def normalize_x(x: Tensor, input_size: int, batch_first: bool) -> tuple[Tensor, bool]:
    """Return ``x`` as (B, T, in) and whether the input was batched ((T, in) input is unbatched)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 2:
        batched = False
        x = x.unsqueeze(0)
    elif x.dim() == 3:
        batched = True
        if not batch_first:
            x = x.transpose(0, 1)
    else:
        layout = "(B, T, in)" if batch_first else "(T, B, in)"
        raise ValueError(f"x must be {layout} or unbatched (T, in), got shape {tuple(x.shape)}")
    if x.shape[-1] != input_size:
        raise ValueError(
            f"x must have {input_size} features in its last dimension, got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating point tensor, got dtype {x.dtype}")
    return x, batched


def check_dt_values(dt: Tensor) -> None:
    """Raise if any dt (B, T) is negative or not finite, naming the first bad entry (batch, step)."""
    nonnegative_values("dt", dt, axes=("batch", "step"))


def normalize_dt(
    dt: Tensor | float | None, batch: int, steps: int, batched: bool, batch_first: bool, like: Tensor
) -> Tensor:
    """Return dt as a validated (B, T) tensor of ``like``'s dtype and device.

    Accepted: None (1.0), a number, or a tensor (B, T) / (B, T, 1) (time-major (T, B) / (T, B, 1) when not
    batch_first; (T,) / (T, 1) for unbatched input), or one value per sample (B,) / (B, 1) held for all steps.
    """
    if dt is None:
        return like.new_ones(batch, steps)
    if not isinstance(dt, Tensor):
        try:
            value = float(dt)
        except (TypeError, ValueError):
            raise TypeError(f"dt must be None, a number or a tensor, got {type(dt).__name__}") from None
        return like.new_full((batch, steps), nonnegative_number("dt", value))
    if dt.dtype != like.dtype or dt.device != like.device:
        dt = dt.to(dtype=like.dtype, device=like.device)
    if dt.dim() >= 1 and dt.shape[-1] == 1 and dt.dim() == (3 if batched else 2):
        dt = dt.squeeze(-1)
    if not batched:
        if dt.dim() == 1 and dt.shape[0] == steps:
            dt = dt.unsqueeze(0)
        elif dt.dim() == 0:
            dt = dt.expand(1, steps)
        else:
            raise ValueError(
                f"dt for unbatched input must be (T,) or (T, 1) with T={steps}, got {tuple(dt.shape)}"
            )
    elif dt.dim() == 2:
        dt = dt if batch_first else dt.transpose(0, 1)
        if dt.shape == (batch, 1) and steps != 1:
            dt = dt.expand(batch, steps)
    elif dt.dim() == 1 and dt.shape[0] == batch:
        dt = dt.unsqueeze(1).expand(batch, steps)
    elif dt.dim() == 0:
        dt = dt.expand(batch, steps)
    if dt.shape != (batch, steps):
        layout = "(B, T) or (B, T, 1)" if batch_first else "(T, B) or (T, B, 1)"
        raise ValueError(f"dt must be {layout} with B={batch}, T={steps}, got shape {tuple(dt.shape)}")
    check_dt_values(dt)
    return dt


def normalize_resets(
    resets: Tensor | None, batch: int, steps: int, batched: bool, batch_first: bool
) -> Tensor | None:
    """Return resets as a bool (B, T) tensor (True at t: zero that sample's state before step t), or None."""
    if resets is None:
        return None
    if not isinstance(resets, Tensor):
        raise TypeError(f"resets must be a bool tensor, got {type(resets).__name__}")
    if not batched and resets.dim() == 1:
        resets = resets.unsqueeze(0)
    elif batched and resets.dim() == 2 and not batch_first:
        resets = resets.transpose(0, 1)
    if resets.shape != (batch, steps):
        layout = "(B, T)" if batch_first else "(T, B)"
        expected = f"{layout} with B={batch}, T={steps}" if batched else f"(T,) with T={steps}"
        raise ValueError(f"resets must be {expected}, got shape {tuple(resets.shape)}")
    if resets.dtype != torch.bool:
        if resets.is_floating_point() and not bool(((resets == 0) | (resets == 1)).all()):
            raise ValueError("resets must be boolean (or 0/1 valued), got other values")
        resets = resets.bool()
    return resets


def normalize_h0(
    h0: Tensor | None, num_layers: int, batch: int, state_size: int, batched: bool, like: Tensor
) -> Tensor:
    """Return h0 as (num_layers, B, H); zeros when None. Unbatched h0 is (num_layers, H)."""
    if h0 is None:
        return like.new_zeros(num_layers, batch, state_size)
    if not isinstance(h0, Tensor):
        raise TypeError(f"h0 must be a torch.Tensor, got {type(h0).__name__}")
    expected = (num_layers, batch, state_size) if batched else (num_layers, state_size)
    if tuple(h0.shape) != expected:
        raise ValueError(f"h0 must be (num_layers, B, H) = {expected}, got shape {tuple(h0.shape)}")
    if h0.dtype != like.dtype or h0.device != like.device:
        h0 = h0.to(dtype=like.dtype, device=like.device)
    return h0 if batched else h0.unsqueeze(1)


def split_steps(tensor: Tensor, dim: int) -> list[Tensor]:
    """The per-step slices along the time dimension ``dim``.

    ``unbind`` rather than indexing ``[:, t]``: its backward stacks the step gradients once, where indexing
    would zero-fill a full-sequence gradient for every step. One step is a plain squeeze (fewer graph nodes
    for a traced or exported one-step controller).
    """
    if tensor.shape[dim] == 1:
        return [tensor.squeeze(dim)]
    return list(tensor.unbind(dim))


def join_steps(steps: list[Tensor], dim: int) -> Tensor:
    """Inverse of :func:`split_steps`."""
    if len(steps) == 1:
        return steps[0].unsqueeze(dim)
    return torch.stack(steps, dim=dim)
