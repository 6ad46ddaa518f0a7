"""Sequence modules ``CfC`` and ``LTC``, with the calling conventions of ``torch.nn.RNN`` / ``torch.nn.LSTM``.

    y, h_n = model(x, h0=None, dt=None, resets=None)

- x: (B, T, in) with ``batch_first`` (else (T, B, in)); unbatched (T, in) is accepted.
- dt: None (1.0), a number, or a tensor (B, T) / (B, T, 1): the time elapsed since the previous step, per
  sample and per step (time-major (T, B) when not batch_first). Each sample gets its own dt.
- resets: bool (B, T); True at step t zeroes that sample's state before step t (an episode start), so a
  whole fixed-length chunk with several episodes runs without padding.
- h0 / h_n: (num_layers, B, H) (unbatched: (num_layers, H)); zeros when h0 is None.
- y: (B, T, out): the motor neurons for a wiring, ``proj_size`` if set, else ``units``.

Stacked layers (``num_layers``) feed each layer's output sequence to the next one; ``proj_size`` is a linear
readout of the last layer's output.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lnn_control.checks import positive_int

from .cfc import CfCCell
from .inputs import normalize_dt, normalize_h0, normalize_resets, normalize_x
from .ltc import LTCCell
from .wiring import Wiring

__all__ = ["LTC", "CfC", "LiquidRNN"]


class LiquidRNN(nn.Module):
    """Shared sequence logic of ``CfC`` and ``LTC``: input checks, layers, resets, projection."""

    cells: nn.ModuleList

    def __init__(
        self,
        input_size: int,
        units: int,
        num_layers: int,
        proj_size: int | None,
        batch_first: bool,
        freeze_recurrent: bool,
        cell_class: type[CfCCell] | type[LTCCell],
        cell_kwargs: dict[str, Any],
    ) -> None:
        super().__init__()
        num_layers = positive_int("num_layers", num_layers)
        proj_size = positive_int("proj_size", proj_size, allow_none=True)
        self.input_size = input_size
        self.num_layers = num_layers
        self.proj_size = proj_size
        self.batch_first = batch_first
        self.freeze_recurrent = freeze_recurrent
        cells = []
        layer_input = input_size
        for _ in range(num_layers):
            kwargs = dict(cell_kwargs, freeze_recurrent=freeze_recurrent)
            if kwargs["wiring"] is not None:  # each layer gets sensory synapses for its own input size
                kwargs["wiring"] = _unbuilt_copy(kwargs["wiring"], layer_input)
            cell = cell_class(layer_input, units, **kwargs)
            cells.append(cell)
            layer_input = cell.output_size
        self.cells = nn.ModuleList(cells)
        self.state_size: int = cells[0].state_size
        self.cell_output_size: int = cells[-1].output_size
        self.proj = nn.Linear(self.cell_output_size, proj_size) if proj_size is not None else None
        self.output_size: int = proj_size if proj_size is not None else self.cell_output_size

    def forward(
        self,
        x: Tensor,
        h0: Tensor | None = None,
        dt: Tensor | float | None = None,
        resets: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """See the module docstring for shapes. Returns ``(y, h_n)``."""
        x, batched = normalize_x(x, self.input_size, self.batch_first)
        batch, steps = x.shape[0], x.shape[1]
        dt = normalize_dt(dt, batch, steps, batched, self.batch_first, like=x)
        resets = normalize_resets(resets, batch, steps, batched, self.batch_first)
        h = normalize_h0(h0, self.num_layers, batch, self.state_size, batched, like=x)
        keep = None if resets is None else (~resets).to(x.dtype)
        layer_input = x
        finals = []
        for i, cell in enumerate(self.cells):
            layer_input, h_last = cell.forward_sequence(layer_input, h[i], dt, keep)
            finals.append(h_last)
        y = layer_input if self.proj is None else self.proj(layer_input)
        h_n = torch.stack(finals)
        if not batched:
            return y[0], h_n[:, 0]
        if not self.batch_first:
            y = y.transpose(0, 1)
        return y, h_n

    def step(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        """One time step, the path that one-step control, tracing and export share.

        x (B, in), h (num_layers, B, H), dt (B, 1) -> y (B, out), h' (num_layers, B, H). Unlike ``forward`` it
        checks no values (a data-dependent check cannot be traced): the caller passes finite dt >= 0, in the
        units the cells integrate. Zero a sample's state before the call to start its episode.
        """
        layer_input = x.unsqueeze(1)
        finals = []
        for i, cell in enumerate(self.cells):
            layer_input, h_last = cell.forward_sequence(layer_input, h[i], dt, None)
            finals.append(h_last)
        y = layer_input[:, 0]
        if self.proj is not None:
            y = self.proj(y)
        return y, torch.stack(finals)

    def bound_substeps(self, max_dt: float) -> int | None:
        """Fix every LTC layer's substep loop for dt <= ``max_dt`` (see :meth:`LTCCell.bound_substeps`), so
        that ``step`` has no data-dependent loop length.

        Returns the bound, or None if no layer has ``max_step``.
        """
        bounds = [cell.bound_substeps(max_dt) for cell in self.cells if isinstance(cell, LTCCell)]
        return max((b for b in bounds if b is not None), default=None)

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Tensor:
        """Zero state (num_layers, batch_size, H)."""
        reference = next(self.parameters())
        return reference.new_zeros(self.num_layers, batch_size, self.state_size, device=device)

    @property
    def wiring(self) -> Wiring | None:
        """The first layer's wiring (None for an unwired CfC)."""
        return self.cells[0].wiring

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, proj_size={self.proj_size}, batch_first={self.batch_first}"


