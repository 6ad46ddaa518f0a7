"""Liquid recurrent actor-critic policies for :class:`~lnn_control.sb3.LiquidPPO`.

Data flow (per step, batched over environments, or over sequence chunks in training)::

    obs -> features extractor -> recurrent core (CfC | LTC | LSTM | GRU, integrates dt) -> latent
        -> pi MLP -> action distribution          (actor)
        -> vf MLP -> value                        (critic: see ``critic`` below)

The critic arrangement (``critic=``), as in sb3-contrib's RecurrentPPO:

- ``"detached"`` (default): one core; the critic head reads the actor's latent through ``.detach()``, so the
  value loss trains the critic head only and never the core (RecurrentPPO's ``shared_lstm=True``).
- ``"separate"``: the critic has its own core of the same architecture (RecurrentPPO's default). Twice the
  recurrent cost.
- ``"shared"``: one core trained by both losses. The value loss can swamp the core's memory: a CfC that learns
  a cue-recall task with either of the other two never learns it this way (tests/test_sb3_memory.py).

State convention: one tensor ``state`` of shape (num_layers, B, state_size). With a separate critic core,
``state`` is the concatenation ``[actor_state, critic_state]`` along the last axis. The state passed in is
the state *before* the step; ``episode_starts`` (B, T) zeroes it in-sequence before the flagged steps, and
``dt`` (B, T) is the time in seconds since the previous observation, per sample and per step.

Time unit: the cores see ``dt / time_unit``, where ``time_unit`` (s) defaults to the training env's nominal
control period, so that a core steps about one of its time units per control step, the regime its
initialisation (ncps's) is made for. The scaling is linear, so an LTC keeps its physical meaning (dt = 0
leaves the state unchanged; two steps of dt/2 equal one of dt up to solver error). ``time_unit`` is a buffer,
saved with the policy and applied by every export.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import (
    BaseFeaturesExtractor,
    CombinedExtractor,
    FlattenExtractor,
    MlpExtractor,
)
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch.distributions import Normal

from lnn_control.checks import nonnegative_values, positive_int, positive_number
from lnn_control.nn.weight_cache import track_optimizer
from lnn_control.sb3.recurrence import CELLS, make_recurrence, make_wiring, run_core

CRITICS = ("detached", "separate", "shared")


def _kwarg_names() -> list[str]:
    """The policy_kwargs LiquidActorCriticPolicy accepts (for error messages)."""
    fixed = {"self", "observation_space", "action_space", "lr_schedule", "unknown"}
    return sorted(set(inspect.signature(LiquidActorCriticPolicy.__init__).parameters) - fixed)


def _default_optimizer_kwargs(
    optimizer_class: type[th.optim.Optimizer], optimizer_kwargs: dict[str, Any] | None
) -> dict[str, Any]:
    """SB3's optimizer defaults (Adam: ``eps=1e-5`` when no kwargs are given), plus, where the user chose
    neither ``foreach`` nor ``fused``: ``fused=True`` for Adam and AdamW, else ``foreach=True`` where the
    optimizer supports it.

    A training minibatch is small, so the optimizer step is bound by per-tensor overhead. The multi-tensor
    (foreach) update does the same arithmetic in a few calls instead of a few per parameter (torch defaults to
    it on GPUs only); on CPU it gives the same parameters, bit for bit, as the per-tensor loop (tested). The
    fused Adam kernel (CPU and the usual accelerators) does the whole update in one pass per tensor, about
    2.5x faster again than foreach on CPU; it rounds differently in the last bit, so its parameters match the
    per-tensor loop's to float32 rounding, not bit for bit (tested).
    """
    if optimizer_kwargs is None:
        kwargs: dict[str, Any] = {"eps": 1e-5} if optimizer_class == th.optim.Adam else {}
    else:
        kwargs = dict(optimizer_kwargs)
    if "foreach" in kwargs or "fused" in kwargs:
        return kwargs
    if optimizer_class in (th.optim.Adam, th.optim.AdamW):
        kwargs["fused"] = True
    elif "foreach" in inspect.signature(optimizer_class).parameters:
        kwargs["foreach"] = True
    return kwargs


def resolve_critic(critic: str | None, shared_recurrence: bool | None = None) -> str:
    """The critic arrangement from ``critic`` and the deprecated ``shared_recurrence`` flag."""
    if shared_recurrence is not None:
        legacy = "shared" if shared_recurrence else "separate"
        if critic is not None and critic != legacy:
            raise ValueError(
                f"shared_recurrence={shared_recurrence!r} contradicts critic={critic!r}; give critic only"
            )
        warnings.warn(
            f"shared_recurrence is deprecated; use critic={legacy!r} (or critic='detached', the default: one "
            "core that the value loss does not train)",
            FutureWarning,
            stacklevel=3,
        )
        critic = legacy
    if critic is None:
        return "detached"
    if not isinstance(critic, str) or critic not in CRITICS:
        raise ValueError(f"critic must be one of {CRITICS}, got {critic!r}")
    return critic


class LiquidActorCriticPolicy(ActorCriticPolicy):
    """Actor-critic policy with a liquid (or LSTM/GRU) recurrent core between features and heads.

    All :class:`~stable_baselines3.common.policies.ActorCriticPolicy` arguments apply (``net_arch`` sizes the
    pi/vf MLP heads *after* the recurrence; default ``dict(pi=[64], vf=[64])``). Added arguments:

    Args:
        cell: ``"cfc"`` (default), ``"ltc"``, ``"lstm"`` or ``"gru"``.
        units: neurons per recurrent layer (default 64). With a wiring, the wiring's neuron count.
        wiring: None (dense), ``"ncp"``/``"autoncp"``/``"random"``/``"fully_connected"`` with
            ``wiring_kwargs``, or a :mod:`lnn_control.nn.wiring` object. Liquid cells only.
        wiring_kwargs: arguments of a named wiring (see :func:`~lnn_control.sb3.recurrence.make_wiring`).
        cell_kwargs: further options of the cell (CfC: mode, backbone_units, ...; LTC: solver, unfolds,
            max_step, ...; all: num_layers).
        critic: how the critic reads the recurrence: ``"detached"`` (default), ``"separate"`` or
            ``"shared"`` (module docstring).
        shared_recurrence: deprecated: ``True`` is ``critic="shared"``, ``False`` is ``critic="separate"``.
        time_unit: seconds per time unit of the cores (they integrate ``dt / time_unit``); None: the training
            env's nominal control period, set by LiquidPPO when it builds the policy (1.0 if unknown).
        freeze_recurrent: reservoir mode: recurrent and input weights keep their random init; only the
            heads (and a liquid cell's readout) train.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        log_std_init: float = 0.0,
        full_std: bool = True,
        use_expln: bool = False,
        squash_output: bool = False,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        share_features_extractor: bool = True,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        cell: str = "cfc",
        units: int = 64,
        wiring: Any = None,
        wiring_kwargs: dict[str, Any] | None = None,
        cell_kwargs: dict[str, Any] | None = None,
        critic: str | None = None,
        shared_recurrence: bool | None = None,
        time_unit: float | None = None,
        freeze_recurrent: bool = False,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ValueError(
                f"Unknown policy_kwargs key(s) {sorted(unknown)}; expected some of {_kwarg_names()}"
            )
        if not isinstance(cell, str) or cell.lower() not in CELLS:
            raise ValueError(f"Unknown cell {cell!r}; expected one of {CELLS}")
        critic = resolve_critic(critic, shared_recurrence)
        if critic != "separate" and not share_features_extractor:
            raise ValueError(
                f"critic={critic!r} needs share_features_extractor=True (one core, one input); "
                "use critic='separate' for separate feature extractors"
            )
        self.cell = cell.lower()
        self.units = positive_int("units", units)
        self.wiring_spec = wiring
        self.wiring_kwargs = dict(wiring_kwargs or {})
        self.cell_kwargs = dict(cell_kwargs or {})
        self.critic = critic
        self.freeze_recurrent = bool(freeze_recurrent)
        # Resolve the wiring now: bad sizes fail before any network is built.
        self._wiring = make_wiring(wiring, self.units, self.wiring_kwargs)
        if net_arch is None:
            net_arch = dict(pi=[64], vf=[64])
        optimizer_kwargs = _default_optimizer_kwargs(optimizer_class, optimizer_kwargs)
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            ortho_init,
            use_sde,
            log_std_init,
            full_std,
            use_expln,
            squash_output,
            features_extractor_class,
            features_extractor_kwargs,
            share_features_extractor,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )
        # Nominal control period (s) used by ``predict`` when no dt is given; LiquidPPO sets it from the env.
        self.register_buffer("default_dt", th.tensor(1.0))
        # Seconds per time unit of the cores (NaN until LiquidPPO resolves it from the env).
        seconds = positive_number("time_unit", time_unit, allow_none=True, unit=" of seconds")
        self.register_buffer("time_unit", th.tensor(math.nan if seconds is None else seconds))
        # 1 once training has seen a dt differ from the nominal period: ``predict`` then needs a dt.
        self.register_buffer("irregular_timing", th.tensor(False))

    @property
    def shared_recurrence(self) -> bool:
        """Deprecated view of :attr:`critic`: True when actor and critic read one core."""
        return self.critic != "separate"

    def _load_from_state_dict(  # type: ignore[override]
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list,
        unexpected_keys: list,
        error_msgs: list,
    ) -> None:
        """Checkpoints from before ``time_unit``/``irregular_timing`` load with the behaviour they were
        trained under: cores integrated dt in seconds (time unit 1 s), timing unknown (treated as regular)."""
        for name, old_value in (("time_unit", 1.0), ("irregular_timing", False)):
            if prefix + name not in state_dict:
                state_dict = {**state_dict, prefix + name: th.tensor(old_value)}
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # ------------------------------------------------------------------------------------------- building
    def _make_core(self) -> nn.Module:
        wiring = None if self._wiring is None else self._wiring.copy()
        return make_recurrence(
            self.cell,
            self.features_dim,
            self.units,
            wiring=wiring,
            cell_kwargs=self.cell_kwargs,
            freeze_recurrent=self.freeze_recurrent,
        )

    def _build(self, lr_schedule: Schedule) -> None:
        """Build the recurrent core(s), then SB3's heads, distribution and optimizer."""
        self.recurrent_actor = self._make_core()
        self.recurrent_critic = self._make_core() if self.critic == "separate" else None
        self.actor_state_size = int(self.recurrent_actor.state_size)
        critic_size = 0 if self.recurrent_critic is None else int(self.recurrent_critic.state_size)
        self.state_shape = (int(self.recurrent_actor.num_layers), self.actor_state_size + critic_size)
        super()._build(lr_schedule)
        track_optimizer(self.optimizer)  # fused Adam's steps must reach the inference weight cache

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = MlpExtractor(
            int(self.recurrent_actor.output_size),
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            device=self.device,
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            cell=self.cell,
            units=self.units,
            wiring=self.wiring_spec,
            wiring_kwargs=self.wiring_kwargs,
            cell_kwargs=self.cell_kwargs,
            critic=self.critic,
            time_unit=None if math.isnan(float(self.time_unit)) else float(self.time_unit),
            freeze_recurrent=self.freeze_recurrent,
            share_features_extractor=self.share_features_extractor,
        )
        return data

    def initial_state(self, n_envs: int) -> th.Tensor:
        """Zero state (num_layers, n_envs, state_size) on the policy's device."""
        return th.zeros((self.state_shape[0], n_envs, self.state_shape[1]), device=self.device)

    # ------------------------------------------------------------------------------------------ sequences
    def _sequence(
        self,
        core: nn.Module,
        features: th.Tensor,
        state: th.Tensor,
        episode_starts: th.Tensor,
        dt: th.Tensor,
    ) -> tuple[th.Tensor, th.Tensor]:
        """Run ``core`` over sequences given flat (see :func:`lnn_control.sb3.recurrence.run_core`)."""
        return run_core(core, features, state, episode_starts, dt, self.time_unit)

    def _split(self, state: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return state[..., : self.actor_state_size], state[..., self.actor_state_size :]

    def _latents(
        self, obs: PyTorchObs, state: th.Tensor, episode_starts: th.Tensor, dt: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """Latent codes of actor and critic (before the MLP heads) and the new full state."""
        features = self.extract_features(obs)
        pi_features, vf_features = (features, features) if self.share_features_extractor else features
        if self.recurrent_critic is None:  # one core: the state is the actor's
            latent_pi, new_pi = self._sequence(self.recurrent_actor, pi_features, state, episode_starts, dt)
            latent_vf = latent_pi.detach() if self.critic == "detached" else latent_pi
            return latent_pi, latent_vf, new_pi
        pi_state, vf_state = self._split(state)
        latent_pi, new_pi = self._sequence(self.recurrent_actor, pi_features, pi_state, episode_starts, dt)
        latent_vf, new_vf = self._sequence(self.recurrent_critic, vf_features, vf_state, episode_starts, dt)
        return latent_pi, latent_vf, th.cat([new_pi, new_vf], dim=-1)

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        """The action distribution for the actor's latent (N, latent_dim) (SB3's, with a cheaper check).

        A diagonal Gaussian is built as SB3 builds it (same operations, same values) but with torch's
        argument validation off, which costs several checks and host syncs per call (rollout steps and
        minibatches): one combined check here gives a clear error instead when the mean (N, action_dim) or
        the std (action_dim,) is not finite (or the std not positive), e.g. after weights went NaN.
        Other action distributions are SB3's.
        """
        if type(self.action_dist) is not DiagGaussianDistribution:
            return super()._get_action_dist_from_latent(latent_pi)
        mean = self.action_net(latent_pi)
        std = self.log_std.exp()
        # one number: any NaN or inf in the mean, or a std that is 0, inf or NaN, makes it non-finite (a
        # finite sum that overflows is re-checked entry by entry before any error); math.isfinite on the
        # host, as th.isfinite of a 0-d tensor is several dispatches
        if not math.isfinite(float(mean.detach().sum() + std.detach().log().sum())):
            _check_gaussian(mean, std)
        self.action_dist.distribution = Normal(mean, th.ones_like(mean) * std, validate_args=False)
        return self.action_dist

    # -------------------------------------------------------------------------------------------- the API
    def forward(  # type: ignore[override]
        self,
        obs: PyTorchObs,
        state: th.Tensor,
        episode_starts: th.Tensor,
        dt: th.Tensor,
        deterministic: bool = False,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """One rollout step for B environments.

        Args:
            obs: (B, *obs_shape); state: (num_layers, B, state_size); episode_starts, dt: (B,).
        Returns:
            actions (B, *action_shape), values (B, 1), log_prob (B,), new state (num_layers, B, state_size).
        """
        latent_pi, latent_vf, new_state = self._latents(obs, state, episode_starts, dt)
        values = self.value_net(self.mlp_extractor.forward_critic(latent_vf))
        distribution = self._get_action_dist_from_latent(self.mlp_extractor.forward_actor(latent_pi))
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *self.action_space.shape)), values, log_prob, new_state  # type: ignore[misc]

    def evaluate_actions(  # type: ignore[override]
        self,
        obs: PyTorchObs,
        actions: th.Tensor,
        state: th.Tensor,
        episode_starts: th.Tensor,
        dt: th.Tensor,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values, log-probs and entropy of B whole sequences of T steps (training).

        Args:
            obs: (B * T, *obs_shape) sequence-major; actions: (B * T, action_dim); state: (num_layers, B, S)
                before each sequence; episode_starts, dt: (B, T).
        Returns:
            values (B * T, 1), log_prob (B * T,), entropy (B * T,) or None.
        """
        latent_pi, latent_vf, _ = self._latents(obs, state, episode_starts, dt)
        distribution = self._get_action_dist_from_latent(self.mlp_extractor.forward_actor(latent_pi))
        values = self.value_net(self.mlp_extractor.forward_critic(latent_vf))
        return values, distribution.log_prob(actions), distribution.entropy()

    def predict_values(  # type: ignore[override]
        self, obs: PyTorchObs, state: th.Tensor, episode_starts: th.Tensor, dt: th.Tensor
    ) -> th.Tensor:
        """Values (B * T, 1) from the full state (num_layers, B, state_size); else as ``evaluate_actions``."""
        pi_state, vf_state = self._split(state)
        if self.recurrent_critic is None:
            features = super(ActorCriticPolicy, self).extract_features(obs, self.pi_features_extractor)
            latent_vf, _ = self._sequence(self.recurrent_actor, features, pi_state, episode_starts, dt)
        else:
            features = super(ActorCriticPolicy, self).extract_features(obs, self.vf_features_extractor)
            latent_vf, _ = self._sequence(self.recurrent_critic, features, vf_state, episode_starts, dt)
        return self.value_net(self.mlp_extractor.forward_critic(latent_vf))

    def get_distribution(  # type: ignore[override]
        self, obs: PyTorchObs, actor_state: th.Tensor, episode_starts: th.Tensor, dt: th.Tensor
    ) -> tuple[Distribution, th.Tensor]:
        """Action distribution and new actor state from the actor state (num_layers, B, actor_state_size)."""
        features = super(ActorCriticPolicy, self).extract_features(obs, self.pi_features_extractor)
        latent_pi, new_state = self._sequence(self.recurrent_actor, features, actor_state, episode_starts, dt)
        return self._get_action_dist_from_latent(self.mlp_extractor.forward_actor(latent_pi)), new_state

    def _predict(  # type: ignore[override]
        self,
        observation: PyTorchObs,
        actor_state: th.Tensor,
        episode_starts: th.Tensor,
        dt: th.Tensor,
        deterministic: bool = False,
    ) -> tuple[th.Tensor, th.Tensor]:
        distribution, new_state = self.get_distribution(observation, actor_state, episode_starts, dt)
        return distribution.get_actions(deterministic=deterministic), new_state

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        dt: float | np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Action for one observation (or a batch of n) with explicit actor state, like RecurrentPPO.

        Args:
            observation: one observation or a batch (n, *obs_shape) (dict of those for Dict spaces).
            state: actor state (num_layers, n, actor_state_size) returned by the previous call; None = zeros.
            episode_start: (n,) bools; True zeroes that sample's state first (new episode).
            deterministic: mode of the distribution instead of a sample.
            dt: seconds since the previous observation: a float or (n,); None uses ``default_dt``, the
                nominal control period of the training env.
        Returns:
            actions (n, *action_shape) (unbatched if the observation was) and the new actor state.
        """
        self.set_training_mode(False)
        obs_tensor, vectorized_env = self.obs_to_tensor(observation)
        first = next(iter(obs_tensor.values())) if isinstance(obs_tensor, dict) else obs_tensor
        for key, value in obs_tensor.items() if isinstance(obs_tensor, dict) else [("", obs_tensor)]:
            if value.is_floating_point() and not bool(th.isfinite(value).all()):
                bad = (~th.isfinite(value)).nonzero()[0].tolist()
                raise ValueError(
                    f"observation{f'[{key!r}]' if key else ''} must be finite, got "
                    f"{value[tuple(bad)].item()} at index {tuple(bad)} (env, feature); the state is unchanged"
                )
        n_envs = first.shape[0]
        expected = (self.state_shape[0], n_envs, self.actor_state_size)
        if state is None:
            state_tensor = th.zeros(expected, device=self.device)
        else:
            if tuple(np.shape(state)) != expected:
                raise ValueError(
                    f"state must have shape (num_layers, n_envs, actor_state_size) = {expected}, "
                    f"got {tuple(np.shape(state))}"
                )
            state_tensor = th.as_tensor(np.asarray(state), dtype=th.float32, device=self.device)
        starts = (
            np.zeros(n_envs, dtype=bool) if episode_start is None else np.asarray(episode_start, dtype=bool)
        )
        starts_tensor = th.as_tensor(starts.reshape(n_envs), device=self.device)
        if dt is None:
            if bool(self.irregular_timing):
                raise ValueError(
                    "this policy was trained on irregular control timing (info['dt'] varied), so predict() "
                    "needs the time since the previous observation: pass dt=info['dt'] (float or (n_envs,)). "
                    "SB3's evaluate_policy passes no dt; use lnn_control.sb3.evaluate_agent, which does"
                )
            dt_tensor = self.default_dt.expand(n_envs)
        else:
            dt_array = np.broadcast_to(np.asarray(dt, dtype=np.float32), (n_envs,))
            nonnegative_values("dt", dt_array)
            dt_tensor = th.as_tensor(dt_array.copy(), device=self.device)
        with th.no_grad():
            actions, new_state = self._predict(
                obs_tensor, state_tensor, starts_tensor, dt_tensor, deterministic
            )
        actions_np = actions.cpu().numpy().reshape((-1, *self.action_space.shape))  # type: ignore[misc]
        if isinstance(self.action_space, spaces.Box):
            if self.squash_output:
                actions_np = self.unscale_action(actions_np)
            else:
                actions_np = np.clip(actions_np, self.action_space.low, self.action_space.high)
        if not vectorized_env:
            actions_np = actions_np.squeeze(axis=0)
        return actions_np, new_state.cpu().numpy()


def _check_gaussian(mean: th.Tensor, std: th.Tensor) -> None:
    """Raise if a Gaussian action distribution has a non-finite mean (N, action_dim) or a non-finite or zero
    std (action_dim,), naming the first bad entry."""
    bad_mean = (~th.isfinite(mean)).nonzero()
    if len(bad_mean):
        index = tuple(bad_mean[0].tolist())
        raise ValueError(
            f"the action distribution's mean must be finite, got {mean[index].item()} at index {index} "
            "(sample, action dim): the policy's weights or its input hold a non-finite value"
        )
    bad_std = (~(th.isfinite(std) & (std > 0))).nonzero()
    if not len(bad_std):
        return
    index = int(bad_std[0, 0])
    raise ValueError(
        f"the action distribution's std must be finite and > 0, got {std[index].item()} at action dim "
        f"{index} (std = exp(log_std)): log_std is out of range or not finite"
    )


class MultiInputLiquidActorCriticPolicy(LiquidActorCriticPolicy):
    """:class:`LiquidActorCriticPolicy` for Dict observation spaces (SB3's CombinedExtractor by default)."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        *args: Any,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            *args,
            features_extractor_class=features_extractor_class,
            **kwargs,
        )


LiquidPolicy = LiquidActorCriticPolicy
MultiInputLiquidPolicy = MultiInputLiquidActorCriticPolicy
