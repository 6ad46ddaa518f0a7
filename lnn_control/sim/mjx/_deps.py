"""Import guard and device resolution of the MJX backend.

:func:`require_mjx` imports JAX and MuJoCo XLA and raises one ``ImportError`` naming what is missing and the
``gpu`` extra that installs it. :func:`resolve_device` turns ``"cpu"``, ``"cuda"``/``"gpu"``, ``"cuda:1"``
or a ``jax.Device`` into a device JAX can see, or raises a ``ValueError`` naming what JAX sees instead.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from typing import Any

from lnn_control.extras import MissingExtraError

__all__ = ["MJX_INSTALL_HINT", "require_mjx", "resolve_device"]

MJX_INSTALL_HINT = (
    "pip install 'lnn-control[gpu]' (CPU JAX; for NVIDIA GPUs also pip install -U 'jax[cuda13]', "
    "see the README)"
)


def require_mjx() -> tuple[Any, Any]:
    """Import ``jax`` and ``mujoco.mjx``; returns ``(jax, mjx)``.

    Raises:
        MissingExtraError: (an ImportError) one line naming the missing module(s) and the ``gpu`` extra,
            like every other optional feature (:mod:`lnn_control.extras`).
    """
    missing = []
    jax = mjx = None
    try:
        jax = importlib.import_module("jax")
    except ImportError:
        missing.append("jax")
    try:
        # mujoco.mjx prints "Failed to import warp" when the optional Warp backend is absent: not our concern
        with contextlib.redirect_stdout(io.StringIO()):
            mjx = importlib.import_module("mujoco.mjx")
    except ImportError:
        missing.append("mujoco-mjx")
    if missing:
        raise MissingExtraError(
            f"backend='mjx' needs {' and '.join(missing)}, which is not installed: {MJX_INSTALL_HINT}",
            feature="the MJX backend",
            extra="gpu",
            module=missing[0].replace("mujoco-mjx", "mujoco.mjx"),
        )
    return jax, mjx


def resolve_device(device: Any = None) -> Any:
    """The ``jax.Device`` for ``device``.

    Args:
        device: None (JAX's default device), a ``jax.Device``, ``"cpu"``, ``"cuda"``/``"gpu"`` (first GPU),
            ``"cuda:k"``/``"gpu:k"`` (GPU k), or a torch ``device`` of those kinds.
    Raises:
        ValueError: a device JAX cannot see (naming the devices it does see) or an unknown device string.
    """
    jax, _ = require_mjx()
    if device is None:
        return jax.devices()[0]
    if isinstance(device, jax.Device):
        return device
    text = str(device).lower()
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "gpu"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:k', 'gpu' or a jax.Device, got {device!r}")
    if index and not index.isdigit():
        raise ValueError(f"device index must be an int, got {device!r}")
    platform = "cpu" if kind == "cpu" else "gpu"
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        devices = []
    k = int(index) if index else 0
    if k >= len(devices):
        seen = ", ".join(str(d) for d in jax.devices())
        hint = (
            " (this JAX has no CUDA backend: pip install -U 'jax[cuda13]')"
            if platform == "gpu" and not devices
            else ""
        )
        raise ValueError(f"device {device!r} is not visible to JAX, which sees: {seen}{hint}")
    return devices[k]
