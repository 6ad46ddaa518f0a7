"""Sequence rollout buffers: SB3's RolloutBuffer plus recurrent state, dt and fixed-length chunks.

Storage is SB3's (n_steps, n_envs, ...) layout, with two additions per step: the recurrent state *before*
the step (num_layers, n_envs, state_size), kept as a tensor on the policy's device, and ``dt`` (n_envs,),
the seconds since the previous observation. GAE is SB3's own ``compute_returns_and_advantage``.

Training cuts each environment's trajectory into ``n_steps / seq_len`` chunks of ``seq_len`` consecutive
steps, numbered ``env * n_chunks + chunk``. A chunk starts from the stored state of its first step; episode
boundaries inside a chunk are handled by ``episode_starts`` (the core zeroes the state in-sequence), so no
chunk is padded and every minibatch has the same shape: ``batch_size / seq_len`` chunks of ``seq_len`` steps.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer


class SequenceRolloutBufferSamples(NamedTuple):
    """One minibatch of M chunks of T steps; per-step fields are flat (M * T, ...), chunk-major."""

    observations: th.Tensor | dict[str, th.Tensor]  # (M * T, *obs_shape)
    actions: th.Tensor  # (M * T, action_dim), float32
    old_values: th.Tensor  # (M * T,)
    old_log_prob: th.Tensor  # (M * T,)
    advantages: th.Tensor  # (M * T,)
    returns: th.Tensor  # (M * T,)
    states: th.Tensor  # (num_layers, M, state_size): the state before each chunk's first step
    episode_starts: th.Tensor  # (M, T) bool
    dts: th.Tensor  # (M, T) float32


class ChunkSampler:
    """Minibatches of whole chunks from ``_chunked``: per-step fields (n_chunks, seq_len, ...) and ``states``
    (num_layers, n_chunks, S), built by the buffer's ``_prepare`` on first use after a rollout."""

    buffer_size: int
    n_envs: int
    seq_len: int
    device: th.device
    full: bool
    generator_ready: bool
    _chunked: dict[str, Any]

    @property
    def n_chunks(self) -> int:
        """Chunks in a full buffer: n_envs * n_steps / seq_len."""
        return self.n_envs * self.buffer_size // self.seq_len

    def _prepare(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def get(  # type: ignore[override]
        self, batch_size: int | None = None
    ) -> Generator[SequenceRolloutBufferSamples, None, None]:
        """Yield minibatches of ``batch_size / seq_len`` random chunks (one pass over the buffer).

        ``batch_size`` counts transitions and must be a multiple of ``seq_len``; None yields the whole
        buffer at once. When the chunk count is not a multiple of the chunks per minibatch, the left-over
        chunks (a different random set on each pass) are skipped, so that every minibatch has the same shape.
        """
        assert self.full, "the rollout buffer must be full before sampling"
        batch_size = self.buffer_size * self.n_envs if batch_size is None else batch_size
        per_batch = batch_size // self.seq_len
        # validated where the user passes it (LiquidPPO._check_sizes): whole chunks, at most the buffer
        assert batch_size % self.seq_len == 0 and 1 <= per_batch <= self.n_chunks, f"batch_size {batch_size}"
        if not self.generator_ready:
            self._prepare()
            self.generator_ready = True
        order = np.random.permutation(self.n_chunks)
        for start in range(0, self.n_chunks - per_batch + 1, per_batch):
            yield self._get_samples(order[start : start + per_batch])

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: Any = None
    ) -> SequenceRolloutBufferSamples:
        """The chunks ``batch_inds`` (M,) as one minibatch (``env`` normalisation is not supported)."""
        if env is not None:
            raise ValueError("SequenceRolloutBuffer stores already-normalised observations; env must be None")
        idx = th.as_tensor(batch_inds, device=self.device)
        data = self._chunked

        def flat(tensor: th.Tensor) -> th.Tensor:
            picked = tensor.index_select(0, idx)  # as tensor[idx], in half the time (no index parsing)
            return picked.reshape(picked.shape[0] * picked.shape[1], *picked.shape[2:])

        obs = data["observations"]
        return SequenceRolloutBufferSamples(
            observations={k: flat(v) for k, v in obs.items()} if isinstance(obs, dict) else flat(obs),
            actions=flat(data["actions"]),
            old_values=flat(data["old_values"]),
            old_log_prob=flat(data["old_log_prob"]),
            advantages=flat(data["advantages"]),
            returns=flat(data["returns"]),
            states=data["states"].index_select(1, idx),
            episode_starts=data["episode_starts"].index_select(0, idx),
            dts=data["dts"].index_select(0, idx),
        )


