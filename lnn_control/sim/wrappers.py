"""Gymnasium wrappers for single environments: control timing and partial observability.

Physics side (must wrap the MuJoCo env directly, below any observation wrapper):

* :class:`ControlTimingWrapper` - irregular control period (jitter, explicit choices, dropped observations)
  from a :class:`~lnn_control.sim.control_timing.ControlTiming`; reports ``info["dt"]``.
* :class:`ReportDt` - reports the constant ``env.unwrapped.dt`` as ``info["dt"]`` for fixed-rate tasks.

Observation side (any env whose steps report ``info["dt"]`` where needed):

* :class:`ObservationMask` (+ :class:`NoVelocity`, :class:`NoPosition` by task) - keep a subset of elements.
* :class:`GaussianObservationNoise` - additive i.i.d. Gaussian sensor noise.
* :class:`ObservationDelay` - the policy sees the observation of ``k`` control steps earlier.
* :class:`AppendDt` - appends the dt of the step that produced the observation as the last element.

Randomness (timing, noise) comes from a generator per wrapper, seeded by the constructor's ``seed`` and
re-seeded by ``reset(seed=s)`` from ``(s, wrapper tag)``, so that a seeded reset reproduces an episode
exactly (as Gymnasium's env checker requires) without touching the base env's own ``np_random`` stream.

The vectorised counterparts of the observation-side wrappers live in :mod:`lnn_control.sim.vec_wrappers`.
"""

from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lnn_control.checks import nonnegative_values, positive_int
from lnn_control.sim.control_timing import ControlTiming
from lnn_control.sim.masks import observation_indices

__all__ = [
    "AppendDt",
    "ControlTimingWrapper",
    "GaussianObservationNoise",
    "NoPosition",
    "NoVelocity",
    "ObservationDelay",
    "ObservationMask",
    "ReportDt",
    "derive_rng",
    "infer_task_name",
    "validate_indices",
    "validate_std",
]

# Tags separating the random streams of the different wrappers that share one seed.
TIMING_STREAM = 1
NOISE_STREAM = 2


