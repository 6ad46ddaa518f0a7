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

import ctypes
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from .native_build import NativeKernel, batch_slices, declare, run_calls

__all__ = ["LAYOUTS", "Synapses", "available", "disabled", "layout", "ltc_recurrence", "usable"]

# The kernel's two loop layouts (see csrc/ltc_kernel_body.h): "rows" runs one sample at a time over contiguous
# rows of a complete synapse set; "lanes" runs LANES samples per vector over an edge list, so that its cost is
# in proportion to the synapse count (a sparse wiring must take it, or it costs as much as a dense one).
LAYOUTS = ("rows", "lanes")
LANES = 16  # LTC_LANES in csrc/ltc_kernel.c: batch slices start at multiples of it, buffers are padded to it

_SOURCES = ("ltc_kernel.c", "ltc_kernel_body.h", "kernel_common.h")


def _declare(library: ctypes.CDLL) -> None:
    signatures = {}
    for name in LAYOUTS:
        for suffix in ("f32", "f64"):
            signatures[f"ltc_{name}_forward_{suffix}"] = (5, 22)
            signatures[f"ltc_{name}_backward_{suffix}"] = (5, 33)
    signatures["ltc_sigmoid_f32"] = (1, 2)  # the float kernels' sigmoid, for tests
    declare(library, signatures)


_KERNEL = NativeKernel("LTC", _SOURCES, "LNN_CONTROL_NATIVE_LTC", _declare)
available = _KERNEL.available
disabled = _KERNEL.disabled
usable = _KERNEL.usable


class _Recurrence(torch.autograd.Function):
    """out (B, T, H) = the semi-implicit LTC states after each step; see ``ltc_recurrence``."""

    @staticmethod
    def forward(ctx, x, v0, h, keep, recurrent_index, sensory_index, layout_name, *weights):
        library = _KERNEL.load()
        batch, steps, inputs = x.shape
        units, substeps = v0.shape[1], h.shape[-1]
        out = x.new_empty(batch, steps, units)
        needs_grad = any(ctx.needs_input_grad)
        # for the backward: the state before, and the denominator of, every substep (kernel-private layout)
        padded = -(-batch // LANES) * LANES
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

        run_calls([call(part) for part in batch_slices(batch, LANES)])
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
        library = _KERNEL.load()
        batch, steps, inputs = x.shape
        units, substeps = out.shape[-1], h.shape[-1]
        per_sample = steps * substeps * units
        grad_out = grad_out.contiguous()
        grad_v0 = x.new_empty(batch, units)
        grad_x = torch.empty_like(x)
        parts = batch_slices(batch, LANES)
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

        run_calls([call(i, part) for i, part in enumerate(parts)])
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
