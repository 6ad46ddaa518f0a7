"""The deterministic actor of a trained policy as one step function with explicit state (torch).

    action, h_new = actor(obs (B, n_obs), h (B, H_total), dt (B, 1))

The step is built from the *real* modules of the trained policy (deep copies: the policy that trains is the
policy that exports), in the order SB3's ``predict(..., deterministic=True)`` applies them:

1. observation normalisation of a ``VecNormalize`` (only when it normalises observations):
   ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)``;
2. the policy's features extractor (``FlattenExtractor`` for Box observations);
3. the actor's recurrent core (CfC, LTC, LSTM or GRU; with a separate critic core only the actor's);
4. the actor MLP head ``mlp_extractor.policy_net`` and ``action_net`` (the Gaussian mean);
5. clipping to the Box action bounds, or tanh + rescaling to the bounds when the policy squashes its output.

State layout (``H_total = num_layers * state_size``): ``h[:, l * S:(l + 1) * S]`` is layer l's state, i.e. the
policy's (num_layers, B, S) actor state transposed to (B, num_layers, S) and flattened. Within a layer: CfC
unwired: the neurons; CfC with a wiring: the wiring layers' neurons in layer order (NCP: inter, command,
motor); LTC: the neurons by wiring id (motor neurons first); LSTM: ``[h, c]``; GRU: ``h``.
``dt`` is in seconds; the cores integrate ``dt / time_unit`` (the policy's time unit, by default the training
env's nominal control period; see :mod:`lnn_control.sb3.policies`), divided inside the step.

LTC with ``max_step`` takes ``ceil(dt / max_step)`` substeps (at least ``unfolds``), a data-dependent count.
The exported step uses a fixed upper bound ``K = max(unfolds, ceil(max_dt / time_unit / max_step))``: each
sample runs its own count of substeps and zero-length substeps after that (exact: a zero-length substep
leaves the state unchanged), so the export is exact for every ``dt <= max_dt``; a longer dt takes K
substeps of ``dt / K``.
"""

from __future__ import annotations

import copy
import math
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import lnn_control
from lnn_control.nn.cfc import CfCCell
from lnn_control.nn.ltc import LTCCell
from lnn_control.nn.rnn import LiquidRNN

__all__ = ["ActorMeta", "ActorStep", "actor_from_model", "actor_from_module"]

POSTPROCESS = ("clip", "tanh_rescale", "none")


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


