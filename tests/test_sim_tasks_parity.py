"""Parity of BatchedMujocoVecEnv with Gymnasium's own v5 MuJoCo envs.

Method: K gymnasium envs (``gymnasium.make("<Task>-v5")``, TimeLimit included) are reset with different
seeds; their qpos/qvel are copied into envs 0..K-1 of one BatchedMujocoVecEnv with ``set_state``; both get
the same float32 random actions; observations, rewards, terminated/truncated flags and Gymnasium's info
values are compared every step. When a gymnasium env finishes, the batched env must finish at the same
step (same flags, terminal observation equal to gymnasium's last observation); the gymnasium env is
reset with a fresh seed and its state is copied into the batched env again.

Tolerances: the batch runs the same MuJoCo steps on the same state, so the physics is bit-identical;
differences can only come from numpy reassociation in the vectorised task code (a few ulp of operands of
magnitude <= ~1e3, i.e. < 1e-12) and from the float32 rewards of the VecEnv API (relative 6e-8). Hence
rtol=1e-6 as specified and ATOL=1e-10 for values that cross zero: far below any physical resolution
(any real mistake: a wrong stage, dt, clip or sign gives errors >= 1e-4) yet above float64 noise.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from lnn_control.sim.batched import BatchedMujocoVecEnv
from lnn_control.sim.tasks import known_tasks

RTOL = 1e-6
ATOL = 1e-10
K = 4


def run_parity(task: str, n_steps: int, seed: int = 0, **task_kwargs) -> dict[str, int]:
    """Run the comparison; returns counts (episodes ended) for the caller's sanity checks."""
    gym_envs = [gym.make(f"{task}-v5", **task_kwargs) for _ in range(K)]
    venv = BatchedMujocoVecEnv(task, K, seed=seed + 1000, nthread=1, **task_kwargs)
    next_seed = seed

    def fresh(k: int) -> np.ndarray:
        nonlocal next_seed
        obs, _ = gym_envs[k].reset(seed=next_seed)
        next_seed += 1
        u = gym_envs[k].unwrapped
        venv.set_state(u.data.qpos[None].copy(), u.data.qvel[None].copy(), indices=[k])
        return obs

    venv.reset()
    gym_obs = np.stack([fresh(k) for k in range(K)])
    np.testing.assert_allclose(venv.observe(), gym_obs, rtol=RTOL, atol=ATOL, err_msg=f"{task} reset obs")
    assert venv.observe().dtype == np.float64

    rng = np.random.default_rng(seed)
    low, high = venv.action_space.low, venv.action_space.high
    counts = {"terminated": 0, "truncated": 0}
    for t in range(n_steps):
        actions = rng.uniform(low, high, size=(K, low.size)).astype(np.float32)
        obs, rew, dones, infos = venv.step(actions)
        for k in range(K):
            g_obs, g_rew, g_term, g_trunc, g_info = gym_envs[k].step(actions[k])
            where = f"{task} step {t} env {k}"
            g_done = g_term or g_trunc
            assert bool(dones[k]) == g_done, f"{where}: done {dones[k]} vs gymnasium {g_term=} {g_trunc=}"
            assert infos[k]["TimeLimit.truncated"] == (g_trunc and not g_term), where
            np.testing.assert_allclose(rew[k], g_rew, rtol=RTOL, atol=ATOL, err_msg=f"{where} reward")
            for key, value in g_info.items():
                np.testing.assert_allclose(
                    infos[k][key], value, rtol=RTOL, atol=ATOL, err_msg=f"{where} {key}"
                )
            assert infos[k]["dt"] == pytest.approx(gym_envs[k].unwrapped.dt, rel=1e-12)
            if g_done:
                counts["terminated" if g_term else "truncated"] += 1
                np.testing.assert_allclose(
                    infos[k]["terminal_observation"],
                    g_obs,
                    rtol=RTOL,
                    atol=ATOL,
                    err_msg=f"{where} terminal obs",
                )
                g_obs = fresh(k)
                obs[k] = venv.observe()[k]
            np.testing.assert_allclose(obs[k], g_obs, rtol=RTOL, atol=ATOL, err_msg=f"{where} obs")
    for env in gym_envs:
        env.close()
    venv.close()
    return counts


@pytest.mark.parametrize("task", known_tasks())
def test_parity_fast(task: str) -> None:
    run_parity(task, n_steps=200)


@pytest.mark.slow
@pytest.mark.parametrize("task", known_tasks())
def test_parity_1000_steps(task: str) -> None:
    counts = run_parity(task, n_steps=1000, seed=7)
    if task == "Reacher":  # 50-step time limit: truncations must have been checked
        assert counts["truncated"] >= K * (1000 // 50) - K


def test_parity_non_default_kwargs() -> None:
    """Task arguments change the computation the same way as in gymnasium."""
    run_parity(
        "Ant",
        n_steps=100,
        exclude_current_positions_from_observation=False,
        include_cfrc_ext_in_observation=True,
        contact_force_range=(-0.5, 0.5),
        healthy_z_range=(0.3, 1.0),
        main_body="torso",
    )
    run_parity("Hopper", n_steps=100, terminate_when_unhealthy=False, ctrl_cost_weight=0.1)
    run_parity(
        "HalfCheetah",
        n_steps=100,
        forward_reward_weight=2.0,
        exclude_current_positions_from_observation=False,
    )
