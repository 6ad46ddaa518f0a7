"""A fused CfC time loop with a hand-written backward pass (backpropagation through time).

Autograd records every operation of every step: a 32-step CfC sequence becomes ~300 graph nodes, and each
step's weight gradient is its own small matrix product. This function runs the same forward loop, keeps the
few activations the backward needs, and in backward walks the steps once, accumulating the weight gradients
of all steps in one matrix product each at the end. The gradients equal autograd's up to rounding (tested).

It covers the common configuration: one unwired block, a one-layer backbone with (LeCun) tanh, modes
``default`` and ``no_gate``, no active dropout, dt without gradient. ``CfCCell`` falls back to the autograd
loop for everything else, with identical forward results.

Shapes: T steps, B batch, U backbone units, H neurons.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


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
        ff = pre.new_empty(steps, batch, 2 * hidden)  # tanh of the two candidate heads
        gate = pre.new_empty(steps, batch, hidden)
        # Per-step views made once (indexing inside the loop costs more than the small operations).
        per_step = zip(
            pre.unbind(0),
            dt.unbind(0),
            [None] * steps if keep is None else keep.unbind(0),
            states.unbind(0),
            act.unbind(0),
            ff.unbind(0),
            gate.unbind(0),
            strict=True,
        )
        h = h0
        for pre_t, dt_t, keep_t, state_t, act_t, ff_t, gate_t in per_step:
            if keep_t is not None:
                h = h * keep_t
            torch.tanh(torch.addmm(pre_t, h, w_h_t), out=act_t)
            heads = torch.addmm(b_heads, act_t, w_heads_t)
            torch.tanh(heads[:, : 2 * hidden], out=ff_t)
            torch.sigmoid(
                torch.addcmul(heads[:, 3 * hidden :], heads[:, 2 * hidden : 3 * hidden], dt_t), out=gate_t
            )
            f1, f2 = ff_t[:, :hidden], ff_t[:, hidden:]
            if no_gate:
                torch.addcmul(f1, gate_t, f2, out=state_t)
            else:
                torch.lerp(f1, f2, gate_t, out=state_t)
            h = state_t
        ctx.save_for_backward(h0, states, act, ff, gate, dt, keep, w_h, w_heads)
        ctx.no_gate = no_gate
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
            [None] * steps if keep is None else keep.unbind(0),
            d_heads.unbind(0),
            d_pre.unbind(0),
            strict=True,
        )
        grad_h = torch.zeros_like(h0)
        for grad_t, coeff_t, d_act_t, keep_t, d_heads_t, d_pre_t in reversed(list(per_step)):
            grad_h = grad_h + grad_t
            torch.mul(grad_h.unsqueeze(1), coeff_t, out=d_heads_t)
            torch.mul(torch.mm(d_heads_t.view(batch, 4 * hidden), w_heads), d_act_t, out=d_pre_t)
            grad_h = torch.mm(d_pre_t, w_h)
            if keep_t is not None:
                grad_h = grad_h * keep_t
        # The state each step started from (after its reset), for the recurrent weight's gradient.
        h_prev = torch.cat([h0.unsqueeze(0), states[:-1]])
        if keep is not None:
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
