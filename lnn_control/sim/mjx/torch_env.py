"""A torch-tensor VecEnv over :class:`MjxVecEnv`: a catalogue entry's observation wrappers applied on the
env's device, for rollout loops whose policy lives on the same device (no host round trip per step):
``LiquidPPO`` trains on it with its rollouts on the device. Its numpy VecEnv API (SB3 tools, evaluation)
copies each step to the host.

:func:`make_torch_vec_env` builds it from a catalogue entry. The observation mask and the appended dt
are applied to torch tensors on the device, with the semantics of the numpy wrappers
:class:`~lnn_control.sim.vec_wrappers.VecObservationMask` and
:class:`~lnn_control.sim.vec_wrappers.VecAppendDt`
(a reset observation gets the nominal dt, a terminal one its step's dt). Noise and delay wrappers are not
implemented here (the numpy API, ``make_vec_env(..., backend="mjx")``, has them).

Shapes: ``n`` envs, ``D`` the entry's observation size, ``nu`` the action size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from lnn_control.sim.catalogue import AppendDtSpec, MaskSpec, TaskSpec, WrapperSpec, get_task
from lnn_control.sim.make import base_env_args
from lnn_control.sim.masks import observation_indices
from lnn_control.sim.mjx.env import MjxVecEnv
from lnn_control.sim.torch_normalize import TorchVecNormalize
from lnn_control.sim.torch_vec_env import TorchStep, TorchVecEnvBase

__all__ = ["TorchStep", "TorchVecEnv", "make_torch_vec_env"]


class TorchVecEnv(TorchVecEnvBase):
    """``reset_torch() -> obs (n, D)``, ``step_torch(actions (n, nu)) -> TorchStep``: torch tensors on the
    env's device; SB3's numpy VecEnv API on top (see :class:`~lnn_control.sim.torch_vec_env.TorchVecEnvBase`).

    Args:
        env: the MJX env (full task observation).
        wrappers: the catalogue entry's observation wrappers (mask and append_dt only).
        base: the entry's base task name (for named masks such as ``"novel"``).
        nominal_dt: dt appended to reset observations (default: the env's nominal dt).
    """

    def __init__(
        self,
        env: MjxVecEnv,
        wrappers: Sequence[WrapperSpec] = (),
        base: str | None = None,
        nominal_dt: float | None = None,
    ) -> None:
        self.env = env
        self.nominal_dt = float(env.dt if nominal_dt is None else nominal_dt)
        self._ops: list[tuple[str, Any]] = []
        dim = env.observation_space.shape[0]
        for ws in wrappers:
            if isinstance(ws, MaskSpec):
                idx = (
                    observation_indices(base or env.task_name, ws.kind, dim)
                    if ws.kind is not None
                    else ws.indices
                )
                idx_t = torch.as_tensor(list(idx), dtype=torch.long)
                self._ops.append(("mask", idx_t))
                dim = len(idx_t)
            elif isinstance(ws, AppendDtSpec):
                self._ops.append(("dt", None))
                dim += 1
            else:
                raise NotImplementedError(
                    f"the torch interface applies mask and append_dt wrappers on device; {ws.type!r} is not "
                    "implemented there (use make_vec_env(..., backend='mjx'), whose numpy API has it)"
                )
        self.observation_size = dim
        self.action_size = int(env.action_space.shape[0])
        low = np.full(dim, -np.inf, dtype=env.observation_space.dtype)
        observation_space = spaces.Box(low, -low, dtype=env.observation_space.dtype)
        super().__init__(env.num_envs, observation_space, env.action_space)

    def _transform(self, obs: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        for i, (op, arg) in enumerate(self._ops):
            if op == "mask":
                if arg.device != obs.device:  # once: the indices then stay on the env's device
                    arg = arg.to(obs.device)
                    self._ops[i] = (op, arg)
                obs = obs.index_select(1, arg)
            else:
                obs = torch.cat((obs, dt.to(obs.dtype)[:, None]), dim=1)
        return obs

    def reset_torch(self) -> torch.Tensor:
        """Reset every env; observations (n, D) on the env's device."""
        obs = self.env.reset_torch()
        self.device = obs.device
        dt = torch.full((self.num_envs,), self.nominal_dt, dtype=obs.dtype, device=obs.device)
        return self._transform(obs, dt)

    def seed(self, seed: int | None = None) -> list[int | None]:
        """Seed the next reset."""
        return list(self.env.seed(seed))

    def close(self) -> None:
        self.env.close()

    def step_torch(self, actions: torch.Tensor) -> TorchStep:
        """One control step; ``obs`` of a finished env is its reset observation (with the nominal dt
        appended), ``terminal_obs`` the last one of the episode."""
        out = self.env.step_torch(actions)
        done = out.terminated | out.truncated
        reset_dt = torch.where(done, torch.full_like(out.dt, self.nominal_dt), out.dt)
        return out._replace(
            obs=self._transform(out.obs, reset_dt), terminal_obs=self._transform(out.terminal_obs, out.dt)
        )


def make_torch_vec_env(
    name: str | Path | TaskSpec,
    n_envs: int,
    *,
    seed: int | None = None,
    normalize: bool | dict[str, Any] = False,
    **kwargs: Any,
) -> TorchVecEnv | TorchVecNormalize:
    """Catalogue entry ``name`` as a :class:`TorchVecEnv` (``kwargs``: :class:`MjxVecEnv` arguments such as
    ``device``, ``x64``, ``randomization``, v5 task arguments).

    ``normalize``: True (or a dict of its arguments: ``clip_obs``, ``norm_reward``, ``gamma``, ...) wraps it
    in a :class:`~lnn_control.sim.torch_normalize.TorchVecNormalize`, SB3's ``VecNormalize`` on the device.
    """
    if not isinstance(normalize, (bool, dict)):
        raise ValueError(
            f"normalize must be True, False or a dict of TorchVecNormalize arguments, got {normalize!r}"
        )
    spec = get_task(name)
    base, env_kwargs = base_env_args(spec, kwargs)
    env = MjxVecEnv(base, n_envs, seed=seed, **env_kwargs)
    venv = TorchVecEnv(env, spec.wrappers, base=spec.base, nominal_dt=spec.nominal_dt)
    if not normalize:
        return venv
    return TorchVecNormalize(venv, **(normalize if isinstance(normalize, dict) else {}))
