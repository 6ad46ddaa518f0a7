"""LiquidSAC: Soft Actor-Critic with liquid recurrent actor and critics, trained on replayed chunks."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, RolloutReturn, Schedule, TrainFreq
from stable_baselines3.common.utils import polyak_update, should_collect_more_steps
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from lnn_control.checks import positive_int
from lnn_control.nn.weight_cache import mark_changed
from lnn_control.sb3.carry import RecurrentCarry
from lnn_control.sb3.liquid_algorithm import LiquidAlgorithmMixin
from lnn_control.sb3.sac_policies import LiquidSACPolicy
from lnn_control.sb3.sequence_replay import SequenceReplayBuffer, SequenceReplaySamples, check_chunking

SelfLiquidSAC = TypeVar("SelfLiquidSAC", bound="LiquidSAC")


class _Pending:
    """Placeholder replay buffer while SB3's set-up runs (the real one needs the policy's state shape)."""


class LiquidSAC(LiquidAlgorithmMixin, SAC):
    """Soft Actor-Critic with a liquid recurrent policy (CfC, LTC, NCP; LSTM/GRU too), R2D2-style replay.

    Same surface as SB3's SAC: ``learn`` (callbacks, progress bar, TensorBoard), ``predict(obs, state,
    episode_start, deterministic, dt=...)`` returning ``(action, state)``, ``save``/``load`` (the replay
    buffer apart, with ``save_replay_buffer``/``load_replay_buffer``), ``VecNormalize``, automatic entropy
    tuning (``ent_coef="auto"``), Polyak target critics (``tau``, ``target_update_interval``), ``train_freq``,
    ``gradient_steps``, ``learning_starts``, ``action_noise``.

    What differs from SAC:

    - each env's recurrent state (actor and critic cores), dt and episode starts are carried through the
      rollout by a :class:`~lnn_control.sb3.carry.RecurrentCarry` and stored in a
      :class:`~lnn_control.sb3.sequence_replay.SequenceReplayBuffer` (the state before each step);
    - a gradient step samples ``batch_size / (chunk_len - burn_in)`` chunks of ``chunk_len`` consecutive steps
      of one env, runs every core over each chunk from its stored state (episode starts inside the chunk
      reset it), refreshes the state over the first ``burn_in`` steps without gradient, and trains on the
      rest: TD targets at step t come from the same sequence at t + 1, i.e. from the refreshed state;
    - a time-limit truncation at a chunk's last step bootstraps from its terminal observation with the
      refreshed state; one inside a chunk from the state stored after that step (the collecting policy's);
    - the actor loss reuses the critic cores' latents of the critic update (detached), with the updated Q
      heads, instead of a second pass of the critic cores;
    - ``use_sde``, ``n_steps > 1`` and Dict observations are not supported (clear errors).

    Critic arrangement: ``policy_kwargs=dict(critic="separate")`` (default: each Q network has its own core)
    or ``"detached"`` (the Q heads read the actor's core), chosen on the CueHoldEnv memory task
    (``scripts/bench_sac_memory.py``; README, "LiquidSAC").

    Args: those of :class:`stable_baselines3.SAC` (without ``replay_buffer_class``, ``optimize_memory_usage``,
    ``use_sde*``), plus

    Args:
        chunk_len: steps per replayed chunk, burn-in included (default 40).
        burn_in: leading steps of a chunk that only refresh the stored state (default 8; < chunk_len).
        batch_size: transitions per gradient step that enter the loss: a multiple of ``chunk_len - burn_in``.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "LiquidPolicy": LiquidSACPolicy,
    }
    carry_bootstraps = False  # truncations bootstrap from the replay buffer's terminal observations
    policy: LiquidSACPolicy
    replay_buffer: SequenceReplayBuffer  # type: ignore[assignment]

    def __init__(
        self,
        policy: str | type[LiquidSACPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 100,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        chunk_len: int = 40,
        burn_in: int = 8,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "cpu",
        _init_setup_model: bool = True,
    ) -> None:
        self.chunk_len = chunk_len
        self.burn_in = burn_in
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=SequenceReplayBuffer,
            replay_buffer_kwargs=replay_buffer_kwargs,
            ent_coef=ent_coef,
            target_update_interval=target_update_interval,
            target_entropy=target_entropy,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        self._carry: RecurrentCarry | None = None
        self._check_sizes()
        if _init_setup_model:
            self._setup_model()

    def _check_sizes(self) -> None:
        """Clear errors for inconsistent chunk_len / burn_in / batch_size / buffer_size."""
        n_envs = getattr(self, "n_envs", None) or 1  # unset when built without an env (load)
        check_chunking(self.chunk_len, self.burn_in, self.buffer_size, n_envs)
        trained = self.chunk_len - self.burn_in
        if positive_int("batch_size", self.batch_size) % trained != 0:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of chunk_len - burn_in = "
                f"{self.chunk_len} - {self.burn_in} = {trained}: a batch is whole chunks"
            )

    # -------------------------------------------------------------------------------------------- set-up
    def _setup_model(self) -> None:
        if self.n_steps != 1:
            raise ValueError(f"LiquidSAC does not support n-step returns (n_steps={self.n_steps})")
        if self.use_sde:
            raise ValueError("LiquidSAC does not support use_sde=True")
        self.replay_buffer_class = SequenceReplayBuffer
        pending = self.replay_buffer is None
        if pending:
            self.replay_buffer = _Pending()  # type: ignore[assignment]
        super()._setup_model()
        if not isinstance(self.policy, LiquidSACPolicy):
            raise TypeError(f"LiquidSAC needs a LiquidSACPolicy, got {type(self.policy).__name__}")
        if pending:
            kwargs = {k: v for k, v in self.replay_buffer_kwargs.items() if k not in ("chunk_len", "burn_in")}
            self.replay_buffer = SequenceReplayBuffer(
                self.buffer_size,
                self.observation_space,
                self.action_space,
                device=self.device,
                n_envs=self.n_envs,
                state_shape=self.policy.state_shape,
                chunk_len=self.chunk_len,
                burn_in=self.burn_in,
                **kwargs,
            )
        self._reset_recurrence()

    def _episodes_restart(self) -> None:
        """Every env starts anew: the stored partial episodes end (truncated), then a fresh carry."""
        if isinstance(self.replay_buffer, SequenceReplayBuffer):
            self.replay_buffer.mark_truncated()
        super()._episodes_restart()

    # ------------------------------------------------------------------------------------------ rollouts
    def collect_rollouts(  # type: ignore[override]
        self,
        env: VecEnv,
        callback: BaseCallback,
        train_freq: TrainFreq,
        replay_buffer: ReplayBuffer,
        action_noise: ActionNoise | None = None,
        learning_starts: int = 0,
        log_interval: int | None = None,
    ) -> RolloutReturn:
        """SB3's off-policy collection, acting through the carry (random actions before ``learning_starts``,
        with the cores still advanced so that stored states are those of the observed history)."""
        assert isinstance(replay_buffer, SequenceReplayBuffer)
        assert self._carry is not None and self._last_obs is not None
        carry = self._carry
        self.policy.set_training_mode(False)
        num_collected_steps, num_collected_episodes = 0, 0
        if env.num_envs > 1 and train_freq.unit.value != "step":
            raise ValueError("train_freq in episodes needs a single env (as SB3)")
        callback.on_rollout_start()
        while should_collect_more_steps(train_freq, num_collected_steps, num_collected_episodes):
            step = carry.act(self._last_obs)
            if self.num_timesteps < learning_starts:
                scaled = self.policy.scale_action(
                    np.array([self.action_space.sample() for _ in range(env.num_envs)])
                )
            else:
                scaled = step.actions
            if action_noise is not None:
                scaled = np.clip(scaled + action_noise(), -1, 1)
            buffer_actions = scaled.astype(np.float32)
            actions = self.policy.unscale_action(buffer_actions)
            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += env.num_envs
            num_collected_steps += 1
            callback.update_locals(locals())
            if not callback.on_step():
                return RolloutReturn(num_collected_steps * env.num_envs, num_collected_episodes, False)
            self._update_info_buffer(infos, dones)
            outcome = carry.observe(dones, infos)
            if carry.irregular and not self.policy.irregular_timing:
                self.policy.irregular_timing.fill_(True)
            replay_buffer.stage(
                state=step.state, dts=step.dts, next_dts=outcome.step_dts, episode_starts=step.starts
            )
            self._store_transition(replay_buffer, buffer_actions, new_obs, rewards, dones, infos)
            self._update_current_progress_remaining(self.num_timesteps, self._total_timesteps)
            self._on_step()
            for idx, done in enumerate(dones):
                if done:
                    num_collected_episodes += 1
                    self._episode_num += 1
                    if action_noise is not None:
                        action_noise.reset(**(dict(indices=[idx]) if env.num_envs > 1 else {}))
                    if log_interval is not None and self._episode_num % log_interval == 0:
                        self.dump_logs()
        callback.on_rollout_end()
        return RolloutReturn(num_collected_steps * env.num_envs, num_collected_episodes, True)

    # ------------------------------------------------------------------------------------------ training
    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """SAC's updates (entropy coefficient, twin critics, actor, Polyak targets) on sequence chunks."""
        if not self.replay_buffer.can_sample():
            return
        self.policy.set_training_mode(True)
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        self._update_learning_rate(optimizers)
        n_chunks = batch_size // (self.chunk_len - self.burn_in)
        ent_coef_losses, ent_coefs, actor_losses, critic_losses = [], [], [], []
        for gradient_step in range(gradient_steps):
            data = self.replay_buffer.sample_chunks(n_chunks, env=self._vec_normalize_env)
            losses = self._losses(data)
            log_prob, critic_loss = losses["log_prob"], losses["critic_loss"]
            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                ent_coef = th.exp(self.log_ent_coef.detach())
                ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
                ent_coef_losses.append(ent_coef_loss.detach())
                self.ent_coef_optimizer.zero_grad()
                ent_coef_loss.backward()
                self.ent_coef_optimizer.step()
            else:
                ent_coef = self.ent_coef_tensor
            ent_coefs.append(ent_coef.detach())
            critic_losses.append(critic_loss.detach())
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            q_pi = th.cat(self.critic.q_values(losses["critic_latents"], losses["actions_pi"]), dim=1)
            actor_loss = (ent_coef * log_prob - th.min(q_pi, dim=1, keepdim=True)[0]).mean()
            actor_losses.append(actor_loss.detach())
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()
            if gradient_step % self.target_update_interval == 0:
                polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
                # polyak_update writes through .data, which the cells' inference weight cache cannot see;
                # the target critics run under no_grad and would keep computing with their old weights
                mark_changed(self.critic_target.parameters())
        self._n_updates += gradient_steps

        def mean(values: list[th.Tensor]) -> float:
            return float(th.stack(values).float().mean().item())

        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", mean(ent_coefs))
        self.logger.record("train/actor_loss", mean(actor_losses))
        self.logger.record("train/critic_loss", mean(critic_losses))
        if ent_coef_losses:
            self.logger.record("train/ent_coef_loss", mean(ent_coef_losses))

    def _losses(self, data: SequenceReplaySamples) -> dict[str, Any]:
        """Forward pass of one gradient step over n chunks of K steps (b burn-in, L = K - b trained).

        Returns ``log_prob`` (n*L, 1) of fresh actions ``actions_pi`` (n*L, act) at the trained steps,
        ``critic_loss``, and ``critic_latents`` (detached, n*L rows each) for the actor loss; for checks,
        ``current_q`` (list of (n*L, 1)), ``target_q`` (n*L, 1) and the ``next_actions``/``next_log_prob`` of
        the targets.
        """
        policy = self.policy
        n, k, b = data.actions.shape[0], self.chunk_len, self.burn_in
        obs = data.observations  # (n, K + 1, ...)
        actor_state, critic_states = policy.split_state(data.states)
        target_states = list(critic_states)

        def flat(x: th.Tensor) -> th.Tensor:
            return x.reshape(-1, *x.shape[2:])

        seg = (slice(None), slice(b, None))  # trained steps plus the appended next observation
        with th.no_grad():  # burn-in: refresh the stored states
            if b > 0:
                pre = (slice(None), slice(0, b))
                o, s, d = flat(obs[pre]), data.episode_starts[pre], data.dts[pre]
                latent_pre, actor_state = policy.actor_latent(o, actor_state, s, d)
                _, critic_states = policy.critic_latents(policy.critic, o, critic_states, s, d, latent_pre)
                _, target_states = policy.critic_latents(
                    policy.critic_target, o, target_states, s, d, latent_pre
                )
        o, s, d = flat(obs[seg]), data.episode_starts[seg], data.dts[seg]
        steps = k - b + 1
        latent, _ = policy.actor_latent(o, actor_state, s, d)  # (n * steps, A)
        actions_all, log_prob_all = policy.actor.action_log_prob(latent)
        actions_all = actions_all.reshape(n, steps, -1)
        log_prob_all = log_prob_all.reshape(n, steps)
        critic_latents, _ = policy.critic_latents(policy.critic, o, critic_states, s, d, latent)

        with th.no_grad():
            target_latents, _ = policy.critic_latents(policy.critic_target, o, target_states, s, d, latent)
            next_actions = actions_all[:, 1:].reshape(n * (k - b), -1).clone()
            next_log_prob = log_prob_all[:, 1:].reshape(-1).clone()
            next_latents = [
                z.reshape(n, steps, -1)[:, 1:].reshape(n * (k - b), -1).clone() for z in target_latents
            ]
            self._truncation_targets(data, next_actions, next_log_prob, next_latents)
            ent_coef = (
                th.exp(self.log_ent_coef.detach()) if self.log_ent_coef is not None else self.ent_coef_tensor
            )
            next_q = th.cat(self.critic_target.q_values(next_latents, next_actions), dim=1)
            next_q = th.min(next_q, dim=1, keepdim=True)[0] - ent_coef * next_log_prob.reshape(-1, 1)
            rewards = data.rewards[:, b:].reshape(-1, 1)
            terminated = (data.dones[:, b:] * (1 - data.timeouts[:, b:])).reshape(-1, 1)
            target_q = rewards + (1 - terminated) * self.gamma * next_q

        actions = data.actions[:, b:].reshape(n * (k - b), -1)
        current = [z.reshape(n, steps, -1)[:, :-1].reshape(n * (k - b), -1) for z in critic_latents]
        current_q = self.critic.q_values(current, actions)
        critic_loss = 0.5 * sum(F.mse_loss(q, target_q) for q in current_q)
        return {
            "log_prob": log_prob_all[:, :-1].reshape(-1, 1),
            "actions_pi": actions_all[:, :-1].reshape(n * (k - b), -1),
            "critic_loss": critic_loss,
            "critic_latents": [z.detach() for z in current],
            "target_q": target_q,
            "current_q": current_q,
            "next_actions": next_actions,
            "next_log_prob": next_log_prob,
        }

    def _truncation_targets(
        self,
        data: SequenceReplaySamples,
        next_actions: th.Tensor,
        next_log_prob: th.Tensor,
        next_latents: list[th.Tensor],
    ) -> None:
        """In place: at time-limit ends inside a chunk, next actions and target latents from the terminal
        observation and the state stored after that step (one step of each core)."""
        b, k = self.burn_in, self.chunk_len
        idx = data.trunc_index
        chunk, step = idx // k, idx % k
        keep = step >= b  # burn-in steps enter no loss
        if not bool(keep.any()):
            return
        rows = (chunk * (k - b) + step - b)[keep]
        policy = self.policy
        obs = data.trunc_observations[keep]
        states = data.trunc_states[:, keep]
        m = obs.shape[0]
        starts = th.zeros(m, dtype=th.bool, device=obs.device)
        dts = data.trunc_dts[keep]
        actor_state, _ = policy.split_state(states)
        latent, _ = policy.actor_latent(obs, actor_state, starts, dts)
        actions, log_prob = policy.actor.action_log_prob(latent)
        # The target cores start from the online critics' stored states (as the chunks do).
        _, critic_states = policy.split_state(states)
        latents, _ = policy.critic_latents(policy.critic_target, obs, critic_states, starts, dts, latent)
        next_actions[rows] = actions
        next_log_prob[rows] = log_prob
        for full, z in zip(next_latents, latents, strict=True):
            full[rows] = z

    # --------------------------------------------------------------------------------------------- API
    def learn(  # type: ignore[override]
        self: SelfLiquidSAC,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "LiquidSAC",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfLiquidSAC:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
