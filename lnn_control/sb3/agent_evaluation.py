"""Episode evaluation that feeds a liquid policy the real time steps (``info["dt"]``).

SB3's ``evaluate_policy`` cannot pass dt: a LiquidPPO policy trained on irregular timing refuses it (its
``predict`` asks for a dt), one trained on regular timing runs at its nominal period. :func:`evaluate_agent`
acts through the same :class:`~lnn_control.sb3.carry.RecurrentCarry` as training's rollouts: recurrent state,
episode starts and each env's reported dt, exactly as training did.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from lnn_control.sb3.carry import RecurrentCarry
from lnn_control.sb3.liquid_ppo import LiquidPPO
from lnn_control.sb3.liquid_sac import LiquidSAC


def evaluate_agent(
    model: BaseAlgorithm,
    env: VecEnv,
    n_eval_episodes: int = 10,
    deterministic: bool = True,
    use_reported_dt: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``n_eval_episodes`` episodes (spread evenly over the envs) and return their returns and lengths.

    Works for any SB3 model with ``predict(obs, state, episode_start, deterministic)``; for a LiquidPPO or
    LiquidSAC model, each step's dt comes from the env's infos (nominal dt at episode starts). Returns and
    lengths are taken from the env's ``Monitor``/``VecMonitor`` records when present (unnormalised
    rewards), else summed from the (possibly normalised) step rewards. ``use_reported_dt=False`` feeds a
    liquid policy the nominal period at every step instead of ``info["dt"]`` (an ablation: how much does the
    policy use the clock?).

    Returns:
        returns (n_eval_episodes,), lengths (n_eval_episodes,).
    """
    n_envs = env.num_envs
    targets = np.array([(n_eval_episodes + i) // n_envs for i in range(n_envs)])
    counts = np.zeros(n_envs, dtype=int)
    running_return, running_length = np.zeros(n_envs), np.zeros(n_envs, dtype=int)
    returns: list[float] = []
    lengths: list[int] = []
    carry = (
        RecurrentCarry(model.policy, env, bootstrap=False)
        if isinstance(model, (LiquidPPO, LiquidSAC))
        else None
    )
    if carry is not None:
        model.policy.set_training_mode(False)
    obs = env.reset()
    state: Any = None
    starts = np.ones(n_envs, dtype=bool)
    while (counts < targets).any():
        if carry is not None:
            fed = None if use_reported_dt else carry.tracker.start_dts()
            actions = carry.act(obs, deterministic=deterministic, dts=fed).env_actions
        else:
            actions, state = model.predict(
                obs, state=state, episode_start=starts, deterministic=deterministic
            )
        obs, rewards, dones, infos = env.step(actions)
        if carry is not None:
            carry.observe(dones, infos)
        running_return += rewards
        running_length += 1
        for i in np.flatnonzero(dones):
            if counts[i] < targets[i]:
                episode = infos[i].get("episode")
                returns.append(float(episode["r"]) if episode else float(running_return[i]))
                lengths.append(int(episode["l"]) if episode else int(running_length[i]))
                counts[i] += 1
            running_return[i], running_length[i] = 0.0, 0
        starts = np.asarray(dones, dtype=bool)
    return np.array(returns), np.array(lengths)
