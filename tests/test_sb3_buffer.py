"""The sequence rollout buffer: chunked training evaluation must reproduce the rollout, step for step.

This is the correctness test of LiquidPPO's training data: if the stored states, episode starts or dts were
misaligned with the chunks, log-probs and values recomputed in training would differ from those the policy
produced while acting.
"""

import numpy as np
import pytest
import torch as th
from gymnasium.wrappers import TimeLimit
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.sb3 import LiquidPPO
from lnn_control.sb3.diagnostic_envs import IrregularClockEnv


class _Recorder(BaseCallback):
    """Keeps each step's infos, raw rewards and dones (as the env returned them)."""

    def __init__(self) -> None:
        super().__init__()
        self.infos: list[list[dict]] = []
        self.rewards: list[np.ndarray] = []
        self.dones: list[np.ndarray] = []

    def _on_rollout_start(self) -> None:
        self.infos, self.rewards, self.dones = [], [], []

    def _on_step(self) -> bool:
        self.infos.append([dict(info) for info in self.locals["infos"]])
        self.rewards.append(np.array(self.locals["rewards"], dtype=np.float32))
        self.dones.append(np.array(self.locals["dones"]))
        return True


def _clock_env(n_envs: int = 3, **kwargs) -> DummyVecEnv:
    """n_envs IrregularClockEnvs with different dt offsets and short random episodes."""
    fns = [lambda i=i: IrregularClockEnv(dt_offset=0.001 * (i + 1), **kwargs) for i in range(n_envs)]
    env = DummyVecEnv(fns)
    env.seed(0)
    return env


def _collect(model: LiquidPPO, callback: BaseCallback | None = None) -> None:
    """One rollout into model.rollout_buffer, as learn() does it."""
    _, cb = model._setup_learn(model.n_steps * model.n_envs, callback=callback)
    assert model.collect_rollouts(model.env, cb, model.rollout_buffer, model.n_steps)


CELL_CASES = [
    ("cfc", True),
    ("cfc", False),
    ("ltc", True),
    ("lstm", True),
    ("lstm", False),
    ("gru", True),
]


