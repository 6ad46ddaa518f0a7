"""LiquidPPO rollouts on the device (envs with ``step_torch``) against the numpy rollout path.

A small pure-torch env (:class:`DriftVecEnv`) follows the device protocol; the same env behind ``VecMonitor``
(which hides ``step_torch``) runs the numpy path through :class:`TorchVecEnvBase`'s numpy API.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.vec_env import VecMonitor, VecNormalize

from lnn_control.sb3 import LiquidPPO
from lnn_control.sb3.buffers import SequenceRolloutBuffer
from lnn_control.sb3.device_rollouts import DeviceRolloutBuffer, supports_torch_steps
from lnn_control.sim.torch_normalize import TorchVecNormalize
from lnn_control.sim.torch_vec_env import TorchStep, TorchVecEnvBase


class DriftVecEnv(TorchVecEnvBase):
    """n unit masses pushed by a bounded force: obs = position only (the velocity must be remembered);
    reward -x^2; a jittered period (0.5-1.5 x 0.05 s); terminated when |x| > 2, truncated at 25 steps."""

    nominal_dt = 0.05

    def __init__(self, n: int, *, numpy_api: bool = True) -> None:
        obs_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)
        super().__init__(n, obs_space, spaces.Box(-1.0, 1.0, (1,), np.float32))
        self.numpy_api = numpy_api
        self.generator = torch.Generator().manual_seed(0)
        self.x, self.v = torch.zeros(n), torch.zeros(n)
        self.steps = torch.zeros(n, dtype=torch.int64)

    def seed(self, seed: int | None = None) -> list[int | None]:
        self.generator.manual_seed(0 if seed is None else seed)
        return [seed] * self.num_envs

    def _restart(self, mask: torch.Tensor) -> None:
        start = torch.rand(self.num_envs, generator=self.generator) * 2.0 - 1.0
        self.x = torch.where(mask, start, self.x)
        self.v = torch.where(mask, 0.0, self.v)
        self.steps = torch.where(mask, 0, self.steps)

    def reset_torch(self) -> torch.Tensor:
        self._restart(torch.ones(self.num_envs, dtype=torch.bool))
        return self.x[:, None].clone()

    def step_torch(self, actions: torch.Tensor) -> TorchStep:
        dt = self.nominal_dt * (0.5 + torch.rand(self.num_envs, generator=self.generator))
        self.v = self.v + 20.0 * actions[:, 0].float() * dt
        self.x = self.x + self.v * dt
        self.steps += 1
        terminated = self.x.abs() > 2.0
        truncated = (self.steps >= 25) & ~terminated
        reward = -self.x.square()
        terminal = self.x[:, None].clone()
        self._restart(terminated | truncated)
        return TorchStep(self.x[:, None].clone(), reward, terminated, truncated, dt, terminal)

    def step_wait(self):  # type: ignore[no-untyped-def]
        assert self.numpy_api, "the device rollout must not use the numpy API"
        return super().step_wait()


def _model(env, seed: int = 3) -> LiquidPPO:  # type: ignore[no-untyped-def]
    return LiquidPPO(
        "LiquidPolicy",
        env,
        n_steps=32,
        seq_len=8,
        batch_size=64,
        n_epochs=2,
        learning_rate=1e-3,
        seed=seed,
        policy_kwargs=dict(cell="cfc", units=8, cell_kwargs=dict(backbone_units=16)),
    )


def test_the_device_protocol_is_checked_on_the_env_itself() -> None:
    env = DriftVecEnv(2)
    assert supports_torch_steps(env)
    assert not supports_torch_steps(VecMonitor(env))  # a wrapper forwards step_torch, which would bypass it
    assert not supports_torch_steps(VecNormalize(env))


def test_device_and_numpy_rollouts_train_the_same_policy() -> None:
    """Same seeds: the device path (no host copy per step) and the numpy path (RecurrentCarry over the
    env's numpy API) collect the same rollouts and reach the same parameters after two updates."""
    torch.set_num_threads(1)
    on_device = _model(DriftVecEnv(4, numpy_api=False)).learn(256)
    on_host = _model(VecMonitor(DriftVecEnv(4))).learn(256)
    assert isinstance(on_device.rollout_buffer, DeviceRolloutBuffer)
    assert isinstance(on_host.rollout_buffer, SequenceRolloutBuffer)
    device_buffer, host_buffer = on_device.rollout_buffer, on_host.rollout_buffer
    for name in ("observations", "actions", "rewards", "values", "log_probs", "dts", "advantages", "returns"):
        host = np.asarray(getattr(host_buffer, name), dtype=np.float32).reshape(32, 4, -1)
        device = getattr(device_buffer, name).numpy().reshape(32, 4, -1)
        np.testing.assert_allclose(device, host, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_array_equal(
        device_buffer.episode_starts.numpy(), host_buffer.episode_starts.astype(bool)
    )
    torch.testing.assert_close(device_buffer.states, host_buffer.states, rtol=1e-4, atol=1e-5)
    for p_device, p_host in zip(on_device.policy.parameters(), on_host.policy.parameters(), strict=True):
        torch.testing.assert_close(p_device, p_host, rtol=1e-4, atol=1e-5)
    # episode statistics without a Monitor: the same episodes as VecMonitor's
    device_eps = [(round(e["r"], 3), e["l"]) for e in on_device.ep_info_buffer]
    host_eps = [(round(e["r"], 3), e["l"]) for e in on_host.ep_info_buffer]
    assert device_eps == host_eps and len(device_eps) > 4
    assert bool(on_device.policy.irregular_timing) and bool(on_host.policy.irregular_timing)
    assert on_device.num_timesteps == on_host.num_timesteps == 256


def test_truncations_are_bootstrapped_on_the_device() -> None:
    """A truncated step's stored reward gains gamma * V(terminal observation); a terminated one does not."""
    model = _model(DriftVecEnv(4, numpy_api=False))
    model.learn(128)
    buffer = model.rollout_buffer
    host = _model(VecMonitor(DriftVecEnv(4))).learn(128).rollout_buffer
    np.testing.assert_allclose(buffer.rewards.numpy(), host.rewards, rtol=1e-4, atol=1e-5)
    assert np.any(host.episode_starts[1:])  # episodes did end inside the rollout


def test_gae_on_the_device_matches_sb3() -> None:
    g = torch.Generator().manual_seed(0)
    obs_space, act_space = spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (2,))
    device = DeviceRolloutBuffer(16, obs_space, act_space, gamma=0.97, gae_lambda=0.9, n_envs=5, seq_len=4)
    reference = RolloutBuffer(16, obs_space, act_space, gamma=0.97, gae_lambda=0.9, n_envs=5)
    for _ in range(16):
        obs, act = torch.randn(5, 3, generator=g), torch.randn(5, 2, generator=g)
        reward, value, log_prob = (torch.randn(5, generator=g) for _ in range(3))
        start = torch.rand(5, generator=g) < 0.2
        device.add(obs, act, reward, start, value[:, None], log_prob, torch.zeros(1, 5, 2), torch.ones(5))
        reference.add(obs.numpy(), act.numpy(), reward.numpy(), start.numpy(), value[:, None], log_prob)
    last_values, dones = torch.randn(5, 1, generator=g), torch.rand(5, generator=g) < 0.3
    device.compute_returns_and_advantage(last_values, dones)
    reference.compute_returns_and_advantage(last_values, dones.numpy())
    np.testing.assert_allclose(device.advantages.numpy(), reference.advantages, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(device.returns.numpy(), reference.returns, rtol=1e-5, atol=1e-6)


def test_device_buffer_minibatches_are_whole_chunks() -> None:
    obs_space, act_space = spaces.Box(-1, 1, (1,)), spaces.Box(-1, 1, (1,))
    buffer = DeviceRolloutBuffer(8, obs_space, act_space, n_envs=3, seq_len=4)
    for t in range(8):  # observation = 10 * env + step, to read back where each chunk came from
        obs = torch.tensor([[10.0 * e + t] for e in range(3)])
        state = torch.full((1, 3, 2), float(t))
        zeros, no_start = torch.zeros(3), torch.zeros(3, dtype=torch.bool)
        buffer.add(obs, obs, zeros, no_start, zeros[:, None], zeros, state, torch.ones(3))
    buffer.compute_returns_and_advantage(torch.zeros(3, 1), torch.zeros(3, dtype=torch.bool))
    batches = list(buffer.get(8))
    assert len(batches) == 3  # 6 chunks of 4 steps, 2 per minibatch
    for batch in batches:
        chunks = batch.observations.reshape(2, 4)
        assert torch.equal(chunks[:, 1:] - chunks[:, :-1], torch.ones(2, 3))  # consecutive steps of one env
        assert torch.equal(batch.states[0, :, 0], chunks[:, 0] % 10)  # the state before each chunk's start


def test_set_env_switches_between_device_and_numpy_rollouts() -> None:
    model = _model(DriftVecEnv(4, numpy_api=False))
    model.learn(128)
    assert isinstance(model.rollout_buffer, DeviceRolloutBuffer)
    model.set_env(VecMonitor(DriftVecEnv(4)))
    model.learn(128, reset_num_timesteps=False)
    assert isinstance(model.rollout_buffer, SequenceRolloutBuffer)
    model.set_env(DriftVecEnv(4, numpy_api=False))
    model.learn(128, reset_num_timesteps=False)
    assert isinstance(model.rollout_buffer, DeviceRolloutBuffer) and model.num_timesteps == 384


def test_device_rollouts_refuse_non_box_spaces() -> None:
    with pytest.raises(ValueError, match="device rollouts take Box observations"):
        DeviceRolloutBuffer(8, spaces.Discrete(3), spaces.Box(-1, 1, (1,)), seq_len=4)


class NaNAfterEnv(DriftVecEnv):
    """Returns a NaN position for env 1 from its 5th step on."""

    def step_torch(self, actions: torch.Tensor) -> TorchStep:
        out = super().step_torch(actions)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls >= 5:
            out.obs[1, 0] = float("nan")
        return out


def test_a_nan_observation_on_the_device_is_a_clear_error_before_any_update() -> None:
    model = _model(NaNAfterEnv(4, numpy_api=False))
    before = [p.detach().clone() for p in model.policy.parameters()]
    with pytest.raises(ValueError, match=r"observation nan at rollout step 5, \(env, feature\) \(1, 0\)"):
        model.learn(128)
    assert all(torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))


def test_device_rollouts_need_the_nominal_period() -> None:
    env = DriftVecEnv(2, numpy_api=False)
    env.nominal_dt = None  # type: ignore[assignment]
    with (
        pytest.warns(UserWarning, match="no 'dt' attribute"),  # the numpy carry's warning, at set-up
        pytest.raises(ValueError, match="device rollouts need the env's nominal control period"),
    ):
        _model(env).learn(64)


def test_sb3_callbacks_read_dones_on_the_device_path() -> None:
    """SB3's StopTrainingOnMaxEpisodes sums locals()['dones'] with numpy at every step."""
    from stable_baselines3.common.callbacks import StopTrainingOnMaxEpisodes

    model = _model(DriftVecEnv(4, numpy_api=False))
    model.learn(10_000, callback=StopTrainingOnMaxEpisodes(max_episodes=3))
    assert model.num_timesteps < 10_000  # stopped by the episode count


def test_a_negative_dt_in_a_device_rollout_is_named() -> None:
    from lnn_control.sb3.device_rollouts import check_rollout

    obs_space, act_space = spaces.Box(-1, 1, (1,)), spaces.Box(-1, 1, (1,))
    buffer = DeviceRolloutBuffer(4, obs_space, act_space, n_envs=2, seq_len=4)
    for t in range(4):
        dt = torch.tensor([0.05, -0.01 if t == 2 else 0.05])
        zeros = torch.zeros(2)
        buffer.add(torch.zeros(2, 1), torch.zeros(2, 1), zeros, zeros.bool(), zeros[:, None], zeros,
                   torch.zeros(1, 2, 3), dt)  # fmt: skip
    with pytest.raises(
        ValueError, match=r"dt -0.0099\d* at \(rollout step, env, ...\) \(2, 1\); expected finite"
    ):
        check_rollout(buffer, torch.zeros(2, 1))


class NoNumpyTorchVecNormalize(TorchVecNormalize):
    """Fails if anything steps it through the numpy API (the wrapper's own, which would bypass DriftVecEnv's
    check by calling its step_torch)."""

    def step_wait(self):  # type: ignore[no-untyped-def]
        raise AssertionError("the device rollout must not use the numpy API")


@pytest.mark.parametrize("norm_reward", [True, False])
def test_normalised_device_rollouts_train_as_vec_normalize_on_the_numpy_path(norm_reward: bool) -> None:
    """TorchVecNormalize keeps the rollout on the device and reaches the buffers, parameters, statistics and
    episode returns (raw rewards) of SB3's VecNormalize on the numpy path, from the same seeds."""
    torch.set_num_threads(1)
    kwargs = dict(norm_reward=norm_reward, clip_obs=5.0, gamma=0.95)
    device_env = NoNumpyTorchVecNormalize(DriftVecEnv(4, numpy_api=False), **kwargs)
    host_env = VecNormalize(VecMonitor(DriftVecEnv(4)), **kwargs)
    on_device, on_host = _model(device_env).learn(256), _model(host_env).learn(256)
    assert isinstance(on_device.rollout_buffer, DeviceRolloutBuffer)
    assert isinstance(on_host.rollout_buffer, SequenceRolloutBuffer)
    device_buffer, host_buffer = on_device.rollout_buffer, on_host.rollout_buffer
    for name in ("observations", "actions", "rewards", "values", "log_probs", "dts", "advantages", "returns"):
        host = np.asarray(getattr(host_buffer, name), dtype=np.float32).reshape(32, 4, -1)
        device = getattr(device_buffer, name).numpy().reshape(32, 4, -1)
        np.testing.assert_allclose(device, host, rtol=1e-4, atol=1e-5, err_msg=name)
    for p_device, p_host in zip(on_device.policy.parameters(), on_host.policy.parameters(), strict=True):
        torch.testing.assert_close(p_device, p_host, rtol=1e-4, atol=1e-5)
    for name in ("obs_rms", "ret_rms"):
        ours, sb3 = getattr(device_env, name), getattr(host_env, name)
        np.testing.assert_allclose(ours.mean, sb3.mean, rtol=1e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(ours.var, sb3.var, rtol=1e-5, err_msg=name)
        assert ours.count == sb3.count
    # the statistics moved away from their initial (0, 1): the rollout was normalised
    assert abs(float(host_env.obs_rms.var[0]) - 1.0) > 0.05
    if norm_reward:
        assert abs(float(host_env.ret_rms.var) - 1.0) > 0.05
    device_eps = [(round(e["r"], 3), e["l"]) for e in on_device.ep_info_buffer]
    host_eps = [(round(e["r"], 3), e["l"]) for e in on_host.ep_info_buffer]
    assert device_eps == host_eps and len(device_eps) > 4
    assert on_device.get_vec_normalize_env() is device_env


def test_build_agent_normalises_a_torch_env_on_its_device() -> None:
    from lnn_control.sb3.agents import build_agent

    model = build_agent(
        "liquid-ppo-cfc",
        DriftVecEnv(2, numpy_api=False),
        n_steps=8,
        seq_len=8,
        batch_size=16,
        policy_kwargs=dict(units=4, cell_kwargs=dict(backbone_units=8)),
        normalize={"clip_obs": 3.0},
    )
    env = model.get_env()
    assert isinstance(env, TorchVecNormalize) and env.clip_obs == 3.0
    assert isinstance(model.rollout_buffer, DeviceRolloutBuffer)
    plain = build_agent(
        "liquid-ppo-cfc", DriftVecEnv(2), n_steps=8, seq_len=8, batch_size=16, normalize=False
    )
    assert isinstance(plain.get_env(), DriftVecEnv)
