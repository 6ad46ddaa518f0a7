"""SB3's ``VecNormalize`` on the env's device, for envs that step on torch tensors.

:class:`TorchVecNormalize` wraps an env with ``reset_torch``/``step_torch`` (a
:class:`~lnn_control.sim.torch_vec_env.TorchVecEnvBase`, :class:`~lnn_control.sim.mjx.MjxVecEnv`) and is one
itself, so ``LiquidPPO`` keeps its rollouts on the device (SB3's ``VecNormalize`` would hide ``step_torch``
and select the numpy rollout, one host copy per step). Its running statistics are float64 tensors on the
env's device, updated without a host read:

- observations: ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)`` as float32, the statistics
  updated with every observation the policy sees (resets and steps, not terminal observations);
- rewards: ``clip(reward / sqrt(ret_var + epsilon), -clip_reward, clip_reward)`` as float32, where
  ``ret_var`` is the running variance of the discounted return ``ret = ret * gamma + reward`` (reset to 0
  where an episode ended);
- :class:`TorchRunningMeanStd` is SB3's ``RunningMeanStd`` (parallel-variance update, initial count 1e-4);
- ``training=False`` freezes the statistics.

These are the semantics of ``VecNormalize`` step for step (a test holds the two to the same outputs). The
settings and statistics read and write as SB3's: ``obs_rms``/``ret_rms`` are ``RunningMeanStd`` host copies
(assigning one loads it), :meth:`TorchVecNormalize.save`/:meth:`~TorchVecNormalize.load` use
``VecNormalize``'s file format, :meth:`~TorchVecNormalize.to_sb3`/:meth:`~TorchVecNormalize.from_sb3`
convert, and :func:`lnn_control.runs.normalization.normalization_to_npz` stores them without pickle.

Shapes: ``n`` envs, ``D`` observation size.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecNormalize
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from lnn_control.atomic import atomic_write_bytes
from lnn_control.sim.torch_vec_env import TorchStep, TorchVecEnvBase, supports_torch_steps

__all__ = ["TorchRunningMeanStd", "TorchVecNormalize"]


class TorchRunningMeanStd:
    """SB3's ``RunningMeanStd`` with ``mean`` and ``var`` as float64 tensors on a device.

    The count is a host float: a batch's size is known on the host, so an update never reads the device.

    Args:
        shape: the shape of one sample (``(D,)`` for observations, ``()`` for returns).
        epsilon: the initial count (SB3's 1e-4).
        device: where the statistics live.
    """

    def __init__(
        self, shape: tuple[int, ...] = (), epsilon: float = 1e-4, device: torch.device | str | None = None
    ) -> None:
        self.mean = torch.zeros(shape, dtype=torch.float64, device=device)
        self.var = torch.ones(shape, dtype=torch.float64, device=device)
        self.count = float(epsilon)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def to(self, device: torch.device | str) -> TorchRunningMeanStd:
        """Move the statistics to ``device`` (in place); returns self."""
        self.mean, self.var = self.mean.to(device), self.var.to(device)
        return self

    def copy(self) -> TorchRunningMeanStd:
        new = TorchRunningMeanStd(tuple(self.mean.shape), self.count, self.device)
        new.mean, new.var = self.mean.clone(), self.var.clone()
        return new

    def update(self, batch: torch.Tensor) -> None:
        """Add a batch of samples (B, *shape): its mean and (population) variance over the first axis."""
        batch_var, batch_mean = torch.var_mean(batch.to(self.device, torch.float64), 0, correction=0)
        self.update_from_moments(batch_mean, batch_var, batch.shape[0])

    def update_from_moments(
        self, batch_mean: torch.Tensor, batch_var: torch.Tensor, batch_count: float
    ) -> None:
        """Chan et al.'s parallel combination of (mean, var, count) with a batch's moments, as SB3's:
        mean += delta * b / t, var = (var * c + batch_var * b + delta^2 * c * b / t) / t for counts c, b and
        t = c + b (the host-side count ratios folded into five tensor ops)."""
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = torch.add(self.mean, delta, alpha=batch_count / total)
        var = self.var * (self.count / total)
        var.add_(batch_var, alpha=batch_count / total)
        self.var = var.addcmul_(delta, delta, value=self.count * batch_count / total**2)
        self.count = total

    def to_numpy(self) -> RunningMeanStd:
        """A host copy as SB3's ``RunningMeanStd`` (reads the device)."""
        rms = RunningMeanStd(shape=tuple(self.mean.shape))
        rms.mean = self.mean.detach().cpu().numpy().astype(np.float64)
        rms.var = self.var.detach().cpu().numpy().astype(np.float64)
        rms.count = float(self.count)
        return rms

    @classmethod
    def from_numpy(cls, rms: RunningMeanStd, device: torch.device | str | None = None) -> TorchRunningMeanStd:
        """SB3's ``RunningMeanStd`` on ``device``."""
        mean = np.asarray(rms.mean, dtype=np.float64)
        new = cls(mean.shape, float(rms.count), device)
        new.mean = torch.as_tensor(mean, device=device).clone()
        new.var = torch.as_tensor(np.asarray(rms.var, dtype=np.float64), device=device).clone()
        return new


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class TorchVecNormalize(TorchVecEnvBase):
    """``VecNormalize`` on the device: wraps an env that steps on torch tensors, and steps on them itself.

    Args:
        venv: the env to wrap, one with ``reset_torch``/``step_torch`` (for a numpy VecEnv use SB3's
            ``VecNormalize``).
        training: update the statistics (False: frozen, e.g. for evaluation).
        norm_obs: normalise observations.
        norm_reward: scale rewards by the running std of the discounted return.
        clip_obs: bound of the normalised observations (> 0).
        clip_reward: bound of the scaled rewards (> 0).
        gamma: discount of the return whose std scales rewards, in (0, 1].
        epsilon: added to the variances (> 0).
        norm_obs_keys: for signature compatibility with ``VecNormalize``; must be None (Box observations).

    Attributes:
        obs_stats: :class:`TorchRunningMeanStd` of the observations (D,), on the env's device.
        ret_stats: :class:`TorchRunningMeanStd` of the discounted returns (), on the env's device.
        returns: (n,) float64, the discounted return of each env's episode so far.
        obs_rms, ret_rms: host copies of the statistics as SB3's ``RunningMeanStd`` (assign one to load it).
    """

    def __init__(
        self,
        venv: Any,
        training: bool = True,
        norm_obs: bool = True,
        norm_reward: bool = True,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
        gamma: float = 0.99,
        epsilon: float = 1e-8,
        norm_obs_keys: list[str] | None = None,
    ) -> None:
        if not supports_torch_steps(venv):
            raise TypeError(
                f"TorchVecNormalize wraps an env that steps on torch tensors (reset_torch/step_torch, e.g. a "
                f"TorchVecEnvBase or MjxVecEnv), got {type(venv).__name__}; for a numpy VecEnv use SB3's "
                "VecNormalize"
            )
        if not isinstance(venv.observation_space, spaces.Box):
            raise ValueError(
                f"TorchVecNormalize takes Box observations, got {type(venv.observation_space).__name__}"
            )
        if norm_obs_keys is not None:
            raise ValueError(f"norm_obs_keys applies to Dict observations only, got {norm_obs_keys!r}")
        self.clip_obs = _positive("clip_obs", clip_obs)
        self.clip_reward = _positive("clip_reward", clip_reward)
        self.epsilon = _positive("epsilon", epsilon)
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        self.gamma = float(gamma)
        self.training = _flag("training", training)
        self.norm_obs = _flag("norm_obs", norm_obs)
        self.norm_reward = _flag("norm_reward", norm_reward)
        self.norm_obs_keys = None
        self.venv = venv
        super().__init__(venv.num_envs, venv.observation_space, venv.action_space)
        env_device = getattr(venv, "device", None)
        device = env_device if isinstance(env_device, torch.device) else torch.device("cpu")
        self.obs_stats = TorchRunningMeanStd(tuple(self.observation_space.shape), device=device)
        self.ret_stats = TorchRunningMeanStd((), device=device)
        self.returns = torch.zeros(self.num_envs, dtype=torch.float64, device=device)
        self.old_obs: torch.Tensor | None = None
        self.old_reward: torch.Tensor | None = None

    # ------------------------------------------------------------------ the device protocol
    @property
    def nominal_dt(self) -> float:  # type: ignore[override]
        return self.venv.nominal_dt

    def _follow(self, device: torch.device) -> None:
        """Keep the statistics on the device of the env's tensors (moved once, at the first observation)."""
        if self.obs_stats.device != device:
            self.obs_stats.to(device)
            self.ret_stats.to(device)
            self.returns = self.returns.to(device)

    def reset_torch(self) -> torch.Tensor:
        """Reset every env; normalised observations (n, D) float32 on the env's device."""
        obs = self.venv.reset_torch()
        self._follow(obs.device)
        self.old_obs = obs
        self.returns = torch.zeros_like(self.returns)
        if self.training and self.norm_obs:
            self.obs_stats.update(obs)
        normalized = self.normalize_obs(obs)
        self.device = normalized.device
        return normalized

    def step_torch(self, actions: torch.Tensor) -> TorchStep:
        """One step of the wrapped env with ``actions`` (n, nu): ``obs``, ``terminal_obs`` (n, D) and
        ``reward`` (n,) normalised (float32), the rest as the env gave them. No host read."""
        out = self.venv.step_torch(actions)
        self._follow(out.obs.device)
        reward = out.reward.to(torch.float32)  # as the numpy API reports rewards
        self.old_obs, self.old_reward = out.obs, reward
        obs, terminal_obs = out.obs, out.terminal_obs
        if self.norm_obs:
            if self.training:
                self.obs_stats.update(obs)
            std = torch.sqrt(self.obs_stats.var + self.epsilon)  # once for both observations
            obs, terminal_obs = self._normalized_obs(obs, std), self._normalized_obs(terminal_obs, std)
        if self.training:
            self.returns = torch.add(
                reward.to(self.returns.device, torch.float64), self.returns, alpha=self.gamma
            )
            self.ret_stats.update(self.returns)
        normalized_reward = self.normalize_reward(reward)
        done = (out.terminated | out.truncated).to(self.returns.device)
        self.returns = self.returns.masked_fill(done, 0.0)
        return out._replace(obs=obs, reward=normalized_reward, terminal_obs=terminal_obs)

    def _normalized_obs(self, obs: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        x = obs.to(self.obs_stats.device, torch.float64)
        return ((x - self.obs_stats.mean) / std).clamp_(-self.clip_obs, self.clip_obs).to(torch.float32)

    # ------------------------------------------------------------------ VecNormalize's methods
    def normalize_obs(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Observations (..., D) normalised with the current statistics (no update): float32, a tensor on the
        statistics' device for a tensor, an array for an array."""
        if not self.norm_obs:
            return obs
        x, as_array = self._tensor(obs)
        return self._back(self._normalized_obs(x, torch.sqrt(self.obs_stats.var + self.epsilon)), as_array)

    def unnormalize_obs(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """The inverse of :meth:`normalize_obs` without the clip (float64)."""
        if not self.norm_obs:
            return obs
        x, as_array = self._tensor(obs)
        return self._back(x * torch.sqrt(self.obs_stats.var + self.epsilon) + self.obs_stats.mean, as_array)

    def normalize_reward(self, reward: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Rewards (n,) scaled by the return's std and clipped (no update); float32."""
        x, as_array = self._tensor(reward)
        if self.norm_reward:
            x = (x / torch.sqrt(self.ret_stats.var + self.epsilon)).clamp_(
                -self.clip_reward, self.clip_reward
            )
        return self._back(x.to(torch.float32), as_array)

    def unnormalize_reward(self, reward: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        if not self.norm_reward:
            return reward
        x, as_array = self._tensor(reward)
        return self._back(x * torch.sqrt(self.ret_stats.var + self.epsilon), as_array)

    def _tensor(self, value: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
        as_array = not isinstance(value, torch.Tensor)
        return torch.as_tensor(value).to(self.obs_stats.device, torch.float64), as_array

    @staticmethod
    def _back(value: torch.Tensor, as_array: bool) -> torch.Tensor | np.ndarray:
        return value.cpu().numpy() if as_array else value

    def get_original_obs_torch(self) -> torch.Tensor:
        """The raw observations (n, D) of the latest reset or step, on the env's device."""
        if self.old_obs is None:
            raise RuntimeError("no observation yet: reset the env first")
        return self.old_obs

    def get_original_reward_torch(self) -> torch.Tensor:
        """The raw rewards (n,) float32 of the latest step, on the env's device."""
        if self.old_reward is None:
            raise RuntimeError("no reward yet: step the env first")
        return self.old_reward

    def get_original_obs(self) -> np.ndarray:
        """Host copy of :meth:`get_original_obs_torch` (SB3's ``get_original_obs``)."""
        return self.get_original_obs_torch().detach().cpu().numpy()

    def get_original_reward(self) -> np.ndarray:
        """Host copy of :meth:`get_original_reward_torch` (SB3's ``get_original_reward``)."""
        return self.get_original_reward_torch().detach().cpu().numpy()

    # ------------------------------------------------------------------ statistics as SB3's
    @property
    def obs_rms(self) -> RunningMeanStd:
        """Host copy of :attr:`obs_stats` as SB3's ``RunningMeanStd`` (reads the device); assigning a
        ``RunningMeanStd`` (or a :class:`TorchRunningMeanStd`) of shape (D,) loads it."""
        return self.obs_stats.to_numpy()

    @obs_rms.setter
    def obs_rms(self, rms: RunningMeanStd | TorchRunningMeanStd) -> None:
        self.obs_stats = self._load_stats("obs_rms", rms, tuple(self.observation_space.shape))

    @property
    def ret_rms(self) -> RunningMeanStd:
        """Host copy of :attr:`ret_stats` as SB3's ``RunningMeanStd``; assigning one of shape () loads it."""
        return self.ret_stats.to_numpy()

    @ret_rms.setter
    def ret_rms(self, rms: RunningMeanStd | TorchRunningMeanStd) -> None:
        self.ret_stats = self._load_stats("ret_rms", rms, ())

    def _load_stats(
        self, name: str, rms: RunningMeanStd | TorchRunningMeanStd, shape: tuple[int, ...]
    ) -> TorchRunningMeanStd:
        if isinstance(rms, TorchRunningMeanStd):
            stats = rms.copy().to(self.obs_stats.device)
        elif isinstance(rms, RunningMeanStd):
            stats = TorchRunningMeanStd.from_numpy(rms, self.obs_stats.device)
        else:
            raise TypeError(f"{name} takes a RunningMeanStd or TorchRunningMeanStd, got {type(rms).__name__}")
        if tuple(stats.mean.shape) != shape or tuple(stats.var.shape) != shape:
            raise ValueError(
                f"{name} of shape {tuple(stats.mean.shape)} does not fit: expected {shape} "
                "(the env's observation shape for obs_rms, () for ret_rms)"
            )
        if not math.isfinite(stats.count) or stats.count <= 0:
            raise ValueError(f"{name} count must be finite and > 0, got {stats.count}")
        return stats

    def to_sb3(self, venv: Any = None) -> VecNormalize:
        """SB3's ``VecNormalize`` over ``venv`` (default: the wrapped env, through its numpy API) with these
        settings and a host copy of the statistics."""
        norm = VecNormalize(
            self.venv if venv is None else venv,
            training=self.training,
            norm_obs=self.norm_obs,
            norm_reward=self.norm_reward,
            clip_obs=self.clip_obs,
            clip_reward=self.clip_reward,
            gamma=self.gamma,
            epsilon=self.epsilon,
        )
        if self.norm_obs:
            norm.obs_rms = self.obs_rms
        norm.ret_rms = self.ret_rms
        return norm

    @classmethod
    def from_sb3(cls, norm: VecNormalize, venv: Any = None) -> TorchVecNormalize:
        """A :class:`TorchVecNormalize` over ``venv`` (default: ``norm.venv``) with the settings and
        statistics of SB3's ``VecNormalize`` ``norm``."""
        if not isinstance(norm, VecNormalize):
            raise TypeError(f"from_sb3 takes a VecNormalize, got {type(norm).__name__}")
        if norm.norm_obs and isinstance(norm.obs_rms, dict):
            raise ValueError("from_sb3: Dict observations are not supported (Box only)")
        wrapped = cls(
            norm.venv if venv is None else venv,
            training=norm.training,
            norm_obs=norm.norm_obs,
            norm_reward=norm.norm_reward,
            clip_obs=norm.clip_obs,
            clip_reward=norm.clip_reward,
            gamma=norm.gamma,
            epsilon=norm.epsilon,
        )
        if norm.norm_obs:
            wrapped.obs_rms = norm.obs_rms
        wrapped.ret_rms = norm.ret_rms
        return wrapped

    def save(self, save_path: str | Path) -> None:
        """Write the settings and statistics in ``VecNormalize.save``'s format (SB3's
        ``VecNormalize.load`` and :meth:`load` read it; the export API's ``vec_normalize=path``
        too), atomically (a temporary file, then a rename)."""
        atomic_write_bytes(save_path, pickle.dumps(self.to_sb3()))

    @classmethod
    def load(cls, load_path: str | Path, venv: Any) -> TorchVecNormalize:
        """A :class:`TorchVecNormalize` over ``venv`` from a file of :meth:`save` or ``VecNormalize.save``
        (a pickle: load only files you trust, as with SB3)."""
        return cls.from_sb3(VecNormalize.load(str(load_path), venv))

    # ------------------------------------------------------------------ the rest of the VecEnv API
    def seed(self, seed: int | None = None) -> Any:
        return self.venv.seed(seed)

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The wrapped env's attribute (as SB3's VecEnvWrapper)."""
        return self.venv.get_attr(attr_name, indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self.venv.set_attr(attr_name, value, indices)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        return self.venv.env_method(method_name, *method_args, indices=indices, **method_kwargs)

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return self.venv.env_is_wrapped(wrapper_class, indices)

    def __getattr__(self, name: str) -> Any:
        """Other public attributes come from the wrapped env (as SB3's VecEnvWrapper)."""
        if name.startswith("_") or name == "venv":
            raise AttributeError(name)
        return getattr(self.venv, name)
