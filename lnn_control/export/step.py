"""The deterministic actor of a trained policy as one step module with explicit state (torch).

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

The recurrent core runs its public one-step path (``LiquidRNN.step`` / ``TorchRNN.step``), the same one
that one-step control uses. LTC with ``max_step`` takes ``ceil(dt / max_step)`` substeps (at least
``unfolds``), a data-dependent count; the step fixes it with ``LiquidRNN.bound_substeps`` at
``K = max(unfolds, ceil(max_dt / time_unit / max_step))``, exact for every ``dt <= max_dt`` (a longer dt takes
K substeps of ``dt / K``).

:mod:`lnn_control.export.meta` describes a step for controllers (the sidecar), and
:mod:`lnn_control.export.convert` builds one from a trained SB3 model or a bare network.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import Tensor, nn

from lnn_control.checks import positive_number
from lnn_control.nn.inference import inference_copy
from lnn_control.nn.ltc import LTCCell
from lnn_control.nn.rnn import LiquidRNN

__all__ = ["POSTPROCESS", "ActorStep"]

POSTPROCESS = ("clip", "tanh_rescale", "none")


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
        self.core = inference_copy(core)
        self.head = inference_copy(nn.Sequential(*head))
        self.extractor = None if extractor is None else inference_copy(extractor)
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
        self.time_unit = positive_number("time_unit", time_unit, unit=" of seconds")
        self.register_buffer("dt_unit", torch.tensor(self.time_unit, dtype=torch.float32))
        self.ltc_substeps = self._bound_ltc_substeps()
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
            if isinstance(cell, LTCCell):
                cell.sparse = False
        return clone

    def _bound_ltc_substeps(self) -> int | None:
        """Fix the substep loop of every LTC layer with max_step (see the module docstring); the bound K."""
        if not any(
            isinstance(c, LTCCell) and c.max_step is not None for c in getattr(self.core, "cells", [])
        ):
            return None
        if self.max_dt is None or not (self.max_dt > 0 and math.isfinite(self.max_dt)):
            raise ValueError(
                "an LTC with max_step takes a dt-dependent number of substeps; give max_dt (s, > 0), the "
                f"longest dt the export must be exact for, got {self.max_dt!r}"
            )
        return self.core.bound_substeps(self.max_dt / self.time_unit)

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
        """x (B, F), h (B, L * S), dt (B, 1) in time units -> y (B, out), h' (B, L * S), through the core's
        one-step path (``LiquidRNN.step`` / ``TorchRNN.step``)."""
        layers = h.reshape(-1, self.num_layers, self.state_size).transpose(0, 1)  # (L, B, S)
        y, h_n = self.core.step(x, layers, dt)
        if not self.is_liquid:  # LSTM/GRU ignore dt; the no-op keeps ``dt`` an input of the traced graph
            y = y + 0.0 * dt
        return y, h_n.transpose(0, 1).reshape(-1, self.state_dim)


def _f32(values: np.ndarray | None, size: int, default: float) -> Tensor:
    if values is None:
        return torch.full((size,), default)
    array = np.asarray(values, dtype=np.float32).reshape(-1)
    if array.size != size:
        raise ValueError(f"expected {size} values, got {array.size}")
    return torch.as_tensor(array.copy())
