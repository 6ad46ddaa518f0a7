"""``torch.export`` artefacts of the actor step: an ExportedProgram (``.pt2``) and an AOTInductor package.

Both hold the same step as the other formats, ``step(obs (B, n_obs), h (B, H_total), dt (B, 1) seconds) ->
(action (B, n_act), h' (B, H_total))``, with a dynamic batch axis, and get the same JSON sidecar.

- ``<prefix>.pt2`` (format ``"pt2"``): ``torch.export.save`` of the ExportedProgram; load it in Python with
  ``torch.export.load(path).module()``. The supported successor of TorchScript for Python deployments.
- ``<prefix>.aoti.pt2`` (format ``"aoti"``): the program compiled ahead of time by AOTInductor into a shared
  library inside a package, for C++ controllers (``torch::inductor::AOTIModelPackageLoader``, libtorch, no
  Python) or Python (``torch._inductor.aoti_load_package``). Compiling needs a C++ compiler (``$CXX`` or
  ``g++``) and takes 20-70 s on 2 busy CPU cores; the package runs on the CPU architecture it was compiled on.

Both are traced from :class:`~lnn_control.export.step.ActorStep` itself, so every step semantics (dt
included) lives in that one module.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lnn_control.nn.cfc import CfCCell

from .formats import INPUT_NAMES, OUTPUT_NAMES, _example_inputs
from .meta import ActorMeta
from .sidecar import atomic_write_bytes, write_sidecar
from .step import ActorStep

__all__ = [
    "AOTI_SUFFIX",
    "PT2_SUFFIX",
    "ToolchainError",
    "check_aoti_toolchain",
    "check_torch_export",
    "export_program",
    "write_aoti",
    "write_pt2",
]

PT2_SUFFIX = ".pt2"
AOTI_SUFFIX = ".aoti.pt2"
META_KEY = "lnn_control_meta"


class ToolchainError(RuntimeError):
    """A build tool the export needs (torch.export, AOTInductor, a C++ compiler) is not available."""


def _exportable(actor: ActorStep) -> ActorStep:
    """A copy of the actor that ``torch.export`` can trace and save compactly.

    - CfC cells run their plain step loop: the fused loop writes into preallocated buffers (``out=``), which
      AOTInductor sizes by the example batch; the plain loop computes the same values with ordinary ops.
    - Every parameter and buffer owns its storage (some cell buffers are views of a larger tensor, which
      ``torch.export.save`` stores incompletely and ``torch.export.load`` then warns about).
    """
    clone = copy.deepcopy(actor)
    for module in clone.modules():
        if isinstance(module, CfCCell):
            module.use_fused_loop = False
        for name, param in module._parameters.items():
            if param is not None:
                module._parameters[name] = nn.Parameter(param.detach().clone(), requires_grad=False)
        for name, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[name] = buffer.clone()
    return clone


def check_torch_export() -> None:
    """Raise :class:`ToolchainError` unless this torch has ``torch.export`` with dynamic dimensions."""
    if not hasattr(torch, "export") or not hasattr(torch.export, "Dim"):
        raise ToolchainError(
            f"the pt2 and aoti formats need torch.export (torch >= 2.6), got torch {torch.__version__}"
        )


def export_program(actor: ActorStep, meta: ActorMeta) -> torch.export.ExportedProgram:
    """The actor step as an ExportedProgram with a dynamic batch axis (traced at batch 2)."""
    check_torch_export()
    module = _exportable(actor)
    batch = torch.export.Dim("batch", min=1)
    dynamic = ({0: batch}, {0: batch}, {0: batch})
    # Gradients stay enabled while tracing: the cells then derive their weights inside the graph rather than
    # from their inference cache, which keys on tensor storage that export's fake tensors do not have. The
    # actor's parameters do not require grad, so the program records no autograd.
    with torch.enable_grad(), warnings.catch_warnings():
        # nn.LSTM/GRU re-assign their flat weight list while running; harmless for a frozen copy.
        warnings.filterwarnings("ignore", message=".*_flat_weights.*", category=UserWarning)
        return torch.export.export(module, _example_inputs(actor, meta), dynamic_shapes=dynamic, strict=False)


def _sidecar_extra(kind: str, load: str) -> dict[str, Any]:
    return {
        "load": load,
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES),
        "torch_version": torch.__version__,
        "initial_state": "zeros (B, state_dim)",
        "kind": kind,
    }


def write_pt2(actor: ActorStep, meta: ActorMeta, path: str | Path) -> dict[str, Path]:
    """``path`` (an ExportedProgram saved with ``torch.export.save``) and its sidecar."""
    path = Path(path)
    program = export_program(actor, meta)
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={f"{META_KEY}.json": json.dumps(meta.to_dict())})
    atomic_write_bytes(path, buffer.getvalue())
    load = "m = torch.export.load(path).module(); action, h = m(obs, h, dt)"
    side = write_sidecar(path, "pt2", meta.to_dict(), extra=_sidecar_extra("ExportedProgram", load))
    return {"pt2": path, "pt2_sidecar": side}


def check_aoti_toolchain() -> None:
    """Raise :class:`ToolchainError` unless AOTInductor and its C++ compiler are available."""
    check_torch_export()
    try:
        from torch._inductor import aoti_compile_and_package  # noqa: F401
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError as err:
        raise ToolchainError(
            f"the aoti format needs AOTInductor (torch >= 2.6), got torch {torch.__version__}"
        ) from err
    try:
        get_cpp_compiler()
    except Exception as err:  # inductor raises its own error types for a missing compiler
        raise ToolchainError(
            f"the aoti format compiles C++: no C++ compiler found ({' '.join(str(err).split())[:200]}); "
            "install g++ or set $CXX, or export --format pt2"
        ) from err


def write_aoti(actor: ActorStep, meta: ActorMeta, path: str | Path) -> dict[str, Path]:
    """``path`` (an AOTInductor package compiled for this CPU) and its sidecar."""
    from torch._inductor import aoti_compile_and_package

    check_aoti_toolchain()
    path = Path(path)
    program = export_program(actor, meta)
    configs = {"aot_inductor.metadata": {META_KEY: json.dumps(meta.to_dict())}}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.pt2", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # torch's own compile machinery calls its deprecated torch.jit helpers (not ours to fix).
            warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*LeafSpec.*deprecated", category=FutureWarning)
            aoti_compile_and_package(program, package_path=tmp, inductor_configs=configs)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    load = (
        "C++: torch::inductor::AOTIModelPackageLoader loader(path); auto out = loader.run({obs, h, dt}); "
        "Python: m = torch._inductor.aoti_load_package(path); action, h = m(obs, h, dt)"
    )
    side = write_sidecar(path, "aoti", meta.to_dict(), extra=_sidecar_extra("AOTInductor package", load))
    return {"aoti": path, "aoti_sidecar": side}
