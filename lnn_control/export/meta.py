"""What a controller needs to know about an exported actor step: :class:`ActorMeta`, the sidecar's JSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

import lnn_control
from lnn_control.nn.cfc import CfCCell
from lnn_control.nn.rnn import LiquidRNN

from .step import ActorStep

__all__ = ["ActorMeta", "cell_description", "describe_actor"]


@dataclass
class ActorMeta:
    """What a controller needs to know about an exported actor (JSON-serialisable, see ``to_dict``)."""

    obs_dim: int
    act_dim: int
    num_layers: int
    state_size: int
    cell: str
    cell_config: dict[str, Any]
    nominal_dt: float
    max_dt: float | None
    obs_names: list[str]
    action_low: list[float | None]
    action_high: list[float | None]
    action_postprocess: str
    obs_normalization: dict[str, Any] | None
    obs_shape: list[int] = field(default_factory=list)
    time_unit: float = 1.0

    @property
    def state_dim(self) -> int:
        return self.num_layers * self.state_size

    def to_dict(self) -> dict[str, Any]:
        return {
            "lnn_control_version": lnn_control.__version__,
            "obs_dim": self.obs_dim,
            "obs_shape": self.obs_shape or [self.obs_dim],
            "act_dim": self.act_dim,
            "state_dim": self.state_dim,
            "num_layers": self.num_layers,
            "state_size": self.state_size,
            "state_layout": (
                "h is (B, num_layers * state_size); h[:, l*state_size:(l+1)*state_size] is layer l "
                "(CfC: neurons, wired CfC: wiring layers in order, LTC: neurons by id, LSTM: [h, c], "
                "GRU: h); "
                "zeros at an episode start"
            ),
            "cell": self.cell,
            "cell_config": self.cell_config,
            "dt": {
                "units": "seconds",
                "nominal": self.nominal_dt,
                "max_exact": self.max_dt,
                "time_unit": self.time_unit,
                "meaning": "time elapsed since the previous observation; the first step after a reset "
                "uses the nominal dt; the cores integrate dt / time_unit (applied inside the artefact)",
            },
            "observation": {"names": self.obs_names, "normalization": self.obs_normalization},
            "action": {
                "low": self.action_low,
                "high": self.action_high,
                "postprocess": self.action_postprocess,
            },
            "signature": {
                "inputs": {"obs": ["B", self.obs_dim], "h": ["B", self.state_dim], "dt": ["B", 1]},
                "outputs": {"action": ["B", self.act_dim], "h_out": ["B", self.state_dim]},
            },
        }


def _bounds_list(values: np.ndarray) -> list[float | None]:
    """Bounds as JSON numbers, None for infinite ones."""
    return [float(v) if math.isfinite(float(v)) else None for v in np.asarray(values, dtype=np.float64)]


def cell_description(core: nn.Module) -> tuple[str, dict[str, Any]]:
    """(cell name, configuration) of a core, for the sidecar."""
    if isinstance(core, LiquidRNN):
        cell = core.cells[0]
        config: dict[str, Any] = {"num_layers": core.num_layers, "proj_size": core.proj_size}
        wiring = cell.wiring
        config["wiring"] = None if wiring is None else type(wiring).__name__
        config["units"] = int(cell.state_size)
        if wiring is not None:
            config["synapses"] = int(wiring.synapse_count)
            config["sensory_synapses"] = int(wiring.sensory_synapse_count)
        if isinstance(cell, CfCCell):
            config.update({k: v for k, v in cell.config.items() if k != "mask_time_gates" or wiring})
            return "cfc", config
        config.update(solver=cell.solver, unfolds=cell.unfolds, max_step=cell.max_step)
        return "ltc", config
    kind = getattr(core, "kind", None)
    if kind in ("lstm", "gru"):
        return kind, {"num_layers": int(core.num_layers), "units": int(core.units)}
    raise TypeError(
        f"cannot export a core of type {type(core).__name__}; expected lnn_control.nn CfC/LTC or "
        f"lnn_control.sb3 TorchRNN (LSTM/GRU)"
    )


def describe_actor(
    actor: ActorStep,
    nominal_dt: float,
    obs_names: list[str] | None,
    low: np.ndarray,
    high: np.ndarray,
    postprocess: str,
    normalization: dict[str, Any] | None,
) -> ActorMeta:
    """The metadata of ``actor``: its shapes and cell (read from the step) and what the caller knows of the
    task (nominal dt, observation names, action bounds and postprocessing, observation normalisation)."""
    names = [f"obs[{i}]" for i in range(actor.obs_dim)] if obs_names is None else [str(n) for n in obs_names]
    if len(names) != actor.obs_dim:
        raise ValueError(f"obs_names must name {actor.obs_dim} observation entries, got {len(names)}")
    cell, config = cell_description(actor.core)
    if actor.ltc_substeps is not None:
        config["max_substeps"] = actor.ltc_substeps
    return ActorMeta(
        obs_dim=actor.obs_dim,
        act_dim=actor.act_dim,
        num_layers=actor.num_layers,
        state_size=actor.state_size,
        cell=cell,
        cell_config=config,
        nominal_dt=nominal_dt,
        max_dt=actor.max_dt if actor.ltc_substeps is not None else None,
        obs_names=names,
        action_low=_bounds_list(np.broadcast_to(low, (actor.act_dim,))),
        action_high=_bounds_list(np.broadcast_to(high, (actor.act_dim,))),
        action_postprocess=postprocess,
        obs_normalization=normalization,
        obs_shape=list(actor.obs_shape),
        time_unit=actor.time_unit,
    )