class _SequenceMixin(ChunkSampler):
    """Adds state/dt storage and chunked minibatches to an SB3 rollout buffer (array or dict observations)."""

    buffer_size: int
    n_envs: int
    device: th.device
    full: bool
    pos: int
    generator_ready: bool
    observations: Any
    actions: np.ndarray
    values: np.ndarray
    log_probs: np.ndarray
    advantages: np.ndarray
    returns: np.ndarray
    episode_starts: np.ndarray

    def __init__(self, *args: Any, seq_len: int = 32, **kwargs: Any) -> None:
        buffer_size = kwargs.get("buffer_size", args[0] if args else None)
        # validated where the user passes it (LiquidPPO._check_sizes); here only the layout's invariant
        assert seq_len >= 1 and buffer_size % seq_len == 0, f"n_steps {buffer_size}, seq_len {seq_len}"
        self.seq_len = seq_len
        self.states: th.Tensor | None = None
        self._chunked: dict[str, Any] = {}
        super().__init__(*args, **kwargs)

    def reset(self) -> None:
        super().reset()  # type: ignore[misc]
        self.dts = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self._chunked = {}

    def add(  # type: ignore[override]
        self,
        obs: np.ndarray | dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        episode_start: np.ndarray,
        value: th.Tensor,
        log_prob: th.Tensor,
        state: th.Tensor,
        dt: np.ndarray,
    ) -> None:
        """SB3's ``add`` plus ``state`` (num_layers, n_envs, S) before this step and ``dt`` (n_envs,)."""
        if self.states is None or self.states.shape[1:] != state.shape or self.states.device != state.device:
            self.states = th.zeros((self.buffer_size, *state.shape), dtype=state.dtype, device=state.device)
        self.states[self.pos] = state
        self.dts[self.pos] = np.asarray(dt, dtype=np.float32).reshape(self.n_envs)
        super().add(obs, action, reward, episode_start, value, log_prob)  # type: ignore[misc]

    # ------------------------------------------------------------------------------------------ chunking
    def _chunk(self, array: np.ndarray, dtype: np.dtype | None = None) -> th.Tensor:
        """(n_steps, n_envs, *rest) array -> (n_chunks, seq_len, *rest) tensor on the buffer's device."""
        rest = array.shape[2:]
        by_env = array.swapaxes(0, 1).reshape(self.n_chunks, self.seq_len, *rest)
        if dtype is not None:
            by_env = by_env.astype(dtype, copy=False)
        return th.as_tensor(np.ascontiguousarray(by_env), device=self.device)

    def _prepare(self) -> None:
        assert self.states is not None
        obs = self.observations
        chunked: dict[str, Any] = {
            "observations": {k: self._chunk(v) for k, v in obs.items()}
            if isinstance(obs, dict)
            else self._chunk(obs),
            "actions": self._chunk(self.actions, np.float32),
            "old_values": self._chunk(self.values),
            "old_log_prob": self._chunk(self.log_probs),
            "advantages": self._chunk(self.advantages),
            "returns": self._chunk(self.returns),
            "episode_starts": self._chunk(self.episode_starts, np.bool_),
            "dts": self._chunk(self.dts),
        }
        # states (n_steps, L, n_envs, S) at chunk starts -> (L, n_envs * chunks_per_env, S), env-major.
        starts = self.states[:: self.seq_len]
        layers, state_size = starts.shape[1], starts.shape[3]
        chunked["states"] = (
            starts.permute(1, 2, 0, 3).reshape(layers, self.n_chunks, state_size).to(self.device)
        )
        self._chunked = chunked


class SequenceRolloutBuffer(_SequenceMixin, RolloutBuffer):
    """Rollout buffer for array observations with recurrent state, dt and chunked minibatches.

    Args: those of :class:`~stable_baselines3.common.buffers.RolloutBuffer`, plus ``seq_len`` (steps per
    chunk; ``buffer_size`` = n_steps must be a multiple of it).
    """


class SequenceDictRolloutBuffer(_SequenceMixin, DictRolloutBuffer):
    """:class:`SequenceRolloutBuffer` for Dict observations."""
