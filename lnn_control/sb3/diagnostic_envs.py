"""Small diagnostic Gymnasium envs for recurrent policies (as SB3's ``IdentityEnv`` for feed-forward ones).

- :class:`CueMemoryEnv`: a cue shown only at the first step must be recalled at the last one; a
  feed-forward policy cannot beat chance (mean return 0), a recurrent one can reach 1.
- :class:`CueHoldEnv`: continuous control with memory: a cue shown only at the first step must be held as
  the action for the next ``hold`` steps, each paying ``-(action - cue)^2``; a feed-forward policy's best is
  the action 0 (return ``-hold``), a recurrent one can reach 0.
- :class:`IntervalTimingEnv`: act once a fixed *time* has passed since a cue, on a jittered clock: counting
  steps is an imprecise clock there (best return about -3.3 at the defaults), integrating ``info["dt"]`` is
  an exact one (return 0). The task on which a policy's use of the clock can be shown.
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


class IntervalTimingEnv(gym.Env):
    """Switch the action from -1 to +1 once ``interval`` seconds have passed since the cue.

    The cue is the first step (observation (1,): ``[is_first]``, 1 at the first step, 0 after). Each later
    step lasts ``nominal_dt * U[jitter]`` seconds, reported in ``info["dt"]``; ``env.dt`` is the nominal
    period. Action: Box(1) in [-1, 1]. Reward: at each of the ``steps`` steps after the first,
    ``-(action - target)^2`` with target -1 while the elapsed time is below ``interval``, +1 from then on
    (the elapsed time when the action is chosen, i.e. including the dt reported with that observation).
    Episodes last ``steps + 1`` steps (terminated).

    A policy that knows the elapsed time can return 0. A recurrent policy that only counts steps can at best
    hedge around the step where the switch falls in expectation: ``sum_k 4 p_k (1 - p_k)`` with ``p_k`` the
    chance that k steps have lasted ``interval`` (about -3.3 at the defaults). A feed-forward policy sees the
    same observation at every later step: about -20. So the clock ablation (the same liquid policy fed the
    nominal period instead of the real dt) costs it about what step counting costs.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 - Gymnasium's convention

    def __init__(
        self,
        interval: float = 0.5,
        steps: int = 20,
        nominal_dt: float = 0.05,
        jitter: tuple[float, float] = (0.2, 1.8),
    ) -> None:
        lo, hi = (float(v) for v in jitter)
        if not 0.0 < lo <= hi:
            raise ValueError(f"jitter must be (lo, hi) with 0 < lo <= hi, got {tuple(jitter)}")
        if nominal_dt <= 0.0 or interval <= 0.0:
            raise ValueError(f"nominal_dt and interval must be > 0 s, got {nominal_dt} and {interval}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.interval, self.steps, self.nominal_dt = float(interval), steps, float(nominal_dt)
        self.jitter = (lo, hi)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._t = 0
        self._elapsed = 0.0

    @property
    def dt(self) -> float:
        """The nominal control period (s)."""
        return self.nominal_dt

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        self._elapsed = 0.0
        return np.ones(1, dtype=np.float32), {"dt": self.nominal_dt}

    def target(self) -> float:
        """The action the current observation asks for: -1 before ``interval`` has elapsed, +1 after."""
        return 1.0 if self._elapsed >= self.interval else -1.0

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        action_value = float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        reward = 0.0 if self._t == 0 else -((action_value - self.target()) ** 2)
        dt = self.nominal_dt * float(self.np_random.uniform(*self.jitter))
        self._t += 1
        self._elapsed += dt
        return np.zeros(1, dtype=np.float32), reward, self._t > self.steps, False, {"dt": dt}


def interval_timing_references(
    env: IntervalTimingEnv, samples: int = 200_000, seed: int = 0
) -> dict[str, float]:
    """Expected returns of three ideal policies on ``env``'s task (Monte Carlo over ``samples`` episodes).

    Returns:
        ``{"time_aware": 0.0, "step_counting": ..., "feed_forward": ...}``: a policy that knows the elapsed
        time; the best policy that knows only the step index k (action ``2 p_k - 1``, cost
        ``4 p_k (1 - p_k)`` with ``p_k`` the chance that k steps last ``interval``); the best constant action
        after the first step.
    """
    rng = np.random.default_rng(seed)
    periods = env.nominal_dt * rng.uniform(*env.jitter, size=(samples, env.steps))
    switched = (np.cumsum(periods, axis=1) >= env.interval).mean(axis=0)  # p_k, k = 1..steps
    constant = float(np.mean(2.0 * switched - 1.0))
    step_counting = float(np.sum(4.0 * switched * (1.0 - switched)))
    feed_forward = float(np.sum(1.0 - 2.0 * constant * (2.0 * switched - 1.0) + constant**2))
    return {"time_aware": 0.0, "step_counting": 0.0 - step_counting, "feed_forward": 0.0 - feed_forward}


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
