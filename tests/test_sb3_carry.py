"""The recurrent carry: act/observe keep state, dts and starts exactly as predict with explicit state does."""

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.sb3 import LiquidPPO
from lnn_control.sb3.carry import RecurrentCarry
from lnn_control.sb3.diagnostic_envs import IrregularClockEnv


def _model(**policy_kwargs) -> tuple[LiquidPPO, DummyVecEnv]:
    env = DummyVecEnv([lambda: IrregularClockEnv(min_len=3, max_len=6)] * 3)
    env.seed(0)
    model = LiquidPPO(
        "LiquidPolicy",
        env,
        n_steps=8,
        seq_len=8,
        batch_size=8,
        seed=0,
        policy_kwargs=dict(units=8, **policy_kwargs),
    )
    return model, env


@pytest.mark.parametrize("policy_kwargs", [dict(cell="cfc"), dict(cell="ltc", critic="separate")])
def test_carry_acts_as_predict_with_explicit_state(policy_kwargs: dict) -> None:
    model, env = _model(**policy_kwargs)
    carry = RecurrentCarry(model.policy, env)
    obs = env.reset()
    state, starts, dts = None, np.ones(3, dtype=bool), np.full(3, 0.01, dtype=np.float32)
    saw_reset_inside = False
    for _ in range(20):
        step = carry.act(obs, deterministic=True)
        np.testing.assert_array_equal(step.starts, starts)
        np.testing.assert_allclose(step.dts, dts)
        expected, state = model.predict(obs, state, starts, deterministic=True, dt=dts)
        np.testing.assert_allclose(step.env_actions, expected, rtol=1e-6, atol=1e-6)
        obs, _, dones, infos = env.step(step.env_actions)
        outcome = carry.observe(dones, infos)
        reported = np.array([info["dt"] for info in infos], dtype=np.float32)
        np.testing.assert_allclose(outcome.step_dts, reported)
        dts = np.where(dones, 0.01, reported).astype(np.float32)  # nominal after a reset
        starts = dones.astype(bool)
        saw_reset_inside |= bool(dones.any())
        actor = carry.state[..., : model.policy.actor_state_size].numpy()
        np.testing.assert_allclose(actor, state, rtol=1e-6, atol=1e-6)
    assert saw_reset_inside
    assert carry.irregular


def test_observe_needs_act_and_bad_observations_leave_the_state() -> None:
    model, env = _model()
    carry = RecurrentCarry(model.policy, env)
    with pytest.raises(RuntimeError, match="needs a preceding act"):
        carry.observe(np.zeros(3, dtype=bool), [{}] * 3)
    obs = env.reset()
    carry.act(obs)
    obs, _, dones, infos = env.step(np.zeros((3, 2), dtype=np.float32))
    carry.observe(dones, infos)
    before = carry.state.clone()
    bad = obs.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"must be finite, got nan at index \(1, 2\)"):
        carry.act(bad)
    assert carry.state.equal(before)


def test_reset_zeroes_every_state() -> None:
    model, env = _model()
    carry = RecurrentCarry(model.policy, env)
    obs = env.reset()
    carry.act(obs)
    _, _, dones, infos = env.step(np.ones((3, 2), dtype=np.float32))
    carry.observe(dones, infos)
    assert carry.state.abs().max() > 0
    carry.reset()
    assert carry.state.abs().max() == 0 and carry.starts.all()
    np.testing.assert_allclose(carry.dts, 0.01)
