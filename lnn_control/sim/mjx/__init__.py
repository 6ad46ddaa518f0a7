"""MuJoCo XLA (MJX) backend of :mod:`lnn_control.sim`: the catalogue's MuJoCo tasks batched on one JAX
device (GPU or CPU), with a zero-copy torch interface. Needs the ``gpu`` extra (``jax``, ``mujoco-mjx``).

- :class:`MjxVecEnv`: SB3 numpy VecEnv API plus ``reset_torch``/``step_torch``
- :func:`make_torch_vec_env`, :class:`TorchVecEnv`: a catalogue entry as torch tensors on the device
- :func:`require_mjx`, :func:`resolve_device`: import guard and device lookup
- :func:`jax_to_torch`, :func:`torch_to_jax`: DLPack hand-off

Importing this package does not import JAX; the names load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnn_control.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "MjxVecEnv": "env",
    "TorchStep": "torch_env",
    "TorchVecEnv": "torch_env",
    "make_torch_vec_env": "torch_env",
    "require_mjx": "_deps",
    "resolve_device": "_deps",
    "jax_to_torch": "dlpack",
    "torch_to_jax": "dlpack",
}

__all__ = [
    "MjxVecEnv",
    "TorchStep",
    "TorchVecEnv",
    "jax_to_torch",
    "make_torch_vec_env",
    "require_mjx",
    "resolve_device",
    "torch_to_jax",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from lnn_control.sim.mjx._deps import require_mjx, resolve_device
    from lnn_control.sim.mjx.dlpack import jax_to_torch, torch_to_jax
    from lnn_control.sim.mjx.env import MjxVecEnv
    from lnn_control.sim.mjx.torch_env import TorchStep, TorchVecEnv, make_torch_vec_env