def derive_rng(seed: int | None, stream: int) -> np.random.Generator:
    """A generator for ``stream`` derived from ``seed`` (fresh OS entropy when ``seed`` is None)."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(stream),)))


def infer_task_name(env: gym.Env) -> str:
    """Base task name of a Gymnasium MuJoCo env, e.g. ``"HalfCheetah"`` for ``HalfCheetahEnv``."""
    name = type(env.unwrapped).__name__
    return name[: -len("Env")] if name.endswith("Env") else name


def _box(space: gym.Space, who: str) -> spaces.Box:
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise TypeError(f"{who} needs a 1-D Box observation space, got {space}")
    return space


def _require_mujoco(env: gym.Env, who: str) -> Any:
    base = env.unwrapped
    if not (hasattr(base, "frame_skip") and hasattr(base, "model") and hasattr(base, "do_simulation")):
        raise TypeError(f"{who} needs a Gymnasium MujocoEnv underneath, got {type(base).__name__}")
    return base


class ReportDt(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds ``info["dt"] = env.unwrapped.dt`` (seconds) to every step and reset of a fixed-rate env.

    A ``"dt"`` already present in the info (from an inner timing wrapper) is left untouched. After a reset it
    is the nominal period, as for every other path (batched VecEnv, :class:`ControlTimingWrapper`).
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        if not hasattr(env.unwrapped, "dt"):
            raise TypeError(f"ReportDt needs an env with a dt attribute, got {type(env.unwrapped).__name__}")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        info.setdefault("dt", float(self.env.unwrapped.dt))
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        info.setdefault("dt", float(self.env.unwrapped.dt))
        return obs, reward, terminated, truncated, info


class ControlTimingWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Irregular control period for a Gymnasium MuJoCo env.

    Before each step the wrapper draws ``(base, drops)`` from ``timing`` and steps the MuJoCo env once with
    ``frame_skip = base + drops * timing.frame_skip`` (MujocoEnv uses ``self.frame_skip`` both in
    ``do_simulation`` and in ``dt``, so the task's velocity terms stay rates). A dropped observation is a
    control period that lasts longer: the action is held, and the policy's next observation arrives after the
    summed dt, with one reward for the whole interval, exactly as the batched VecEnv does it. Between steps
    ``frame_skip`` is the nominal one, so ``env.unwrapped.dt`` is the nominal dt.

    The returned info is the inner step's, plus ``dt`` (seconds simulated), ``substeps`` (MuJoCo steps
    simulated) and ``dropped`` (observations dropped in this step). A reset's info has ``dt`` = the nominal
    period (what a policy integrates over for the first observation of an episode).

    Args:
        env: a Gymnasium MuJoCo env (``env.unwrapped`` a ``MujocoEnv``); wrap it directly, below observation
            wrappers and below ``TimeLimit`` (drops step the inner env several times per control step).
        timing: the control-period distribution; its ``frame_skip`` becomes the env's nominal frame skip.
        seed: seed of the timing generator (re-seeded by ``reset(seed=...)``).
    """

    def __init__(self, env: gym.Env, timing: ControlTiming, seed: int | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, timing=timing, seed=seed)
        gym.Wrapper.__init__(self, env)
        if not isinstance(timing, ControlTiming):
            raise TypeError(f"timing must be a ControlTiming, got {type(timing).__name__}")
        self._mj = _require_mujoco(env, "ControlTimingWrapper")
        self.timing = timing
        self._mj.frame_skip = timing.frame_skip
        self._timestep = float(self._mj.model.opt.timestep)
        self._rng = derive_rng(seed, TIMING_STREAM)

    @property
    def nominal_dt(self) -> float:
        """Nominal control period in seconds (``timing.frame_skip * timestep``)."""
        return self.timing.frame_skip * self._timestep

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if seed is not None:
            self._rng = derive_rng(seed, TIMING_STREAM)
        obs, info = self.env.reset(seed=seed, options=options)
        info["dt"] = self.nominal_dt
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        base, drops = self.timing.sample_periods(self._rng, 1)
        nominal = self.timing.frame_skip
        dropped = int(drops[0])
        substeps = int(base[0]) + dropped * nominal
        try:
            self._mj.frame_skip = substeps
            obs, reward, terminated, truncated, info = self.env.step(action)
        finally:
            self._mj.frame_skip = nominal
        info["dt"] = substeps * self._timestep
        info["substeps"] = substeps
        info["dropped"] = dropped
        return obs, reward, terminated, truncated, info


class ObservationMask(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Keeps only ``obs[indices]`` (a 1-D Box observation); the space's bounds are sliced alike.

    Args:
        env: env with a 1-D Box observation space of size ``D``.
        indices: distinct integers in ``[0, D)``; their order is the order of the output elements.
    """

    def __init__(self, env: gym.Env, indices: Any):
        gym.utils.RecordConstructorArgs.__init__(self, indices=indices)
        gym.ObservationWrapper.__init__(self, env)
        space = _box(env.observation_space, "ObservationMask")
        self.indices = validate_indices(indices, space.shape[0])
        self.observation_space = spaces.Box(
            low=space.low[self.indices], high=space.high[self.indices], dtype=space.dtype
        )

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(observation)[self.indices]


def validate_indices(indices: Any, dim: int) -> np.ndarray:
    """Check mask ``indices`` against an observation of size ``dim``; returns int64 ``(k,)``."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError(f"mask indices must be a non-empty 1-D list of ints, got {indices!r}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"mask indices must be integers, got dtype {idx.dtype} ({indices!r})")
    bad = idx[(idx < 0) | (idx >= dim)]
    if bad.size:
        raise ValueError(f"mask indices {bad.tolist()} out of range for an observation of size {dim}")
    if np.unique(idx).size != idx.size:
        raise ValueError(f"mask indices must be distinct, got {idx.tolist()}")
    return idx.astype(np.int64)


class NoVelocity(ObservationMask):
    """Velocity-masked observation of a v5 task (see :mod:`lnn_control.sim.masks`); task inferred if None."""

    def __init__(self, env: gym.Env, task: str | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, task=task)
        task = infer_task_name(env) if task is None else task
        dim = _box(env.observation_space, "NoVelocity").shape[0]
        super().__init__(env, observation_indices(task, "novel", dim))


