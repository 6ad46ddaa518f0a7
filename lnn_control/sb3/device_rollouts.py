"""LiquidPPO rollouts that stay on the device: for envs that step on torch tensors (``step_torch``).

With :class:`~lnn_control.sim.mjx.MjxVecEnv` or :class:`~lnn_control.sim.mjx.TorchVecEnv` (physics in JAX on a
GPU) and the policy on the same GPU, a rollout never copies to the host per step: observations, actions,
rewards, dones and dts pass between env and policy as tensors (DLPack), and :class:`DeviceRolloutBuffer` keeps
the rollout, GAE included, as tensors on the policy's device. The host sees one small copy per rollout
(episode statistics, the last observation SB3 keeps).

The semantics are those of the numpy rollout (:meth:`LiquidPPO.collect_rollouts` with
:class:`~lnn_control.sb3.carry.RecurrentCarry`): the dt paired with an observation is the time since the
previous one (the nominal period at an episode start); time-limit truncations are bootstrapped with the value
of the terminal observation, from the state at the episode's end; SB3's GAE. A test holds the two paths to
the same training result. Observation and reward normalisation on the device:
:class:`~lnn_control.sim.torch_normalize.TorchVecNormalize` (SB3's ``VecNormalize`` hides ``step_torch`` and
selects the numpy rollout); episode statistics then report the raw rewards, as ``VecMonitor`` under
``VecNormalize`` does.

Shapes: ``n`` envs, ``D`` observation size, ``nu`` action size, state (num_layers, n, S).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.utils import get_device

from lnn_control.sb3.buffers import ChunkSampler
from lnn_control.sim.torch_vec_env import supports_torch_steps

__all__ = [
    "DeviceCarry",
    "DeviceRolloutBuffer",
    "EpisodeStats",
    "HostView",
    "check_rollout",
    "collect_device_rollouts",
    "supports_torch_steps",
]


class DeviceRolloutBuffer(ChunkSampler):
    """A rollout of ``buffer_size`` steps x ``n_envs`` envs as tensors on ``device``, sampled in whole chunks
    of ``seq_len`` steps (as :class:`~lnn_control.sb3.buffers.SequenceRolloutBuffer`).

    Args: those SB3 passes to a rollout buffer (``buffer_size`` = n_steps, the spaces, ``device``,
    ``gae_lambda``, ``gamma``, ``n_envs``) and ``seq_len``. Box observations only.
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        gae_lambda: float = 1.0,
        gamma: float = 0.99,
        n_envs: int = 1,
        seq_len: int = 32,
    ) -> None:
        if not isinstance(observation_space, spaces.Box) or not isinstance(action_space, spaces.Box):
            raise ValueError(
                "device rollouts take Box observations and Box actions, got "
                f"{type(observation_space).__name__} / {type(action_space).__name__}"
            )
        assert seq_len >= 1 and buffer_size % seq_len == 0, f"n_steps {buffer_size}, seq_len {seq_len}"
        self.buffer_size, self.n_envs, self.seq_len = buffer_size, n_envs, seq_len
        self.device = get_device(device)
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.obs_shape = tuple(observation_space.shape)
        self.action_dim = int(np.prod(action_space.shape))
        self.states: th.Tensor | None = None
        self.reset()

    def reset(self) -> None:
        size, n, kw = self.buffer_size, self.n_envs, {"device": self.device}
        self.observations = th.zeros((size, n, *self.obs_shape), **kw)
        self.actions = th.zeros((size, n, self.action_dim), **kw)
        self.rewards = th.zeros((size, n), **kw)
        self.episode_starts = th.zeros((size, n), dtype=th.bool, **kw)
        self.values = th.zeros((size, n), **kw)
        self.log_probs = th.zeros((size, n), **kw)
        self.dts = th.zeros((size, n), **kw)
        self.advantages = th.zeros((size, n), **kw)
        self.returns = th.zeros((size, n), **kw)
        self.pos, self.full, self.generator_ready = 0, False, False
        self._chunked: dict[str, Any] = {}

    def add(
        self,
        obs: th.Tensor,
        action: th.Tensor,
        reward: th.Tensor,
        episode_start: th.Tensor,
        value: th.Tensor,
        log_prob: th.Tensor,
        state: th.Tensor,
        dt: th.Tensor,
    ) -> None:
        """One step of every env: obs (n, D), action (n, nu), reward, episode_start, dt (n,), value (n, 1),
        log_prob (n,), state (num_layers, n, S) before the step; all on (or moved to) the buffer's device."""
        if self.states is None or self.states.shape[1:] != state.shape:
            self.states = th.zeros((self.buffer_size, *state.shape), dtype=state.dtype, device=self.device)
        t = self.pos
        self.observations[t] = obs.reshape(self.n_envs, *self.obs_shape)
        self.actions[t] = action.reshape(self.n_envs, self.action_dim)
        self.rewards[t] = reward
        self.episode_starts[t] = episode_start
        self.values[t] = value.flatten()
        self.log_probs[t] = log_prob
        self.states[t] = state
        self.dts[t] = dt
        self.pos += 1
        self.full = self.pos == self.buffer_size

    def compute_returns_and_advantage(self, last_values: th.Tensor, dones: th.Tensor) -> None:
        """SB3's GAE(lambda) (``RolloutBuffer.compute_returns_and_advantage``), on the device."""
        last_gae = th.zeros(self.n_envs, device=self.device)
        next_values = last_values.flatten().to(self.device)
        next_non_terminal = 1.0 - dones.to(self.device, th.float32)
        for t in reversed(range(self.buffer_size)):
            delta = self.rewards[t] + self.gamma * next_values * next_non_terminal - self.values[t]
            last_gae = delta + self.gamma * self.gae_lambda * next_non_terminal * last_gae
            self.advantages[t] = last_gae
            next_values = self.values[t]
            next_non_terminal = 1.0 - self.episode_starts[t].float()
        self.returns = self.advantages + self.values

    def _chunk(self, tensor: th.Tensor) -> th.Tensor:
        """(n_steps, n_envs, *rest) -> (n_chunks, seq_len, *rest), chunks env-major."""
        rest = tensor.shape[2:]
        return tensor.transpose(0, 1).reshape(self.n_chunks, self.seq_len, *rest).contiguous()

    def _prepare(self) -> None:
        assert self.states is not None
        self._chunked = {
            "observations": self._chunk(self.observations),
            "actions": self._chunk(self.actions),
            "old_values": self._chunk(self.values),
            "old_log_prob": self._chunk(self.log_probs),
            "advantages": self._chunk(self.advantages),
            "returns": self._chunk(self.returns),
            "episode_starts": self._chunk(self.episode_starts),
            "dts": self._chunk(self.dts),
        }
        starts = self.states[:: self.seq_len]  # (chunks per env, L, n_envs, S)
        layers, state_size = starts.shape[1], starts.shape[3]
        self._chunked["states"] = starts.permute(1, 2, 0, 3).reshape(layers, self.n_chunks, state_size)


