"""Closed-form continuous-time (CfC) cell (Hasani et al., 2022, https://arxiv.org/abs/2106.13898).

The CfC update is a closed-form approximation of a liquid time-constant ODE's solution. For each neuron,
four heads read ``z = backbone([x, h])``:

- ``default``: ``h' = ff1 * (1 - g) + g * ff2`` with ``g = sigmoid(t_a * dt + t_b)``
- ``no_gate``: ``h' = ff1 + g * ff2``
- ``pure``:    ``h' = A - A * exp(-dt * (|w_tau| + |ff1|)) * ff1``  (A = 1, w_tau = 0 at init, as the paper)

Note plainly what ``dt`` is here: a learned gate input, not an integration interval. The closed form does not
integrate anything, so dt -> 0 does *not* leave the state unchanged and halving dt twice is not the same as
one full step; the cell learns how elapsed time should blend its two candidate states. For a true ODE
integrator (dt -> 0 invariance, step-splitting consistency) use ``LTCCell``.

With a wiring, the cell runs one backbone-free CfC block per wiring layer (NCP: inter, command, motor); each
block sees the previous layer's new state and its own previous state through masked weights, so only
the wiring's synapses exist. The state is the concatenation of the layers' states in layer order.

On CPU the time loop runs a compiled kernel (``cfc_native``: forward and hand-written backward in one call
each, wired or not, all modes, dropout included) where the configuration allows (at most one backbone layer,
tanh or LeCun tanh); the torch loops below compute the same function and run everything else: GPU tensors,
a dt that requires grad, tracing and export, and machines without a C compiler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from lnn_control.checks import positive_int

from . import cfc_native
from .cell import LiquidCell
from .cfc_fused import fused_cfc_sequence
from .inputs import join_steps, split_steps
from .weight_cache import cached_when_inference
from .wiring import Wiring

__all__ = ["ACTIVATIONS", "CfCCell"]

CFC_MODES = ("default", "no_gate", "pure")


class LeCunTanh(nn.Module):
    """LeCun's scaled tanh, ``1.7159 * tanh(0.666 * x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return 1.7159 * torch.tanh(0.666 * x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "lecun_tanh": LeCunTanh,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}


class _LoopPlan(NamedTuple):
    """A CfC block's weights laid out for its time loop (see ``_CfCBlock.loop_plan``)."""

    w_h_t: Tensor  # (hidden, out): recurrent part of the first layer, transposed
    hidden_layers: list[tuple[Tensor, Tensor]]  # further backbone layers: (weight.T, bias)
    heads_t: Tensor | None  # (backbone_units, n_heads * hidden), None without a backbone
    heads_b: Tensor | None
    activation: Callable[[Tensor], Tensor] | None  # None without a backbone
    dropout: float


