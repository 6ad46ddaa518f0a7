"""Reuse of derived weights between inference calls.

A cell derives its loop weights (masked, scaled, softplus'ed) from its parameters at every call. During
training that must happen each time, to keep the autograd graph; during inference (gradients disabled) the
result only changes when a parameter or buffer does, so one-step control loops can skip the work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


def _version_key(module: nn.Module) -> tuple[tuple[int, int], ...]:
    """Identity and in-place version of every tensor the derived weights depend on."""
    tensors = [*module.parameters(), *module.buffers()]
    return tuple((t.data_ptr(), t._version) for t in tensors)


def cached_when_inference(module: nn.Module, compute: Callable[[], T]) -> T:
    """``compute()``, reused across calls while gradients are disabled and no parameter has changed."""
    if torch.is_grad_enabled():
        return compute()
    key = _version_key(module)
    cache = module.__dict__.get("_inference_cache")
    if cache is not None and cache[0] == key:
        return cache[1]
    value = compute()
    module.__dict__["_inference_cache"] = (key, value)
    return value
