"""Stable-Baselines3 VecEnv wrappers: the observation-side options of :mod:`lnn_control.sim.wrappers`,
vectorised over environments.

They wrap any VecEnv with a 1-D Box observation space (the batched MuJoCo env, or a ``DummyVecEnv``);
:class:`VecAppendDt` needs ``infos[i]["dt"]`` on every step. Physics-side timing (jitter, drops) is done by
the batched env itself (``BatchedMujocoVecEnv(..., timing=ControlTiming(...))``).

Auto-reset: when env ``i`` is done, the VecEnv returns its reset observation in ``obs[i]`` and the last one in
``infos[i]["terminal_observation"]``. Each wrapper transforms both: the terminal observation exactly as a
step observation of the finished episode, the reset observation as a reset (the delay buffer of env ``i``
restarts, the appended dt is the nominal one). Per env, the outputs match the single-env wrappers step for
step; for the noise wrapper with one env the random stream is the same as well (seeded by ``seed(s)`` as
:class:`~lnn_control.sim.wrappers.GaussianObservationNoise` is by ``reset(seed=s)``).

Arrays: ``obs`` is ``(n_envs, D)``; masks give ``(n_envs, k)``, ``VecAppendDt`` ``(n_envs, D + 1)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from lnn_control.checks import positive_int
from lnn_control.sim.wrappers import NOISE_STREAM, derive_rng, validate_indices, validate_std

__all__ = ["VecAppendDt", "VecObservationDelay", "VecObservationMask", "VecObservationNoise"]


def _box(venv: VecEnv, who: str) -> spaces.Box:
    space = venv.observation_space
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise TypeError(f"{who} needs a VecEnv with a 1-D Box observation space, got {space}")
    return space


def _terminal(infos: list[dict[str, Any]], i: int, who: str) -> np.ndarray:
    try:
        return np.asarray(infos[i]["terminal_observation"])
    except KeyError:
        raise KeyError(
            f"{who}: env {i} is done but infos[{i}] has no 'terminal_observation' (an SB3 VecEnv must set it)"
        ) from None


class VecObservationMask(VecEnvWrapper):
    """Keeps ``obs[:, indices]`` (and the same elements of terminal observations).

    Args:
        venv: VecEnv with a 1-D Box observation space of size ``D``.
        indices: distinct ints in ``[0, D)``, e.g. from :func:`lnn_control.sim.masks.observation_indices`.
    """

    def __init__(self, venv: VecEnv, indices: Any):
        space = _box(venv, "VecObservationMask")
        self.indices = validate_indices(indices, space.shape[0])
        new_space = spaces.Box(low=space.low[self.indices], high=space.high[self.indices], dtype=space.dtype)
        super().__init__(venv, observation_space=new_space)

    def reset(self) -> VecEnvObs:
        return np.asarray(self.venv.reset())[:, self.indices]

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = _terminal(infos, i, "VecObservationMask")[self.indices]
        return np.asarray(obs)[:, self.indices], rewards, dones, infos


class VecObservationNoise(VecEnvWrapper):
    """Adds ``N(0, std**2)`` noise to every observation element of every env (terminal observations included).

    Args:
        venv: VecEnv with a 1-D Box observation space of size ``D``.
        std: float or ``(D,)`` standard deviations (>= 0).
        seed: seed of the noise generator; :meth:`seed` re-seeds it.
    """

    def __init__(self, venv: VecEnv, std: Any, seed: int | None = None):
        space = _box(venv, "VecObservationNoise")
        self.std = validate_std(std, space.shape[0])
        self._rng = derive_rng(seed, NOISE_STREAM)
        super().__init__(venv)

    def seed(self, seed: int | None = None) -> Any:
        if seed is not None:
            self._rng = derive_rng(seed, NOISE_STREAM)
        return self.venv.seed(seed)

    def _noisy(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        return (obs + self._rng.standard_normal(obs.shape) * self.std).astype(obs.dtype, copy=False)

    def reset(self) -> VecEnvObs:
        return self._noisy(self.venv.reset())

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        # Terminal observations first: with one env this draws in the order of the single-env wrapper
        # (last step of the episode, then the reset).
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = self._noisy(_terminal(infos, i, "VecObservationNoise"))
        return self._noisy(obs), rewards, dones, infos


class VecObservationDelay(VecEnvWrapper):
    """Each env sees its observation of ``k`` control steps earlier.

    At a reset (initial or automatic) the env's buffer is filled with its reset observation, as in
    :class:`~lnn_control.sim.wrappers.ObservationDelay`; the terminal observation of a finished episode is
    the delayed one (what the policy would have seen at that step).

    Args:
        venv: any VecEnv with an array observation.
        k: delay in control steps (>= 0).
    """

    def __init__(self, venv: VecEnv, k: int):
        self.k = positive_int("delay k (control steps)", k, allow_zero=True)
        super().__init__(venv)
        # Ring buffer (k + 1, n_envs, *obs_shape); slot self._head holds the newest observation.
        self._buffer: np.ndarray | None = None
        self._head = 0

    def reset(self) -> VecEnvObs:
        obs = np.asarray(self.venv.reset())
        self._buffer = np.repeat(obs[None], self.k + 1, axis=0)
        self._head = 0
        return obs.copy()

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        obs = np.asarray(obs)
        if self._buffer is None:
            raise RuntimeError("VecObservationDelay: reset() must be called before step()")
        done_idx = np.flatnonzero(dones)
        newest = obs.copy()
        for i in done_idx:
            newest[i] = _terminal(infos, i, "VecObservationDelay")
        self._head = (self._head + 1) % (self.k + 1)
        self._buffer[self._head] = newest
        out = self._buffer[(self._head + 1) % (self.k + 1)].copy()
        for i in done_idx:
            infos[i]["terminal_observation"] = out[i].copy()
            self._buffer[:, i] = obs[i]
            out[i] = obs[i]
        return out, rewards, dones, infos


class VecAppendDt(VecEnvWrapper):
    """Appends each env's step dt (``infos[i]["dt"]``, seconds) as the last observation element.

    A reset observation (initial, or the automatic reset of a finished env) gets ``nominal_dt``; the terminal
    observation of a finished episode gets that step's dt.

    Args:
        venv: VecEnv with a 1-D Box observation space whose steps report ``infos[i]["dt"]``.
        nominal_dt: dt appended to reset observations; None reads ``venv.get_attr("dt")`` (per env).
    """

    def __init__(self, venv: VecEnv, nominal_dt: float | None = None):
        space = _box(venv, "VecAppendDt")
        if nominal_dt is None:
            try:
                nominal = np.asarray(venv.get_attr("dt"), dtype=np.float64)
            except AttributeError:
                raise AttributeError(
                    "VecAppendDt: the VecEnv has no 'dt' attribute; pass nominal_dt= explicitly"
                ) from None
        else:
            nominal = np.full(venv.num_envs, float(nominal_dt))
        if nominal.shape != (venv.num_envs,) or not np.all(nominal > 0):
            raise ValueError(f"nominal_dt must be > 0 seconds per env, got {nominal.tolist()}")
        self.nominal_dt = nominal
        new_space = spaces.Box(
            low=np.append(space.low, 0.0).astype(space.dtype),
            high=np.append(space.high, np.inf).astype(space.dtype),
            dtype=space.dtype,
        )
        super().__init__(venv, observation_space=new_space)

    def reset(self) -> VecEnvObs:
        obs = np.asarray(self.venv.reset())
        return np.concatenate([obs, self.nominal_dt[:, None].astype(obs.dtype)], axis=1)

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        obs = np.asarray(obs)
        try:
            dt = np.array([info["dt"] for info in infos], dtype=np.float64)
        except KeyError:
            raise KeyError(
                "VecAppendDt needs infos[i]['dt'] on every step; the wrapped VecEnv does not report it"
            ) from None
        for i in np.flatnonzero(dones):
            term = _terminal(infos, i, "VecAppendDt")
            infos[i]["terminal_observation"] = np.append(term, np.asarray(dt[i], dtype=term.dtype))
            dt[i] = self.nominal_dt[i]
        return np.concatenate([obs, dt[:, None].astype(obs.dtype)], axis=1), rewards, dones, infos
