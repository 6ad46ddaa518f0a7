"""Evaluation episodes of a run: how many parallel envs an evaluation uses, and seeded episodes on a VecEnv
(for the periodic evaluation during training and for playback of a finished run).

Liquid policies get each step's real elapsed time from the env (``info["dt"]``) through
:func:`lnn_control.sb3.agent_evaluation.evaluate_agent`; the env is re-seeded before every evaluation, so
that all evaluations of a run start from the same initial states and are comparable.
"""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

__all__ = ["MAX_EVAL_ENVS", "eval_env_count", "run_episodes"]

MAX_EVAL_ENVS = 8


def eval_env_count(episodes: int) -> int:
    """Parallel envs for ``episodes`` evaluation episodes: one per episode, at most :data:`MAX_EVAL_ENVS`."""
    return max(1, min(int(episodes), MAX_EVAL_ENVS))


def run_episodes(
    model: BaseAlgorithm, env: VecEnv, episodes: int, *, seed: int | None, deterministic: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (episodes,) and lengths (episodes,) of ``episodes`` episodes on ``env``, reset with ``seed``.

    ``env`` must carry episode monitoring (``make_vec_env(monitor=True)``, the default) so that the returns
    are the raw task rewards even under VecNormalize.
    """
    from lnn_control.sb3.agent_evaluation import evaluate_agent

    if seed is not None:
        env.seed(seed)
    return evaluate_agent(model, env, n_eval_episodes=episodes, deterministic=deterministic)