class ActorStep(nn.Module):
    """Deterministic actor step ``forward(obs (B, n_obs), h (B, H_total), dt (B, 1)) -> (action, h')``.

    Args:
        core: a ``CfC``/``LTC`` (``LiquidRNN``) or an LSTM/GRU ``TorchRNN`` (any module with ``cells``
            or ``rnn``; see ``lnn_control.sb3.recurrence``); deep-copied.
        head: modules applied to the core output, in order (MLP head, action_net, or a readout).
        obs_shape: the observation shape before flattening.
        extractor: features extractor applied to obs reshaped to ``obs_shape`` (None: flatten only).
        obs_mean, obs_std: normalisation (obs - mean) / std, each (n_obs,), or None.
        clip_obs: bound of the normalised observation (with normalisation).
        action_low, action_high: (n_act,) bounds for ``postprocess`` "clip" or "tanh_rescale".
        postprocess: "clip", "tanh_rescale" or "none".
        max_dt: for LTC with ``max_step``: the largest dt (s) the step stays exact for (see module doc).
        time_unit: seconds per time unit of the core: the step feeds it ``dt / time_unit``.
    """

    def __init__(
        self,
        core: nn.Module,
        head: list[nn.Module],
        obs_shape: tuple[int, ...],
        *,
        extractor: nn.Module | None = None,
        obs_mean: np.ndarray | None = None,
        obs_std: np.ndarray | None = None,
        clip_obs: float = float("inf"),
        action_low: np.ndarray | None = None,
        action_high: np.ndarray | None = None,
        postprocess: str = "none",
        max_dt: float | None = None,
        time_unit: float = 1.0,
    ) -> None:
        super().__init__()
        if postprocess not in POSTPROCESS:
            raise ValueError(f"postprocess must be one of {POSTPROCESS}, got {postprocess!r}")
        # Exports are float32 on the CPU whatever device the policy trained on.
        self.core = _without_extra_state(copy.deepcopy(core).cpu().float().eval())
        self.head = nn.Sequential(*[copy.deepcopy(m) for m in head]).cpu().float().eval()
        self.extractor = None if extractor is None else copy.deepcopy(extractor).cpu().float().eval()
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.obs_dim = int(np.prod(self.obs_shape))
        self.normalize = obs_mean is not None
        self.register_buffer("obs_mean", _f32(obs_mean, self.obs_dim, 0.0))
        self.register_buffer("obs_std", _f32(obs_std, self.obs_dim, 1.0))
        self.clip_obs = float(clip_obs)
        self.postprocess = postprocess
        self.num_layers = int(self.core.num_layers)
        self.state_size = int(self.core.state_size)
        self.is_liquid = isinstance(self.core, LiquidRNN)
        self.max_dt = None if max_dt is None else float(max_dt)
        self.time_unit = _check_dt_value("time_unit", time_unit)
        self.register_buffer("dt_unit", torch.tensor(self.time_unit, dtype=torch.float32))
        self.ltc_substeps = self._bound_ltc_substeps()
        self.requires_grad_(False)  # an inference-only copy: tracers may then fold derived weights
        act_dim = self._output_dim()
        self.act_dim = act_dim
        self.register_buffer("action_low", _f32(action_low, act_dim, -math.inf))
        self.register_buffer("action_high", _f32(action_high, act_dim, math.inf))
        if postprocess == "tanh_rescale" and not bool(
            torch.isfinite(self.action_low).all() and torch.isfinite(self.action_high).all()
        ):
            raise ValueError("tanh_rescale needs finite action bounds")

    @property
    def state_dim(self) -> int:
        return self.num_layers * self.state_size

    def with_dense_synapses(self) -> ActorStep:
        """A copy whose LTC cells sum synapses densely (masked weights are zero: the same sums).

        The sparse LTC path scatters synaptic currents with ``index_add`` over repeated post-synaptic
        indices, which the ONNX exporter cannot represent (its scatter drops duplicates); the dense path
        exports exactly.
        """
        clone = copy.deepcopy(self)
        for cell in getattr(clone.core, "cells", []):
            if isinstance(cell, LTCCell) and cell.sparse:
                cell.sparse = False
                cell.__dict__.pop("_inference_cache", None)
        return clone

    def _bound_ltc_substeps(self) -> int | None:
        """Give every LTC cell with max_step a fixed substep bound K (see the module docstring)."""
        bound = None
        for cell in getattr(self.core, "cells", []):
            if not isinstance(cell, LTCCell) or cell.max_step is None:
                continue
            if self.max_dt is None or not (self.max_dt > 0 and math.isfinite(self.max_dt)):
                raise ValueError(
                    f"an LTC with max_step={cell.max_step} takes a dt-dependent number of substeps; give "
                    f"max_dt (s, > 0), the longest dt the export must be exact for, got {self.max_dt!r}"
                )
            k_max = max(cell.unfolds, math.ceil(self.max_dt / self.time_unit / cell.max_step - 1e-9))
            cell._substeps = types.MethodType(_bounded_substeps(k_max), cell)
            bound = k_max
        return bound

    def _output_dim(self) -> int:
        with torch.no_grad():
            x = torch.zeros(1, self.obs_dim)
            if self.extractor is not None:
                x = self.extractor(x.reshape((-1, *self.obs_shape)))
            y, _ = self._core_step(x, torch.zeros(1, self.state_dim), torch.ones(1, 1))
            return int(self.head(y).shape[-1])

    def initial_state(self, batch_size: int) -> Tensor:
        """Zero state (batch_size, H_total)."""
        return torch.zeros(batch_size, self.state_dim)

    def forward(self, obs: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        """obs (B, n_obs), h (B, H_total), dt (B, 1) in seconds -> action (B, n_act), h' (B, H_total)."""
        x = obs
        dt = dt / self.dt_unit
        if self.normalize:
            x = torch.clamp((x - self.obs_mean) / self.obs_std, -self.clip_obs, self.clip_obs)
        if self.extractor is not None:
            x = self.extractor(x.reshape((-1, *self.obs_shape)))
        y, h_new = self._core_step(x, h, dt)
        a = self.head(y)
        if self.postprocess == "clip":
            a = torch.maximum(torch.minimum(a, self.action_high), self.action_low)
        elif self.postprocess == "tanh_rescale":
            a = self.action_low + 0.5 * (torch.tanh(a) + 1.0) * (self.action_high - self.action_low)
        return a, h_new

    def _core_step(self, x: Tensor, h: Tensor, dt: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, F), h (B, L * S), dt (B, 1) -> y (B, out), h' (B, L * S)."""
        layers = h.reshape(-1, self.num_layers, self.state_size)
        if self.is_liquid:
            layer_input = x.unsqueeze(1)
            finals = []
            for i, cell in enumerate(self.core.cells):
                # one layer: h is its state as is (fewer reshapes in the traced graph)
                h_i = h if self.num_layers == 1 else layers[:, i]
                layer_input, h_last = cell.forward_sequence(layer_input, h_i, dt, None)
                finals.append(h_last)
            y = layer_input[:, 0]
            if self.core.proj is not None:
                y = self.core.proj(y)
            return y, finals[0] if len(finals) == 1 else torch.cat(finals, dim=1)
        y, h_n = self.core(x.unsqueeze(1), h0=layers.transpose(0, 1), dt=None)
        # LSTM/GRU ignore dt; the no-op use keeps ``dt`` an input of the traced graph (uniform signature).
        return y[:, 0] + 0.0 * dt, h_n.transpose(0, 1).reshape(-1, self.state_dim)


_PLAIN_CLASSES: dict[type, type] = {}


def _without_extra_state(module: nn.Module) -> nn.Module:
    """The (copied) module with its cells' ``get_extra_state`` removed, in place.

    The liquid cells record their wiring as "extra state" (a dict) in the state dict, for checkpoints; the
    tracers (TorchScript, ONNX) expect tensors only there. The copy's classes are swapped for subclasses
    without extra state; weights, buffers and behaviour are unchanged.
    """
    for sub in module.modules():
        cls = type(sub)
        if getattr(cls, "get_extra_state", nn.Module.get_extra_state) is nn.Module.get_extra_state:
            continue
        if cls not in _PLAIN_CLASSES:
            _PLAIN_CLASSES[cls] = type(
                cls.__name__,
                (cls,),
                {
                    "get_extra_state": nn.Module.get_extra_state,
                    "set_extra_state": nn.Module.set_extra_state,
                    "__module__": cls.__module__,
                },
            )
        sub.__class__ = _PLAIN_CLASSES[cls]
    return module


def _bounded_substeps(k_max: int) -> Any:
    """``LTCCell._substeps`` with a fixed count ``k_max``: zero-length substeps past each sample's count."""

    def substeps(cell: LTCCell, dt: Tensor) -> tuple[int, Tensor]:
        if k_max == cell.unfolds:
            return k_max, dt / cell.unfolds
        counts = torch.clamp(torch.ceil(dt / cell.max_step), cell.unfolds, k_max)  # (B, T)
        k = torch.arange(k_max, dtype=dt.dtype, device=dt.device)
        h = (dt / counts).unsqueeze(-1) * (k < counts.unsqueeze(-1)).to(dt.dtype)
        return k_max, h

    return substeps


def _f32(values: np.ndarray | None, size: int, default: float) -> Tensor:
    if values is None:
        return torch.full((size,), default)
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    if array.size != size:
        raise ValueError(f"expected {size} values, got {array.size}")
    return torch.as_tensor(array.copy())


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


# ------------------------------------------------------------------------------------------- builders
def actor_from_model(
    model: Any,
    vec_normalize: Any = None,
    *,
    nominal_dt: float | None = None,
    max_dt: float | None = None,
    obs_names: list[str] | None = None,
) -> tuple[ActorStep, ActorMeta]:
    """The deterministic actor of a ``LiquidPPO`` or ``LiquidSAC`` (or their policy) and its metadata.

    Args:
        model: ``LiquidPPO``/``LiquidActorCriticPolicy`` or ``LiquidSAC``/``LiquidSACPolicy`` with a Box
            observation and Box action space.
        vec_normalize: a ``VecNormalize`` (its obs statistics are baked in when it normalises observations),
            or None (then the model's own env is used if it is a ``VecNormalize``).
        nominal_dt: the control period (s); default the policy's ``default_dt`` (set from the training env).
        max_dt: LTC with ``max_step`` only: the longest dt the export is exact for; default 10 x nominal dt.
        obs_names: names of the (flattened) observation entries; default ``obs[i]``.
    """
    from gymnasium import spaces
    from stable_baselines3.common.preprocessing import is_image_space
    from stable_baselines3.common.torch_layers import FlattenExtractor

    from lnn_control.sb3.policies import LiquidActorCriticPolicy
    from lnn_control.sb3.sac_policies import LiquidSACPolicy

    policy = getattr(model, "policy", model)
    if isinstance(policy, LiquidSACPolicy):
        extractor, core, head = policy.export_parts()  # tanh(head(core(x))), rescaled: squash_output
    elif isinstance(policy, LiquidActorCriticPolicy):
        extractor, core = policy.pi_features_extractor, policy.recurrent_actor
        head = [policy.mlp_extractor.policy_net, policy.action_net]
    else:
        raise TypeError(
            "expected a LiquidPPO model or a LiquidSAC model (or their LiquidActorCriticPolicy / "
            f"LiquidSACPolicy), got {type(model).__name__}"
        )
    if vec_normalize is None and hasattr(model, "get_vec_normalize_env"):
        vec_normalize = model.get_vec_normalize_env()
    obs_space, act_space = policy.observation_space, policy.action_space
    if not isinstance(obs_space, spaces.Box) or is_image_space(obs_space, check_channels=False):
        raise ValueError(
            f"export supports flat (non-image) Box observation spaces, got {obs_space}; "
            "Dict and image observations are not exportable yet"
        )
    if not isinstance(act_space, spaces.Box):
        raise ValueError(f"export supports Box action spaces (continuous control), got {act_space}")
    obs_shape = tuple(int(s) for s in obs_space.shape)
    obs_dim = int(np.prod(obs_shape))
    extractor_module = None if isinstance(extractor, FlattenExtractor) else extractor

    mean = std = None
    clip_obs = math.inf
    normalization = None
    if vec_normalize is not None and getattr(vec_normalize, "norm_obs", False):
        rms = vec_normalize.obs_rms
        if isinstance(rms, dict):
            raise ValueError("VecNormalize of Dict observations is not exportable")
        mean = np.asarray(rms.mean, dtype=np.float64).reshape(-1)
        std = np.sqrt(np.asarray(rms.var, dtype=np.float64).reshape(-1) + vec_normalize.epsilon)
        if mean.size != obs_dim:
            raise ValueError(f"VecNormalize obs statistics have {mean.size} entries, the policy {obs_dim}")
        clip_obs = float(vec_normalize.clip_obs)
        normalization = {
            "kind": "VecNormalize",
            "epsilon": float(vec_normalize.epsilon),
            "clip_obs": clip_obs,
            "note": "applied inside the artefact: feed raw observations",
        }
    squash = bool(policy.squash_output)
    postprocess = "tanh_rescale" if squash else "clip"
    if nominal_dt is None:
        nominal_dt = float(policy.default_dt)
    nominal_dt = _check_dt_value("nominal_dt", nominal_dt)
    max_dt = _default_max_dt(core, nominal_dt, max_dt)
    actor = ActorStep(
        core,
        head,
        obs_shape,
        extractor=extractor_module,
        obs_mean=mean,
        obs_std=std,
        clip_obs=clip_obs,
        action_low=act_space.low,
        action_high=act_space.high,
        postprocess=postprocess,
        max_dt=max_dt,
        time_unit=_policy_time_unit(policy),
    )
    meta = _meta(actor, nominal_dt, obs_names, act_space.low, act_space.high, postprocess, normalization)
    return actor, meta


def actor_from_module(
    core: nn.Module,
    readout: nn.Module | None = None,
    *,
    nominal_dt: float,
    max_dt: float | None = None,
    obs_names: list[str] | None = None,
    action_low: np.ndarray | None = None,
    action_high: np.ndarray | None = None,
) -> tuple[ActorStep, ActorMeta]:
    """A bare ``lnn_control.nn`` CfC/LTC (or TorchRNN) with an optional readout (e.g. after ``nn.fit``).

    The step is ``readout(core(x))`` (the core's ``proj`` included), clipped to the bounds when given.
    """
    if nominal_dt is None:
        raise ValueError("nominal_dt (s) is required to export a bare network: the control period")
    nominal_dt = _check_dt_value("nominal_dt", nominal_dt)
    cell_description(core)  # raises for unsupported cores
    obs_dim = int(getattr(core, "input_size", 0) or core.rnn.input_size)
    head = [] if readout is None else [readout]
    bounded = action_low is not None or action_high is not None
    max_dt = _default_max_dt(core, nominal_dt, max_dt)
    actor = ActorStep(
        core,
        head,
        (obs_dim,),
        action_low=action_low,
        action_high=action_high,
        postprocess="clip" if bounded else "none",
        max_dt=max_dt,
    )
    low = actor.action_low.numpy()
    high = actor.action_high.numpy()
    meta = _meta(actor, nominal_dt, obs_names, low, high, actor.postprocess, None)
    return actor, meta


def _meta(
    actor: ActorStep,
    nominal_dt: float,
    obs_names: list[str] | None,
    low: np.ndarray,
    high: np.ndarray,
    postprocess: str,
    normalization: dict[str, Any] | None,
) -> ActorMeta:
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


def _policy_time_unit(policy: Any) -> float:
    """The policy's time unit (s); a policy whose unit was never resolved (no env yet) has none to export."""
    unit = float(policy.time_unit)
    if not math.isfinite(unit):
        raise ValueError(
            "the policy's time_unit is not set (it comes from the training env's nominal period when "
            "LiquidPPO is built with an env); build or load the model with its env, or pass time_unit"
        )
    return unit


def _default_max_dt(core: nn.Module, nominal_dt: float, max_dt: float | None) -> float | None:
    has_max_step = any(isinstance(c, LTCCell) and c.max_step is not None for c in getattr(core, "cells", []))
    if not has_max_step:
        return None
    return 10.0 * nominal_dt if max_dt is None else _check_dt_value("max_dt", max_dt)


def _check_dt_value(name: str, value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return value
