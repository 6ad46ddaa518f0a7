"""Reuse of derived weights between inference calls.

A cell derives its loop weights (masked, scaled, softplus'ed) from its parameters at every call. During
training that must happen each time, to keep the autograd graph; during inference (gradients disabled) the
result only changes when a parameter or buffer does, so one-step control loops can skip the work.

The cache lives beside the module (a weak map), not in it: copies, pickles and traced exports of a module
never carry a stale cache, and nothing outside this file needs to know it exists.

A change is seen through each tensor's identity, storage and version counter. Writes that bypass the counter
are not seen: through ``.data`` (SB3's ``polyak_update`` writes target networks so), and torch's fused Adam
kernel (2.13, CPU). After such a write call ``torch.autograd.graph.increment_version`` on the parameters (the
liquid PPO policy does so after its fused optimizer's step).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

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