@pytest.mark.parametrize(("cell", "shared"), CELL_CASES)
def test_chunked_evaluation_equals_rollout(cell: str, shared: bool) -> None:
    model = LiquidPPO(
        "LiquidPolicy",
        _clock_env(),
        n_steps=48,
        seq_len=16,
        batch_size=48,
        seed=3,
        policy_kwargs=dict(cell=cell, units=8, critic="shared" if shared else "separate", cell_kwargs={}),
    )
    _collect(model)
    buffer = model.rollout_buffer
    starts = buffer.episode_starts.astype(bool)
    # The rollout must contain episode starts inside chunks (not only at chunk boundaries) to test resets.
    assert starts[1:][np.arange(1, 48) % 16 != 0].any()
    n_seen = 0
    with th.no_grad():
        for batch in buffer.get(48):
            values, log_prob, _ = model.policy.evaluate_actions(
                batch.observations, batch.actions, batch.states, batch.episode_starts, batch.dts
            )
            np.testing.assert_allclose(log_prob.numpy(), batch.old_log_prob.numpy(), rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(
                values.flatten().numpy(), batch.old_values.numpy(), rtol=1e-4, atol=1e-4
            )
            assert batch.states.shape == (1, 3, model.policy.state_shape[1])
            assert batch.episode_starts.shape == (3, 16) and batch.dts.shape == (3, 16)
            n_seen += batch.old_values.numel()
    assert n_seen == 48 * 3


def test_chunk_evaluation_fails_with_wrong_alignment() -> None:
    """Control: zero initial states instead of the stored ones must change the results (the test can fail)."""
    model = LiquidPPO(
        "LiquidPolicy", _clock_env(max_len=40), n_steps=32, seq_len=8, batch_size=32, seed=1,
        policy_kwargs=dict(cell="cfc", units=8),
    )  # fmt: skip
    _collect(model)
    with th.no_grad():
        batch = next(model.rollout_buffer.get(32))
        _, log_prob, _ = model.policy.evaluate_actions(
            batch.observations, batch.actions, th.zeros_like(batch.states), batch.episode_starts, batch.dts
        )
    assert not np.allclose(log_prob.numpy(), batch.old_log_prob.numpy(), atol=1e-4)


def test_buffer_stores_the_dt_reported_with_each_observation() -> None:
    recorder = _Recorder()
    env = _clock_env()
    model = LiquidPPO(
        "LiquidPolicy", env, n_steps=32, seq_len=8, batch_size=32, seed=0, policy_kwargs=dict(units=8)
    )
    _collect(model, recorder)
    dts = model.rollout_buffer.dts
    nominal = np.array([0.01 + 0.001 * (i + 1) for i in range(3)], dtype=np.float32)
    expected = np.empty_like(dts)
    expected[0] = nominal  # all envs start an episode
    for t in range(1, 32):
        reported = np.array([info["dt"] for info in recorder.infos[t - 1]], dtype=np.float32)
        expected[t] = np.where(recorder.dones[t - 1], nominal, reported)
    np.testing.assert_allclose(dts, expected, rtol=1e-6)
    # Distinctive values really are irregular (several distinct dts per env).
    assert len(np.unique(dts[:, 0])) >= 3
    assert np.array_equal(
        model.rollout_buffer.episode_starts[1:], np.stack(recorder.dones[:-1]).astype(np.float32)
    )


@pytest.mark.parametrize("cell", ["cfc", "ltc"])
def test_dt_changes_the_liquid_actor(cell: str) -> None:
    """dt reaches the cell: the same observations with other dts give another actor state and mean action.

    dt is scaled down: at one time unit per step an LTC nearly settles within a step, so longer steps change
    its state less than shorter ones."""
    model = LiquidPPO(
        "LiquidPolicy", _clock_env(max_len=40), n_steps=16, seq_len=16, batch_size=16, seed=0,
        policy_kwargs=dict(cell=cell, units=8),
    )  # fmt: skip
    _collect(model)
    policy = model.policy
    with th.no_grad():
        batch = next(model.rollout_buffer.get(16))
        outputs = []
        for dts in (batch.dts, batch.dts * 0.2):
            dist, state = policy.get_distribution(batch.observations, batch.states, batch.episode_starts, dts)
            outputs.append((dist.distribution.mean, state))
    assert (outputs[0][1] - outputs[1][1]).abs().max() > 1e-2
    assert not th.allclose(outputs[0][0], outputs[1][0])


def test_missing_dt_falls_back_to_first_report_then_to_one() -> None:
    # No dt attribute, but dt in infos: the first reported dt becomes the nominal one.
    env = DummyVecEnv([lambda: IrregularClockEnv(has_dt_attr=False, dt_offset=0.003, max_len=6)])
    with pytest.warns(UserWarning, match="no 'dt' attribute"):
        model = LiquidPPO("LiquidPolicy", env, n_steps=32, seq_len=8, batch_size=32, seed=0)
        _collect(model)
    dts = model.rollout_buffer.dts[:, 0]
    assert dts[0] == pytest.approx(1.0)
    starts = model.rollout_buffer.episode_starts[:, 0].astype(bool)
    later_starts = dts[1:][starts[1:]]
    assert later_starts.size > 0 and np.all(later_starts < 0.1)  # learned from infos, not 1.0
    # Neither attribute nor reports: a constant 1.0.
    env = DummyVecEnv([lambda: IrregularClockEnv(has_dt_attr=False, report_dt=False)])
    with pytest.warns(UserWarning, match="dt = 1.0"):
        model = LiquidPPO("LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, seed=0)
        _collect(model)
    np.testing.assert_array_equal(model.rollout_buffer.dts, 1.0)


def test_bad_dt_is_rejected() -> None:
    env = DummyVecEnv([lambda: IrregularClockEnv(dt_offset=-1.0)])
    with pytest.raises(ValueError, match=r"dt must be finite and >= 0, got -0\.99 from env.get_attr"):
        LiquidPPO("LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, seed=0)
    env = DummyVecEnv([lambda: IrregularClockEnv(dt_offset=-1.0, has_dt_attr=False)])
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"got -0\.9.* in infos\[0\]\['dt'\]"):
        model = LiquidPPO("LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, seed=0)
        _collect(model)


@pytest.mark.parametrize("critic", ["detached", "shared", "separate"])
def test_truncated_episodes_bootstrap_from_the_episode_state(critic: str) -> None:
    """reward + gamma * V(terminal obs, state at the end of that episode), not from a reset state."""
    recorder = _Recorder()
    env = make_vec_env(
        lambda: TimeLimit(IrregularClockEnv(min_len=1000, max_len=1000), max_episode_steps=7),
        n_envs=2,
        seed=0,
    )
    model = LiquidPPO(
        "LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, gamma=0.9, seed=0,
        policy_kwargs=dict(units=8, critic=critic),
    )  # fmt: skip
    _collect(model, recorder)
    buffer, policy = model.rollout_buffer, model.policy
    t_end = 6  # first episode: steps 0..6, truncated at step 6
    for env_idx in range(2):
        info = recorder.infos[t_end][env_idx]
        assert recorder.dones[t_end][env_idx] and info["TimeLimit.truncated"]
        obs = np.concatenate([buffer.observations[: t_end + 1, env_idx], info["terminal_observation"][None]])
        dts = np.append(buffer.dts[: t_end + 1, env_idx], info["dt"]).astype(np.float32)
        starts = np.zeros(t_end + 2, dtype=bool)
        starts[0] = True
        with th.no_grad():
            values = policy.predict_values(
                th.as_tensor(obs),
                policy.initial_state(1),
                th.as_tensor(starts[None]),
                th.as_tensor(dts[None]),
            ).flatten()
            reset_value = policy.predict_values(
                th.as_tensor(obs[-1:]), policy.initial_state(1), th.ones(1, 1, dtype=th.bool),
                th.as_tensor(dts[-1:][None]),
            ).item()  # fmt: skip
        expected = recorder.rewards[t_end][env_idx] + 0.9 * values[-1].item()
        assert buffer.rewards[t_end, env_idx] == pytest.approx(expected, rel=1e-4, abs=1e-5)
        assert abs(values[-1].item() - reset_value) > 1e-4  # the state matters: the check can fail
        # Steps that are not truncations keep the raw reward.
        assert buffer.rewards[t_end - 1, env_idx] == pytest.approx(recorder.rewards[t_end - 1][env_idx])


def test_minibatches_have_constant_shape_and_skip_leftover_chunks() -> None:
    with pytest.warns(UserWarning, match="skipped on each pass"):
        model = LiquidPPO(
            "LiquidPolicy", _clock_env(), n_steps=32, seq_len=8, batch_size=40, seed=0,
            policy_kwargs=dict(units=4),
        )  # fmt: skip
    _collect(model)
    shapes = [batch.dts.shape for batch in model.rollout_buffer.get(40)]
    assert shapes == [(5, 8), (5, 8)]  # 12 chunks of 8 steps, 5 chunks per minibatch, 2 left over
    whole = next(model.rollout_buffer.get(None))
    assert whole.dts.shape == (12, 8)
    assert whole.observations.shape == (96, 4)