class CfC(LiquidRNN):
    """Closed-form continuous-time network (see ``lnn_control.nn.cfc`` for the cell and its modes).

    ``dt`` enters the CfC as a learned time gate, not as an integration interval: dt -> 0 does not freeze the
    state. Use ``LTC`` where exact continuous-time behaviour matters.
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
        num_layers: int = 1,
        proj_size: int | None = None,
        batch_first: bool = True,
        freeze_recurrent: bool = False,
        mask_time_gates: bool = True,
    ) -> None:
        if isinstance(units, Wiring):
            units, wiring = units.units, units
        cell_kwargs = {
            "wiring": wiring,
            "mode": mode,
            "backbone_units": backbone_units,
            "backbone_layers": 0 if wiring is not None else backbone_layers,
            "backbone_activation": backbone_activation,
            "backbone_dropout": backbone_dropout,
            "mask_time_gates": mask_time_gates,
        }
        super().__init__(
            input_size, units, num_layers, proj_size, batch_first, freeze_recurrent, CfCCell, cell_kwargs
        )


class LTC(LiquidRNN):
    """Liquid time-constant network: an ODE integrated over each step's dt (see ``lnn_control.nn.ltc``)."""

    def __init__(
        self,
        input_size: int,
        units: int | Wiring,
        *,
        wiring: Wiring | None = None,
        solver: str = "semi_implicit",
        unfolds: int = 6,
        max_step: float | None = None,
        max_substeps: int | None = None,
        num_layers: int = 1,
        proj_size: int | None = None,
        batch_first: bool = True,
        freeze_recurrent: bool = False,
        sparse: bool | None = None,
        init_fan_in: float | None = 8.0,
    ) -> None:
        if isinstance(units, Wiring):
            units, wiring = units.units, units
        cell_kwargs = {
            "wiring": wiring,
            "solver": solver,
            "unfolds": unfolds,
            "max_step": max_step,
            "max_substeps": max_substeps,
            "sparse": sparse,
            "init_fan_in": init_fan_in,
        }
        super().__init__(
            input_size, units, num_layers, proj_size, batch_first, freeze_recurrent, LTCCell, cell_kwargs
        )


def _unbuilt_copy(wiring: Wiring, input_size: int) -> Wiring:
    """The wiring for a layer with ``input_size`` inputs: as given if built for that size, else a copy built
    for it (stacked layers see the previous layer's outputs, so each needs its own sensory synapses)."""
    if wiring.is_built() and wiring.input_dim == input_size:
        return wiring
    config = wiring.get_config()
    config["sensory_adjacency"] = None
    return Wiring.from_config(config).build(input_size)
