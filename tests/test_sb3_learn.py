"""LiquidPPO end to end: learn for every cell, the SB3 surface (callbacks, logging, VecNormalize,
evaluate_policy, Dict observations, set_env), and a memory task that needs recurrence."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from lnn_control.sb3 import LiquidPPO, MultiInputLiquidActorCriticPolicy
from lnn_control.sb3.diagnostic_envs import CueMemoryEnv, IrregularClockEnv


class _CountSteps(BaseCallback):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.rollouts = 0

    def _on_step(self) -> bool:
        self.calls += 1
        return True

    def _on_rollout_end(self) -> None:
        self.rollouts += 1


@pytest.mark.parametrize("cell", ["cfc", "ltc", "lstm", "gru"])
def test_short_learn_runs_end_to_end(cell: str, tmp_path) -> None:
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    model = LiquidPPO(
        "LiquidPolicy", env, n_steps=32, seq_len=16, batch_size=32, n_epochs=2, seed=0,
        tensorboard_log=str(tmp_path / "tb"), policy_kwargs=dict(cell=cell, units=8),
    )  # fmt: skip
    before = [p.detach().clone() for p in model.policy.parameters()]
    counter = _CountSteps()
    model.learn(128, callback=counter, progress_bar=True)
    assert model.num_timesteps == 128
    assert counter.calls == 64 and counter.rollouts == 2
    assert any(
        not np.allclose(b.numpy(), p.detach().numpy())
        for b, p in zip(before, model.policy.parameters(), strict=True)
    )
    assert list((tmp_path / "tb").glob("LiquidPPO_1/events.out.tfevents.*"))
    # learn() again continues without resetting the envs or the recurrent state.
    model.learn(64, reset_num_timesteps=False)
    assert model.num_timesteps == 192


def test_vecnormalize_and_evaluate_policy() -> None:
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model = LiquidPPO("LiquidPolicy", env, n_steps=32, seq_len=16, batch_size=32, n_epochs=1, seed=0)
    model.learn(128)
    assert model.get_vec_normalize_env() is env
    np.testing.assert_allclose(model.rollout_buffer.dts, 0.05)  # dt from the env, never normalised
    stored = model.rollout_buffer.observations
    assert np.abs(stored).max() <= 10.0 and stored.std() == pytest.approx(1.0, abs=0.6)  # normalised obs
    eval_env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=1), training=False, norm_reward=False)
    eval_env.obs_rms = env.obs_rms
    mean, std = evaluate_policy(model, eval_env, n_eval_episodes=2, deterministic=True)
    assert np.isfinite(mean) and np.isfinite(std) and -2000 < mean <= 0
    _, lengths = evaluate_policy(model, eval_env, n_eval_episodes=2, return_episode_rewards=True)
    assert lengths == [200, 200]


def test_get_env_and_set_env() -> None:
    env = make_vec_env(lambda: IrregularClockEnv(dt_offset=0.001), n_envs=2, seed=0)
    model = LiquidPPO("LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, seed=0)
    assert model.get_env() is env
    model.learn(32)
    other = make_vec_env(lambda: IrregularClockEnv(dt_offset=0.004), n_envs=2, seed=1)
    model.set_env(other)
    assert model.get_env() is other
    model.learn(32)
    assert model.rollout_buffer.dts[0, 0] == pytest.approx(0.014)  # the new env's nominal dt
    with pytest.raises(AssertionError, match="number of environments"):
        model.set_env(make_vec_env(lambda: IrregularClockEnv(), n_envs=3))


class _DictClockEnv(gym.Wrapper):
    """IrregularClockEnv with a Dict observation {'a': obs[:2], 'b': obs[2:]}."""

    def __init__(self) -> None:
        super().__init__(IrregularClockEnv())
        self.observation_space = spaces.Dict(
            {
                "a": spaces.Box(-np.inf, np.inf, (2,), np.float32),
                "b": spaces.Box(-np.inf, np.inf, (2,), np.float32),
            }
        )

    def _split(self, obs: np.ndarray) -> dict:
        return {"a": obs[:2], "b": obs[2:]}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._split(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._split(obs), reward, terminated, truncated, info


def test_dict_observations_with_multi_input_policy() -> None:
    import torch as th

    env = DummyVecEnv([_DictClockEnv, _DictClockEnv])
    model = LiquidPPO("MultiInputLiquidPolicy", env, n_steps=32, seq_len=8, batch_size=32, seed=0)
    assert isinstance(model.policy, MultiInputLiquidActorCriticPolicy)
    _, callback = model._setup_learn(64)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    with th.no_grad():  # chunked training evaluation reproduces the rollout for Dict observations too
        for batch in model.rollout_buffer.get(32):
            _, log_prob, _ = model.policy.evaluate_actions(
                batch.observations, batch.actions, batch.states, batch.episode_starts, batch.dts
            )
            assert set(batch.observations) == {"a", "b"} and batch.observations["a"].shape == (32, 2)
            np.testing.assert_allclose(log_prob.numpy(), batch.old_log_prob.numpy(), rtol=1e-4, atol=1e-4)
    model.learn(64)
    obs = env.reset()
    actions, state = model.predict(
        obs, deterministic=True, dt=np.array([0.01, 0.02])
    )  # trained on irregular dt
    assert actions.shape == (2, 2) and state.shape[1] == 2


def test_discrete_actions() -> None:
    env = make_vec_env(lambda: CueMemoryEnv(delay=2), n_envs=2, seed=0)
    model = LiquidPPO(
        "LiquidPolicy", env, n_steps=24, seq_len=8, batch_size=24, seed=0, policy_kwargs=dict(units=8)
    )
    model.learn(96)
    action, _ = model.predict(env.reset())
    assert action.shape == (2,) and set(action.tolist()) <= {0, 1}


def _memory_return(model, seed: int) -> float:
    eval_env = make_vec_env(lambda: CueMemoryEnv(delay=4), n_envs=4, seed=1000 + seed)
    mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=100, deterministic=True)
    return float(mean)


@pytest.mark.slow
def test_memory_task_is_learned_by_the_liquid_policy_not_by_the_mlp() -> None:
    """The cue is only visible at the first step; the last step's action must match it (return +1/-1).

    A feed-forward policy cannot do better than chance (mean 0); the CfC policy must reach ~1.
    Same budget, PPO settings and seeds for both.
    """
    liquid, mlp = [], []
    for seed in (0, 1):
        common = dict(n_steps=32, batch_size=64, n_epochs=4, learning_rate=3e-3, seed=seed)
        env = make_vec_env(lambda: CueMemoryEnv(delay=4), n_envs=8, seed=seed)
        model = LiquidPPO(
            "LiquidPolicy",
            env,
            seq_len=8,
            policy_kwargs=dict(cell="cfc", units=16, cell_kwargs={"backbone_units": 32}),
            **common,
        )
        liquid.append(_memory_return(model.learn(8000), seed))
        env = make_vec_env(lambda: CueMemoryEnv(delay=4), n_envs=8, seed=seed)
        mlp.append(_memory_return(PPO("MlpPolicy", env, **common).learn(8000), seed))
    assert np.mean(liquid) > 0.8, liquid
    assert np.mean(mlp) < 0.3, mlp


def test_evaluate_agent_feeds_reported_dts() -> None:
    from lnn_control.sb3.agent_evaluation import evaluate_agent

    env = make_vec_env(lambda: IrregularClockEnv(dt_offset=0.002, min_len=3, max_len=5), n_envs=2, seed=0)
    model = LiquidPPO("LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, seed=0)
    seen_dts, seen_starts = [], []
    forward = model.policy.forward

    def recording_forward(obs, state, episode_starts, dt, deterministic=False):
        seen_dts.append(dt.numpy().copy())
        seen_starts.append(episode_starts.numpy().copy())
        return forward(obs, state, episode_starts, dt, deterministic=deterministic)

    model.policy.forward = recording_forward  # type: ignore[method-assign]
    returns, lengths = evaluate_agent(model, env, n_eval_episodes=6)
    assert returns.shape == (6,) and np.all((lengths >= 3) & (lengths <= 5))
    dts, starts = np.stack(seen_dts), np.stack(seen_starts)
    np.testing.assert_allclose(dts[starts], 0.012, rtol=1e-6)  # nominal at episode starts
    irregular = dts[~starts]
    assert irregular.size and len(np.unique(np.round(irregular, 4))) >= 2  # reported, irregular dts
    np.testing.assert_allclose((irregular - 0.002) / 0.01, np.round((irregular - 0.002) / 0.01), atol=1e-4)
