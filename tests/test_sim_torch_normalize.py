"""TorchVecNormalize (VecNormalize on the env's device) against SB3's VecNormalize on the same streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

from lnn_control.runs.normalization import (
    frozen_normalization,
    normalization_from_npz,
    normalization_to_npz,
    sync_normalization,
)
from lnn_control.sim.torch_normalize import TorchRunningMeanStd, TorchVecNormalize
from lnn_control.sim.torch_vec_env import TorchStep, TorchVecEnvBase, supports_torch_steps


class StreamVecEnv(TorchVecEnvBase):
    """A fixed random stream, whatever the actions: observations (n, 3) around (5, -2, 0) with stds (3, 0.1,
    1), rewards around 2 with std 4, about one episode end in eight (a third of them truncations)."""

    nominal_dt = 0.02

    def __init__(self, n: int = 5, seed: int = 0, device: str = "cpu") -> None:
        super().__init__(
            n, spaces.Box(-np.inf, np.inf, (3,), np.float32), spaces.Box(-1, 1, (2,), np.float32)
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.where = torch.device(device)

    def seed(self, seed: int | None = None) -> list[int | None]:
        return [seed] * self.num_envs

    def _obs(self) -> torch.Tensor:
        x = torch.randn(self.num_envs, 3, generator=self.generator)
        return (x * torch.tensor([3.0, 0.1, 1.0]) + torch.tensor([5.0, -2.0, 0.0])).to(self.where)

    def reset_torch(self) -> torch.Tensor:
        return self._obs()

    def step_torch(self, actions: torch.Tensor) -> TorchStep:
        n, g = self.num_envs, self.generator
        terminal, obs = self._obs(), self._obs()
        reward = (2.0 + 4.0 * torch.randn(n, generator=g)).to(self.where)
        u = torch.rand(n, generator=g)
        terminated, truncated = (u < 0.08).to(self.where), ((u >= 0.08) & (u < 0.12)).to(self.where)
        done = (terminated | truncated)[:, None]
        obs = torch.where(done, obs, terminal)  # a finished env's obs is its reset observation
        dt = torch.full((n,), self.nominal_dt, device=self.where)
        return TorchStep(obs, reward, terminated, truncated, dt, terminal)


SETTINGS = [
    dict(),
    dict(clip_obs=1.5, clip_reward=0.5, gamma=1.0, epsilon=1e-4),
    dict(norm_obs=False),
    dict(norm_reward=False, gamma=0.9),
]


@pytest.mark.parametrize("kwargs", SETTINGS, ids=["defaults", "clipping", "rewards-only", "obs-only"])
def test_the_same_outputs_and_statistics_as_vec_normalize(kwargs: dict) -> None:
    """Training for 40 steps, then frozen for 20: step for step, the device path (step_torch), the wrapper's
    own numpy API and SB3's VecNormalize over the numpy API give the same observations, terminal observations,
    rewards and statistics."""
    device, numpy_api = (
        TorchVecNormalize(StreamVecEnv(), **kwargs),
        TorchVecNormalize(StreamVecEnv(), **kwargs),
    )
    reference = VecNormalize(StreamVecEnv(), **kwargs)
    tol = dict(rtol=1e-6, atol=1e-6)
    first = reference.reset()
    np.testing.assert_allclose(device.reset_torch().numpy(), first, **tol)
    np.testing.assert_allclose(numpy_api.reset(), first, **tol)
    actions = np.zeros((5, 2), np.float32)
    clipped = 0
    for t in range(60):
        if t == 40:
            device.training = numpy_api.training = reference.training = False
            frozen = (device.obs_rms.mean, float(device.ret_rms.var))
        ref_obs, ref_reward, ref_done, ref_infos = reference.step(actions)
        out = device.step_torch(torch.zeros(5, 2))
        obs, reward, done, infos = numpy_api.step(actions)
        assert out.obs.dtype == torch.float32 and out.reward.dtype == torch.float32
        for got in (out.obs.numpy(), obs):
            np.testing.assert_allclose(got, ref_obs, **tol, err_msg=f"obs at step {t}")
        for got in (out.reward.numpy(), reward):
            np.testing.assert_allclose(got, ref_reward, **tol, err_msg=f"reward at step {t}")
        np.testing.assert_array_equal((out.terminated | out.truncated).numpy(), ref_done)
        np.testing.assert_array_equal(done, ref_done)
        for i in np.flatnonzero(ref_done):
            expected = ref_infos[i]["terminal_observation"]
            np.testing.assert_allclose(out.terminal_obs[i].numpy(), expected, **tol)
            np.testing.assert_allclose(infos[i]["terminal_observation"], expected, **tol)
        np.testing.assert_allclose(device.get_original_obs(), reference.get_original_obs(), rtol=0, atol=0)
        np.testing.assert_allclose(
            device.get_original_reward(), reference.get_original_reward(), rtol=0, atol=0
        )
        np.testing.assert_allclose(device.returns.numpy(), reference.returns, rtol=1e-12, atol=1e-12)
        for env in (device, numpy_api):
            if reference.norm_obs:
                np.testing.assert_allclose(env.obs_rms.mean, reference.obs_rms.mean, rtol=1e-6, atol=1e-9)
                np.testing.assert_allclose(env.obs_rms.var, reference.obs_rms.var, rtol=1e-6)
                assert env.obs_rms.count == reference.obs_rms.count
            np.testing.assert_allclose(env.ret_rms.var, reference.ret_rms.var, rtol=1e-9)
            assert env.ret_rms.count == reference.ret_rms.count
        clipped += int(np.abs(ref_obs).max() >= kwargs.get("clip_obs", 10.0)) if reference.norm_obs else 0
    # frozen: the last 20 steps changed no statistic, and the stream did exercise what it should
    np.testing.assert_array_equal(device.obs_rms.mean, frozen[0])
    assert float(device.ret_rms.var) == frozen[1] and device.ret_rms.count == pytest.approx(200 + 1e-4)
    if "clip_obs" in kwargs:
        assert clipped > 0


def test_the_running_statistics_are_sb3s() -> None:
    g = np.random.default_rng(0)
    reference, stats = RunningMeanStd(shape=(4,)), TorchRunningMeanStd((4,))
    for size in (1, 7, 300, 2):
        batch = g.normal(3.0, 2.0, (size, 4)).astype(np.float32)
        reference.update(batch.astype(np.float64))
        stats.update(torch.as_tensor(batch))
        np.testing.assert_allclose(stats.mean.numpy(), reference.mean, rtol=1e-12)
        np.testing.assert_allclose(stats.var.numpy(), reference.var, rtol=1e-12)
        assert stats.count == reference.count
    back = TorchRunningMeanStd.from_numpy(stats.to_numpy())
    assert (
        torch.equal(back.mean, stats.mean) and torch.equal(back.var, stats.var) and back.count == stats.count
    )


def test_steps_never_read_the_device() -> None:
    """On the meta device (no data: any read to the host raises), training steps update the statistics."""
    env = TorchVecNormalize(StreamVecEnv(device="meta"))
    obs = env.reset_torch()
    for _ in range(3):
        out = env.step_torch(torch.zeros(5, 2, device="meta"))
    assert obs.is_meta and out.obs.is_meta and out.reward.is_meta and env.obs_stats.mean.is_meta
    assert env.obs_stats.count == pytest.approx(20 + 1e-4) and env.ret_stats.count == pytest.approx(15 + 1e-4)
    assert env.device == torch.device("meta")


def test_the_device_protocol_is_the_wrappers_own() -> None:
    env = TorchVecNormalize(StreamVecEnv())
    assert supports_torch_steps(env)
    assert env.get_attr("dt") == [0.02] * 5 and env.nominal_dt == 0.02
    assert env.where == torch.device("cpu")  # other attributes come from the wrapped env
    with pytest.raises(RuntimeError, match="step the env first"):
        env.get_original_reward_torch()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(clip_obs=0.0), r"clip_obs must be a number > 0, got 0\.0"),
        (dict(clip_obs=-1), r"clip_obs must be a number > 0, got -1"),
        (dict(clip_reward=0), r"clip_reward must be a number > 0, got 0"),
        (dict(clip_obs=float("nan")), r"clip_obs must be a number > 0, got nan"),
        (dict(epsilon=0.0), r"epsilon must be a number > 0"),
        (dict(gamma=0.0), r"gamma must be in \(0, 1\], got 0\.0"),
        (dict(gamma=1.01), r"gamma must be in \(0, 1\], got 1\.01"),
        (dict(training="yes"), r"training must be True or False, got 'yes'"),
        (dict(norm_obs_keys=["a"]), r"norm_obs_keys applies to Dict observations only"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TorchVecNormalize(StreamVecEnv(), **kwargs)


def test_only_envs_that_step_on_torch_tensors_are_wrapped() -> None:
    with pytest.raises(TypeError, match=r"got VecMonitor; for a numpy VecEnv use SB3's VecNormalize"):
        TorchVecNormalize(VecMonitor(StreamVecEnv()))
    with pytest.raises(TypeError, match="got DummyVecEnv"):
        TorchVecNormalize(DummyVecEnv([lambda: __import__("gymnasium").make("Pendulum-v1")]))


def test_statistics_of_the_wrong_shape_are_refused() -> None:
    env = TorchVecNormalize(StreamVecEnv())
    with pytest.raises(ValueError, match=r"obs_rms of shape \(4,\) does not fit: expected \(3,\)"):
        env.obs_rms = RunningMeanStd(shape=(4,))
    with pytest.raises(TypeError, match="obs_rms takes a RunningMeanStd"):
        env.obs_rms = np.zeros(3)  # type: ignore[assignment]


def _trained(steps: int = 30, **kwargs: object) -> TorchVecNormalize:
    env = TorchVecNormalize(StreamVecEnv(), **kwargs)  # type: ignore[arg-type]
    env.reset_torch()
    for _ in range(steps):
        env.step_torch(torch.zeros(5, 2))
    return env


def _same_statistics(a: object, b: object) -> None:
    for name in ("obs_rms", "ret_rms"):
        x, y = getattr(a, name), getattr(b, name)
        np.testing.assert_array_equal(x.mean, y.mean)
        np.testing.assert_array_equal(x.var, y.var)
        assert x.count == y.count


def test_save_and_load_round_trip_in_vec_normalizes_format(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = _trained(clip_obs=4.0, gamma=0.95)
    path = tmp_path / "vecnormalize.pkl"
    env.save(path)
    loaded = TorchVecNormalize.load(path, StreamVecEnv())
    _same_statistics(loaded, env)
    assert (loaded.clip_obs, loaded.gamma, loaded.training) == (4.0, 0.95, True)
    sb3 = VecNormalize.load(str(path), StreamVecEnv())  # SB3 reads it as its own
    _same_statistics(sb3, env)
    # and the loaded wrapper normalises as the saved one
    obs = np.random.default_rng(1).normal(5.0, 3.0, (5, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded.normalize_obs(obs), env.normalize_obs(obs))
    np.testing.assert_allclose(sb3.normalize_obs(obs), env.normalize_obs(obs), rtol=1e-6, atol=1e-6)


def test_npz_statistics_round_trip_between_the_two_kinds() -> None:
    """The checkpoints' .npz (no pickle) from a TorchVecNormalize loads onto a torch env as a
    TorchVecNormalize and onto a numpy env as a VecNormalize, with the same statistics (and back)."""
    env = _trained(clip_reward=3.0)
    data = normalization_to_npz(env)
    on_torch = normalization_from_npz(data, StreamVecEnv(), training=True, where="test")
    assert isinstance(on_torch, TorchVecNormalize) and on_torch.clip_reward == 3.0 and on_torch.norm_reward
    _same_statistics(on_torch, env)
    on_numpy = normalization_from_npz(data, VecMonitor(StreamVecEnv()), training=False, where="test")
    assert isinstance(on_numpy, VecNormalize) and not on_numpy.training and not on_numpy.norm_reward
    _same_statistics(on_numpy, env)
    assert normalization_to_npz(on_torch) == normalization_to_npz(env)


def test_evaluation_envs_freeze_the_device_statistics() -> None:
    train = _trained()
    frozen = frozen_normalization(train, StreamVecEnv(seed=1))
    assert isinstance(frozen, TorchVecNormalize) and not frozen.training and not frozen.norm_reward
    before = frozen.obs_rms
    np.testing.assert_array_equal(before.mean, train.obs_rms.mean)
    frozen.reset_torch()
    out = frozen.step_torch(torch.zeros(5, 2))
    np.testing.assert_array_equal(frozen.obs_rms.mean, before.mean)  # frozen
    np.testing.assert_array_equal(out.reward.numpy(), frozen.get_original_reward())  # raw rewards
    on_host = frozen_normalization(train, VecMonitor(StreamVecEnv(seed=1)))  # a numpy eval env
    assert isinstance(on_host, VecNormalize) and not on_host.training
    np.testing.assert_array_equal(on_host.obs_rms.var, train.obs_rms.var)
    # statistics synced later reach the frozen env
    more = _trained(steps=50)
    sync_normalization(more, frozen)
    np.testing.assert_array_equal(frozen.obs_rms.mean, more.obs_rms.mean)


def test_a_liquid_ppo_checkpoint_and_export_keep_the_device_statistics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lnn_control.runs.checkpoint import read_extras, save_checkpoint
    from lnn_control.sb3 import LiquidPPO

    env = TorchVecNormalize(StreamVecEnv(n=2))
    kwargs = dict(cell="cfc", units=4, cell_kwargs=dict(backbone_units=8))
    model = LiquidPPO(
        "LiquidPolicy", env, n_steps=8, seq_len=8, batch_size=16, n_epochs=1, seed=0, policy_kwargs=kwargs
    )
    model.learn(16)
    assert model.get_vec_normalize_env() is env
    # the export API bakes its observation statistics in, as VecNormalize's
    from lnn_control.export.api import build_actor

    actor, _ = build_actor(model)
    rms = env.obs_rms
    assert actor.normalize and actor.clip_obs == env.clip_obs
    np.testing.assert_allclose(actor.obs_mean.numpy(), rms.mean, rtol=1e-6)
    np.testing.assert_allclose(actor.obs_std.numpy(), np.sqrt(rms.var + env.epsilon), rtol=1e-6)
    path = save_checkpoint(tmp_path / "last.zip", model, {"step": 16})
    extras = read_extras(path)
    assert extras.normalization is not None
    restored = extras.wrap(StreamVecEnv(n=2), training=False)
    assert isinstance(restored, TorchVecNormalize) and not restored.training
    np.testing.assert_array_equal(restored.obs_rms.mean, env.obs_rms.mean)
    assert (
        restored.obs_rms.count == env.obs_rms.count == pytest.approx((1 + 8) * 2 + 1e-4)
    )  # the reset and 8 steps
