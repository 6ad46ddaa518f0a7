"""Reuse of derived weights between inference calls.

A cell derives its loop weights (masked, scaled, softplus'ed) from its parameters at every call. During
training that must happen each time, to keep the autograd graph; during inference (gradients disabled) the
result only changes when a parameter or buffer does, so one-step control loops can skip the work.

The cache lives beside the module (a weak map), not in it: copies, pickles and traced exports of a module
never carry a stale cache, and nothing outside this file needs to know it exists.

A change is seen through each tensor's identity, storage and version counter. Writes that bypass the counter
are not seen: through ``.data`` (SB3's ``polyak_update`` writes target networks so), and torch's fused
optimizer kernels (Adam, 2.13, CPU). After such a write call :func:`mark_changed` on the tensors; an optimizer
given to :func:`track_optimizer` does so after each of its steps.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
from torch import nn
from torch.autograd.graph import increment_version

T = TypeVar("T")

# module -> (key, derived weights); an entry goes with its module.
_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def _version_key(module: nn.Module) -> tuple[tuple[int, int, int], ...]:
    """Identity, storage and in-place version of every parameter and buffer of ``module`` and its children
    (what the derived weights depend on), by a direct walk of the modules' dicts: this runs every step."""
    key = []
    modules = [module]
    while modules:
        current = modules.pop()
        if current is None:
            continue
        for tensors in (current._parameters, current._buffers):
            for t in tensors.values():
                if t is not None:
                    key.append((id(t), t.data_ptr(), t._version))
        modules.extend(current._modules.values())
    return tuple(key)


def cached_when_inference(module: nn.Module, compute: Callable[[], T], variant: object = None) -> T:
    """``compute()``, reused across calls while gradients are disabled and no parameter has changed.

    ``variant`` names which of several derivations ``compute`` is (a call with another variant recomputes).
    """
    if torch.is_grad_enabled():
        return compute()
    key = (module.training, variant, _version_key(module))  # training mode decides dropout in the loop plan
    cache = _CACHE.get(module)
    if cache is not None and cache[0] == key:
        return cache[1]
    value = compute()
    _CACHE[module] = (key, value)
    return value


def mark_changed(tensors: Iterable[torch.Tensor]) -> None:
    """Tell the cache (and autograd) that ``tensors`` changed through a write that bypassed their version
    counters (``.data``, a fused optimizer kernel)."""
    increment_version(list(tensors))


def _after_step(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    del args, kwargs
    mark_changed(p for group in optimizer.param_groups for p in group["params"] if p.grad is not None)


def track_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Make ``optimizer``'s steps visible to the cache: a fused optimizer (``fused=True``) writes the
    parameters without bumping their version counters, so without this ``predict`` and rollouts after an
    update would reuse cell weights derived before it. Other optimizers are left as they are. Returns it."""
    if optimizer.defaults.get("fused"):
        optimizer.register_step_post_hook(_after_step)
    return optimizer
