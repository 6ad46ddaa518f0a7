"""LiquidPPO's rollout at its edges: irregular ``info["dt"]`` under VecNormalize reaches the buffer raw, and
terminated (not truncated) episodes keep their raw reward. Each check has a control test that puts the bug
it names into the code path and shows that the check then fails."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from lnn_control.sb3 import LiquidPPO
from lnn_control.sb3.carry import RecurrentCarry
from lnn_control.sb3.diagnostic_envs import IrregularClockEnv
from lnn_control.sb3.dt_tracking import DtTracker


class _DtLog(gym.Wrapper):
    """Records, below every vectorised wrapper, the dt each step reported (the raw physical time)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.log: list[float] = []

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log.append(float(info["dt"]))
        return obs, reward, terminated, truncated, info


class _Recorder(BaseCallback):
    """Each step's raw rewards, dones and infos as the VecEnv returned them."""

    def __init__(self) -> None:
        super().__init__()
        self.rewards: list[np.ndarray] = []
        self.dones: list[np.ndarray] = []
        self.infos: list[list[dict]] = []

    def _on_step(self) -> bool:
        self.rewards.append(np.array(self.locals["rewards"], dtype=np.float32))
        self.dones.append(np.array(self.locals["dones"]))
        self.infos.append([dict(info) for info in self.locals["infos"]])
        return True


def _collect(model: LiquidPPO, callback: BaseCallback | None = None) -> None:
    _, cb = model._setup_learn(model.n_steps * model.n_envs, callback=callback)
    assert model.collect_rollouts(model.env, cb, model.rollout_buffer, model.n_steps)


# ------------------------------------------------------------------------------ dt under VecNormalize
N_ENVS, N_STEPS = 3, 48


def _normalised_clock_model() -> tuple[LiquidPPO, list[_DtLog]]:
    logs: list[_DtLog] = []

    def make(i: int) -> gym.Env:
        # obs ~ N(0, 1) * 5 + 3 so that normalisation visibly changes the observations (and would change dt)
        env = _DtLog(gym.wrappers.TransformObservation(IrregularClockEnv(dt_offset=0.001 * (i + 1)),
                                                       lambda o: o * 5.0 + 3.0, None))  # fmt: skip
        logs.append(env)
        return env

    venv = VecNormalize(DummyVecEnv([lambda i=i: make(i) for i in range(N_ENVS)]), norm_reward=True)
    venv.seed(0)
    model = LiquidPPO(
        "LiquidPolicy", venv, n_steps=N_STEPS, seq_len=16, batch_size=48, seed=0, policy_kwargs=dict(units=4)
    )
    return model, logs


def _dt_problems(model: LiquidPPO, logs: list[_DtLog], dones: np.ndarray) -> list[str]:
    """Where the buffer's dts differ from the raw dts the envs reported (nominal dt after episode starts)."""
    dts = model.rollout_buffer.dts  # (n_steps, n_envs): the dt paired with each stored observation
    problems = []
    for i, log in enumerate(logs):
        nominal = np.float32(0.01 + 0.001 * (i + 1))
        expected = np.empty(N_STEPS, dtype=np.float32)
        expected[0] = nominal
        raw = np.asarray(log.log[: N_STEPS - 1], dtype=np.float32)
        expected[1:] = np.where(dones[: N_STEPS - 1, i], nominal, raw)
        if not np.allclose(dts[:, i], expected, rtol=1e-6, atol=0):
            problems.append(f"env {i}: buffer dts {dts[:6, i]} vs raw {expected[:6]}")
    return problems


def test_irregular_dt_reaches_the_buffer_raw_under_vecnormalize() -> None:
    model, logs = _normalised_clock_model()
    recorder = _Recorder()
    _collect(model, recorder)
    dones = np.stack(recorder.dones)
    assert _dt_problems(model, logs, dones) == []
    # The test has teeth: the dts are irregular (several values per env, not the nominal one) ...
    assert all(len(np.unique(model.rollout_buffer.dts[:, i])) >= 4 for i in range(N_ENVS))
    # ... and the observations are normalised (raw obs have mean 3, std 5).
    stored = model.rollout_buffer.observations
    assert abs(float(stored.mean())) < 1.0 and float(stored.std()) < 2.0


