"""Compiled semi-implicit LTC recurrence (forward and backward) for CPU tensors.

The LTC loop is the costliest part of this library: per substep, a sigmoid over every synapse of every
sample, and twice that work in backward. Written with torch ops it makes ~20 passes over a (B, H, H) tensor
per substep, and CPU torch fuses none of them. ``csrc/ltc_kernel.c`` does one pass in each direction
(backward recomputes the activations from the saved states instead of storing them) and visits only the
synapses that exist, so a sparse wiring costs in proportion to its synapse count.

The C file is compiled on first use with the system C compiler (``$CC``, else ``cc``) into a per-user cache
(``$LNN_CONTROL_CACHE``, else ``~/.cache/lnn_control``) and loaded with ctypes, with no torch headers, so the
build takes about a second. Where no compiler is found, or ``LNN_CONTROL_NATIVE_LTC=0`` is set, or under
``disabled()``, ``LTCCell`` runs its torch loop, which computes the same function (tests hold the two to
float32 rounding). The torch loop also serves every case the kernel does not: other solvers, non-CPU tensors,
a dt that requires grad, tracing and export.

A batch is split into ``torch.get_num_threads()`` slices run on Python threads: ctypes releases the GIL for
the call, so slices run in parallel.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["LAYOUTS", "Synapses", "available", "disabled", "layout", "ltc_recurrence", "usable"]

# The kernel's two loop layouts (see csrc/ltc_kernel_body.h): "rows" runs one sample at a time over contiguous
# rows of a complete synapse set; "lanes" runs 8 samples per vector over an edge list, so that its cost is in
# proportion to the synapse count (a sparse wiring must take it, or it costs as much as a dense one).
LAYOUTS = ("rows", "lanes")

_SOURCE_DIR = Path(__file__).with_name("csrc")
_SOURCES = ("ltc_kernel.c", "ltc_kernel_body.h", "kernel_common.h")
# -fno-trapping-math lets the compiler turn the exp argument clamps into vector selects (NaN still propagates)
_FLAGS = (
    "-O3",
    "-std=c99",
    "-fPIC",
    "-shared",
    "-fopenmp-simd",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-ffp-contract=fast",
)
_library: ctypes.CDLL | None = None
_load_failed = False
_enabled = os.environ.get("LNN_CONTROL_NATIVE_LTC", "1") != "0"
_pool: tuple[int, int, ThreadPoolExecutor] | None = (
    None  # (process id, workers, pool): a forked child makes its own
)


def _cache_dir() -> Path:
    root = os.environ.get("LNN_CONTROL_CACHE") or Path.home() / ".cache" / "lnn_control"
    return Path(root)


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")


def _build(compiler: str, sources: tuple[str, ...] = _SOURCES) -> Path:
    """Compile a kernel (``sources[0]`` includes the others) into the cache, named after its sources' hash
    (atomically: build to a temporary name, then rename). Also used by ``cfc_native``."""
    digest = hashlib.sha256()
    for name in sources:
        digest.update((_SOURCE_DIR / name).read_bytes())
    digest.update(" ".join((compiler, *_FLAGS, platform.machine(), platform.system())).encode())
    stem = Path(sources[0]).stem
    target = _cache_dir() / f"{stem}-{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        command = [compiler, *_FLAGS, "-o", temporary, str(_SOURCE_DIR / sources[0]), "-lm"]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return target


def _declare(library: ctypes.CDLL) -> None:
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    for name in LAYOUTS:
        for suffix in ("f32", "f64"):
            forward = getattr(library, f"ltc_{name}_forward_{suffix}")
            forward.argtypes = [size] * 5 + [pointer] * 22
            forward.restype = ctypes.c_int
            backward = getattr(library, f"ltc_{name}_backward_{suffix}")
            backward.argtypes = [size] * 5 + [pointer] * 33
            backward.restype = ctypes.c_int


def _load() -> ctypes.CDLL | None:
    """The compiled kernel, built on first call; None (with one warning) if it cannot be built."""
    global _library, _load_failed
    if _library is not None or _load_failed:
        return _library
    compiler = _compiler()
    try:
        if compiler is None:
            raise OSError("no C compiler found ($CC, cc, gcc or clang)")
        library = ctypes.CDLL(str(_build(compiler)))
        _declare(library)
    except (OSError, subprocess.SubprocessError, AttributeError) as error:
        detail = getattr(error, "stderr", "") or error
        warnings.warn(f"compiled LTC kernel unavailable, using the torch loop: {detail}", stacklevel=3)
        _load_failed = True
        return None
    _library = library
    return library


def available() -> bool:
    """Whether the compiled kernel is enabled and could be built and loaded on this machine."""
    return _enabled and _load() is not None


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run LTC cells on their torch loop inside the block (for comparisons and debugging)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def usable(*tensors: Tensor) -> bool:
    """Whether the kernel can run on these tensors: enabled, CPU, float32/float64, not traced, compiled or
    exported."""
    if not _enabled or torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    if torch.compiler.is_compiling():  # torch.compile / torch.export record the torch loop
        return False
    dtype = tensors[0].dtype
    if dtype not in (torch.float32, torch.float64):
        return False
    if any(t.device.type != "cpu" or t.dtype != dtype for t in tensors):
        return False
    return _load() is not None


_LANES = 8  # LTC_LANES in csrc/ltc_kernel.c: slices start at multiples of it


def _slices(batch: int) -> list[slice]:
    """Contiguous batch slices, one per torch thread, each starting at a multiple of _LANES samples."""
    groups = -(-batch // _LANES)
    parts = max(1, min(torch.get_num_threads(), groups))
    bounds = [min(batch, groups * i // parts * _LANES) for i in range(parts + 1)]
    return [slice(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


def _run_slices(calls: list) -> None:
    """Run the kernel calls, on threads when there are several; raise if one fails."""
    global _pool
    if len(calls) == 1:
        results = [calls[0]()]
    else:
        if _pool is None or _pool[0] != os.getpid() or _pool[1] < len(calls):
            pool = ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="lnn-ltc")
            _pool = (os.getpid(), len(calls), pool)
        results = list(_pool[2].map(lambda call: call(), calls))
    if any(results):
        raise MemoryError("a compiled kernel could not allocate its work buffer")


class _Recurrence(torch.autograd.Function):
    """out (B, T, H) = the semi-implicit LTC states after each step; see ``ltc_recurrence``."""

    @staticmethod
    def forward(ctx, x, v0, h, keep, recurrent_index, sensory_index, layout_name, *weights):
        library = _load()
        batch, steps, inputs = x.shape
        units, substeps = v0.shape[1], h.shape[-1]
        out = x.new_empty(batch, steps, units)
        needs_grad = any(ctx.needs_input_grad)
        # for the backward: the state before, and the denominator of, every substep (kernel-private layout)
        padded = -(-batch // _LANES) * _LANES
        trace = x.new_empty(padded * steps * substeps * units) if needs_grad else None
        denominators = torch.empty_like(trace) if needs_grad else None
        per_sample = steps * substeps * units
        kernel = getattr(library, f"ltc_{layout_name}_forward_{_SUFFIX[x.dtype]}")
        # weights: cm, leak, conductance, then sigma, -sigma mu, w erev, w recurrent, then the same sensory
        shared = [*recurrent_index, *weights[3:7], *sensory_index, *weights[7:11], *weights[:3]]

        def call(part: slice) -> Callable[[], int]:
            pointers = [*shared, x[part], h[part], _part(keep, part), v0[part], out[part]]
            pointers += [_per_sample(trace, part, per_sample), _per_sample(denominators, part, per_sample)]
            size = part.stop - part.start
            return lambda: kernel(size, steps, substeps, units, inputs, *map(_address, pointers))

        _run_slices([call(part) for part in _slices(batch)])
        if needs_grad:
            ctx.save_for_backward(
                x, h, keep, out, trace, denominators, *recurrent_index, *sensory_index, *weights
            )
            ctx.layout_name = layout_name
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, h, keep, out, trace, denominators, rowptr, pre, s_rowptr, s_pre, *weights = ctx.saved_tensors
        library = _load()
        batch, steps, inputs = x.shape
        units, substeps = out.shape[-1], h.shape[-1]
        per_sample = steps * substeps * units
        grad_out = grad_out.contiguous()
        grad_v0 = x.new_empty(batch, units)
        grad_x = torch.empty_like(x)
        parts = _slices(batch)
        # per slice, summed afterwards: cm, leak, conductance (H each), 4 x S recurrent, 4 x R sensory
        sizes = [units] * 3 + [rowptr[-1].item()] * 4 + [s_rowptr[-1].item()] * 4
        accumulators = x.new_zeros(len(parts), sum(sizes))
        kernel = getattr(library, f"ltc_{ctx.layout_name}_backward_{_SUFFIX[x.dtype]}")
        shared = [rowptr, pre, *weights[3:7], s_rowptr, s_pre, *weights[7:11], weights[0]]

        def call(i: int, part: slice) -> Callable[[], int]:
            grads = accumulators[i].split(sizes)
            pointers = [*shared, x[part], h[part], _part(keep, part), out[part]]
            pointers += [_per_sample(trace, part, per_sample), _per_sample(denominators, part, per_sample)]
            pointers += [grad_out[part], grad_v0[part], grad_x[part], *grads]
            size = part.stop - part.start
            return lambda: kernel(size, steps, substeps, units, inputs, *map(_address, pointers))

        _run_slices([call(i, part) for i, part in enumerate(parts)])
        grad_weights = accumulators.sum(0).split(sizes)
        return (grad_x, grad_v0, None, None, None, None, None, *grad_weights)


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _part(t: Tensor | None, part: slice) -> Tensor | None:
    return None if t is None else t[part]


def _per_sample(buffer: Tensor | None, part: slice, size: int) -> Tensor | None:
    """The slice of a flat per-sample buffer (trace, denominators) from sample ``part.start`` on."""
    return None if buffer is None else buffer[part.start * size :]


def _address(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class Synapses(NamedTuple):
    """One synapse set in CSR order by postsynaptic neuron: the synapses into neuron j are
    ``rowptr[j] .. rowptr[j + 1] - 1`` (rowptr (H + 1,) int64), from presynaptic index ``pre`` (S,) int64,
    with sigma, -sigma * mu, w * erev and w (S,) each (w positive)."""

    rowptr: Tensor
    pre: Tensor
    sigma: Tensor
    neg_sigma_mu: Tensor
    w_erev: Tensor
    w: Tensor


def layout(units: int, inputs: int, recurrent: Synapses, sensory: Synapses) -> str:
    """The kernel layout for these synapse sets: "rows" when both are complete (every neuron reads every
    neuron and every input), else "lanes"."""
    complete = recurrent.pre.numel() == units * units and sensory.pre.numel() == units * inputs
    return "rows" if complete else "lanes"


def ltc_recurrence(
    x: Tensor,
    v0: Tensor,
    neuron: tuple[Tensor, Tensor, Tensor],
    recurrent: Synapses,
    sensory: Synapses,
    h: Tensor,
    keep: Tensor | None,
    layout_name: str | None = None,
) -> Tensor:
    """The semi-implicit LTC states after every step; differentiable in all but h and keep.

    Args:
        x: (B, T, I) the input after the cell's affine input mapping.
        v0: (B, H) initial state.
        neuron: cm (membrane capacitance, positive), leak (gleak * vleak) and conductance (gleak + epsilon),
            each (H,).
        recurrent: the synapses between neurons (presynaptic index: a neuron).
        sensory: the synapses from inputs to neurons (presynaptic index: an input feature).
        h: (B, T, K) substep lengths; 0 skips a substep (each sample its own count).
        keep: (B, T) 1.0 to keep, 0.0 to zero the state before a step, or None.
        layout_name: "rows" (complete synapse sets only) or "lanes"; None chooses with ``layout``.

    Returns:
        (B, T, H) the state after each step.
    """
    units, inputs = v0.shape[1], x.shape[2]
    chosen = layout(units, inputs, recurrent, sensory)
    if layout_name is None:
        layout_name = chosen
    elif layout_name not in LAYOUTS or (layout_name == "rows" and chosen != "rows"):
        raise ValueError(
            f"layout_name must be one of {LAYOUTS} (rows: complete synapse sets only), got {layout_name!r} "
            f"for {recurrent.pre.numel()} of {units * units} recurrent synapses"
        )
    weights = [*neuron, *recurrent[2:], *sensory[2:]]
    x, v0, h, *weights = (t.contiguous() for t in [x, v0, h, *weights])
    keep = None if keep is None else keep.contiguous()
    return _Recurrence.apply(x, v0, h, keep, recurrent[:2], sensory[:2], layout_name, *weights)
