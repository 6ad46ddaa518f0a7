"""Export of a trained liquid policy's deterministic actor to a robot controller.

- :func:`export_policy` (and :func:`export_torchscript`, :func:`export_onnx`, :func:`export_c`,
  :func:`export_pt2`): write the actor step ``step(obs (B, n_obs), h (B, H_total), dt (B, 1)) -> (action,
  h')`` as TorchScript, ONNX (opset 17, dynamic batch), a C99 ``.c``/``.h`` pair, a ``torch.export``
  ExportedProgram (``.pt2``) and/or an AOTInductor package for C++ (``.aoti.pt2``), each with a JSON sidecar
  (shapes, dt in seconds and the nominal dt, observation layout, action bounds, cell, version, SHA-256).
- :class:`Controller`: torch-free runtime of the ONNX artefact (numpy + onnxruntime) with ``reset`` and
  ``step(obs, dt=None)``.
- :class:`ActorStep`, :func:`build_actor`: the torch module behind every format (see

  :mod:`lnn_control.export.step` for the exact pipeline and the state layout).

Names are imported lazily (PEP 562): ``from lnn_control.export import Controller`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnn_control.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "Controller": "runtime",
    "ArtifactError": "sidecar",
    "load_sidecar": "sidecar",
    "export_policy": "api",
    "export_torchscript": "api",
    "export_onnx": "api",
    "export_c": "api",
    "export_pt2": "api",
    "DEFAULT_FORMATS": "api",
    "check_formats": "api",
    "ToolchainError": "pt2",
    "build_actor": "api",
    "FORMATS": "api",
    "ActorStep": "step",
    "ActorMeta": "meta",
    "generate_c": "c_codegen",
    "ONNX_OPSET": "formats",
}

__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "ONNX_OPSET",
    "ActorMeta",
    "ActorStep",
    "ArtifactError",
    "Controller",
    "ToolchainError",
    "build_actor",
    "check_formats",
    "export_c",
    "export_onnx",
    "export_policy",
    "export_pt2",
    "export_torchscript",
    "generate_c",
    "load_sidecar",
]

if TYPE_CHECKING:
    from .api import (
        DEFAULT_FORMATS,
        FORMATS,
        build_actor,
        check_formats,
        export_c,
        export_onnx,
        export_policy,
        export_pt2,
        export_torchscript,
    )
    from .c_codegen import generate_c
    from .formats import ONNX_OPSET
    from .meta import ActorMeta
    from .pt2 import ToolchainError
    from .runtime import Controller
    from .sidecar import ArtifactError, load_sidecar
    from .step import ActorStep


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