class _CfCBlock(nn.Module):
    """One CfC update of ``hidden`` neurons from ``in_features`` inputs and their own state.

    Weights over the concatenation ``[x, h]``; with masks (wired mode) entries outside the synapse graph are
    multiplied by zero in every use, so they have no effect and receive zero gradient.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        mode: str,
        backbone_units: int,
        backbone_layers: int,
        backbone_activation: str,
        backbone_dropout: float,
        input_mask: np.ndarray | None = None,
        recurrent_mask: np.ndarray | None = None,
        mask_time_gates: bool = True,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.hidden = hidden
        self.mode = mode
        self.n_heads = 1 if mode == "pure" else 4
        concat = in_features + hidden
        layers: list[nn.Linear] = []
        width = concat
        for _ in range(backbone_layers):
            layers.append(nn.Linear(width, backbone_units))
            width = backbone_units
        self.backbone = nn.ModuleList(layers)
        self.activation = ACTIVATIONS[backbone_activation]()
        self.dropout = nn.Dropout(backbone_dropout) if backbone_dropout > 0 else nn.Identity()
        self.heads = nn.Linear(width, self.n_heads * hidden)
        if mode == "pure":
            self.w_tau = nn.Parameter(torch.zeros(hidden))
            self.A = nn.Parameter(torch.ones(hidden))
        for layer in [*self.backbone, self.heads]:
            nn.init.xavier_uniform_(layer.weight)
        if input_mask is not None or recurrent_mask is not None:
            if backbone_layers:
                raise ValueError("a wired CfC block has no backbone (backbone_layers must be 0)")
            in_mask = np.ones((in_features, hidden)) if input_mask is None else np.abs(input_mask)
            rec_mask = np.ones((hidden, hidden)) if recurrent_mask is None else np.abs(recurrent_mask)
            synapses = torch.as_tensor(np.concatenate([in_mask, rec_mask], axis=0).T, dtype=torch.float32)
            head_masks = [synapses] * self.n_heads
            if self.n_heads == 4 and not mask_time_gates:
                head_masks = [synapses, synapses, torch.ones_like(synapses), torch.ones_like(synapses)]
            self.register_buffer("mask", torch.cat(head_masks, dim=0))  # (n_heads * hidden, concat)
        else:
            self.mask = None

    def first_weight(self) -> Tensor:
        """(out, in + hidden) weight of the first linear layer, masked."""
        if len(self.backbone):
            return self.backbone[0].weight
        return self.heads.weight if self.mask is None else self.heads.weight * self.mask

    def first_bias(self) -> Tensor:
        return self.backbone[0].bias if len(self.backbone) else self.heads.bias

    def fused_weights(self) -> list[Tensor]:
        """The block's weights prepared for the time loop, computed once per sequence.

        Returns ``[w_x, b, w_h, (w_k, b_k) per further backbone layer, w_heads, b_heads]`` where the first
        layer is split into its input part ``w_x`` (out, in) and recurrent part ``w_h`` (out, hidden). For the
        LeCun activation ``1.7159 tanh(0.666 z)`` the two constants are folded into the weights around each
        activation, so the loop applies a bare ``tanh`` (the same function, fewer operations per step).
        """
        w = self.first_weight()
        b = self.first_bias()
        if not len(self.backbone):
            return [w[:, : self.in_features], b, w[:, self.in_features :]]
        inner, outer = (0.666, 1.7159) if isinstance(self.activation, LeCunTanh) else (1.0, 1.0)
        fused = [w[:, : self.in_features] * inner, b * inner, w[:, self.in_features :] * inner]
        for layer in self.backbone[1:]:
            fused += [layer.weight * (inner * outer), layer.bias * inner]
        return [*fused, self.heads.weight * outer, self.heads.bias]

    def loop_plan(self, weights: list[Tensor]) -> _LoopPlan:
        """Everything the time loop needs, resolved once per sequence (transposed weight views, the
        activation as a plain function, the dropout rate), so that a step is only tensor operations."""
        if isinstance(self.activation, LeCunTanh):
            activation: Callable[[Tensor], Tensor] = torch.tanh  # constants folded by fused_weights()
        else:
            activation = self.activation.forward
        hidden_layers = [(weights[2 * k + 1].t(), weights[2 * k + 2]) for k in range(1, len(self.backbone))]
        has_backbone = len(self.backbone) > 0
        return _LoopPlan(
            w_h_t=weights[2].t(),
            hidden_layers=hidden_layers,
            heads_t=weights[-2].t() if has_backbone else None,
            heads_b=weights[-1] if has_backbone else None,
            activation=activation if has_backbone else None,
            dropout=self.dropout.p if isinstance(self.dropout, nn.Dropout) and self.training else 0.0,
        )

    def step(
        self, pre_x: Tensor, h: Tensor, dt: Tensor, plan: _LoopPlan, masks: list[Tensor] | None = None
    ) -> Tensor:
        """One update: pre_x (B, out) = x @ w_x.T + b, h (B, hidden), dt (B, 1) -> h' (B, hidden); masks:
        the dropout multipliers (B, backbone_units) of each backbone layer at this step (dropout_masks)."""
        z = torch.addmm(pre_x, h, plan.w_h_t)
        if plan.activation is not None:
            z = plan.activation(z)
            if masks is not None:
                z = z * masks[0]
            for k, (w_t, b) in enumerate(plan.hidden_layers, start=1):
                z = plan.activation(torch.addmm(b, z, w_t))
                if masks is not None:
                    z = z * masks[k]
            z = torch.addmm(plan.heads_b, z, plan.heads_t)
        return self.gate(z, dt)

    def dropout_masks(self, x: Tensor, plan: _LoopPlan) -> Tensor | None:
        """Dropout multipliers for all steps at once, (layers, B, T, backbone_units), 0 or 1 / (1 - p);
        None when dropout is off (inference, or p = 0). One draw before the loop, so that the torch loop and
        the compiled kernel can use the same masks."""
        if not plan.dropout or plan.activation is None:
            return None
        shape = (len(self.backbone), x.shape[0], x.shape[1], self.backbone[0].out_features)
        keep = 1.0 - plan.dropout
        return x.new_empty(shape).bernoulli_(keep).div_(keep)

    def gate(self, heads: Tensor, dt: Tensor) -> Tensor:
        """heads (B, n_heads * hidden), dt (B, 1) -> new state (B, hidden)."""
        if self.mode == "pure":
            # |w_tau| with the subgradient +1 at 0: the paper initialises w_tau = 0, where abs()'s zero
            # gradient would keep it at 0 for ever.
            w_tau = torch.where(self.w_tau == 0, self.w_tau, self.w_tau.abs())
            return self.A - self.A * torch.exp(-dt * (w_tau + heads.abs())) * heads
        hidden = self.hidden
        # split (not slicing) so that backward concatenates instead of zero-filling full-size gradients
        ff, t_a, t_b = heads.split([2 * hidden, hidden, hidden], dim=1)
        ff1, ff2 = torch.tanh(ff).split(hidden, dim=1)
        g = torch.sigmoid(torch.addcmul(t_b, t_a, dt))
        if self.mode == "no_gate":
            return torch.addcmul(ff1, g, ff2)
        return torch.lerp(ff1, ff2, g)


class CfCCell(LiquidCell):
    """A CfC cell: ``cell(x (B, in), h (B, H), dt (B, 1) | float) -> (y (B, out), h' (B, H))``.

    Args:
        input_size: input features.
        units: neurons H (ignored in favour of ``wiring.units`` when a wiring is given; they must agree).
        wiring: optional ``Wiring``; then the output is the motor neurons (``wiring.output_dim``).
        mode: ``"default"``, ``"no_gate"`` or ``"pure"``.
        backbone_units, backbone_layers, backbone_activation, backbone_dropout: the MLP over ``[x, h]``
            (unwired only; dropout follows every backbone layer in training mode).
        freeze_recurrent: reservoir mode, every weight of the cell stays at its random init.
        mask_time_gates: wired mode only; False leaves the time-gate heads dense as ncps does (used by
            ``from_ncps`` for exact conversion). By default every head only sees the wiring's synapses.
    """

    def __init__(
        self,
        input_size: int,
        units: int | Wiring,
        *,
        wiring: Wiring | None = None,
        mode: str = "default",
        backbone_units: int = 128,
        backbone_layers: int = 1,
        backbone_activation: str = "lecun_tanh",
        backbone_dropout: float = 0.0,
        freeze_recurrent: bool = False,
        mask_time_gates: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(units, Wiring):
            units, wiring = units.units, units
        input_size = positive_int("input_size", input_size)
        units = positive_int("units", units)
        if mode not in CFC_MODES:
            raise ValueError(f"mode must be one of {CFC_MODES}, got {mode!r}")
        if backbone_activation not in ACTIVATIONS:
            raise ValueError(
                f"backbone_activation must be one of {sorted(ACTIVATIONS)}, got {backbone_activation!r}"
            )
        if not 0.0 <= backbone_dropout < 1.0:
            raise ValueError(f"backbone_dropout must be in [0, 1), got {backbone_dropout}")
        if backbone_layers < 0 or (backbone_layers > 0 and backbone_units < 1):
            raise ValueError(
                f"backbone_layers must be >= 0 and backbone_units >= 1, "
                f"got {backbone_layers} and {backbone_units}"
            )
        self.input_size = int(input_size)
        self.mode = mode
        self.freeze_recurrent = bool(freeze_recurrent)
        # Run the compiled kernel (cfc_native) or train with the hand-written BPTT of cfc_fused where the
        # configuration allows (set False to force the autograd loop, e.g. to compare the two).
        self.use_fused_loop = True
        self.config: dict[str, Any] = {
            "mode": mode,
            "backbone_units": backbone_units,
            "backbone_layers": backbone_layers,
            "backbone_activation": backbone_activation,
            "backbone_dropout": backbone_dropout,
            "mask_time_gates": mask_time_gates,
        }
        if wiring is None:
            self.wiring: Wiring | None = None
            self.state_size = int(units)
            self.output_size = int(units)
            self.blocks = nn.ModuleList(
                [
                    _CfCBlock(
                        input_size,
                        units,
                        mode,
                        backbone_units,
                        backbone_layers,
                        backbone_activation,
                        backbone_dropout,
                    )
                ]
            )
            self.register_buffer("motor_index", torch.arange(units), persistent=False)
        else:
            if units != wiring.units:
                raise ValueError(f"units ({units}) must equal wiring.units ({wiring.units})")
            self._build_wired(wiring.copy().build(input_size) if not wiring.is_built() else wiring)
        if self.freeze_recurrent:
            for p in self.parameters():
                p.requires_grad_(False)

    def _build_wired(self, wiring: Wiring) -> None:
        if wiring.input_dim != self.input_size:
            raise ValueError(
                f"wiring is built for input_dim={wiring.input_dim}, but input_size={self.input_size}"
            )
        self.wiring = wiring
        self.__dict__.pop("_kernel_covers", None)  # new blocks: _native_applies looks again
        self.state_size = wiring.units
        self.output_size = wiring.output_dim
        blocks = []
        order: list[int] = []
        previous: list[int] | None = None
        for layer in wiring.layers:
            if previous is None:
                input_mask = wiring.sensory_adjacency[:, layer]
                in_features = self.input_size
            else:
                input_mask = wiring.adjacency[np.ix_(previous, layer)]
                in_features = len(previous)
            blocks.append(
                _CfCBlock(
                    in_features,
                    len(layer),
                    self.mode,
                    0,
                    0,
                    self.config["backbone_activation"],
                    0.0,
                    input_mask=input_mask,
                    recurrent_mask=wiring.adjacency[np.ix_(layer, layer)],
                    mask_time_gates=self.config["mask_time_gates"],
                )
            )
            order.extend(layer)
            previous = layer
        _check_layered(wiring)
        self.blocks = nn.ModuleList(blocks)
        position = {neuron: i for i, neuron in enumerate(order)}
        motor = torch.tensor([position[n] for n in range(wiring.output_dim)])
        self.register_buffer("motor_index", motor, persistent=False)
        self.layer_sizes = [len(layer) for layer in wiring.layers]

    # ------------------------------------------------------------------------------------------------ api
    def forward_sequence(
        self, x: Tensor, h: Tensor, dt: Tensor, keep: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """x (B, T, in), h (B, H), dt (B, T), keep (B, T) (0: reset before step) -> (y (B, T, out), h_T)."""
        native = self._native_applies(x, h, dt, keep)
        weights, plans, prepared = cached_when_inference(
            self, lambda: self._loop_weights(list(self.blocks), native), variant=native
        )
        masks = self.blocks[0].dropout_masks(x, plans[0]) if plans[0].dropout else None
        if prepared is not None:
            pre = torch.nn.functional.linear(x, weights[0][0], weights[0][1])  # (B, T, P)
            states = cfc_native.cfc_recurrence(
                pre, h, dt, keep, None if masks is None else masks[0], prepared
            )
            y = states if self.wiring is None else states.index_select(-1, self.motor_index)
            return y, states[:, -1]
        if masks is None and self._fusable(plans[0], dt, keep):
            pre = torch.nn.functional.linear(x, weights[0][0], weights[0][1]).transpose(0, 1)  # (T, B, U)
            states = fused_cfc_sequence(
                pre,
                h,
                dt.t().unsqueeze(-1),
                None if keep is None else keep.t().unsqueeze(-1),
                weights[0][2],
                weights[0][-2],
                weights[0][-1],
                self.mode == "no_gate",
            ).transpose(0, 1)
            return states, states[:, -1]
        blocks = list(self.blocks)
        # Per-step views (see split_steps: never index [:, t] in a differentiable loop).
        dts = split_steps(dt.unsqueeze(-1), 1)  # T x (B, 1)
        keeps = [None] * x.shape[1] if keep is None else split_steps(keep.unsqueeze(-1), 1)
        step_masks = [None] * x.shape[1] if masks is None else [list(m) for m in split_steps(masks, 2)]
        # The first block's input part for all steps at once, then per step: T x (B, out).
        pre_x0 = split_steps(torch.nn.functional.linear(x, weights[0][0], weights[0][1]), 1)
        outputs = []
        if len(blocks) == 1:
            step, plan = blocks[0].step, plans[0]
            for pre, dt_t, keep_t, masks_t in zip(pre_x0, dts, keeps, step_masks, strict=True):
                if keep_t is not None:
                    h = h * keep_t
                h = step(pre, h, dt_t, plan, masks_t)
                outputs.append(h)
        else:
            parts = list(h.split(self.layer_sizes, dim=-1))
            inputs_t = [(w[0].t(), w[1]) for w in weights]  # layer l > 0 reads layer l - 1's new state
            for pre_t, dt_t, keep_t in zip(pre_x0, dts, keeps, strict=True):
                if keep_t is not None:
                    parts = [p * keep_t for p in parts]
                for i, block in enumerate(blocks):
                    pre = pre_t if i == 0 else torch.addmm(inputs_t[i][1], parts[i - 1], inputs_t[i][0])
                    parts[i] = block.step(pre, parts[i], dt_t, plans[i])
                outputs.append(torch.cat(parts, dim=-1))
        states = join_steps(outputs, 1)
        y = states if self.wiring is None else states.index_select(-1, self.motor_index)
        return y, states[:, -1]

    def _loop_weights(
        self, blocks: list[_CfCBlock], native: bool = False
    ) -> tuple[list[list[Tensor]], list[_LoopPlan], cfc_native.Prepared | None]:
        """The blocks' loop weights and plans, and (``native``) the compiled kernel's view of them."""
        weights = [block.fused_weights() for block in blocks]
        plans = [block.loop_plan(w) for block, w in zip(blocks, weights, strict=True)]
        return weights, plans, self._native_blocks(blocks, weights) if native else None

    def _native_blocks(self, blocks: list[_CfCBlock], weights: list[list[Tensor]]) -> cfc_native.Prepared:
        """The blocks as the compiled kernel takes them (see ``cfc_native.BlockWeights``)."""
        specs, block_weights = [], []
        for i, (block, w) in enumerate(zip(blocks, weights, strict=True)):
            inputs = 0 if i == 0 else block.in_features
            first = w[2] if i == 0 else torch.cat([w[0], w[2]], dim=1)  # (P, inputs + hidden)
            heads = (w[-2], w[-1]) if len(block.backbone) else (None, None)
            a = w_tau = None
            if block.mode == "pure":
                a, w_tau = block.A, torch.where(block.w_tau == 0, block.w_tau, block.w_tau.abs())
            specs.append(cfc_native.BlockSpec(inputs, block.hidden, block.mode))
            block_weights.append(cfc_native.BlockWeights(first, None if i == 0 else w[1], *heads, a, w_tau))
        return cfc_native.prepare(tuple(specs), block_weights)

    def _native_applies(self, x: Tensor, h: Tensor, dt: Tensor, keep: Tensor | None) -> bool:
        """Whether this call runs the compiled kernel: a configuration it covers (at most one backbone layer,
        with tanh or LeCun tanh) and tensors it takes (see ``cfc_native``)."""
        covers = self.__dict__.get("_kernel_covers")  # the configuration part, fixed once built
        if covers is None:
            block = self.blocks[0]
            covers = len(block.backbone) <= 1 and (
                not len(block.backbone) or isinstance(block.activation, (LeCunTanh, nn.Tanh))
            )
            self._kernel_covers = covers
        return (
            self.use_fused_loop
            and covers
            and not dt.requires_grad
            and (keep is None or not keep.requires_grad)
            and cfc_native.usable(x, h, dt)
        )

    def _fusable(self, plan: _LoopPlan, dt: Tensor, keep: Tensor | None) -> bool:
        """Whether the training loop can use the fused backward (see ``cfc_fused``); same forward result."""
        block = self.blocks[0]
        return (
            self.use_fused_loop
            and torch.is_grad_enabled()
            and self.wiring is None
            and self.mode != "pure"
            and len(block.backbone) == 1
            and isinstance(block.activation, (LeCunTanh, nn.Tanh))
            and plan.dropout == 0.0
            and not dt.requires_grad
            and (keep is None or not keep.requires_grad)
        )

    # ---------------------------------------------------------------------------------------- checkpoints
    def get_extra_state(self) -> dict[str, Any]:
        return {"wiring": None if self.wiring is None else self.wiring.get_config()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore the checkpoint's wiring; the blocks' masks and weights then load from the state dict."""
        config = state.get("wiring")
        if (config is None) != (self.wiring is None):
            raise ValueError(
                f"checkpoint wiring {'absent' if config is None else config['class']} does not match the "
                f"model's {'absent' if self.wiring is None else type(self.wiring).__name__}"
            )
        if config is not None and config != self.wiring.get_config():
            reference = next(self.blocks.parameters())
            self._build_wired(Wiring.from_config(config))
            self.to(reference.device, reference.dtype)
            if self.freeze_recurrent:
                for p in self.parameters():
                    p.requires_grad_(False)

    def extra_repr(self) -> str:
        wiring = "" if self.wiring is None else f", wiring={self.wiring!r}"
        return f"{self.input_size}, {self.state_size}, mode={self.mode!r}{wiring}"


def _check_layered(wiring: Wiring) -> None:
    """A wired CfC can only represent synapses within a layer or into the next layer."""
    layer_of = np.empty(wiring.units, dtype=np.int64)
    for i, layer in enumerate(wiring.layers):
        layer_of[layer] = i
    src, dest = np.nonzero(wiring.adjacency)
    step = layer_of[dest] - layer_of[src]
    bad = (step != 0) & (step != 1)
    if bad.any():
        raise ValueError(
            f"a wired CfC supports synapses within a layer or to the next layer only; "
            f"{int(bad.sum())} synapses skip or go back (e.g. {int(src[bad][0])} -> {int(dest[bad][0])})"
        )
    if wiring.sensory_adjacency is not None and wiring.num_layers > 1:
        outside = np.nonzero(wiring.sensory_adjacency)[1]
        if (layer_of[outside] != 0).any():
            raise ValueError("a wired CfC needs every sensory synapse to end in the first layer")