class NoPosition(ObservationMask):
    """Position-masked observation of a v5 task (see :mod:`lnn_control.sim.masks`); task inferred if None."""

    def __init__(self, env: gym.Env, task: str | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, task=task)
        task = infer_task_name(env) if task is None else task
        dim = _box(env.observation_space, "NoPosition").shape[0]
        super().__init__(env, observation_indices(task, "nopos", dim))


def validate_std(std: Any, dim: int) -> np.ndarray | float:
    """Check a noise standard deviation: a float or a list of ``dim`` floats, all finite and >= 0."""
    arr = np.asarray(std, dtype=np.float64)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != dim):
        raise ValueError(f"noise std must be a float or a list of {dim} floats, got shape {arr.shape}")
    nonnegative_values("noise std", arr)
    return float(arr) if arr.ndim == 0 else arr


class GaussianObservationNoise(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Adds ``N(0, std**2)`` noise to every observation (reset and step), independently per element.

    Args:
        env: env with a 1-D Box observation space of size ``D``.
        std: float or ``(D,)`` standard deviations (>= 0), in observation units.
        seed: seed of the noise generator (re-seeded by ``reset(seed=...)``).
    """

    def __init__(self, env: gym.Env, std: Any, seed: int | None = None):
        gym.utils.RecordConstructorArgs.__init__(self, std=std, seed=seed)
        gym.Wrapper.__init__(self, env)
        space = _box(env.observation_space, "GaussianObservationNoise")
        self.std = validate_std(std, space.shape[0])
        self._rng = derive_rng(seed, NOISE_STREAM)

    def _noisy(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs)
        noise = self._rng.standard_normal(obs.shape) * self.std
        return (obs + noise).astype(obs.dtype, copy=False)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if seed is not None:
            self._rng = derive_rng(seed, NOISE_STREAM)
        obs, info = self.env.reset(seed=seed, options=options)
        return self._noisy(obs), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._noisy(obs), reward, terminated, truncated, info


class ObservationDelay(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The policy sees the observation of ``k`` control steps earlier (sensor latency in steps).

    At reset the buffer is filled with the reset observation, so the first ``k`` steps of an episode return
    the reset observation (a held sensor reading; Gymnasium's ``DelayObservation`` pads with zeros instead,
    which is not a physical reading). Step ``t`` (1-based) returns the observation of step ``t - k``.

    Args:
        env: any env.
        k: delay in control steps (>= 0; 0 is the identity).
    """

    def __init__(self, env: gym.Env, k: int):
        gym.utils.RecordConstructorArgs.__init__(self, k=k)
        gym.Wrapper.__init__(self, env)
        self.k = positive_int("delay k (control steps)", k, allow_zero=True)
        self._buffer: deque[np.ndarray] = deque(maxlen=self.k + 1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        obs = np.array(obs, copy=True)
        self._buffer.clear()
        self._buffer.extend(obs for _ in range(self.k + 1))
        return obs.copy(), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._buffer.append(np.array(obs, copy=True))
        return self._buffer[0].copy(), reward, terminated, truncated, info


class AppendDt(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Appends dt (seconds) as the last observation element: ``(D,) -> (D + 1,)``.

    The dt appended to a step's observation is that step's ``info["dt"]`` (the time simulated to produce it;
    falls back to ``env.unwrapped.dt`` when no ``"dt"`` is reported); on reset it is the nominal
    ``env.unwrapped.dt``. The appended bound is ``[0, inf)``.
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        space = _box(env.observation_space, "AppendDt")
        if not hasattr(env.unwrapped, "dt"):
            raise TypeError(f"AppendDt needs an env with a dt attribute, got {type(env.unwrapped).__name__}")
        self.observation_space = spaces.Box(
            low=np.append(space.low, 0.0).astype(space.dtype),
            high=np.append(space.high, np.inf).astype(space.dtype),
            dtype=space.dtype,
        )

    def _append(self, obs: np.ndarray, dt: float) -> np.ndarray:
        obs = np.asarray(obs)
        return np.append(obs, np.asarray(dt, dtype=obs.dtype))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._append(obs, float(self.env.unwrapped.dt)), info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        dt = info.get("dt", self.env.unwrapped.dt)
        return self._append(obs, float(dt)), reward, terminated, truncated, info
