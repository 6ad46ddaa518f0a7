"""Recurrent SAC policy for :class:`~lnn_control.sb3.LiquidSAC`: a liquid actor and twin recurrent critics.

Data flow (per step, batched over environments, or over replayed sequence chunks in training)::

    obs -> features extractor -> actor core (CfC | LTC | LSTM | GRU, integrates dt) -> latent
        -> pi MLP -> (mean, log_std) -> tanh-squashed Gaussian action             (actor)
    obs -> features extractor -> critic core i -> latent_i ; [latent_i, action] -> Q_i MLP   (critic i)

The critic arrangement (``critic=``):

- ``"separate"`` (default): each of the ``n_critics`` Q networks has its own core of the actor's architecture,
  trained by the TD loss, with a Polyak-averaged target copy. The state carried per env is
  ``[actor_state, critic_state_1, ..., critic_state_n]`` along the last axis.
- ``"detached"``: the Q heads read the actor core's latent through ``.detach()`` (one core; the TD loss does
  not train it; the target heads read the current actor core). Cheaper (one core instead of 1 + 2n), but the
  actor core only learns through the action gradient of the critic. On the cue-hold memory task (CueHoldEnv,
  hold 10, 3000 steps, 3 seeds; ``scripts/bench_sac_memory.py``, README "LiquidSAC") separate cores reached
  -0.28 +- 0.05 on every seed, detached ones -7.14 +- 4.75 (two seeds stayed at the feed-forward optimum,
  -10), hence the default; detached takes 0.55-0.8x of separate's training time on HalfCheetah.

Cores see observations only (not actions); the action enters each Q head after its core. Every core
integrates ``dt / time_unit`` as in :mod:`lnn_control.sb3.policies` (``time_unit`` defaults to the training
env's nominal period, set by LiquidSAC; ``default_dt`` and ``irregular_timing`` mean what they mean there).

State convention: the state passed in is the state *before* the step, shape (num_layers, B, state_size);
``episode_starts`` (B, T) zero it in-sequence before flagged steps; ``dt`` (B, T) is in seconds.
"""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    FlattenExtractor,
    create_mlp,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from lnn_control.checks import positive_int, positive_number
from lnn_control.nn.weight_cache import track_optimizer
from lnn_control.sb3.policies import LiquidActorCriticPolicy
from lnn_control.sb3.recurrence import CELLS, make_recurrence, make_wiring, run_core

SAC_CRITICS = ("separate", "detached")
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # as SB3's SAC actor


