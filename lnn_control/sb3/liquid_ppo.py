"""LiquidPPO: PPO (clip) with a liquid recurrent policy, trained on whole fixed-length sequence chunks."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from lnn_control.checks import positive_int
from lnn_control.sb3.buffers import SequenceDictRolloutBuffer, SequenceRolloutBuffer
from lnn_control.sb3.carry import RecurrentCarry
from lnn_control.sb3.device_rollouts import (
    DeviceCarry,
    DeviceRolloutBuffer,
    EpisodeStats,
    collect_device_rollouts,
    supports_torch_steps,
)
from lnn_control.sb3.liquid_algorithm import LiquidAlgorithmMixin
from lnn_control.sb3.policies import LiquidActorCriticPolicy, MultiInputLiquidActorCriticPolicy
from lnn_control.sim.torch_normalize import TorchVecNormalize

SelfLiquidPPO = TypeVar("SelfLiquidPPO", bound="LiquidPPO")


class LiquidPPO(LiquidAlgorithmMixin, OnPolicyAlgorithm):
    """Proximal Policy Optimization (clip) with a liquid recurrent policy (CfC, LTC, NCP; LSTM/GRU too).

    Same surface as SB3's PPO and sb3-contrib's RecurrentPPO: ``learn`` (callbacks, progress bar,
    TensorBoard), ``predict(obs, state, episode_start, deterministic)`` returning ``(action, state)``,
    ``save``/``load``, ``get_env``/``set_env``; works with ``evaluate_policy`` and ``VecNormalize``
    (on the device path, :class:`~lnn_control.sim.torch_normalize.TorchVecNormalize`).

    What differs from PPO:

    - each env's recurrent state is carried through the rollout and stored (the state before each step);
    - each env's recurrent state, dt and episode starts live in one
      :class:`~lnn_control.sb3.carry.RecurrentCarry` (shared with evaluation);
    - the actor integrates each env's own ``info["dt"]`` (see :mod:`lnn_control.sb3.dt_tracking`), in units of
      the training env's nominal control period (``policy.time_unit``);
    - the critic reads the actor's core detached by default (``policy_kwargs=dict(critic=...)``);
    - training runs whole chunks of ``seq_len`` consecutive steps of one env, each from its stored state,
      with episode starts handled inside the chunk: no padding, constant minibatch shape;
    - truncated episodes are bootstrapped with the value of the terminal observation computed from that
      env's recurrent state at the end of the episode (not a reset state).

    Args: those of :class:`stable_baselines3.PPO` (without ``rollout_buffer_class``/``_kwargs``), plus

    Args:
        seq_len: steps per training chunk (default 32); ``n_steps`` must be a multiple of it.
        batch_size: transitions per minibatch, a multiple of ``seq_len`` (minibatch = batch_size / seq_len
            chunks). If ``n_steps * n_envs`` is not a multiple of it, the left-over chunks are skipped on
            each pass (a different random set each time).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "LiquidPolicy": LiquidActorCriticPolicy,
        "MultiInputLiquidPolicy": MultiInputLiquidActorCriticPolicy,
    }
    policy: LiquidActorCriticPolicy
    rollout_buffer: SequenceRolloutBuffer

    def __init__(
        self,
        policy: str | type[LiquidActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        n_steps: int = 2048,
        batch_size: int = 256,
        n_epochs: int = 10,
        gamma: float = 0.99,
        gae_lambda: float = 0.95,
        clip_range: float | Schedule = 0.2,
        clip_range_vf: float | Schedule | None = None,
        normalize_advantage: bool = True,
        ent_coef: float = 0.0,
        vf_coef: float = 0.5,
        max_grad_norm: float = 0.5,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        target_kl: float | None = None,
        seq_len: int = 32,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "cpu",
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary),
        )
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        self.seq_len = seq_len
        self._carry: RecurrentCarry | None = None
        self._device_rollout: tuple[DeviceCarry, th.Tensor, EpisodeStats] | None = None
        if _init_setup_model:
            self._setup_model()

    def _check_sizes(self) -> None:
        """Clear errors for inconsistent n_steps / seq_len / batch_size (and n_envs when an env is set).

        The one check of these sizes: it runs in ``_setup_model`` (construction, ``load``), so the rollout
        buffer, built right after, trusts them.
        """
        n_steps = positive_int("n_steps", self.n_steps)
        seq_len = positive_int("seq_len", self.seq_len)
        batch_size = positive_int("batch_size", self.batch_size)
        positive_int("n_epochs", self.n_epochs)
        if seq_len > n_steps or n_steps % seq_len != 0:
            raise ValueError(
                f"n_steps ({n_steps}) must be a multiple of seq_len ({seq_len}), and seq_len <= n_steps"
            )
        if batch_size % seq_len != 0:
            raise ValueError(
                f"batch_size ({batch_size}) must be a multiple of seq_len ({seq_len}): a minibatch is "
                f"batch_size / seq_len whole chunks of seq_len steps"
            )
        if self.normalize_advantage and batch_size < 2:
            raise ValueError(f"batch_size must be > 1 with normalize_advantage, got {batch_size}")
        if self.env is not None:
            buffer_size = n_steps * self.env.num_envs
            if batch_size > buffer_size:
                raise ValueError(
                    f"batch_size ({batch_size}) exceeds the rollout (n_steps * n_envs = {n_steps} * "
                    f"{self.env.num_envs} = {buffer_size})"
                )
            if buffer_size % batch_size != 0:
                dropped = (buffer_size % batch_size) // seq_len
                warnings.warn(
                    f"n_steps * n_envs = {buffer_size} is not a multiple of batch_size = {batch_size}: "
                    f"{dropped} chunk(s) of {seq_len} steps are skipped on each pass over the rollout",
                    UserWarning,
                    stacklevel=4,  # the user's LiquidPPO(...) or LiquidPPO.load(...)
                )

    # -------------------------------------------------------------------------------------------- set-up
    def _setup_model(self) -> None:
        self._check_sizes()
        is_dict = isinstance(self.observation_space, spaces.Dict)
        self.rollout_buffer_class = SequenceDictRolloutBuffer if is_dict else SequenceRolloutBuffer
        self.rollout_buffer_kwargs = {"seq_len": self.seq_len}
        super()._setup_model()
        if not isinstance(self.policy, LiquidActorCriticPolicy):
            raise TypeError(f"LiquidPPO needs a LiquidActorCriticPolicy, got {type(self.policy).__name__}")
        self.clip_range = FloatSchedule(self.clip_range)
        if self.clip_range_vf is not None:
            if isinstance(self.clip_range_vf, (float, int)) and self.clip_range_vf <= 0:
                raise ValueError(f"clip_range_vf must be > 0 (or None to disable), got {self.clip_range_vf}")
            self.clip_range_vf = FloatSchedule(self.clip_range_vf)
        if self.env is not None:
            self._rollout_buffer_for(self.env)  # the device buffer from the start for a torch-stepping env
        self._reset_recurrence()

    def _reset_recurrence(self) -> None:
        super()._reset_recurrence()
        self._device_rollout = None  # the device carry restarts from the next reset's observations

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_device_rollout"]

    def get_vec_normalize_env(self) -> Any:
        """SB3's ``VecNormalize`` of the env, or the env itself when it is a
        :class:`~lnn_control.sim.torch_normalize.TorchVecNormalize` (normalisation on the device), which
        reads as one: checkpoints and the export API find its statistics."""
        if isinstance(self.env, TorchVecNormalize):
            return self.env
        return super().get_vec_normalize_env()

    def _rollout_buffer_for(self, env: VecEnv) -> RolloutBuffer | DeviceRolloutBuffer:
        """The rollout buffer for ``env``: on the device for an env with ``step_torch``, else SB3's numpy one
        (rebuilt when ``set_env`` switched between the two kinds)."""
        on_device = supports_torch_steps(env)
        if on_device != isinstance(self.rollout_buffer, DeviceRolloutBuffer):
            if self._carry is not None and self.num_timesteps > 0:
                self._reset_recurrence()  # the other path's carry is stale: every env restarts its state
            buffer_class = DeviceRolloutBuffer if on_device else self.rollout_buffer_class
            self.rollout_buffer = buffer_class(  # type: ignore[assignment]
                self.n_steps,
                self.observation_space,
                self.action_space,
                device=self.device,
                gamma=self.gamma,
                gae_lambda=self.gae_lambda,
                n_envs=self.n_envs,
                seq_len=self.seq_len,
            )
        return self.rollout_buffer

    # ------------------------------------------------------------------------------------------ rollouts
    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """Fill the buffer with ``n_rollout_steps`` steps per env, carrying each env's state and dt.

        An env that steps on torch tensors (``step_torch``, e.g. MJX) is driven on the device, without a host
        copy per step (:mod:`lnn_control.sb3.device_rollouts`).
        """
        rollout_buffer = self._rollout_buffer_for(env)
        if isinstance(rollout_buffer, DeviceRolloutBuffer):
            return collect_device_rollouts(self, env, callback, rollout_buffer, n_rollout_steps)
        assert isinstance(rollout_buffer, SequenceRolloutBuffer | SequenceDictRolloutBuffer)
        assert self._last_obs is not None, "No previous observation was provided"
        assert self._carry is not None
        carry = self._carry
        self.policy.set_training_mode(False)
        n_steps = 0
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()

        while n_steps < n_rollout_steps:
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            step = carry.act(self._last_obs)
            new_obs, rewards, dones, infos = env.step(step.env_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1
            actions = step.actions
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)

            outcome = carry.observe(dones, infos)
            if carry.irregular and not self.policy.irregular_timing:
                self.policy.irregular_timing.fill_(True)
            rewards = rewards.astype(np.float32, copy=True)
            rewards[outcome.truncated] += self.gamma * outcome.terminal_values

            rollout_buffer.add(
                self._last_obs,  # type: ignore[arg-type]
                actions,
                rewards,
                step.starts,
                step.values,
                step.log_prob,
                state=step.state,
                dt=step.dts,
            )
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        last_values = carry.values(new_obs)
        rollout_buffer.compute_returns_and_advantage(last_values=last_values, dones=dones)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    # ------------------------------------------------------------------------------------------ training
    def train(self) -> None:
        """PPO-clip epochs over the rollout, in minibatches of whole chunks."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        clip_range_vf = None
        if self.clip_range_vf is not None:
            clip_range_vf = self.clip_range_vf(self._current_progress_remaining)  # type: ignore[operator]

        # Per-minibatch statistics stay on the device until the end (one sync, not one per minibatch).
        pg_losses, value_losses, entropy_losses, clip_fractions, approx_kls = [], [], [], [], []
        loss = th.zeros(())
        continue_training = True
        parameters = list(self.policy.parameters())  # once, not a module walk per minibatch
        for epoch in range(self.n_epochs):
            for batch in self.rollout_buffer.get(self.batch_size):
                actions = batch.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = actions.long().flatten()
                values, log_prob, entropy = self.policy.evaluate_actions(
                    batch.observations, actions, batch.states, batch.episode_starts, batch.dts
                )
                values = values.flatten()
                advantages = batch.advantages
                if self.normalize_advantage and advantages.numel() > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

                log_ratio = log_prob - batch.old_log_prob
                ratio = th.exp(log_ratio)
                surrogate = th.min(
                    advantages * ratio, advantages * th.clamp(ratio, 1 - clip_range, 1 + clip_range)
                )
                policy_loss = -surrogate.mean()
                if clip_range_vf is not None:
                    values = batch.old_values + th.clamp(
                        values - batch.old_values, -clip_range_vf, clip_range_vf
                    )
                value_loss = F.mse_loss(batch.returns, values)
                entropy_loss = -th.mean(-log_prob) if entropy is None else -th.mean(entropy)
                loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss

                with th.no_grad():
                    approx_kl = th.mean((ratio - 1) - log_ratio)
                    pg_losses.append(policy_loss.detach())
                    value_losses.append(value_loss.detach())
                    entropy_losses.append(entropy_loss.detach())
                    clip_fractions.append(th.mean((th.abs(ratio - 1) > clip_range).float()))
                    approx_kls.append(approx_kl)
                if self.target_kl is not None and approx_kl.item() > 1.5 * self.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(
                            f"Early stopping at step {epoch} due to reaching max kl: {approx_kl.item():.2f}"
                        )
                    break

                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break

        def mean(values: list[th.Tensor]) -> float:
            return float(th.stack(values).mean().item()) if values else float("nan")

        explained_var = explained_variance(
            _as_numpy(self.rollout_buffer.values).flatten(), _as_numpy(self.rollout_buffer.returns).flatten()
        )
        self.logger.record("train/entropy_loss", mean(entropy_losses))
        self.logger.record("train/policy_gradient_loss", mean(pg_losses))
        self.logger.record("train/value_loss", mean(value_losses))
        self.logger.record("train/approx_kl", mean(approx_kls))
        self.logger.record("train/clip_fraction", mean(clip_fractions))
        self.logger.record("train/loss", float(loss.item()))
        self.logger.record("train/explained_variance", explained_var)
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/clip_range", clip_range)
        if clip_range_vf is not None:
            self.logger.record("train/clip_range_vf", clip_range_vf)

    def learn(
        self: SelfLiquidPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "LiquidPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfLiquidPPO:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


def _as_numpy(values: np.ndarray | th.Tensor) -> np.ndarray:
    """A buffer's array on the host (the device buffer holds tensors)."""
    return values.detach().cpu().numpy() if isinstance(values, th.Tensor) else values
