"""MJX backend on a CUDA GPU (``pytest -m gpu``; scripts/device_check.sh runs these on the GPU machine).

Deselected by default (``addopts = -m 'not gpu'`` in pyproject.toml: CI has no GPU); run them explicitly
with ``pytest -m gpu``. A machine without a GPU fails them with the error naming the devices JAX sees. They
check what CPU JAX cannot: the env's arrays live on the GPU, the torch interface hands them over without a
copy (same device pointer), and float32 physics on the GPU agrees with the CPU batched backend from the same
states within the float32 tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu

N = 512


@pytest.fixture(scope="module")
def env():
    from lnn_control.sim.mjx import MjxVecEnv

    return MjxVecEnv("HalfCheetah", N, seed=0, device="cuda", x64=False)


def test_arrays_live_on_the_gpu_and_reach_torch_without_copy(env) -> None:
    assert env.device.platform == "gpu"
    obs = env.reset_torch()
    assert obs.is_cuda and obs.shape == (N, 17) and obs.dtype == torch.float32
    assert obs.data_ptr() == env._obs.unsafe_buffer_pointer()
    actions = torch.rand(N, 6, device="cuda") * 2 - 1
    out = env.step_torch(actions)
    for t in out:
        assert t.is_cuda and t.shape[0] == N
    assert out.obs.data_ptr() == env._obs.unsafe_buffer_pointer()
    torch.testing.assert_close(out.dt, torch.full((N,), 0.05, device="cuda"))
    assert torch.isfinite(out.obs).all() and not out.terminated.any()


def test_float32_gpu_step_matches_cpu_backend(env) -> None:
    from lnn_control.sim.batched import BatchedMujocoVecEnv

    cpu = BatchedMujocoVecEnv("HalfCheetah", N, seed=1)
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(10):
        q, v = cpu.get_state()
        warm = np.stack([d.qacc_warmstart for d in cpu.get_attr("data")])
        env.set_state(q, v, warmstart=warm)
        a = rng.uniform(-1, 1, (N, 6)).astype(np.float32)
        o1, r1, _, _ = cpu.step(a)
        o2, r2, _, _ = env.step(a)
        worst = max(worst, float(np.max(np.abs(o2 - o1) / np.maximum(np.abs(o1), 1.0))))
        np.testing.assert_allclose(r2, r1, rtol=2e-3, atol=2e-3)
    assert worst <= 2e-3, worst  # float32 physics: the documented tolerance (README)


def test_liquid_ppo_rollouts_stay_on_the_gpu() -> None:
    """Env (JAX) and policy (torch) on one GPU: the rollout, its sequence buffer and GAE stay there."""
    from lnn_control.sb3 import LiquidPPO
    from lnn_control.sb3.device_rollouts import DeviceRolloutBuffer
    from lnn_control.sim.mjx import make_torch_vec_env

    venv = make_torch_vec_env("HalfCheetah-NoVel-Jitter-v0", N, seed=0, device="cuda", x64=False)
    model = LiquidPPO(
        "LiquidPolicy", venv, n_steps=32, seq_len=32, batch_size=N * 8, n_epochs=1, seed=0, device="cuda"
    )
    model.learn(2 * N * 32)
    buffer = model.rollout_buffer
    assert isinstance(buffer, DeviceRolloutBuffer)
    for tensor in (buffer.observations, buffer.returns, buffer.dts, buffer.states):
        assert tensor.is_cuda and torch.isfinite(tensor).all()
    assert bool(model.policy.irregular_timing) and len(model.ep_info_buffer) == 0  # HalfCheetah: no ends yet
