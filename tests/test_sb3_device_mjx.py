"""LiquidPPO on an MJX env through the device protocol (CPU JAX here; the same code path runs on a GPU)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax", reason="the MJX backend needs the gpu extra (pip install 'lnn-control[gpu]')")
pytest.importorskip("mujoco.mjx", reason="the MJX backend needs the gpu extra")

from lnn_control.sb3 import LiquidPPO
from lnn_control.sb3.device_rollouts import DeviceRolloutBuffer
from lnn_control.sim.mjx import make_torch_vec_env
from lnn_control.sim.torch_normalize import TorchVecNormalize

pytestmark = pytest.mark.slow  # compiling the MJX step takes ~30-90 s on 2 cores


def test_liquid_ppo_trains_on_a_jittered_mjx_task_with_device_rollouts() -> None:
    env = make_torch_vec_env("Hopper-NoVel-Jitter-v0", 4, seed=0)
    model = LiquidPPO(
        "LiquidPolicy",
        env,
        n_steps=16,
        seq_len=8,
        batch_size=32,
        n_epochs=1,
        seed=0,
        policy_kwargs=dict(cell="cfc", units=8, cell_kwargs=dict(backbone_units=16)),
    )
    model.learn(128)
    buffer = model.rollout_buffer
    assert isinstance(buffer, DeviceRolloutBuffer) and model.num_timesteps == 128
    assert buffer.observations.shape == (16, 4, env.observation_space.shape[0])
    dts = buffer.dts.numpy()
    assert np.isfinite(buffer.observations.numpy()).all() and np.isfinite(buffer.returns.numpy()).all()
    assert dts.min() > 0 and dts.max() > dts.min()  # the jittered control period reached the policy
    assert bool(model.policy.irregular_timing)
    assert abs(float(model.policy.time_unit) - env.nominal_dt) < 1e-9  # the time unit is the nominal period
    # the trained policy still runs through SB3's numpy API (evaluation, export)
    obs = env.reset()
    actions, _ = model.predict(obs, dt=np.full(4, env.nominal_dt), deterministic=True)
    assert actions.shape == (4, 3) and np.isfinite(actions).all()
    # normalised on the device (the same compiled env): still the device path, statistics from MJX's stream
    normalized = TorchVecNormalize(env)
    model.set_env(normalized)
    model.learn(64, reset_num_timesteps=False)
    buffer = model.rollout_buffer
    assert isinstance(buffer, DeviceRolloutBuffer) and model.get_vec_normalize_env() is normalized
    assert normalized.obs_rms.count == pytest.approx((1 + 16) * 4 + 1e-4)  # the reset and 16 steps
    assert float(normalized.ret_rms.var) != 1.0
    observations = buffer.observations.numpy()
    assert np.abs(observations).max() <= normalized.clip_obs and abs(observations.mean()) < 1.0
    raw = normalized.get_original_obs()
    np.testing.assert_allclose(normalized.normalize_obs(raw), model._last_obs, rtol=1e-5, atol=1e-5)


def test_make_torch_vec_env_refuses_a_bad_normalize() -> None:
    with pytest.raises(ValueError, match="normalize must be True, False or a dict"):
        make_torch_vec_env("Hopper-NoVel-Jitter-v0", 2, normalize="yes")  # type: ignore[arg-type]


def test_float32_and_float64_envs_share_a_process() -> None:
    """JAX caches some library functions' compiled forms (the jnp.tril in MJX's RK4) without the float64
    mode: a float32 env compiled first once made every later float64 env fail to compile."""
    from lnn_control.sim.mjx import MjxVecEnv

    f32 = MjxVecEnv("InvertedPendulum", 2, seed=0, x64=False)
    f64 = MjxVecEnv("InvertedPendulum", 2, seed=0, x64=True)
    actions = np.zeros((2, 1))
    for env in (f32, f64, f32, f64):  # each mode after the other
        obs, *_ = env.step(actions)
        assert np.isfinite(obs).all()
    assert f64.reset().dtype == np.float64 and f32.reset().dtype == np.float32
