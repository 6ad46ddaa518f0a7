"""Compiled CfC recurrence (forward and hand-written backward) for CPU tensors.

A CfC step is a few small matrix products and elementwise gates; written with torch ops each step is ~10
dispatches forward and as many backward, which dominate at the batch sizes of recurrent RL (a few sequences
per minibatch), for wired cells (three blocks per step) and for single-step inference. ``csrc/cfc_kernel.c``
runs the whole recurrence in one call each way, 8 samples per vector lane. The backward walks the steps once
and returns the gradients of every step's pre-activations; the weight gradients are then one matrix product
each over all steps, in torch.

Covered: unwired cells with one backbone layer (tanh or LeCun tanh) or none, wired cells (one block per
wiring layer), the three modes, resets, per-sample dt, backbone dropout (a mask drawn before the loop).
``native_build`` builds and caches it (system C compiler on first use, ``$LNN_CONTROL_CACHE``); where no
compiler is found, or ``LNN_CONTROL_NATIVE_CFC=0`` is set, or under ``disabled()``, ``CfCCell`` runs its torch
loop, which computes the same function (tests hold the two to rounding). The torch loop also serves GPU
tensors, a dt that requires grad, tracing and export, and configurations outside the list above.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from .native_build import LANES, NativeKernel, batch_slices, declare, run_calls

__all__ = [
    "BlockSpec",
    "BlockWeights",
    "Prepared",
    "available",
    "cfc_recurrence",
    "disabled",
    "prepare",
    "usable",
]

_SOURCES = ("cfc_kernel.c", "cfc_kernel_body.h", "kernel_common.h")
_MODES = {"default": 0, "no_gate": 1, "pure": 2}


def _declare(library: ctypes.CDLL) -> None:
    signatures = {}
    for suffix in ("f32", "f64"):
        signatures[f"cfc_forward_{suffix}"] = (3, 9)
        signatures[f"cfc_backward_{suffix}"] = (3, 12)
    declare(library, signatures)


_KERNEL = NativeKernel("CfC", _SOURCES, "LNN_CONTROL_NATIVE_CFC", _declare)
available = _KERNEL.available
disabled = _KERNEL.disabled
usable = _KERNEL.usable


class BlockSpec(NamedTuple):
    """One CfC block: ``inputs`` values from the previous block's new state (0 for the first block, whose
    input part arrives precomputed), ``hidden`` neurons, ``mode`` ("default", "no_gate" or "pure")."""

    inputs: int
    hidden: int
    mode: str


class BlockWeights(NamedTuple):
    """A block's weights: ``w`` (P, inputs + hidden) over [input, own state] and ``b`` (P,) (None for the
    first block); with a backbone (P units, tanh) ``heads_w`` (Q, P) and ``heads_b`` (Q,), else None and
    P = Q; Q = 4 * hidden heads [ff1, ff2, t_a, t_b], or hidden in mode "pure", which also has ``a`` and
    ``w_tau`` (hidden,) (w_tau as used: non-negative)."""

    w: Tensor
    b: Tensor | None
    heads_w: Tensor | None
    heads_b: Tensor | None
    a: Tensor | None
    w_tau: Tensor | None


_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_FIELDS = len(BlockWeights._fields)


class Prepared:
    """Blocks laid out for the kernel (``prepare``): dims, a table of 8 weight pointers per block and the
    tensors it points into, reusable while the weights do not change. Copies and pickles rebuild the table
    for the copied weights (ctypes pointer tables cannot be pickled, and must not point into the original)."""

    def __init__(self, specs: tuple[BlockSpec, ...], weights: list[BlockWeights]) -> None:
        if len(specs) != len(weights) or not specs or specs[0].inputs != 0:
            raise ValueError(
                f"expected one weight set per block and a first block without inputs, got {specs}"
            )
        if any(w.heads_w is not None for w in weights[1:]):
            raise ValueError("only the first block can have a backbone")
        self.specs = tuple(specs)
        self.weights = list(weights)
        self.dims = (ctypes.c_int64 * (5 * len(specs)))()
        self.table = (ctypes.c_void_p * (8 * len(specs)))()
        self.keep_alive: list[Tensor] = []  # the tensors the table points into
        self.features: list[tuple[int, int, int]] = []  # per block (offset, P, Q) in the trace's features
        offset = 0
        for i, (spec, w) in enumerate(zip(specs, weights, strict=True)):
            backbone = w.heads_w is not None
            width, heads = w.w.shape[0], spec.hidden * (1 if spec.mode == "pure" else 4)
            if w.w.shape[1] != spec.inputs + spec.hidden or (not backbone and width != heads):
                raise ValueError(f"block {i}: weight of shape {tuple(w.w.shape)} does not fit {spec}")
            self.features.append((offset, width, heads))
            offset += heads + (width if backbone else 0)
            self.dims[5 * i : 5 * i + 5] = [spec.inputs, spec.hidden, width, int(backbone), _MODES[spec.mode]]
            transposed = None if w.heads_w is None else w.heads_w.detach().t()
            pointers = [w.w, w.w.detach().t(), w.b, w.heads_w, transposed, w.heads_b, w.a, w.w_tau]
            for k, t in enumerate(pointers):
                if t is not None:
                    t = t.detach().contiguous()
                    self.keep_alive.append(t)
                    self.table[8 * i + k] = t.data_ptr()
        self.width = offset  # features per step in the trace
        # the kernel's arguments after the step count: blocks, dims and table addresses
        self.shared = (len(specs), ctypes.addressof(self.dims), ctypes.addressof(self.table))

    def __reduce__(self):
        return (Prepared, (self.specs, self.weights))


def prepare(specs: tuple[BlockSpec, ...], weights: list[BlockWeights]) -> Prepared:
    """Check the blocks and lay their weights out for the kernel (see ``Prepared``)."""
    return Prepared(specs, weights)


def _address(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _run_forward(
    prepared: Prepared,
    pre0: Tensor,
    h0: Tensor,
    dt: Tensor,
    keep: Tensor | None,
    mask: Tensor | None,
    trace: Tensor | None,
) -> Tensor:
    """The kernel's forward over batch slices (one per torch thread); writes ``trace`` when given."""
    batch, steps, _ = pre0.shape
    out = pre0.new_empty(batch, steps, h0.shape[1])
    kernel = getattr(_KERNEL.load(), f"cfc_forward_{_SUFFIX[pre0.dtype]}")
    shared = (steps, *prepared.shared)
    per_group = steps * prepared.width * LANES * pre0.element_size()

    def call(part: slice) -> Callable[[], int]:
        tensors = [pre0[part], dt[part], _part(keep, part), _part(mask, part), h0[part], out[part]]
        pointers = [*map(_address, tensors)]
        pointers.append(None if trace is None else trace.data_ptr() + part.start // LANES * per_group)
        size = part.stop - part.start
        return lambda: kernel(size, *shared, *pointers)

    if batch <= LANES or torch.get_num_threads() == 1:  # one slice: no views, no thread pool (inference)
        pointers = (
            pre0.data_ptr(),
            dt.data_ptr(),
            None if keep is None else keep.data_ptr(),
            None if mask is None else mask.data_ptr(),
            h0.data_ptr(),
            out.data_ptr(),
            None if trace is None else trace.data_ptr(),
        )
        if kernel(batch, *shared, *pointers):
            raise MemoryError("the compiled CfC kernel could not allocate its work buffer")
        return out
    run_calls([call(part) for part in batch_slices(batch)])
    return out


class _Recurrence(torch.autograd.Function):
    """out (B, T, H) = the CfC states after each step; see ``cfc_recurrence``."""

    @staticmethod
    def forward(ctx, prepared, pre0, h0, dt, keep, mask, *flat):
        batch, steps, _ = pre0.shape
        groups = -(-batch // LANES)
        trace = pre0.new_empty(groups, steps, prepared.width, LANES)
        out = _run_forward(prepared, pre0, h0, dt, keep, mask, trace)
        ctx.prepared = prepared
        ctx.save_for_backward(h0, dt, keep, mask, out, trace)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        h0, dt, keep, mask, out, trace = ctx.saved_tensors
        prepared: Prepared = ctx.prepared
        batch, steps, units = out.shape
        grad_out = grad_out.contiguous()
        grad_h0 = h0.new_empty(batch, units)
        grads = out.new_empty(batch, steps, prepared.width)  # per block d z, then d heads
        first = prepared.weights[0]
        act = out.new_empty(batch, steps, first.w.shape[0]) if first.heads_w is not None else None
        parts = batch_slices(batch)
        accumulators = h0.new_zeros(len(parts), 2, units)  # per slice: d A, d w_tau
        kernel = getattr(_KERNEL.load(), f"cfc_backward_{_SUFFIX[out.dtype]}")
        shared = (steps, *prepared.shared)
        per_group = steps * prepared.width * LANES * trace.element_size()

        def call(i: int, part: slice) -> Callable[[], int]:
            pointers = [*map(_address, [dt[part], _part(keep, part), _part(mask, part)])]
            pointers += [trace.data_ptr() + part.start // LANES * per_group]
            tensors = [grad_out[part], grad_h0[part], grads[part], _part(act, part)]
            pointers += [
                *map(_address, tensors),
                accumulators[i, 0].data_ptr(),
                accumulators[i, 1].data_ptr(),
            ]
            size = part.stop - part.start
            return lambda: kernel(size, *shared, *pointers)

        run_calls([call(i, part) for i, part in enumerate(parts)])
        grad_a, grad_w_tau = accumulators.sum(0)
        rows = grads.view(
            batch * steps, prepared.width
        )  # column slices of it are strided matrices, no copies
        # the state each step started from (after its reset)
        previous = torch.cat([h0.unsqueeze(1), out[:, :-1]], dim=1)
        if keep is not None:
            previous = previous * keep.unsqueeze(-1)
        previous = previous.view(batch * steps, units)
        states = out.view(batch * steps, units)
        weight_grads: list[Tensor | None] = []
        grad_pre0 = None
        start = 0
        blocks = zip(prepared.features, prepared.specs, prepared.weights, strict=True)
        for i, ((offset, width, heads), spec, w) in enumerate(blocks):
            own = previous[:, start : start + spec.hidden]
            inputs = own if i == 0 else torch.cat([states[:, start - spec.inputs : start], own], dim=1)
            d_z = rows[:, offset : offset + width]
            if i == 0:
                grad_pre0 = d_z.view(batch, steps, width)
            grad_w = d_z.t() @ inputs
            grad_b = None if w.b is None else d_z.sum(0)
            grad_hw = grad_hb = None
            if w.heads_w is not None:
                d_heads = rows[:, offset + width : offset + width + heads]
                grad_hw = d_heads.t() @ act.view(batch * steps, width)
                grad_hb = d_heads.sum(0)
            grad_a_i = grad_tau_i = None
            if w.a is not None:
                grad_a_i = grad_a[start : start + spec.hidden]
                grad_tau_i = grad_w_tau[start : start + spec.hidden]
            weight_grads += [grad_w, grad_b, grad_hw, grad_hb, grad_a_i, grad_tau_i]
            start += spec.hidden
        return (None, grad_pre0, grad_h0, None, None, None, *weight_grads)


def _part(t: Tensor | None, part: slice) -> Tensor | None:
    return None if t is None else t[part]


def cfc_recurrence(
    pre0: Tensor,
    h0: Tensor,
    dt: Tensor,
    keep: Tensor | None,
    mask: Tensor | None,
    prepared: Prepared,
) -> Tensor:
    """The CfC states after every step; differentiable in pre0, h0 and the weights.

    Args:
        pre0: (B, T, P_0) the first block's input part (its input weights times x, plus its bias).
        h0: (B, H) initial state, H = the blocks' hidden sizes summed (blocks in order).
        dt: (B, T) the time since the previous step, per sample (a gate input; no gradient).
        keep: (B, T) 1.0 to keep, 0.0 to zero the state before a step, or None.
        mask: (B, T, P_0) backbone dropout multipliers (0 or 1 / (1 - p)) of the first block, or None.
        prepared: the blocks, from ``prepare``.

    Returns:
        (B, T, H) the state after each step.
    """
    pre0, h0, dt = pre0.contiguous(), h0.contiguous(), dt.contiguous()
    keep = None if keep is None else keep.contiguous()
    mask = None if mask is None else mask.contiguous()
    if torch.is_grad_enabled():
        flat = [t for w in prepared.weights for t in w]
        if any(t is not None and t.requires_grad for t in [pre0, h0, *flat]):
            return _Recurrence.apply(prepared, pre0, h0, dt, keep, mask, *flat)
    return _run_forward(prepared, pre0, h0, dt, keep, mask, None)