class RecurrentSACActor(nn.Module):
    """Features extractor, recurrent core and SAC's Gaussian head (``latent_pi``, ``mu``, ``log_std``)."""

    def __init__(
        self,
        features_extractor: BaseFeaturesExtractor,
        core: nn.Module,
        net_arch: list[int],
        activation_fn: type[nn.Module],
        action_dim: int,
    ) -> None:
        super().__init__()
        self.features_extractor = features_extractor
        self.core = core
        self.latent_pi = nn.Sequential(*create_mlp(int(core.output_size), -1, net_arch, activation_fn))
        last = net_arch[-1] if net_arch else int(core.output_size)
        self.mu = nn.Linear(last, action_dim)
        self.log_std = nn.Linear(last, action_dim)
        self.action_dist = SquashedDiagGaussianDistribution(action_dim)
        self.optimizer: th.optim.Optimizer

    def distribution(self, latent: th.Tensor) -> SquashedDiagGaussianDistribution:
        """The squashed Gaussian of core latents (N, out)."""
        hidden = self.latent_pi(latent)
        log_std = th.clamp(self.log_std(hidden), LOG_STD_MIN, LOG_STD_MAX)
        return self.action_dist.proba_distribution(self.mu(hidden), log_std)

    def action_log_prob(self, latent: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Sampled actions (N, action_dim) in [-1, 1] and their log-probs (N,)."""
        dist = self.distribution(latent)
        actions = dist.get_actions(deterministic=False)
        return actions, dist.log_prob(actions)

    def deterministic(self, latent: th.Tensor) -> th.Tensor:
        """``tanh(mean)`` (N, action_dim)."""
        return th.tanh(self.mu(self.latent_pi(latent)))


class RecurrentTwinCritic(nn.Module):
    """``n_critics`` Q networks, each ``Q_i(latent_i, action)``; with ``cores`` each has its own core.

    Args:
        features_extractor: the critic's own extractor (separate cores) or None (detached: heads read the
            actor's latent).
        cores: ``n_critics`` cores (separate) or empty (detached).
        latent_dim: the size of the latent each head reads.
    """

    def __init__(
        self,
        features_extractor: BaseFeaturesExtractor | None,
        cores: list[nn.Module],
        latent_dim: int,
        action_dim: int,
        net_arch: list[int],
        activation_fn: type[nn.Module],
        n_critics: int,
    ) -> None:
        super().__init__()
        self.features_extractor = features_extractor
        self.cores = nn.ModuleList(cores)
        self.q_networks = nn.ModuleList(
            nn.Sequential(*create_mlp(latent_dim + action_dim, 1, net_arch, activation_fn))
            for _ in range(n_critics)
        )
        self.optimizer: th.optim.Optimizer

    def q_values(self, latents: list[th.Tensor], actions: th.Tensor) -> list[th.Tensor]:
        """Q_i(latents[i], actions) for each critic: a list of (N, 1)."""
        return [q(th.cat([z, actions], dim=-1)) for q, z in zip(self.q_networks, latents, strict=True)]


class LiquidSACPolicy(BasePolicy):
    """SAC policy with a liquid (or LSTM/GRU) recurrent actor and twin recurrent critics.

    Args:
        net_arch: sizes of the MLP heads after the cores: a list (both) or ``dict(pi=[...], qf=[...])``;
            default ``[256, 256]`` (SB3's SAC default).
        activation_fn: of the heads (default ReLU, as SB3's SAC).
        n_critics: Q networks (default 2: clipped double Q).
        cell, units, wiring, wiring_kwargs, cell_kwargs, time_unit, freeze_recurrent: the cores, as in
            :class:`~lnn_control.sb3.policies.LiquidActorCriticPolicy`.
        critic: ``"separate"`` (default) or ``"detached"`` (module docstring).
        use_sde: not supported (False only).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        use_sde: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
        cell: str = "cfc",
        units: int = 64,
        wiring: Any = None,
        wiring_kwargs: dict[str, Any] | None = None,
        cell_kwargs: dict[str, Any] | None = None,
        critic: str = "separate",
        time_unit: float | None = None,
        freeze_recurrent: bool = False,
        **unknown: Any,
    ) -> None:
        if unknown:
            fixed = {"self", "observation_space", "action_space", "lr_schedule", "unknown"}
            names = sorted(set(inspect.signature(LiquidSACPolicy.__init__).parameters) - fixed)
            raise ValueError(f"Unknown policy_kwargs key(s) {sorted(unknown)}; expected some of {names}")
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"LiquidSAC needs a Box action space, got {action_space}")
        if use_sde:
            raise ValueError("use_sde=True is not supported by LiquidSACPolicy (use the default Gaussian)")
        if not isinstance(cell, str) or cell.lower() not in CELLS:
            raise ValueError(f"Unknown cell {cell!r}; expected one of {CELLS}")
        if critic not in SAC_CRITICS:
            raise ValueError(f"critic must be one of {SAC_CRITICS}, got {critic!r}")
        n_critics = positive_int("n_critics", n_critics)
        # SB3 SAC's optimizer defaults (Adam's eps 1e-8), plus the multi-tensor update where available and
        # not chosen otherwise: the same numbers in fewer calls (see policies._default_optimizer_kwargs).
        optimizer_kwargs = dict(optimizer_kwargs or {})
        accepts_foreach = "foreach" in inspect.signature(optimizer_class).parameters
        if accepts_foreach and not {"foreach", "fused"} & set(optimizer_kwargs):
            optimizer_kwargs["foreach"] = True
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
            normalize_images=normalize_images,
        )
        if net_arch is None:
            net_arch = [256, 256]
        if isinstance(net_arch, dict):
            self.pi_arch, self.qf_arch = list(net_arch["pi"]), list(net_arch["qf"])
        else:
            self.pi_arch, self.qf_arch = list(net_arch), list(net_arch)
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.cell = cell.lower()
        self.units = positive_int("units", units)
        self.wiring_spec = wiring
        self.wiring_kwargs = dict(wiring_kwargs or {})
        self.cell_kwargs = dict(cell_kwargs or {})
        self.critic_mode = critic
        self.freeze_recurrent = bool(freeze_recurrent)
        self._wiring = make_wiring(wiring, self.units, self.wiring_kwargs)
        self.register_buffer("default_dt", th.tensor(1.0))
        seconds = positive_number("time_unit", time_unit, allow_none=True, unit=" of seconds")
        self.register_buffer("time_unit", th.tensor(math.nan if seconds is None else seconds))
        self.register_buffer("irregular_timing", th.tensor(False))
        self._build(lr_schedule)

    def _make_core(self, input_size: int) -> nn.Module:
        wiring = None if self._wiring is None else self._wiring.copy()
        return make_recurrence(
            self.cell,
            input_size,
            self.units,
            wiring=wiring,
            cell_kwargs=self.cell_kwargs,
            freeze_recurrent=self.freeze_recurrent,
        )

    def _build(self, lr_schedule: Schedule) -> None:
        action_dim = int(np.prod(self.action_space.shape))  # type: ignore[arg-type]
        actor_extractor = self.make_features_extractor()
        actor_core = self._make_core(actor_extractor.features_dim)
        self.actor = RecurrentSACActor(
            actor_extractor, actor_core, self.pi_arch, self.activation_fn, action_dim
        )
        self.actor_state_size = int(actor_core.state_size)
        self.num_layers = int(actor_core.num_layers)
        if self.critic_mode == "separate":
            critic_extractor: BaseFeaturesExtractor | None = self.make_features_extractor()
            cores = [self._make_core(critic_extractor.features_dim) for _ in range(self.n_critics)]
            latent_dim = int(cores[0].output_size)
            self.critic_state_size = int(cores[0].state_size)
        else:
            critic_extractor, cores = None, []
            latent_dim = int(actor_core.output_size)
            self.critic_state_size = 0
        self.critic = RecurrentTwinCritic(
            critic_extractor, cores, latent_dim, action_dim, self.qf_arch, self.activation_fn, self.n_critics
        )
        self.critic_target = copy.deepcopy(self.critic)
        self.critic_target.requires_grad_(False)
        self.critic_target.train(False)
        n_critic_cores = len(cores)
        self.state_shape = (self.num_layers, self.actor_state_size + n_critic_cores * self.critic_state_size)
        # track_optimizer: a fused optimizer's steps must reach the cells' inference weight cache
        self.actor.optimizer = track_optimizer(
            self.optimizer_class(self.actor.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        )
        self.critic.optimizer = track_optimizer(
            self.optimizer_class(self.critic.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            lr_schedule=self._dummy_schedule,  # only the optimizers use it; set again by the algorithm
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            n_critics=self.n_critics,
            cell=self.cell,
            units=self.units,
            wiring=self.wiring_spec,
            wiring_kwargs=self.wiring_kwargs,
            cell_kwargs=self.cell_kwargs,
            critic=self.critic_mode,
            time_unit=None if math.isnan(float(self.time_unit)) else float(self.time_unit),
            freeze_recurrent=self.freeze_recurrent,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
            features_extractor_class=self.features_extractor_class,
            features_extractor_kwargs=self.features_extractor_kwargs,
        )
        return data

    def set_training_mode(self, mode: bool) -> None:
        self.actor.train(mode)
        self.critic.train(mode)
        self.training = mode

    # ---------------------------------------------------------------------------------------- the state
    def initial_state(self, n_envs: int) -> th.Tensor:
        """Zero state (num_layers, n_envs, state_size) on the policy's device."""
        return th.zeros((self.state_shape[0], n_envs, self.state_shape[1]), device=self.device)

    def split_state(self, state: th.Tensor) -> tuple[th.Tensor, list[th.Tensor]]:
        """(actor state, [critic core i's state]) of a full state (num_layers, B, state_size)."""
        a, c = self.actor_state_size, self.critic_state_size
        critics = [state[..., a + i * c : a + (i + 1) * c] for i in range(len(self.critic.cores))]
        return state[..., :a], critics

    # ---------------------------------------------------------------------------------------- sequences
    def actor_latent(
        self, obs: PyTorchObs, state: th.Tensor, episode_starts: th.Tensor, dt: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor]:
        """Actor core latents (B * T, out) and final actor state, from obs (B * T, ...) sequence-major."""
        features = self.extract_features(obs, self.actor.features_extractor)
        return run_core(self.actor.core, features, state, episode_starts, dt, self.time_unit)

    def critic_latents(
        self,
        critic: RecurrentTwinCritic,
        obs: PyTorchObs,
        states: list[th.Tensor],
        episode_starts: th.Tensor,
        dt: th.Tensor,
        actor_latent: th.Tensor | None,
    ) -> tuple[list[th.Tensor], list[th.Tensor]]:
        """Latents (B * T, out) of each Q network and their cores' final states.

        ``critic`` is ``self.critic`` or ``self.critic_target``; detached critics read ``actor_latent``
        (detached) and have no state.
        """
        if len(critic.cores) == 0:
            if actor_latent is None:
                raise ValueError("detached critics read the actor's latent; pass actor_latent")
            return [actor_latent.detach()] * self.n_critics, []
        assert critic.features_extractor is not None
        features = self.extract_features(obs, critic.features_extractor)
        outs = [
            run_core(core, features, h, episode_starts, dt, self.time_unit)
            for core, h in zip(critic.cores, states, strict=True)
        ]
        return [o[0] for o in outs], [o[1] for o in outs]

    # -------------------------------------------------------------------------------------------- the API
    def forward(  # type: ignore[override]
        self,
        obs: PyTorchObs,
        state: th.Tensor,
        episode_starts: th.Tensor,
        dt: th.Tensor,
        deterministic: bool = False,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """One rollout step for B envs (the :class:`~lnn_control.sb3.carry.RecurrentCarry` contract).

        Advances every core (the critics' too, so that the replay buffer can store their states).

        Returns:
            actions (B, action_dim) in [-1, 1], values (B, 1) (zeros: SAC has no state value), log_prob
            (B,), new state (num_layers, B, state_size).
        """
        actor_state, critic_states = self.split_state(state)
        latent, new_actor = self.actor_latent(obs, actor_state, episode_starts, dt)
        dist = self.actor.distribution(latent)
        actions = dist.get_actions(deterministic=deterministic)
        log_prob = dist.log_prob(actions)
        _, new_critics = self.critic_latents(self.critic, obs, critic_states, episode_starts, dt, latent)
        new_state = th.cat([new_actor, *new_critics], dim=-1)
        values = th.zeros((actions.shape[0], 1), device=actions.device)
        return actions, values, log_prob, new_state

    def _predict(  # type: ignore[override]
        self,
        observation: PyTorchObs,
        actor_state: th.Tensor,
        episode_starts: th.Tensor,
        dt: th.Tensor,
        deterministic: bool = False,
    ) -> tuple[th.Tensor, th.Tensor]:
        """Actions (B, action_dim) in [-1, 1] and the new actor state, from the actor state only."""
        latent, new_state = self.actor_latent(observation, actor_state, episode_starts, dt)
        if deterministic:
            return self.actor.deterministic(latent), new_state
        return self.actor.distribution(latent).get_actions(deterministic=False), new_state

    # ``predict`` is LiquidActorCriticPolicy's (same checks of observations, state shape and dt; actions are
    # unscaled from [-1, 1] since this policy squashes): one contract for both algorithms.
    predict = LiquidActorCriticPolicy.predict  # type: ignore[assignment]

    # ------------------------------------------------------------------------------------ export contract
    def export_parts(self) -> tuple[BaseFeaturesExtractor, nn.Module, list[nn.Module]]:
        """The deterministic actor as (features extractor, core, head modules): ``tanh(head(core(x)))``,
        rescaled to the action bounds (what ``predict(deterministic=True)`` computes)."""
        return self.actor.features_extractor, self.actor.core, [self.actor.latent_pi, self.actor.mu]

    @property
    def recurrent_actor(self) -> nn.Module:
        """The actor's core (the name LiquidActorCriticPolicy uses)."""
        return self.actor.core
