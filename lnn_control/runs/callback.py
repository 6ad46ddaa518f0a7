"""The training callback of a run: periodic evaluation, best/last checkpoints, run status, graceful stop.

Evaluations and checkpoints happen at rollout starts, i.e. right after a policy update, when the saved model
has learned from exactly ``num_timesteps`` steps. A stop request (SIGINT/SIGTERM) ends training at the next
env step; the partial rollout is discarded and the step count rolled back to the last update, so a resumed
run continues from the same point the saved parameters reached.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import time
from collections.abc import Callable
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from lnn_control.runs.checkpoint import save_checkpoint
from lnn_control.runs.config import ResolvedRun
from lnn_control.runs.eval_episodes import run_episodes
from lnn_control.runs.evalcsv import EvalRow, append_row, stats_row
from lnn_control.runs.layout import RunDir
from lnn_control.runs.normalization import sync_normalization
from lnn_control.runs.plotting import plot_learning_curve
from lnn_control.runs.signals import GracefulStop

__all__ = ["RunCallback", "TrainingCurve", "TrainingState", "curve_title", "format_row"]


class TrainingCurve(BaseCallback):
    """A learning curve from the training episodes: ``points`` gets (timesteps, mean return of the last 20
    finished episodes) after every rollout (the benchmarks' curves; runs evaluate separately)."""

    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        if self.model.ep_info_buffer:
            recent = [e["r"] for e in list(self.model.ep_info_buffer)[-20:]]
            self.points.append((int(self.num_timesteps), float(sum(recent) / len(recent))))


@dataclasses.dataclass
class TrainingState:
    """What a checkpoint records besides the model (``lnn_control/checkpoint.json``)."""

    timesteps: int = 0
    wall_time_s: float = 0.0
    next_eval: int = 0
    next_checkpoint: int = 0
    best: dict[str, Any] | None = None  # an EvalRow as a dict
    last_eval: dict[str, Any] | None = None

    @property
    def best_mean(self) -> float:
        return -math.inf if self.best is None else float(self.best["mean"])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, info: dict[str, Any]) -> TrainingState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in info.items() if k in names})


def format_row(row: EvalRow) -> str:
    """``return 512.3 ± 40.1 (min 450.0, max 560.0, 5 episodes)``."""
    return (
        f"return {row.mean:8.1f} ± {row.std:6.1f} (min {row.min:.1f}, max {row.max:.1f}, "
        f"{row.episodes} episodes)"
    )


def curve_title(resolved: ResolvedRun) -> str:
    """``<agent> on <task> (seed S)`` plus a wrapped line of the overrides (last key component only)."""
    title = f"{resolved.agent_name} on {resolved.task_id} (seed {resolved.seed})"
    if resolved.overrides:
        shown = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in resolved.overrides.items())
        title += "\n" + shown
    return title


def _next_multiple(value: int, step: int) -> int:
    return (value // step + 1) * step


class RunCallback(BaseCallback):
    """Evaluates, checkpoints and stops a run (see the module docstring).

    Args:
        run: the run directory.
        resolved: the run's resolved config (eval/checkpoint frequencies, seeds, total timesteps).
        eval_env: evaluation VecEnv (frozen VecNormalize when the agent normalises).
        state: the state to continue from (a fresh one for a new run).
        stop: the signal recorder; training stops at the first env step after a request.
        log: where progress lines go (``print``; a no-op for quiet runs).
    """

    def __init__(
        self,
        run: RunDir,
        resolved: ResolvedRun,
        eval_env: VecEnv,
        state: TrainingState,
        stop: GracefulStop,
        log: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.run = run
        self.resolved = resolved
        self.eval_env = eval_env
        self.state = state
        self.stop = stop
        self.log = log
        self.update_timesteps = state.timesteps  # num_timesteps after the last policy update
        self._wall_offset = state.wall_time_s
        self._started = time.monotonic()

    # ------------------------------------------------------------------------------------------ SB3 hooks
    def _on_training_start(self) -> None:
        self._started = time.monotonic()
        self.update_timesteps = self.model.num_timesteps

    def _on_rollout_start(self) -> None:
        self.update_timesteps = self.model.num_timesteps
        self.checkpoint_if_due()

    def _on_step(self) -> bool:
        return self.stop.requested is None

    # ------------------------------------------------------------------------------------------ actions
    def wall_time(self) -> float:
        return self._wall_offset + (time.monotonic() - self._started)

    def checkpoint_if_due(self, *, final: bool = False) -> None:
        """Evaluate and/or save "last" when due; ``final``: evaluate unless done at this step, and save."""
        ts = self.model.num_timesteps
        evaluated_here = self.state.last_eval is not None and self.state.last_eval["timesteps"] == ts
        if ts >= self.state.next_eval or (final and not evaluated_here):
            self.evaluate()
        if final or ts >= self.state.next_checkpoint:
            self.save_last("finished" if final else "running")

    def evaluate(self) -> EvalRow:
        """Evaluate the current policy, append to eval.csv, save "best" if it improved, redraw the curve."""
        ts = self.model.num_timesteps
        sync_normalization(self.model.get_env(), self.eval_env)
        returns, lengths = run_episodes(
            self.model, self.eval_env, self.resolved.eval_episodes, seed=self.resolved.eval_seed
        )
        row = stats_row(ts, returns, lengths, self.wall_time())
        rows = append_row(self.run.eval_csv, row)
        # ties go to the later policy (trained longer; returns often saturate at the task's maximum)
        improved = row.mean >= self.state.best_mean
        tie = row.mean == self.state.best_mean
        self.state.last_eval = dataclasses.asdict(row)
        self.state.next_eval = _next_multiple(ts, self.resolved.eval_freq)
        if improved:
            self.state.best = dataclasses.asdict(row)
            self._save("best")
        self.logger.record("eval/mean_return", row.mean)
        self.logger.record("eval/std_return", row.std)
        self.logger.record("eval/mean_ep_length", row.mean_length)
        plot_learning_curve(rows, self.run.curve_png, curve_title(self.resolved))
        note = "  (ties best)" if tie else "  new best" if improved else ""
        self.log(f"eval {ts:>10,d} steps  {format_row(row)}{note}")
        return row

    def save_last(self, status: str) -> None:
        """Save the "last" checkpoint and the run status (``status``: running, finished, interrupted)."""
        ts = self.model.num_timesteps
        self.state.next_checkpoint = _next_multiple(ts, self.resolved.checkpoint_freq)
        self._save("last")
        self.write_status(status)

    def _save(self, which: str) -> None:
        self.state.timesteps = self.model.num_timesteps
        self.state.wall_time_s = self.wall_time()
        save_checkpoint(self.run.checkpoint(which), self.model, self.state.to_dict())

    def write_status(self, status: str) -> None:
        self.run.write_status(
            {
                "status": status,
                "timesteps": self.model.num_timesteps,
                "total_timesteps": self.resolved.total_timesteps,
                "wall_time_s": round(self.wall_time(), 3),
                "env": self.resolved.task_id,
                "agent": self.resolved.agent_name,
                "seed": self.resolved.seed,
                "overrides": self.resolved.overrides,
                "best": self.state.best,
                "last_eval": self.state.last_eval,
                "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
        )
