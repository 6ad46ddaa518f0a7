"""How much a trained liquid policy's actions depend on the clock and on its input, along a real trajectory.

:func:`action_sensitivity` records one deterministic trajectory of the policy on an env (observations as the
policy sees them, after any VecNormalize; dts; episode starts), then replays that fixed observation sequence
through the actor with every dt halved or doubled, and with Gaussian noise (std 0.1 in the policy's input
units) added to the observations. A policy that ignores the clock gives the same actions at every dt; one that
ignores its input gives the same actions under noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from lnn_control.sb3.carry import RecurrentCarry

__all__ = ["action_sensitivity"]


def action_sensitivity(
    model: Any, env: VecEnv, *, steps: int = 300, noise: float = 0.1, seed: int = 0
) -> dict[str, float]:
    """Mean absolute action change under dt x 0.5, dt x 2 and input noise, and the mean |action|.

    Args:
        model: a LiquidPPO or LiquidSAC (a policy with the carry contract and ``_predict``).
        env: a VecEnv with one env (its observations as the policy is fed them).
        steps: length of the recorded trajectory (episodes may end inside it; resets are replayed).
        noise: std of the Gaussian input perturbation, in the policy's input units.
    Returns:
        ``{"mean_abs_action", "dt_half", "dt_double", "input_noise"}`` (means over steps and action entries).
    """
    if env.num_envs != 1:
        raise ValueError(f"action_sensitivity needs a VecEnv with one env, got {env.num_envs}")
    policy = model.policy
    policy.set_training_mode(False)
    carry = RecurrentCarry(policy, env, bootstrap=False)
    env.seed(seed)
    obs = env.reset()
    observations, dts, starts, actions = [], [], [], []
    for _ in range(steps):
        step = carry.act(obs, deterministic=True)
        observations.append(np.asarray(obs, dtype=np.float32)[0])
        dts.append(float(step.dts[0]))
        starts.append(bool(step.starts[0]))
        actions.append(step.actions[0])
        obs, _, dones, infos = env.step(step.env_actions)
        carry.observe(dones, infos)
    obs_seq = np.stack(observations)
    dt_seq = np.asarray(dts, dtype=np.float32)[None]
    start_seq = np.asarray(starts)[None]

    def replay(observations: np.ndarray, dt: np.ndarray) -> np.ndarray:
        with th.no_grad():
            replayed, _ = policy._predict(
                obs_as_tensor(observations, policy.device),
                policy.initial_state(1)[..., : policy.actor_state_size],
                th.as_tensor(start_seq, device=policy.device),
                th.as_tensor(dt, device=policy.device),
                deterministic=True,
            )
            return replayed.cpu().numpy()

    base = replay(obs_seq, dt_seq)
    recorded = np.stack(actions).reshape(base.shape)
    if not np.allclose(base, recorded, rtol=1e-4, atol=1e-4):
        raise AssertionError("replaying the recorded trajectory did not reproduce its actions")
    rng = np.random.default_rng(seed)
    noisy = (obs_seq + noise * rng.standard_normal(obs_seq.shape)).astype(np.float32)
    return {
        "mean_abs_action": float(np.abs(base).mean()),
        "dt_half": float(np.abs(replay(obs_seq, dt_seq * 0.5) - base).mean()),
        "dt_double": float(np.abs(replay(obs_seq, dt_seq * 2.0) - base).mean()),
        "input_noise": float(np.abs(replay(noisy, dt_seq) - base).mean()),
    }
