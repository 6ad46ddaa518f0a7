"""Optional dependencies (pip extras) and the one error a missing one raises.

Features behind an extra import their dependency with :func:`require`, which either returns the module or
raises :class:`MissingExtraError`, an ``ImportError`` whose one-line message names the feature, the missing
module and the command that installs it::

    onnx = require("onnx", extra="export", feature="ONNX export")
    # MissingExtraError: ONNX export needs the Python package 'onnx', which is not installed:
    #                    pip install 'lnn-control[export]'

The ``lnn-control`` command reports it as that one line on stderr with exit code 2. This module imports
nothing heavy (no torch, no numpy): the torch-free ``Controller`` uses it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["DISTRIBUTION", "EXTRAS", "MissingExtraError", "install_hint", "require"]

DISTRIBUTION = "lnn-control"

# The extras of pyproject.toml's [project.optional-dependencies] that features require at run time.
EXTRAS = ("export", "video", "cluster", "gpu", "dev")


class MissingExtraError(ImportError):
    """A feature's optional dependency is missing (or fails to import); the message says what to install.

    Attributes:
        feature: what the user asked for ("ONNX export").
        extra: the pip extra that provides it ("export").
        module: the top-level module that failed to import ("onnx"); also ``name``, as for ``ImportError``.
    """

    def __init__(self, message: str, *, feature: str, extra: str, module: str) -> None:
        super().__init__(message, name=module)
        self.feature = feature
        self.extra = extra
        self.module = module


def install_hint(extra: str) -> str:
    """``pip install 'lnn-control[<extra>]'``."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def _is_missing(err: ImportError, module: str) -> bool:
    """Whether ``err`` says that ``module`` itself (or a package above it) is absent."""
    if not isinstance(err, ModuleNotFoundError) or err.name is None:
        return False
    return module == err.name or module.startswith(err.name + ".")


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import and return ``module``, or raise :class:`MissingExtraError` naming ``extra``.

    Args:
        module: dotted module name to import ("onnx", "imageio.v2", "jax.numpy").
        extra: the pip extra of lnn-control that installs it, one of :data:`EXTRAS`.
        feature: what needs it, as the user would say it ("ONNX export", "MP4 video").
    Raises:
        MissingExtraError: the module is not installed, or it is installed but fails to import (a broken
            or incompatible install); the original error is chained as ``__cause__``.
        ValueError: ``extra`` is not one of :data:`EXTRAS` (a programming error).
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra must be one of {EXTRAS}, got {extra!r}")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        if _is_missing(err, module):
            message = (
                f"{feature} needs the Python package {top!r}, which is not installed: {install_hint(extra)}"
            )
        else:
            reason = " ".join(str(err).split()) or type(err).__name__
            message = (
                f"{feature} needs the Python package {top!r}, which is installed but fails to import "
                f"({reason}): reinstall it with {install_hint(extra)}"
            )
        raise MissingExtraError(message, feature=feature, extra=extra, module=top) from err
