"""Torch VecEnvs: a step on torch tensors that stay on the env's device, with SB3's numpy API on top.

The device protocol, which :class:`~lnn_control.sim.mjx.MjxVecEnv` and :class:`TorchVecEnvBase` follow::

    obs = env.reset_torch()            # (n, D) tensor on the env's device
    out = env.step_torch(actions)      # actions (n, nu) tensor -> TorchStep of (n, ...) tensors

``LiquidPPO`` trains on such an env without a host copy per step (its rollouts and sequence buffer stay on
the policy's device). :class:`TorchVecEnvBase` derives SB3's numpy VecEnv API from the two methods (one host
copy per step), so the same env also serves SB3 tools, evaluation and wrappers such as ``VecNormalize``.
Wrapping hides ``step_torch`` (training then takes the numpy path); to normalise on the device, wrap in
:class:`~lnn_control.sim.torch_normalize.TorchVecNormalize`, which steps on torch tensors itself.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

__all__ = ["TorchStep", "TorchVecEnvBase", "supports_torch_steps"]


def supports_torch_steps(env: Any) -> bool:
    """Whether ``env`` itself steps on torch tensors (``reset_torch``/``step_torch``, the protocol above).

    Checked on the class: a VecEnv wrapper (``VecNormalize``, ``VecMonitor``) forwards unknown attributes to
    the env inside it, and stepping that env directly would bypass the wrapper (which then runs the numpy
    rollout, with a host copy per step). :class:`~lnn_control.sim.torch_normalize.TorchVecNormalize` is a
    wrapper that steps on torch tensors itself.
    """
    cls = type(env)
    return callable(getattr(cls, "step_torch", None)) and callable(getattr(cls, "reset_torch", None))


class TorchStep(NamedTuple):
    """One step of ``step_torch``, torch tensors on the env's device.

    Attributes:
        obs: (n, D) observations; a finished env's holds its reset observation.
        reward: (n,) rewards.
        terminated: (n,) bool, the task's termination.
        truncated: (n,) bool, time-limit truncation (and not terminated).
        dt: (n,) physical seconds of the step per env.
        terminal_obs: (n, D) the observations before auto-reset (equal to ``obs`` where not done).
    """

    obs: Any
    reward: Any
    terminated: Any
    truncated: Any
    dt: Any
    terminal_obs: Any


class TorchVecEnvBase(VecEnv):
    """SB3's numpy VecEnv API derived from ``reset_torch`` and ``step_torch``.

    Subclasses implement :meth:`reset_torch`, :meth:`step_torch` and :meth:`seed`, and set ``nominal_dt``
    (seconds; ``get_attr("dt")`` reports it, as the Gymnasium tasks' ``dt``). The numpy ``step`` reports
    ``infos[i]["dt"]``, and at an episode end ``terminal_observation`` and ``TimeLimit.truncated``, as SB3's
    ``DummyVecEnv`` over the Gymnasium tasks does.
    """

    nominal_dt: float
    render_mode: str | None = None  # these envs do not render

    def __init__(self, num_envs: int, observation_space: gym.Space, action_space: gym.Space) -> None:
        super().__init__(num_envs, observation_space, action_space)
        self._actions: np.ndarray | None = None
        self.device: torch.device | None = None  # known from the first reset

    # ------------------------------------------------------------------ the device protocol
    @abstractmethod
    def reset_torch(self) -> torch.Tensor:
        """Reset every env; observations (n, D) on the env's device."""

    @abstractmethod
    def step_torch(self, actions: torch.Tensor) -> TorchStep:
        """One control step of every env with ``actions`` (n, nu); finished envs reset automatically."""

    # ------------------------------------------------------------------ SB3's numpy API
    def reset(self) -> VecEnvObs:
        obs = self.reset_torch()
        self.device = obs.device
        return obs.cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        expected = (self.num_envs, *self.action_space.shape)
        actions = np.asarray(actions)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected} (n_envs, action_dim), got {actions.shape}")
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without a pending step_async(actions)")
        actions, self._actions = torch.as_tensor(self._actions, device=self.device), None
        out = self.step_torch(actions)
        obs = out.obs.cpu().numpy()
        terminated, truncated = out.terminated.cpu().numpy(), out.truncated.cpu().numpy()
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{"dt": float(dt)} for dt in out.dt.cpu().numpy()]
        if dones.any():
            terminal = out.terminal_obs.cpu().numpy()
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = terminal[i]
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, out.reward.cpu().numpy().astype(np.float32), dones, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The env's attribute for each index (the envs share one object); ``"dt"`` is ``nominal_dt``."""
        value = self.nominal_dt if attr_name == "dt" else getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        ids = list(self._get_indices(indices))
        if sorted(ids) != list(range(self.num_envs)):
            raise ValueError(f"{type(self).__name__} shares one set of attributes; set_attr needs all envs")
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        raise NotImplementedError(f"{type(self).__name__} does not render")
