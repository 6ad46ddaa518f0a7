"""Zero-copy hand-off between JAX arrays and torch tensors through DLPack.

On the same device (CPU, or the same CUDA GPU) the result shares the source's memory: no copy, no host
round trip. The tensor must stay alive while the other side uses it (DLPack keeps the buffer referenced).
"""

from __future__ import annotations

from typing import Any

__all__ = ["jax_to_torch", "torch_to_jax"]


def jax_to_torch(x: Any) -> Any:
    """A torch tensor sharing the memory of JAX array ``x`` (same device, same shape and dtype)."""
    import torch

    return torch.from_dlpack(x)


def torch_to_jax(t: Any, device: Any = None) -> Any:
    """A JAX array sharing the memory of torch tensor ``t`` (contiguous); with ``device`` (a
    ``jax.Device``) different from ``t``'s, JAX copies it there."""
    import jax
    import jax.numpy as jnp

    x = jnp.from_dlpack(t.detach())
    if device is not None and device not in x.devices():
        x = jax.device_put(x, device)
    return x
