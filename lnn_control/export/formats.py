"""Writers of the exported artefacts (TorchScript, ONNX, C) from an ``ActorStep`` and its ``ActorMeta``.

Every writer produces its files atomically (temporary file + ``os.replace``) and then a JSON sidecar with
their SHA-256 (see :mod:`lnn_control.export.sidecar`). Tracing happens with batch size 2 and the batch axis
marked dynamic; the exported step runs any batch size.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from lnn_control.extras import require

from .c_codegen import generate_c
from .meta import ActorMeta
from .sidecar import atomic_write_bytes, write_sidecar
from .step import ActorStep

__all__ = ["ONNX_OPSET", "trace_actor", "write_c", "write_onnx", "write_torchscript"]

ONNX_OPSET = 17
INPUT_NAMES = ("obs", "h", "dt")
OUTPUT_NAMES = ("action", "h_out")
_TRACE_BATCH = 2


def _example_inputs(actor: ActorStep, meta: ActorMeta, batch: int = _TRACE_BATCH) -> tuple[Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(batch, actor.obs_dim, generator=generator)
    h = torch.zeros(batch, actor.state_dim)
    dt = torch.full((batch, 1), float(meta.nominal_dt))
    return obs, h, dt


class _ScriptedActor(nn.Module):
    """The traced step plus ``initial_state`` and the dimensions, as a scripted module."""

    __constants__ = ("act_dim", "nominal_dt", "obs_dim", "state_dim")

    def __init__(self, traced: nn.Module, meta: ActorMeta) -> None:
        super().__init__()
        self.step = traced
        self.obs_dim = meta.obs_dim
        self.act_dim = meta.act_dim
        self.state_dim = meta.state_dim
        self.nominal_dt = meta.nominal_dt

    def forward(self, obs: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        """obs (B, obs_dim), h (B, state_dim), dt (B, 1) seconds -> action (B, act_dim), h' (B, state_dim)."""
        return self.step(obs, h, dt)

    @torch.jit.export
    def initial_state(self, batch_size: int) -> Tensor:
        """Zero state (batch_size, state_dim)."""
        return torch.zeros(batch_size, self.state_dim)


def trace_actor(actor: ActorStep, meta: ActorMeta) -> torch.jit.ScriptModule:
    """A TorchScript module of the actor step (traced) with ``initial_state(batch_size)``."""
    example = _example_inputs(actor, meta)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)  # see write_onnx
        # Derive (and cache) the inference weights once: the trace then holds them as constants.
        actor(*example)
        traced = torch.jit.trace(actor, example, check_trace=False)
        return torch.jit.script(_ScriptedActor(traced, meta))


def write_torchscript(actor: ActorStep, meta: ActorMeta, path: str | Path) -> dict[str, Path]:
    """``path`` (TorchScript, ``torch.jit.load``-able, also from C++ libtorch) and its sidecar."""
    path = Path(path)
    module = trace_actor(actor, meta)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        torch.jit.save(module, buffer, _extra_files={"lnn_control_meta.json": json.dumps(meta.to_dict())})
    atomic_write_bytes(path, buffer.getvalue())
    extra = {"load": "torch.jit.load(path); action, h = m(obs, h, dt); h0 = m.initial_state(B)"}
    side = write_sidecar(path, "torchscript", meta.to_dict(), extra=extra)
    return {"torchscript": path, "torchscript_sidecar": side}


def write_onnx(
    actor: ActorStep, meta: ActorMeta, path: str | Path, opset: int = ONNX_OPSET
) -> dict[str, Path]:
    """``path`` (ONNX, standard ops at opset ``opset``, dynamic batch) and its sidecar.

    Raises:
        MissingExtraError: without the ``export`` extra (the ``onnx`` package).
    """
    onnx = require("onnx", extra="export", feature="ONNX export")
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    path = Path(path)
    actor = actor.with_dense_synapses()
    example = _example_inputs(actor, meta)
    buffer = io.BytesIO()
    dynamic = {name: {0: "batch"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        # The LSTM/GRU initial state is an input (h), which is exactly what this warning asks for.
        warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
        # nn.LSTM/GRU check the state's size in Python; the tests run the exports at other batch sizes.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        actor(*example)
        torch.onnx.export(
            actor,
            example,
            buffer,
            dynamo=False,  # the TorchScript-based exporter: no onnxscript dependency, exact standard ops
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buffer.getvalue())
    model.producer_name = "lnn-control"
    for key, value in (("lnn_control_meta", json.dumps(meta.to_dict())),):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    atomic_write_bytes(path, model.SerializeToString())
    extra = {"opset": opset, "inputs": list(INPUT_NAMES), "outputs": list(OUTPUT_NAMES)}
    side = write_sidecar(path, "onnx", meta.to_dict(), extra=extra)
    return {"onnx": path, "onnx_sidecar": side}


def write_c(
    actor: ActorStep, meta: ActorMeta, out_dir: str | Path, prefix: str = "policy"
) -> dict[str, Path]:
    """``<prefix>.c`` + ``<prefix>.h`` (C99, libm only) in ``out_dir`` and the sidecar ``<prefix>.c.json``."""
    out_dir = Path(out_dir)
    source, header = generate_c(actor, meta, prefix)
    header_path = atomic_write_bytes(out_dir / f"{prefix}.h", header.encode())
    source_path = atomic_write_bytes(out_dir / f"{prefix}.c", source.encode())
    extra = {
        "step": f"int {prefix}_step(const float *obs, float *state, float dt, float *action)",
        "reset": f"void {prefix}_reset(float *state)",
        "returns": "0 ok; -1 non-finite observation; -2 negative or non-finite dt (state untouched)",
        "compile": f"cc -std=c99 -O2 -c {prefix}.c (link with -lm)",
    }
    side = write_sidecar(source_path, "c", meta.to_dict(), companions=[header_path], extra=extra)
    return {"c_source": source_path, "c_header": header_path, "c_sidecar": side}
