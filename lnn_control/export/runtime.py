"""``Controller``: a torch-free runtime of an exported ONNX actor (numpy + onnxruntime only).

    ctrl = Controller("export/policy.onnx")   # or its sidecar, or the export directory
    ctrl.reset()                              # at each episode start
    action = ctrl.step(obs)                   # dt measured with time.monotonic() since the previous step
    action = ctrl.step(obs, dt=0.02)          # or given explicitly (seconds)

This module must not import torch (nor anything that does): a robot controller ships numpy and onnxruntime.
Loading verifies the sidecar's SHA-256 and that the ONNX graph's inputs and outputs match the sidecar's
dimensions, so a corrupt, truncated or mismatched artefact is rejected before the first step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lnn_control.checks import nonnegative_values, positive_int, positive_number
from lnn_control.extras import require

from .sidecar import ArtifactError, load_sidecar

__all__ = ["ArtifactError", "Controller"]


def _resolve(path: str | Path) -> Path:
    """The artefact or sidecar to load: a directory must hold exactly one ``*.onnx``."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        if len(found) != 1:
            raise ArtifactError(f"directory {path} must contain exactly one .onnx artefact, found {found}")
        return found[0]
    return path


class Controller:
    """Run an exported actor step by step, holding its recurrent state.

    Args:
        path: the ``.onnx`` artefact, its ``.onnx.json`` sidecar, or a directory with one ``.onnx``.
        batch_size: number of robots/envs stepped together (default 1).
        clock: a function returning seconds (default ``time.monotonic``), used when ``step`` gets no dt.
        num_threads: onnxruntime intra-op threads (default 1: lowest latency for one small step).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 1,
        clock: Callable[[], float] | None = None,
        num_threads: int = 1,
    ) -> None:
        batch_size = positive_int("batch_size", batch_size)
        record, artifact = load_sidecar(_resolve(path), "onnx")
        side = artifact.with_name(artifact.name + ".json")
        self.meta = record
        self.obs_dim, self.act_dim, self.state_dim = (
            positive_int(f"sidecar {side}: {key}", record.get(key), error=ArtifactError)
            for key in ("obs_dim", "act_dim", "state_dim")
        )
        self.nominal_dt = positive_number(
            f"sidecar {side}: dt.nominal",
            record.get("dt", {}).get("nominal"),
            unit=" of seconds",
            error=ArtifactError,
        )
        self.batch_size = batch_size
        self.path = artifact
        self._clock = clock
        self._session = self._open(artifact, num_threads)
        self._state = np.zeros((batch_size, self.state_dim), dtype=np.float32)
        self._last_time: float | None = None

    def _open(self, artifact: Path, num_threads: int) -> Any:
        ort = require("onnxruntime", extra="export", feature="the ONNX Controller")

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable models
            raise ArtifactError(f"onnxruntime cannot load {artifact}: {err}") from err
        expected = {
            "obs": self.obs_dim,
            "h": self.state_dim,
            "dt": 1,
            "action": self.act_dim,
            "h_out": self.state_dim,
        }
        found = {v.name: v.shape for v in [*session.get_inputs(), *session.get_outputs()]}
        for name, width in expected.items():
            shape = found.get(name)
            if shape is None or len(shape) != 2 or shape[1] != width:
                raise ArtifactError(
                    f"{artifact}: graph {name!r} has shape {shape}, the sidecar expects (batch, {width})"
                )
        return session

    # ------------------------------------------------------------------------------------------------ api
    @property
    def state(self) -> np.ndarray:
        """A copy of the recurrent state (batch_size, state_dim)."""
        return self._state.copy()

    def reset(self) -> None:
        """Zero the state (an episode start); the next step without dt uses the nominal dt."""
        self._state[...] = 0.0
        self._last_time = None

    def _now(self) -> float:
        return float(self._clock()) if self._clock is not None else time.monotonic()

    def _observation(self, obs: Any) -> tuple[np.ndarray, bool]:
        """obs as (batch_size, obs_dim) float32 and whether the caller gave one flat observation."""
        array = np.asarray(obs, dtype=np.float32)
        flat = array.ndim == 1
        if flat and self.batch_size == 1 and array.shape == (self.obs_dim,):
            array = array.reshape(1, self.obs_dim)
        elif array.shape != (self.batch_size, self.obs_dim):
            accepted = f"({self.obs_dim},) or " if self.batch_size == 1 else ""
            raise ValueError(
                f"observation must have shape {accepted}({self.batch_size}, {self.obs_dim}), "
                f"got {np.shape(obs)}"
            )
        if not np.isfinite(array).all():
            bad = np.argwhere(~np.isfinite(array))[:5].tolist()
            raise ValueError(
                f"observation must be finite, got non-finite values at (batch, index) {bad}; state unchanged"
            )
        return array, flat

    def _dt(self, dt: Any, now: float) -> np.ndarray:
        if dt is None:
            value = self.nominal_dt if self._last_time is None else now - self._last_time
            values = np.full((self.batch_size, 1), value, dtype=np.float32)
        else:
            try:
                values = np.broadcast_to(
                    np.asarray(dt, dtype=np.float32).reshape(-1, 1), (self.batch_size, 1)
                )
            except ValueError:
                raise ValueError(
                    f"dt must be a number or one per sample ({self.batch_size},), got shape {np.shape(dt)}"
                ) from None
        nonnegative_values("dt", values.reshape(-1), unit=" seconds")
        return np.ascontiguousarray(values)

    def step(self, obs: Any, dt: float | np.ndarray | None = None) -> np.ndarray:
        """One control step.

        Args:
            obs: raw observation (obs_dim,) or (1, obs_dim) (batch_size 1), or (batch_size, obs_dim).
            dt: seconds since the previous observation (a number, or (batch_size,)); None measures it with
                the clock since the previous ``step``, or uses the nominal dt after ``reset``.
        Returns:
            the action (act_dim,) for a flat observation, else (batch_size, act_dim).
        Raises:
            ValueError for a wrong observation shape, a non-finite observation or a negative dt; the state
            is then unchanged.
        """
        now = self._now()
        array, flat = self._observation(obs)
        dts = self._dt(dt, now)
        action, state = self._session.run(None, {"obs": array, "h": self._state, "dt": dts})
        self._state = np.asarray(state, dtype=np.float32)
        self._last_time = now
        return action[0] if flat else action