def test_dt_check_fails_when_info_dt_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: a tracker that ignores ``info["dt"]`` (always the nominal dt) must be caught."""

    def nominal_only(self: DtTracker, infos: list[dict], dones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fallback = self.nominal_or_default()
        return fallback.copy(), fallback.copy()

    monkeypatch.setattr(DtTracker, "step", nominal_only)
    model, logs = _normalised_clock_model()
    recorder = _Recorder()
    _collect(model, recorder)
    assert len(_dt_problems(model, logs, np.stack(recorder.dones))) == N_ENVS


def test_dt_check_fails_when_dt_is_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: dts scaled like observations (a dt routed through VecNormalize) must be caught."""
    original = DtTracker.step

    def normalised(self: DtTracker, infos: list[dict], dones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        next_dts, step_dts = original(self, infos, dones)
        return next_dts / 0.015, step_dts  # scaled by a std (centring would make dts negative)

    monkeypatch.setattr(DtTracker, "step", normalised)
    model, logs = _normalised_clock_model()
    recorder = _Recorder()
    _collect(model, recorder)
    assert len(_dt_problems(model, logs, np.stack(recorder.dones))) == N_ENVS


# ---------------------------------------------------------------------------- terminated vs truncated
def _mixed_ends_model(gamma: float = 0.9) -> LiquidPPO:
    """Episodes that terminate (random length 3..12) or are truncated by a time limit of 8 steps."""
    venv = DummyVecEnv(
        [lambda: TimeLimit(IrregularClockEnv(min_len=3, max_len=12), max_episode_steps=8) for _ in range(2)]
    )
    venv.seed(0)
    return LiquidPPO(
        "LiquidPolicy", venv, n_steps=64, seq_len=16, batch_size=64, gamma=gamma, seed=0,
        policy_kwargs=dict(units=8),
    )  # fmt: skip


def _terminated_problems(model: LiquidPPO, recorder: _Recorder) -> tuple[list[str], int, int]:
    """Terminated steps whose stored reward is not the raw reward; also counts both kinds of episode end."""
    problems, n_terminated, n_truncated = [], 0, 0
    for t, (dones, infos) in enumerate(zip(recorder.dones, recorder.infos, strict=True)):
        for i in np.flatnonzero(dones):
            raw, stored = recorder.rewards[t][i], model.rollout_buffer.rewards[t, i]
            if infos[i]["TimeLimit.truncated"]:
                n_truncated += 1
                assert stored != pytest.approx(raw, abs=1e-6)  # bootstrapped (gamma * V != 0)
            else:
                n_terminated += 1
                if stored != pytest.approx(raw, rel=1e-6, abs=1e-7):
                    problems.append(f"step {t} env {i}: stored {stored}, raw {raw}")
    return problems, n_terminated, n_truncated


def test_terminated_steps_keep_their_raw_reward() -> None:
    model, recorder = _mixed_ends_model(), _Recorder()
    _collect(model, recorder)
    problems, n_terminated, n_truncated = _terminated_problems(model, recorder)
    assert problems == []
    assert n_terminated >= 4 and n_truncated >= 2  # both kinds of episode end happened
    # Non-final steps keep the raw reward too.
    dones = np.stack(recorder.dones)
    np.testing.assert_allclose(
        model.rollout_buffer.rewards[~dones], np.stack(recorder.rewards)[~dones], rtol=1e-6
    )


def test_terminated_check_fails_when_every_done_is_bootstrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: bootstrapping every ``done`` (as if all were time limits) must be caught."""
    original = RecurrentCarry._terminal_values

    def every_done(self, infos, dones, new_states, step_dts):
        infos = [
            {**info, "TimeLimit.truncated": True} if done else info
            for info, done in zip(infos, dones, strict=True)
        ]
        return original(self, infos, dones, new_states, step_dts)

    monkeypatch.setattr(RecurrentCarry, "_terminal_values", every_done)
    model, recorder = _mixed_ends_model(), _Recorder()
    _collect(model, recorder)
    problems, n_terminated, _ = _terminated_problems(model, recorder)
    assert len(problems) == n_terminated >= 4
