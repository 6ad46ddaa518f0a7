"""The recurrent core of a liquid policy: building and validating the sequence model for a cell name.

Every core, liquid (CfC, LTC from :mod:`lnn_control.nn`) or classic (LSTM, GRU through :class:`TorchRNN`),
has the same call contract, so that the policy, the rollout buffer and the exporter treat them alike::

    y, h_n = core(x, h0=None, dt=None, resets=None)
    # x (B, T, in), h0/h_n (num_layers, B, core.state_size), dt (B, T) seconds since the previous step,
    # resets bool (B, T): True at t zeroes that sample's state before step t; y (B, T, core.output_size)
"""

from __future__ import annotations

import copy
import inspect
import itertools
from typing import Any

import torch as th
from torch import nn

CELLS = ("cfc", "ltc", "lstm", "gru")
WIRINGS = ("ncp", "autoncp", "random", "fully_connected")
# Arguments the policy sets itself; a user cannot pass them through ``cell_kwargs``.
_RESERVED = frozenset({"input_size", "units", "wiring", "batch_first", "freeze_recurrent", "kind", "self"})


class TorchRNN(nn.Module):
    """``torch.nn.LSTM`` / ``GRU`` behind the liquid sequence-model contract.

    ``dt`` is accepted and ignored (these cells have no notion of time). The LSTM state ``(h, c)`` is packed
    into one tensor ``[h, c]`` of size ``2 * units``, so that all cells look alike to the rollout buffer.
    Resets are applied by splitting the sequence only at the time steps where some sample resets: one fused
    cuDNN/ATen call per segment, so a chunk without episode starts is a single call.

    Args:
        kind: ``"lstm"`` or ``"gru"``.
        input_size: features per step.
        units: hidden units per layer.
        num_layers: stacked layers.
        batch_first: (B, T, in) if True, else (T, B, in).
        freeze_recurrent: keep all recurrent weights at their random init (reservoir mode).
    """

    def __init__(
        self,
        kind: str,
        input_size: int,
        units: int,
        *,
        num_layers: int = 1,
        batch_first: bool = True,
        freeze_recurrent: bool = False,
    ) -> None:
        super().__init__()
        if kind not in ("lstm", "gru"):
            raise ValueError(f"TorchRNN kind must be 'lstm' or 'gru', got {kind!r}")
        rnn_class = nn.LSTM if kind == "lstm" else nn.GRU
        self.kind = kind
        self.rnn = rnn_class(input_size, units, num_layers=num_layers, batch_first=True)
        self.units = units
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.output_size = units
        self.state_size = 2 * units if kind == "lstm" else units
        if freeze_recurrent:
            self.rnn.requires_grad_(False)

    def _run(self, x: th.Tensor, h: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """One fused call on (B, T, in) from packed state (L, B, S)."""
        if self.kind == "lstm":
            h_part, c_part = h.chunk(2, dim=-1)
            y, (h_n, c_n) = self.rnn(x, (h_part.contiguous(), c_part.contiguous()))
            return y, th.cat([h_n, c_n], dim=-1)
        y, h_n = self.rnn(x, h.contiguous())
        return y, h_n

    def forward(
        self,
        x: th.Tensor,
        h0: th.Tensor | None = None,
        dt: th.Tensor | float | None = None,
        resets: th.Tensor | None = None,
    ) -> tuple[th.Tensor, th.Tensor]:
        """Run the sequence. Shapes as in the module docstring; ``dt`` is ignored."""
        del dt
        if not self.batch_first:
            x = x.transpose(0, 1)
            resets = None if resets is None else resets.transpose(0, 1)
        batch, steps, _ = x.shape
        h = x.new_zeros(self.num_layers, batch, self.state_size) if h0 is None else h0
        if resets is None:
            cuts = [0, steps]
        else:
            reset_steps = th.nonzero(resets.any(dim=0)).flatten().tolist()
            cuts = sorted({0, steps, *reset_steps})
        outputs = []
        for start, stop in itertools.pairwise(cuts):
            if resets is not None:
                keep = (~resets[:, start]).to(h.dtype).view(1, batch, 1)
                h = h * keep
            y, h = self._run(x[:, start:stop], h)
            outputs.append(y)
        y = th.cat(outputs, dim=1) if len(outputs) > 1 else outputs[0]
        if not self.batch_first:
            y = y.transpose(0, 1)
        return y, h

    def step(self, x: th.Tensor, h: th.Tensor, dt: th.Tensor | None = None) -> tuple[th.Tensor, th.Tensor]:
        """One time step as ``LiquidRNN.step``: x (B, in), h (num_layers, B, S) -> y (B, units), h'; no dt."""
        del dt
        y, h_n = self._run(x.unsqueeze(1), h)
        return y[:, 0], h_n


def run_core(
    core: nn.Module,
    features: th.Tensor,
    state: th.Tensor,
    episode_starts: th.Tensor,
    dt: th.Tensor,
    time_unit: th.Tensor,
) -> tuple[th.Tensor, th.Tensor]:
    """Run a policy's ``core`` over B sequences given flat (the rollout, training and predict path).

    Args:
        features: (B * T, F), sequence-major (all steps of sequence 0, then sequence 1, ...).
        state: (num_layers, B, S), the state before the first step.
        episode_starts: (B, T) or (B,) when T = 1; truthy zeroes that sample's state before that step.
        dt: (B, T) or (B,): seconds since the previous observation, already checked (finite, >= 0).
        time_unit: seconds per time unit (0-d): the core integrates ``dt / time_unit``.
    Returns:
        latent (B * T, out) and the state after the last step (num_layers, B, S).

    One control step (T = 1: rollouts, ``predict``) runs the core's one-step path ``core.step``, the same
    that export traces; longer sequences run ``core(x, h0, dt, resets)``.
    """
    n_seq = state.shape[1]
    x = features.reshape(n_seq, -1, features.shape[-1])
    steps = x.shape[1]
    resets = episode_starts.reshape(n_seq, steps).bool()
    dt = dt.reshape(n_seq, steps).to(dtype=x.dtype) / time_unit.to(x.dtype)
    if steps == 1:
        keep = (~resets).to(state.dtype).reshape(1, n_seq, 1)
        return core.step(x[:, 0], state * keep, dt)
    y, h_n = core(x, h0=state, dt=dt, resets=resets)
    return y.reshape(n_seq * steps, -1), h_n


def _check_keys(what: str, given: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(f"Unknown {what} key(s) {unknown}; expected some of {sorted(allowed)}")


def _signature_keys(fn: Any) -> set[str]:
    return {
        name
        for name, p in inspect.signature(fn).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def make_wiring(wiring: Any, units: int, wiring_kwargs: dict[str, Any] | None) -> Any:
    """Resolve the ``wiring`` policy argument to a wiring object (or None for a dense cell).

    Args:
        wiring: None, a name (``"ncp"``, ``"autoncp"``, ``"random"``, ``"fully_connected"``) or a wiring
            object from :mod:`lnn_control.nn.wiring` (copied, never mutated).
        units: the policy's ``units``; must equal the wiring's neuron count.
        wiring_kwargs: constructor arguments of a named wiring. ``"ncp"`` takes either the explicit layer
            sizes of :class:`~lnn_control.nn.wiring.NCP` (inter_neurons, command_neurons, motor_neurons,
            fan-outs) or ``output_size`` (+ ``sparsity_level``, ``seed``) for an ``AutoNCP``.
    """
    from lnn_control.nn import wiring as wirings

    wiring_kwargs = dict(wiring_kwargs or {})
    if wiring is None:
        if wiring_kwargs:
            raise ValueError(
                f"wiring_kwargs {wiring_kwargs} given without a wiring; set wiring to one of {WIRINGS}"
            )
        return None
    if isinstance(wiring, str):
        name = wiring.lower()
        if name == "ncp" and "inter_neurons" not in wiring_kwargs:
            name = "autoncp"
        classes = {
            "ncp": wirings.NCP,
            "autoncp": wirings.AutoNCP,
            "random": wirings.Random,
            "fully_connected": wirings.FullyConnected,
        }
        if name not in classes:
            raise ValueError(f"Unknown wiring {wiring!r}; expected None, a Wiring object or one of {WIRINGS}")
        target = classes[name]
        params = inspect.signature(target).parameters
        takes_units = "units" in params  # NCP is sized by its layers, the others by the policy's units
        _check_keys(f"wiring_kwargs for wiring={wiring!r}", wiring_kwargs, set(params) - {"units"})
        required = {n for n, p in params.items() if p.default is inspect.Parameter.empty and n != "units"}
        missing = sorted(required - set(wiring_kwargs))
        if missing:
            raise ValueError(f"wiring={wiring!r} needs wiring_kwargs {missing} (got {wiring_kwargs})")
        made = target(units, **wiring_kwargs) if takes_units else target(**wiring_kwargs)
    else:
        if wiring_kwargs:
            raise ValueError(f"wiring_kwargs {wiring_kwargs} only apply to a named wiring, not to {wiring!r}")
        if not isinstance(wiring, wirings.Wiring):
            raise ValueError(
                f"wiring must be None, one of {WIRINGS} or a lnn_control.nn.wiring.Wiring, got {wiring!r}"
            )
        made = wiring.copy() if hasattr(wiring, "copy") else copy.deepcopy(wiring)
    if made.units != units:
        raise ValueError(
            f"wiring {made!r} has {made.units} neurons but units={units}; "
            f"set units={made.units} or size the wiring to {units} neurons"
        )
    return made


def make_recurrence(
    cell: str,
    input_size: int,
    units: int,
    *,
    wiring: Any = None,
    cell_kwargs: dict[str, Any] | None = None,
    freeze_recurrent: bool = False,
) -> nn.Module:
    """Build one sequence model: CfC, LTC (liquid) or an LSTM/GRU adapter.

    Args:
        cell: one of ``CELLS``.
        input_size: features per step.
        units: neurons per layer.
        wiring: a resolved wiring object (from :func:`make_wiring`) or None.
        cell_kwargs: further constructor options of the cell (CfC: mode, backbone_*, num_layers, proj_size;
            LTC: solver, unfolds, max_step, num_layers, proj_size; LSTM/GRU: num_layers).
        freeze_recurrent: reservoir mode, recurrent and input weights stay at their random init.
    """
    cell_kwargs = dict(cell_kwargs or {})
    if cell in ("cfc", "ltc"):
        from lnn_control.nn import LTC, CfC

        model_class = CfC if cell == "cfc" else LTC
        allowed = _signature_keys(model_class.__init__) - _RESERVED
        _check_keys(f"cell_kwargs for cell={cell!r}", cell_kwargs, allowed)
        return model_class(
            input_size,
            units,
            wiring=wiring,
            batch_first=True,
            freeze_recurrent=freeze_recurrent,
            **cell_kwargs,
        )
    if cell in ("lstm", "gru"):
        if wiring is not None:
            raise ValueError(f"wiring is only supported by the liquid cells 'cfc' and 'ltc', not by {cell!r}")
        allowed = _signature_keys(TorchRNN.__init__) - _RESERVED
        _check_keys(f"cell_kwargs for cell={cell!r}", cell_kwargs, allowed)
        return TorchRNN(cell, input_size, units, freeze_recurrent=freeze_recurrent, **cell_kwargs)
    raise ValueError(f"Unknown cell {cell!r}; expected one of {CELLS}")
