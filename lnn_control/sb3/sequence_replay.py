"""Sequence replay for recurrent off-policy agents (:class:`~lnn_control.sb3.LiquidSAC`).

:class:`SequenceReplayBuffer` is SB3's :class:`~stable_baselines3.common.buffers.ReplayBuffer` (observations,
next observations, actions, rewards, dones, timeouts; unnormalised, normalised at sampling time when a
VecNormalize is given) plus, per step and env:

- ``dts``: the dt paired with the observation (seconds since the previous one; nominal at episode starts);
- ``next_dts``: the duration of the step (to the next, or terminal, observation);
- ``episode_starts``: the observation starts an episode (the cores zero their state before it);
- ``states``: the recurrent state (num_layers, state_size) of every core *before* the step, as the collecting
  policy carried it (actor and critics, see :mod:`lnn_control.sb3.sac_policies`).

:meth:`SequenceReplayBuffer.sample_chunks` draws fixed-length chunks of ``chunk_len`` consecutive steps of one
env's trajectory (never across the write position), with episode boundaries inside the chunk kept as
resets: no padding, a constant batch shape. Each chunk starts from its stored state; the first ``burn_in``
steps only refresh that state (R2D2's stored state + burn-in), the loss uses the rest.

Memory: ``buffer_size`` transitions cost ``bytes_per_transition`` each (see :func:`bytes_per_transition`):
``2 * obs_bytes + 4 * (action_dim + 6) + 4 * num_layers * state_size``. E.g. HalfCheetah (17 obs, 6 actions)
with a 64-unit CfC actor and two separate 64-unit CfC critics: 136 + 48 + 768 = 952 bytes, 0.95 GB per
million transitions. The constructor raises ``MemoryError`` when the buffer exceeds the available memory
and warns above half of it.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.preprocessing import get_action_dim, get_obs_shape
from stable_baselines3.common.vec_env import VecNormalize

from lnn_control.checks import nonnegative_values, positive_int

__all__ = ["SequenceReplayBuffer", "SequenceReplaySamples", "bytes_per_transition", "check_chunking"]


class SequenceReplaySamples(NamedTuple):
    """A batch of n chunks of K = ``chunk_len`` steps (torch tensors on the buffer's device).

    Attributes:
        observations: (n, K + 1, *obs_shape): the chunk's observations, then the next observation of its
            last step (its terminal observation if the episode ended there).
        actions: (n, K, action_dim) as stored (scaled to [-1, 1]).
        rewards, dones, timeouts: (n, K); ``dones`` marks episode ends, ``timeouts`` time-limit cuts.
        dts: (n, K + 1): the dt paired with each observation of ``observations``.
        episode_starts: (n, K + 1) bool (False for the appended next observation).
        states: (num_layers, n, state_size): the stored state before each chunk's first step.
        trunc_index: (m,) int64 flat indices (chunk * K + step) of time-limit episode ends *inside* a chunk
            (not at its last step): their next observation is not in the sequence.
        trunc_observations: (m, *obs_shape) their terminal observations; trunc_dts: (m,) the step durations;
        trunc_states: (num_layers, m, state_size) the stored state after those steps (the collecting
            policy's; the state at the chunk end is recomputed, these are not).
    """

    observations: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    dones: th.Tensor
    timeouts: th.Tensor
    dts: th.Tensor
    episode_starts: th.Tensor
    states: th.Tensor
    trunc_index: th.Tensor
    trunc_observations: th.Tensor
    trunc_dts: th.Tensor
    trunc_states: th.Tensor


def check_chunking(chunk_len: Any, burn_in: Any, buffer_size: int, n_envs: int) -> tuple[int, int]:
    """(chunk_len, burn_in) as ints, or a ValueError: 0 <= burn_in < chunk_len <= buffer_size // n_envs."""
    chunk_len = positive_int("chunk_len", chunk_len)
    burn_in = positive_int("burn_in", burn_in, allow_zero=True)
    if burn_in >= chunk_len:
        raise ValueError(
            f"burn_in ({burn_in}) must be < chunk_len ({chunk_len}): the loss uses the last "
            "chunk_len - burn_in steps of each chunk"
        )
    per_env = max(buffer_size // n_envs, 1)
    if chunk_len > per_env:
        raise ValueError(
            f"chunk_len ({chunk_len}) is longer than the buffer holds per env "
            f"(buffer_size // n_envs = {buffer_size} // {n_envs} = {per_env})"
        )
    return chunk_len, burn_in


def bytes_per_transition(
    observation_space: spaces.Space, action_space: spaces.Space, state_shape: tuple[int, int]
) -> int:
    """Bytes one stored transition takes (observation and next observation, action, rewards, dones,
    timeouts, dts, next dts, episode start (as 4 bytes each), and the recurrent states)."""
    obs_shape = get_obs_shape(observation_space)
    if isinstance(obs_shape, dict):
        raise ValueError("SequenceReplayBuffer supports Box observations, not Dict")
    obs_bytes = int(np.prod(obs_shape)) * np.dtype(observation_space.dtype).itemsize
    action_bytes = get_action_dim(action_space) * np.dtype(action_space.dtype).itemsize
    return 2 * obs_bytes + action_bytes + 4 * 6 + 4 * int(state_shape[0]) * int(state_shape[1])


class SequenceReplayBuffer(ReplayBuffer):
    """Replay buffer of recurrent trajectories, sampled as fixed-length chunks (module docstring).

    Args: those of SB3's ReplayBuffer (``buffer_size`` transitions in all, ``buffer_size // n_envs`` per env),
    plus

    Args:
        state_shape: (num_layers, state_size) of the stored recurrent state.
        chunk_len: steps per sampled chunk, burn-in included (<= ``buffer_size // n_envs``).
        burn_in: leading steps of each chunk that only refresh the state (0 <= burn_in < chunk_len).
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        *,
        state_shape: tuple[int, int],
        chunk_len: int = 40,
        burn_in: int = 8,
    ) -> None:
        if optimize_memory_usage:
            raise ValueError("SequenceReplayBuffer does not support optimize_memory_usage=True")
        if not handle_timeout_termination:
            raise ValueError("SequenceReplayBuffer always separates timeouts (handle_timeout_termination)")
        chunk_len, burn_in = check_chunking(chunk_len, burn_in, buffer_size, n_envs)
        per_env = max(buffer_size // n_envs, 1)
        self.transition_bytes = bytes_per_transition(observation_space, action_space, state_shape)
        self.total_bytes = self.transition_bytes * per_env * n_envs
        _check_memory(self.total_bytes, per_env * n_envs, self.transition_bytes)
        with warnings.catch_warnings():  # our check above replaces SB3's (which misses the states)
            warnings.filterwarnings("ignore", message=".*enough memory.*")
            super().__init__(
                buffer_size,
                observation_space,
                action_space,
                device=device,
                n_envs=n_envs,
                optimize_memory_usage=False,
                handle_timeout_termination=True,
            )
        self.state_shape = (int(state_shape[0]), int(state_shape[1]))
        self.chunk_len = int(chunk_len)
        self.burn_in = int(burn_in)
        shape = (self.buffer_size, self.n_envs)
        self.dts = np.zeros(shape, dtype=np.float32)
        self.next_dts = np.zeros(shape, dtype=np.float32)
        self.episode_starts = np.zeros(shape, dtype=bool)
        self.states = np.zeros((*shape, *self.state_shape), dtype=np.float32)
        self._staged: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------------------------------- adding
    def stage(
        self,
        *,
        state: th.Tensor | np.ndarray,
        dts: np.ndarray,
        next_dts: np.ndarray,
        episode_starts: np.ndarray,
    ) -> None:
        """The recurrent side of the next :meth:`add` (SB3's ``_store_transition`` calls ``add`` with the
        transition; the algorithm stages these first).

        Args:
            state: (num_layers, n_envs, state_size) the state before the step; dts, next_dts: (n_envs,)
                seconds; episode_starts: (n_envs,) bool.
        """
        state_np = state.detach().cpu().numpy() if isinstance(state, th.Tensor) else np.asarray(state)
        expected = (self.state_shape[0], self.n_envs, self.state_shape[1])
        if state_np.shape != expected:
            raise ValueError(f"state must have shape {expected}, got {state_np.shape}")
        staged = {"state": np.swapaxes(state_np, 0, 1).astype(np.float32)}
        for name, value in (("dts", dts), ("next_dts", next_dts)):
            array = np.asarray(value, dtype=np.float32).reshape(self.n_envs)
            nonnegative_values(name, array)
            staged[name] = array
        staged["episode_starts"] = np.asarray(episode_starts, dtype=bool).reshape(self.n_envs)
        self._staged = staged

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """SB3's ``add``, with the recurrent side from the preceding :meth:`stage`."""
        if self._staged is None:
            raise RuntimeError("SequenceReplayBuffer.add needs stage(state=..., dts=..., ...) first")
        staged, self._staged = self._staged, None
        pos = self.pos
        self.states[pos] = staged["state"]
        self.dts[pos] = staged["dts"]
        self.next_dts[pos] = staged["next_dts"]
        self.episode_starts[pos] = staged["episode_starts"]
        super().add(obs, next_obs, action, reward, done, infos)

    def mark_truncated(self) -> None:
        """End every env's trajectory at the last written step as a time-limit truncation (the env was
        reset out of band, e.g. a new ``learn`` call): chunks then never join two unrelated trajectories.
        Inside a chunk, that step's bootstrap reads the state stored after it, which is then the new
        trajectory's zero start state (not the old episode's): an approximation for this rare case."""
        if self.pos == 0 and not self.full:
            return
        last = (self.pos - 1) % self.buffer_size
        self.dones[last] = 1.0
        self.timeouts[last] = 1.0

    # ----------------------------------------------------------------------------------------- sampling
    def steps_stored(self) -> int:
        """Steps per env currently held."""
        return self.buffer_size if self.full else self.pos

    def can_sample(self) -> bool:
        """True once one env holds a whole chunk."""
        return self.steps_stored() >= self.chunk_len

    def sample_chunks(self, n_chunks: int, env: VecNormalize | None = None) -> SequenceReplaySamples:
        """``n_chunks`` chunks, each of ``chunk_len`` consecutive steps of one env (start and env uniform)."""
        n_chunks = positive_int("n_chunks", n_chunks)
        if not self.can_sample():
            raise ValueError(
                f"the buffer holds {self.steps_stored()} steps per env, fewer than chunk_len = "
                f"{self.chunk_len}; collect more before sampling (learning_starts)"
            )
        offsets = np.random.randint(0, self.steps_stored() - self.chunk_len + 1, size=n_chunks)
        envs = np.random.randint(0, self.n_envs, size=n_chunks)
        oldest = self.pos if self.full else 0
        starts = (oldest + offsets) % self.buffer_size
        return self.chunks_at(starts, envs, env)

    def chunks_at(
        self, starts: np.ndarray, envs: np.ndarray, env: VecNormalize | None = None
    ) -> SequenceReplaySamples:
        """The chunks starting at buffer positions ``starts`` (n,) of envs ``envs`` (n,) (no validity check
        beyond the bounds: :meth:`sample_chunks` draws valid ones)."""
        k = self.chunk_len
        starts = np.asarray(starts, dtype=np.int64)
        envs = np.asarray(envs, dtype=np.int64)
        pos = (starts[:, None] + np.arange(k)[None, :]) % self.buffer_size  # (n, K)
        e = envs[:, None]
        obs = self.observations[pos, e]
        last_next = self.next_observations[pos[:, -1], envs][:, None]
        observations = self._normalize_obs(np.concatenate([obs, last_next], axis=1), env)
        dts = np.concatenate([self.dts[pos, e], self.next_dts[pos[:, -1], envs][:, None]], axis=1)
        starts_flags = np.concatenate(
            [self.episode_starts[pos, e], np.zeros((len(starts), 1), dtype=bool)], axis=1
        )
        rewards = self._normalize_reward(self.rewards[pos, e], env)
        dones = self.dones[pos, e]
        timeouts = self.timeouts[pos, e] * dones
        chunk_i, step_i = np.nonzero((dones[:, :-1] > 0) & (timeouts[:, :-1] > 0))
        trunc_pos = pos[chunk_i, step_i]
        trunc_env = envs[chunk_i]
        trunc_obs = self._normalize_obs(self.next_observations[trunc_pos, trunc_env], env)
        after = (trunc_pos + 1) % self.buffer_size
        trunc_states = np.swapaxes(self.states[after, trunc_env], 0, 1)
        states = np.swapaxes(self.states[starts, envs], 0, 1)

        def t(array: np.ndarray, dtype: th.dtype = th.float32) -> th.Tensor:
            return th.as_tensor(np.ascontiguousarray(array), device=self.device).to(dtype)

        return SequenceReplaySamples(
            observations=t(observations),
            actions=t(self.actions[pos, e]),
            rewards=t(rewards),
            dones=t(dones),
            timeouts=t(timeouts),
            dts=t(dts),
            episode_starts=t(starts_flags, th.bool),
            states=t(states),
            trunc_index=t(chunk_i * k + step_i, th.int64),
            trunc_observations=t(trunc_obs),
            trunc_dts=t(self.next_dts[trunc_pos, trunc_env]),
            trunc_states=t(trunc_states),
        )


def available_memory() -> int | None:
    """Bytes of memory available (psutil when installed, else Linux's /proc/meminfo), None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_memory(total: int, transitions: int, per_transition: int) -> None:
    available = available_memory()
    if available is None:
        return
    what = (
        f"the replay buffer needs {total / 1e9:.2f} GB ({transitions} transitions x {per_transition} bytes)"
    )
    if total > available:
        raise MemoryError(f"{what}, more than the {available / 1e9:.2f} GB available; lower buffer_size")
    if total > available / 2:
        warnings.warn(
            f"{what}, over half of the {available / 1e9:.2f} GB available", UserWarning, stacklevel=3
        )
