"""The recurrent carry: what a liquid policy keeps per environment between two env steps.

One object holds each env's recurrent state, the dt paired with its current observation, which envs start an
episode, and the bootstrap of time-limit truncations, with two verbs (as rsl_rl's ``act`` /
``process_env_step``, with the state kept explicit as in RecurrentPPO)::

    carry = RecurrentCarry(policy, env)          # all envs start an episode, nominal dts
    step = carry.act(obs)                        # actions for the current observations (and values, ...)
    obs, rewards, dones, infos = env.step(step.env_actions)
    outcome = carry.observe(dones, infos)        # next dts, new states, starts; truncation bootstrap values

LiquidPPO's rollouts and :func:`lnn_control.sb3.agent_evaluation.evaluate_agent` (and through it every
evaluation and playback of a run) use it, so evaluation cannot drift from training.

dt convention (see :mod:`lnn_control.sb3.dt_tracking`): the dt paired with observation o_t is the time since
o_{t-1} (``infos[i]["dt"]`` returned with o_t); an observation that starts an episode gets the nominal dt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv

from lnn_control.sb3.dt_tracking import DtTracker

__all__ = ["ActStep", "RecurrentCarry", "StepOutcome"]


@dataclass
class ActStep:
    """What :meth:`RecurrentCarry.act` returns for B envs.

    Attributes:
        actions: (B, *action_shape) numpy, as sampled (what a rollout buffer stores).
        env_actions: the actions for ``env.step``: clipped to the Box bounds (or unscaled when squashed).
        values: (B, 1) tensor; log_prob: (B,) tensor.
        state: (num_layers, B, S) tensor: the state *before* this step (what a sequence buffer stores).
        dts: (B,) float32 numpy: the dt paired with the current observations.
        starts: (B,) bool numpy: which envs start an episode at the current observations.
    """

    actions: np.ndarray
    env_actions: np.ndarray
    values: th.Tensor
    log_prob: th.Tensor
    state: th.Tensor
    dts: np.ndarray
    starts: np.ndarray


@dataclass
class StepOutcome:
    """What :meth:`RecurrentCarry.observe` returns.

    Attributes:
        step_dts: (B,) float32: the duration of the transition just taken (for a done env, to its terminal
            observation).
        truncated: (k,) int64 indices of the envs whose episode was cut by a time limit at this step.
        terminal_values: (k,) float32 values of their terminal observations, computed from each env's state at
            the end of its episode (both empty when bootstrapping is off). Terminated episodes are never
            bootstrapped.
    """

    step_dts: np.ndarray
    truncated: np.ndarray
    terminal_values: np.ndarray


class RecurrentCarry:
    """Per-env recurrent state, dts and episode starts of a liquid policy on a VecEnv.

    Args:
        policy: a :class:`~lnn_control.sb3.policies.LiquidActorCriticPolicy` (``forward``, ``predict_values``,
            ``initial_state``, ``state_shape``).
        env: the VecEnv it acts on (its nominal dts come from ``env.get_attr("dt")``).
        bootstrap: compute the values of time-limit-truncated terminal observations in :meth:`observe`.
    """

    def __init__(self, policy: Any, env: VecEnv, *, bootstrap: bool = True) -> None:
        self.policy = policy
        self.n_envs = env.num_envs
        self.bootstrap = bootstrap
        self.tracker = DtTracker.from_env(env)
        self.state: th.Tensor = policy.initial_state(self.n_envs)
        self.dts: np.ndarray = self.tracker.start_dts()
        self.starts = np.ones(self.n_envs, dtype=bool)
        self._next_state: th.Tensor | None = None

    @property
    def irregular(self) -> bool:
        """True once some env reported a dt other than its nominal period."""
        return self.tracker.irregular

    def nominal_dt(self) -> float | None:
        """Mean nominal dt over the envs whose nominal dt is known, else None."""
        return self.tracker.mean_nominal()

    def reset(self) -> None:
        """Every env starts an episode: zero states, nominal dts."""
        self.state = self.policy.initial_state(self.n_envs)
        self.dts = self.tracker.start_dts()
        self.starts = np.ones(self.n_envs, dtype=bool)
        self._next_state = None

    # ------------------------------------------------------------------------------------------ the verbs
    def act(self, obs: Any, *, deterministic: bool = False, dts: np.ndarray | None = None) -> ActStep:
        """Actions for the current observations ``obs`` (numpy (B, *obs_shape), or a dict of those).

        ``dts`` overrides the dts fed to the policy (e.g. the nominal period, for a clock ablation); the
        carry's own bookkeeping is unchanged.
        """
        policy = self.policy
        _check_finite(obs)
        feed = self.dts if dts is None else np.asarray(dts, dtype=np.float32)
        with th.no_grad():
            obs_tensor = obs_as_tensor(obs, policy.device)
            starts = th.as_tensor(self.starts, dtype=th.bool, device=policy.device)
            dt_tensor = th.as_tensor(feed, device=policy.device)
            actions, values, log_prob, new_state = policy(
                obs_tensor, self.state, starts, dt_tensor, deterministic=deterministic
            )
        actions_np = actions.cpu().numpy()
        env_actions = actions_np
        if isinstance(policy.action_space, spaces.Box):
            if policy.squash_output:
                env_actions = policy.unscale_action(actions_np)
            else:
                env_actions = np.clip(actions_np, policy.action_space.low, policy.action_space.high)
        self._next_state = new_state
        return ActStep(actions_np, env_actions, values, log_prob, self.state, self.dts, self.starts)

    def observe(self, dones: np.ndarray, infos: list[dict[str, Any]]) -> StepOutcome:
        """Take in what ``env.step`` returned after :meth:`act`: advance states, dts and starts."""
        if self._next_state is None:
            raise RuntimeError("observe() needs a preceding act(): the state after the step comes from it")
        dones = np.asarray(dones, dtype=bool)
        next_dts, step_dts = self.tracker.step(infos, dones)
        new_state = self._next_state
        truncated, values = self._terminal_values(infos, dones, new_state, step_dts)
        self.state, self.dts, self.starts = new_state, next_dts, dones.copy()
        self._next_state = None
        return StepOutcome(step_dts, truncated, values)

    def values(self, obs: Any) -> th.Tensor:
        """Values (B, 1) of observations ``obs`` that follow the carried state (the rollout's last values)."""
        with th.no_grad():
            return self.policy.predict_values(
                obs_as_tensor(obs, self.policy.device),
                self.state,
                th.as_tensor(self.starts, dtype=th.bool, device=self.policy.device),
                th.as_tensor(self.dts, device=self.policy.device),
            )

    # -------------------------------------------------------------------------------------------- helpers
    def _terminal_values(
        self, infos: list[dict[str, Any]], dones: np.ndarray, new_state: th.Tensor, step_dts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Values of the terminal observations of time-limit-truncated episodes, in one batched forward."""
        idx = np.array(
            [
                i
                for i, done in enumerate(dones)
                if done
                and infos[i].get("terminal_observation") is not None
                and infos[i].get("TimeLimit.truncated", False)
            ],
            dtype=np.int64,
        )
        if idx.size == 0 or not self.bootstrap:
            return idx[:0], np.zeros(0, dtype=np.float32)
        terminal = [infos[i]["terminal_observation"] for i in idx]
        if isinstance(terminal[0], dict):
            stacked: Any = {key: np.stack([obs[key] for obs in terminal]) for key in terminal[0]}
        else:
            stacked = np.stack(terminal)
        device = self.policy.device
        idx_tensor = th.as_tensor(idx, device=device)
        with th.no_grad():
            values = self.policy.predict_values(
                obs_as_tensor(stacked, device),
                new_state[:, idx_tensor],
                th.zeros(idx.size, dtype=th.bool, device=device),
                th.as_tensor(step_dts[idx], device=device),
            )
        return idx, values.flatten().cpu().numpy()


def _check_finite(obs: Any) -> None:
    """A non-finite observation is a clear error (the carried state is left as it was)."""
    for key, value in obs.items() if isinstance(obs, dict) else [("", obs)]:
        array = np.asarray(value)
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
            where = f"[{key!r}]" if key else ""
            raise ValueError(
                f"observation{where} must be finite, got {array[bad]} at index {bad} (env, feature); "
                "the recurrent state is unchanged"
            )
