"""Export of a trained liquid policy's deterministic actor to a robot controller.

- :func:`export_policy` (and :func:`export_torchscript`, :func:`export_onnx`, :func:`export_c`): write the
  actor step ``step(obs (B, n_obs), h (B, H_total), dt (B, 1)) -> (action, h')`` as TorchScript, ONNX
  (opset 17, dynamic batch) and/or a C99 ``.c``/``.h`` pair, each with a JSON sidecar (shapes, dt in
  seconds and the nominal dt, observation layout, action bounds, cell, version, SHA-256 of the artefact).
- :class:`Controller`: torch-free runtime of the ONNX artefact (numpy + onnxruntime) with ``reset`` and
  ``step(obs, dt=None)``.
- :class:`ActorStep`, :func:`build_actor`: the torch module behind every format (see
  :mod:`lnn_control.export.actor` for the exact pipeline and the state layout).

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
    "build_actor": "api",
    "FORMATS": "api",
    "ActorStep": "actor",
    "ActorMeta": "actor",
    "generate_c": "c_codegen",
    "ONNX_OPSET": "formats",
}

__all__ = [
    "FORMATS",
    "ONNX_OPSET",
    "ActorMeta",
    "ActorStep",
    "ArtifactError",
    "Controller",
    "build_actor",
    "export_c",
    "export_onnx",
    "export_policy",
    "export_torchscript",
    "generate_c",
    "load_sidecar",
]

if TYPE_CHECKING:
    from .actor import ActorMeta, ActorStep
    from .api import FORMATS, build_actor, export_c, export_onnx, export_policy, export_torchscript
    from .c_codegen import generate_c
    from .formats import ONNX_OPSET
    from .runtime import Controller
    from .sidecar import ArtifactError, load_sidecar


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