class EpisodeStats:
    """Episode returns and lengths accumulated on the device; finished episodes are read once per rollout
    (``infos[i]["episode"]`` of SB3's ``Monitor``, without a per-step host copy)."""

    def __init__(self, n_envs: int, device: th.device) -> None:
        self.returns = th.zeros(n_envs, dtype=th.float64, device=device)
        self.lengths = th.zeros(n_envs, dtype=th.int64, device=device)
        self._finished: list[tuple[th.Tensor, th.Tensor, th.Tensor]] = []

    def step(self, rewards: th.Tensor, dones: th.Tensor) -> None:
        self.returns += rewards
        self.lengths += 1
        self._finished.append((dones.clone(), self.returns.clone(), self.lengths.clone()))
        self.returns.masked_fill_(dones, 0.0)
        self.lengths.masked_fill_(dones, 0)

    def pop_finished(self) -> list[dict[str, float]]:
        """``{"r": return, "l": length}`` of the episodes that ended since the last call, in order."""
        if not self._finished:
            return []
        dones, returns, lengths = (th.stack(parts).cpu() for parts in zip(*self._finished, strict=True))
        self._finished = []
        return [{"r": float(r), "l": int(n)} for r, n in zip(returns[dones], lengths[dones], strict=True)]


class DeviceCarry:
    """:class:`~lnn_control.sb3.carry.RecurrentCarry` as tensors on the policy's device.

    Args:
        policy: the liquid actor-critic policy.
        n_envs: number of envs.
        nominal_dt: the envs' nominal control period (s).
    """

    def __init__(self, policy: Any, n_envs: int, nominal_dt: float) -> None:
        self.policy = policy
        self.n_envs = n_envs
        self.nominal_dt = float(nominal_dt)
        self._dt_deviation = th.zeros((), device=policy.device)  # largest |dt - nominal| seen
        self.reset()

    @property
    def irregular(self) -> bool:
        """True once some env reported a dt other than the nominal period (a host read: once per rollout)."""
        return bool(self._dt_deviation > 1e-6 * self.nominal_dt)

    def reset(self) -> None:
        """Every env starts an episode: zero states, nominal dts."""
        device = self.policy.device
        self.state = self.policy.initial_state(self.n_envs)
        self.dts = th.full((self.n_envs,), self.nominal_dt, device=device)
        self.starts = th.ones(self.n_envs, dtype=th.bool, device=device)

    def act(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """Actions (n, nu), values (n, 1), log-probs (n,) and the new state for observations (n, D)."""
        with th.no_grad():
            return self.policy(obs, self.state, self.starts, self.dts)

    def env_actions(self, actions: th.Tensor) -> th.Tensor:
        """What the env steps with: clipped to the Box bounds (unscaled when the policy squashes)."""
        space = self.policy.action_space
        low = th.as_tensor(space.low, dtype=actions.dtype, device=actions.device)
        high = th.as_tensor(space.high, dtype=actions.dtype, device=actions.device)
        if self.policy.squash_output:
            return low + 0.5 * (actions + 1.0) * (high - low)
        return th.maximum(th.minimum(actions, high), low)

    def observe(self, new_state: th.Tensor, step: Any, gamma: float) -> th.Tensor:
        """Advance to the step's observations; returns the bootstrap ``gamma * V(terminal obs)`` (n,) of
        time-limit-truncated envs (0 elsewhere), from each env's state at its episode's end.

        Branch-free (no host read): the values of every env's terminal observation are computed and masked.
        """
        device = self.policy.device
        terminated, truncated = step.terminated.to(device), step.truncated.to(device)
        step_dts = step.dt.to(device, th.float32)
        self._dt_deviation = th.maximum(self._dt_deviation, (step_dts - self.nominal_dt).abs().max())
        with th.no_grad():
            values = self.policy.predict_values(
                step.terminal_obs.to(device, th.float32), new_state, th.zeros_like(truncated), step_dts
            )
        bootstrap = th.where(truncated & ~terminated, gamma * values.flatten(), 0.0)
        dones = terminated | truncated
        self.state = new_state
        self.dts = th.where(dones, th.full_like(step_dts, self.nominal_dt), step_dts)
        self.starts = dones
        return bootstrap


class HostView:
    """A device tensor that callbacks may read as a numpy array (``np.asarray``, ``np.sum``, indexing): the
    host copy is made only when read, so callbacks that ignore it cost nothing."""

    def __init__(self, tensor: th.Tensor) -> None:
        self.tensor = tensor

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        array = self.tensor.detach().cpu().numpy()
        return array if dtype is None else array.astype(dtype)

    def __len__(self) -> int:
        return len(self.tensor)

    def __getitem__(self, index: Any) -> Any:
        return np.asarray(self)[index]


def _first_bad(name: str, values: th.Tensor, where: str) -> str | None:
    """The error message for the first non-finite (or, for dt, negative) entry of ``values``, or None."""
    bad = ~th.isfinite(values)
    if name == "dt":
        bad |= values < 0
    if not bool(bad.any()):
        return None
    index = tuple(int(i) for i in bad.nonzero()[0])
    expected = "finite and >= 0" if name == "dt" else "finite"
    return (
        f"the env returned {name} {values[index].item()} at {where} {index}; expected {expected}. Nothing "
        "was trained on this rollout; reset the env before training on"
    )


def check_rollout(buffer: DeviceRolloutBuffer, last_obs: th.Tensor) -> None:
    """A non-finite observation or reward, or a dt that is negative or non-finite, anywhere in the rollout is
    a clear error: one check per rollout, not per step (the device loop never reads the host), raised before
    the update, so the policy is untouched."""
    for name, values in (
        ("observation", buffer.observations),
        ("reward", buffer.rewards),
        ("dt", buffer.dts),
    ):
        message = _first_bad(name, values, "(rollout step, env, ...)")
        if message is not None:
            raise ValueError(message)
    message = _first_bad("observation", last_obs, "the rollout's last step, (env, feature)")
    if message is not None:
        raise ValueError(message)


def collect_device_rollouts(
    algo: Any, env: Any, callback: Any, buffer: DeviceRolloutBuffer, n_rollout_steps: int
) -> bool:
    """LiquidPPO's ``collect_rollouts`` on an env with ``step_torch``: ``n_rollout_steps`` steps of every env
    into ``buffer``, all on the device. Returns False when a callback stops training.

    Callbacks see ``locals()`` as in SB3, except that ``dones`` is a :class:`HostView` of the device tensor
    and ``infos`` are empty dicts: episode statistics reach ``ep_info_buffer`` (and the logger) at the end
    of each rollout, not per step.
    """
    policy = algo.policy
    device = policy.device
    if algo._device_rollout is None:  # a new run or restart: from the observations of SB3's reset
        nominal = algo._carry.nominal_dt() if algo._carry is not None else None
        if nominal is None:
            raise ValueError(
                "device rollouts need the env's nominal control period: env.get_attr('dt') must give it "
                "(TorchVecEnvBase subclasses set nominal_dt)"
            )
        carry = DeviceCarry(policy, env.num_envs, nominal)
        obs = th.as_tensor(np.asarray(algo._last_obs), dtype=th.float32, device=device)
        algo._device_rollout = (carry, obs, EpisodeStats(env.num_envs, device))
    carry, obs, stats = algo._device_rollout
    policy.set_training_mode(False)
    buffer.reset()
    if algo.use_sde:
        policy.reset_noise(env.num_envs)
    callback.on_rollout_start()
    infos: list[dict[str, Any]] = [{} for _ in range(env.num_envs)]  # SB3 callbacks read locals()["infos"]
    env_device = getattr(
        env, "device", None
    )  # a torch env's device (MJX's is a JAX device: it copies itself)
    env_device = env_device if isinstance(env_device, th.device) else None
    done_tensor = carry.starts
    original_reward = (  # TorchVecNormalize's raw rewards, as VecMonitor under VecNormalize sees them
        env.get_original_reward_torch
        if callable(getattr(type(env), "get_original_reward_torch", None))
        else None
    )
    for n_steps in range(n_rollout_steps):
        if algo.use_sde and algo.sde_sample_freq > 0 and n_steps % algo.sde_sample_freq == 0:
            policy.reset_noise(env.num_envs)
        state, starts, dts = carry.state, carry.starts, carry.dts
        try:
            actions, values, log_prob, new_state = carry.act(obs)
        except ValueError:  # torch's distribution check saw the NaN first: say where it came from
            message = _first_bad("observation", obs, f"rollout step {n_steps}, (env, feature)")
            if message is None:
                raise
            raise ValueError(message) from None
        env_actions = carry.env_actions(actions)
        step = env.step_torch(env_actions if env_device is None else env_actions.to(env_device))
        algo.num_timesteps += env.num_envs
        done_tensor = (step.terminated | step.truncated).to(device)
        dones = HostView(done_tensor)
        callback.update_locals(locals())
        if not callback.on_step():
            return False
        rewards = step.reward.to(device, th.float32)
        # episode statistics in the task's reward (a normalising wrapper keeps the raw one)
        stats.step(
            rewards if original_reward is None else original_reward().to(device, th.float32), done_tensor
        )
        rewards = rewards + carry.observe(new_state, step, algo.gamma)
        buffer.add(obs, actions, rewards, starts, values, log_prob, state, dts)
        obs = step.obs.to(device, th.float32)
        algo._device_rollout = (carry, obs, stats)
    check_rollout(buffer, obs)
    with th.no_grad():
        last_values = policy.predict_values(obs, carry.state, carry.starts, carry.dts)
    buffer.compute_returns_and_advantage(last_values=last_values, dones=done_tensor)
    # once per rollout on the host: episode statistics, the timing flag, the observation SB3 keeps
    algo.ep_info_buffer.extend(stats.pop_finished())
    if carry.irregular and not policy.irregular_timing:
        policy.irregular_timing.fill_(True)
    algo._last_obs = obs.cpu().numpy()
    algo._last_episode_starts = done_tensor.cpu().numpy()
    callback.update_locals(locals())
    callback.on_rollout_end()
    return True
