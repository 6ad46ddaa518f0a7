"""Timing robustness of a trained run: its final policy on its task at other control periods, and (for liquid
policies) with the true dt withheld.

A period factor f scales every control period of the task by f (0.5: twice as fast, 2: half as fast) and the
episode's step count by 1/f, so that an episode lasts the same physical time. MuJoCo locomotion rewards are
per step (velocity, healthy bonus, control cost), so a return at factor f is scaled by f to compare with the
1x return: the *rate* of reward over the same simulated time. A factor that is not a whole number of physics
substeps is reached in the mean (the nominal period rounds; periods draw between the neighbouring substep
counts), and the factor actually reached is reported.

The clock ablation evaluates a liquid policy on its own (jittered) task while giving it the nominal period
as dt at every step instead of ``info["dt"]``: if the policy uses the clock, it scores worse. For liquid
policies, :func:`lnn_control.sb3.diagnostics.action_sensitivity` also measures along one trajectory how much
the actions move when every dt is halved or doubled, and under input noise.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from lnn_control.checks import positive_number
from lnn_control.runs.errors import RunError
from lnn_control.runs.eval_episodes import eval_env_count
from lnn_control.runs.playback import load_policy

__all__ = ["evaluate_timing", "mean_substeps", "period_scaled_task"]


def mean_substeps(timing: Any) -> float:
    """Mean physics substeps per control step of a :class:`~lnn_control.sim.control_timing.ControlTiming`."""
    if timing.choices is not None:
        probs = timing.probs or [1.0 / len(timing.choices)] * len(timing.choices)
        return float(np.dot(timing.choices, probs))
    if timing.jitter is None:
        return float(timing.frame_skip)
    lo, hi = timing.jitter
    draws = np.linspace(timing.frame_skip * lo, timing.frame_skip * hi, 100_001)  # round(fs * U[lo, hi])
    return float(np.maximum(1.0, np.round(draws)).mean())


def period_scaled_task(task: Any, factor: float) -> tuple[Any, float]:
    """(task with every control period scaled by about ``factor``, the factor reached in the mean).

    Args:
        task: a :class:`~lnn_control.sim.catalogue.TaskSpec` without dropped frames or explicit choices.
        factor: > 0.
    """
    factor = positive_number("period factor", factor, error=RunError)
    timing = task.timing
    if timing.choices is not None or timing.drop_prob > 0:
        raise RunError(f"{task.id}: period scaling supports plain and jittered timing only")
    target = mean_substeps(timing) * factor
    frame_skip = max(1, round(timing.frame_skip * factor))
    if timing.jitter is not None:
        lo, hi = timing.jitter
        stretch = timing.frame_skip * factor / frame_skip
        scaled = dataclasses.replace(timing, frame_skip=frame_skip, jitter=(lo * stretch, hi * stretch))
    elif float(target).is_integer():
        scaled = dataclasses.replace(timing, frame_skip=int(target))
    else:
        low = max(1, math.floor(target))
        upper = target - low
        scaled = dataclasses.replace(
            timing, frame_skip=frame_skip, choices=(low, low + 1), probs=(1.0 - upper, upper)
        )
    reached = mean_substeps(scaled) / mean_substeps(timing)
    timestep = task.nominal_dt / timing.frame_skip
    new_task = dataclasses.replace(
        task,
        id=f"{task.id}@period{factor:g}x",
        timing=scaled,
        nominal_dt=timestep * scaled.frame_skip,
        max_episode_steps=max(1, round(task.max_episode_steps / reached)),
    )
    return new_task, reached


def evaluate_timing(
    run_dir: str | Path,
    *,
    factors: tuple[float, ...] = (0.5, 1.0, 2.0),
    episodes: int = 5,
    clock_ablation: bool = True,
    checkpoint: str = "last",
) -> dict[str, Any]:
    """Evaluate a run's final policy at each period factor (and the clock ablation at 1x).

    Returns:
        ``{"factors": {"0.5": {"reached": f, "return": mean scaled return, "returns": [...]}, ...},
        "nominal_dt_return": mean return with the nominal dt fed (liquid, irregular tasks; else None)}``.
    """
    from lnn_control.sb3.liquid_ppo import LiquidPPO
    from lnn_control.sb3.liquid_sac import LiquidSAC

    base = load_policy(run_dir, checkpoint=checkpoint, n_envs=1)
    task, seed = base.task, base.resolved.eval_seed
    liquid = isinstance(base.model, (LiquidPPO, LiquidSAC))
    base.close()
    out: dict[str, Any] = {"factors": {}, "nominal_dt_return": None, "sensitivity": None}
    n_envs = eval_env_count(episodes)
    for factor in factors:
        scaled, reached = period_scaled_task(task, factor) if factor != 1.0 else (task, 1.0)
        policy = load_policy(run_dir, checkpoint=checkpoint, env=scaled, n_envs=n_envs, seed=seed)
        try:
            returns = _episodes(policy, episodes, seed) * reached
        finally:
            policy.close()
        out["factors"][f"{factor:g}"] = {
            "reached": reached,
            "return": float(returns.mean()),
            "returns": returns.tolist(),
        }
    if liquid:
        from lnn_control.sb3.diagnostics import action_sensitivity

        policy = load_policy(run_dir, checkpoint=checkpoint, n_envs=1, seed=seed)
        try:
            out["sensitivity"] = action_sensitivity(policy.model, policy.env, seed=seed)
        finally:
            policy.close()
    if clock_ablation and liquid and not task.timing.is_regular:
        policy = load_policy(run_dir, checkpoint=checkpoint, n_envs=n_envs, seed=seed)
        try:
            out["nominal_dt_return"] = float(_episodes(policy, episodes, seed, reported_dt=False).mean())
        finally:
            policy.close()
    return out


def _episodes(policy: Any, episodes: int, seed: int, reported_dt: bool = True) -> np.ndarray:
    from lnn_control.sb3.agent_evaluation import evaluate_agent

    policy.env.seed(seed)
    returns, _ = evaluate_agent(
        policy.model, policy.env, n_eval_episodes=episodes, deterministic=True, use_reported_dt=reported_dt
    )
    return np.asarray(returns, dtype=np.float64)
