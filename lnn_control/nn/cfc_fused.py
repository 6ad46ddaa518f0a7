"""A fused CfC time loop with a hand-written backward pass (backpropagation through time).

Autograd records every operation of every step: a 32-step CfC sequence becomes ~300 graph nodes, and each
step's weight gradient is its own small matrix product. This function runs the same forward loop, keeps the
few activations the backward needs, and in backward walks the steps once, accumulating the weight gradients
of all steps in one matrix product each at the end. The gradients equal autograd's up to rounding (tested).

It covers the common configuration: one unwired block, a one-layer backbone with (LeCun) tanh, modes
``default`` and ``no_gate``, no active dropout, dt without gradient. ``CfCCell`` falls back to the autograd
loop for everything else, with identical forward results.

The loops are bound by per-operation overhead (a training minibatch is a few sequences), so each step runs
only tensor operations: every per-step view is made before the loop (``unbind`` of preallocated buffers, so
results are written in place with ``out=``), and the reset multiplication runs only at the steps where some
sample resets.

Shapes: T steps, B batch, U backbone units, H neurons.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _reset_steps(keep: Tensor | None) -> frozenset[int]:
    """The steps t where ``keep[t]`` (B, 1) is not all ones, i.e. where some sample resets.

    One host synchronisation on the CPU; on an accelerator, where a sync costs more than the multiplications
    it saves, every step counts as a reset step.
    """
    if keep is None:
        return frozenset()
    if keep.device.type != "cpu":
        return frozenset(range(keep.shape[0]))
    return frozenset(torch.nonzero((keep != 1).flatten(1).any(1)).flatten().tolist())


def _step_keeps(keep: Tensor | None, resets: frozenset[int], steps: int) -> list[Tensor | None]:
    """Per step, ``keep[t]`` where t is in ``resets``, else None: the other steps skip the multiplication by
    ones, which would change nothing."""
    if not resets:
        return [None] * steps
    assert keep is not None
    return [keep_t if t in resets else None for t, keep_t in enumerate(keep.unbind(0))]


class FusedCfCSequence(torch.autograd.Function):
    """states (T, B, H) = loop(pre (T, B, U), h0 (B, H), dt (T, B, 1), keep (T, B, 1) | None,
    w_h (U, H), w_heads (4H, U), b_heads (4H,), no_gate)."""

    @staticmethod
    def forward(
        ctx: Any,
        pre: Tensor,
        h0: Tensor,
        dt: Tensor,
        keep: Tensor | None,
        w_h: Tensor,
        w_heads: Tensor,
        b_heads: Tensor,
        no_gate: bool,
    ) -> Tensor:
        steps, batch, _ = pre.shape
        hidden = h0.shape[1]
        w_h_t, w_heads_t = w_h.t(), w_heads.t()
        states = pre.new_empty(steps, batch, hidden)
        act = pre.new_empty(pre.shape)  # tanh of the backbone pre-activation (contiguous, time-major)
        heads = pre.new_empty(steps, batch, 4 * hidden)  # [ff1, ff2, t_a, t_b]; ff1, ff2 tanh'ed in place
        gate = pre.new_empty(steps, batch, hidden)
        ff, t_a, t_b = heads.split([2 * hidden, hidden, hidden], dim=2)
        f1, f2 = ff.split(hidden, dim=2)
        # Per-step views made once (indexing inside the loop costs more than the small operations).
        resets = _reset_steps(keep)
        per_step = zip(
            pre.unbind(0),
            dt.unbind(0),
            _step_keeps(keep, resets, steps),
            act.unbind(0),
            heads.unbind(0),
            ff.unbind(0),
            t_a.unbind(0),
            t_b.unbind(0),
            f1.unbind(0),
            f2.unbind(0),
            gate.unbind(0),
            states.unbind(0),
            strict=True,
        )
        h = h0
        for pre_t, dt_t, keep_t, act_t, heads_t, ff_t, t_a_t, t_b_t, f1_t, f2_t, gate_t, state_t in per_step:
            if keep_t is not None:
                h = h * keep_t
            torch.tanh(torch.addmm(pre_t, h, w_h_t), out=act_t)
            torch.addmm(b_heads, act_t, w_heads_t, out=heads_t)
            ff_t.tanh_()
            torch.sigmoid(torch.addcmul(t_b_t, t_a_t, dt_t), out=gate_t)
            if no_gate:
                torch.addcmul(f1_t, gate_t, f2_t, out=state_t)
            else:
                torch.lerp(f1_t, f2_t, gate_t, out=state_t)
            h = state_t
        ctx.save_for_backward(h0, states, act, ff, gate, dt, keep, w_h, w_heads)
        ctx.no_gate = no_gate
        ctx.resets = resets
        return states

    @staticmethod
    def backward(ctx: Any, grad_states: Tensor) -> tuple[Tensor | None, ...]:
        h0, states, act, ff, gate, dt, keep, w_h, w_heads = ctx.saved_tensors
        steps, batch, hidden = grad_states.shape
        # Everything but the recurrence through the state is elementwise: compute the local derivatives of
        # all steps at once. coeff[t] maps dL/dh_t to dL/d(heads_t) as (B, 4, H) blocks [ff1, ff2, t_a, t_b].
        f1, f2 = ff[..., :hidden], ff[..., hidden:]
        d_tanh = 1.0 - ff * ff
        d_gate = gate * (1.0 - gate) * (f2 if ctx.no_gate else f2 - f1)  # dh/ds, s = t_a dt + t_b
        coeff = torch.stack(
            [
                d_tanh[..., :hidden] if ctx.no_gate else (1.0 - gate) * d_tanh[..., :hidden],
                gate * d_tanh[..., hidden:],
                d_gate * dt,
                d_gate,
            ],
            dim=2,
        )  # (T, B, 4, H)
        d_act = 1.0 - act * act
        d_heads = grad_states.new_empty(steps, batch, 4, hidden)
        d_pre = act.new_empty(act.shape)
        per_step = zip(
            grad_states.unbind(0),
            coeff.unbind(0),
            d_act.unbind(0),
            _step_keeps(keep, ctx.resets, steps),
            d_heads.unbind(0),
            d_heads.view(steps, batch, 4 * hidden).unbind(0),
            d_pre.unbind(0),
            strict=True,
        )
        grad_h = torch.zeros_like(h0)  # dL/dh of the step being processed, updated in place
        grad_h_rows = grad_h.unsqueeze(1)  # (B, 1, H) view of it, broadcast over the four heads
        for grad_t, coeff_t, d_act_t, keep_t, d_heads_t, d_heads_flat_t, d_pre_t in reversed(list(per_step)):
            grad_h.add_(grad_t)
            torch.mul(grad_h_rows, coeff_t, out=d_heads_t)
            torch.mul(torch.mm(d_heads_flat_t, w_heads), d_act_t, out=d_pre_t)
            torch.mm(d_pre_t, w_h, out=grad_h)
            if keep_t is not None:
                grad_h.mul_(keep_t)
        # The state each step started from (after its reset), for the recurrent weight's gradient.
        h_prev = torch.cat([h0.unsqueeze(0), states[:-1]])
        if ctx.resets:
            h_prev = h_prev * keep
        flat_heads = d_heads.view(-1, 4 * hidden)
        grad_w_heads = flat_heads.t() @ act.reshape(-1, act.shape[-1])
        grad_b_heads = flat_heads.sum(0)
        grad_w_h = d_pre.view(-1, d_pre.shape[-1]).t() @ h_prev.reshape(-1, hidden)
        return d_pre, grad_h, None, None, grad_w_h, grad_w_heads, grad_b_heads, None


def fused_cfc_sequence(
    pre: Tensor,
    h0: Tensor,
    dt: Tensor,
    keep: Tensor | None,
    w_h: Tensor,
    w_heads: Tensor,
    b_heads: Tensor,
    no_gate: bool,
) -> Tensor:
    """See :class:`FusedCfCSequence`; all inputs time-major."""
    return FusedCfCSequence.apply(pre, h0, dt, keep, w_h, w_heads, b_heads, no_gate)
