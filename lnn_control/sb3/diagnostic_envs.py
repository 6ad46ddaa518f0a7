"""Small diagnostic Gymnasium envs for recurrent policies (as SB3's ``IdentityEnv`` for feed-forward ones).

- :class:`CueMemoryEnv`: a cue shown only at the first step must be recalled at the last one; a
  feed-forward policy cannot beat chance (mean return 0), a recurrent one can reach 1.
- :class:`CueHoldEnv`: continuous control with memory: a cue shown only at the first step must be held as
  the action for the next ``hold`` steps, each paying ``-(action - cue)^2``; a feed-forward policy's best is
  the action 0 (return ``-hold``), a recurrent one can reach 0.
- :class:`IrregularClockEnv`: random observations, episodes of random length, and a distinctive, irregular
  ``info["dt"]`` per step (and per env through ``dt_offset``), to check that time steps reach the policy.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CueMemoryEnv(gym.Env):
    """Remember a binary cue over ``delay`` blank steps.

    Observation (3,): ``[cue, is_first, is_last]`` where ``cue`` in {-1, +1} is shown at the first step only
    (0 afterwards). Action: Discrete(2), read as -1 / +1. Reward: at the last step (step ``delay``), +1 if the
    action equals the cue, else -1; 0 on earlier steps. Episodes last ``delay + 1`` steps (terminated).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - Gymnasium's convention

    def __init__(self, delay: int = 3, dt: float = 0.05) -> None:
        if delay < 1:
            raise ValueError(f"delay must be >= 1, got {delay}")
        self.delay = delay
        self.dt = dt
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._cue = 1.0
        self._t = 0

    def _obs(self) -> np.ndarray:
        first = self._t == 0
        return np.array(
            [self._cue if first else 0.0, float(first), float(self._t == self.delay)], dtype=np.float32
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._cue = float(self.np_random.choice([-1.0, 1.0]))
        self._t = 0
        return self._obs(), {"dt": self.dt}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        last = self._t == self.delay
        reward = 0.0
        if last:
            reward = 1.0 if (2.0 * float(int(action)) - 1.0) == self._cue else -1.0
        self._t += 1
        return self._obs(), reward, last, False, {"dt": self.dt}


class CueHoldEnv(gym.Env):
    """Hold a cue from memory as a continuous action.

    Observation (2,): ``[cue, is_first]`` where ``cue`` in {-1, +1} is shown at the first step only (0
    afterwards). Action: Box(1) in [-1, 1]. Reward: 0 at the first step, then ``-(action - cue)^2`` at each of
    the ``hold`` following steps. Episodes last ``hold + 1`` steps (terminated). ``info["dt"]`` is ``dt``.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - Gymnasium's convention

    def __init__(self, hold: int = 11, dt: float = 0.02) -> None:
        if hold < 1:
            raise ValueError(f"hold must be >= 1, got {hold}")
        self.hold = hold
        self.dt = dt
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._cue = 1.0
        self._t = 0

    def _obs(self) -> np.ndarray:
        first = self._t == 0
        return np.array([self._cue if first else 0.0, float(first)], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._cue = float(self.np_random.choice([-1.0, 1.0]))
        self._t = 0
        return self._obs(), {"dt": self.dt}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        action_value = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        reward = 0.0 if self._t == 0 else -((action_value - self._cue) ** 2)
        self._t += 1
        return self._obs(), reward, self._t > self.hold, False, {"dt": self.dt}


class IrregularClockEnv(gym.Env):
    """Random observations on an irregular clock with distinctive dt values.

    Each step lasts ``nominal_dt * k + dt_offset`` seconds with k drawn from {1, ..., 5}; that value is
    reported in ``info["dt"]`` (unless ``report_dt=False``). ``dt`` (the attribute) is the nominal period
    ``nominal_dt + dt_offset`` unless ``has_dt_attr=False``. Observation (4,) ~ N(0, 1); action Box(2) in
    [-1, 1]; reward ``-|a - obs[:2]|^2`` of the previous observation. Episodes end (terminated) after a random
    length in [min_len, max_len].
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - Gymnasium's convention

    def __init__(
        self,
        nominal_dt: float = 0.01,
        dt_offset: float = 0.0,
        min_len: int = 3,
        max_len: int = 12,
        report_dt: bool = True,
        has_dt_attr: bool = True,
    ) -> None:
        self.nominal_dt = nominal_dt
        self.dt_offset = dt_offset
        self.min_len, self.max_len = min_len, max_len
        self.report_dt = report_dt
        self.has_dt_attr = has_dt_attr
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self._obs = np.zeros(4, dtype=np.float32)
        self._t = 0
        self._length = max_len

    def __getattr__(self, name: str) -> Any:
        if name == "dt" and self.__dict__.get("has_dt_attr", False):
            return self.nominal_dt + self.dt_offset
        raise AttributeError(name)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        self._length = int(self.np_random.integers(self.min_len, self.max_len + 1))
        self._obs = self.np_random.standard_normal(4).astype(np.float32)
        return self._obs.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = -float(np.sum((np.asarray(action, dtype=np.float32) - self._obs[:2]) ** 2))
        self._t += 1
        self._obs = self.np_random.standard_normal(4).astype(np.float32)
        info: dict[str, Any] = {}
        if self.report_dt:
            info["dt"] = self.nominal_dt * int(self.np_random.integers(1, 6)) + self.dt_offset
        return self._obs.copy(), reward, self._t >= self._length, False, info
