"""Using a trained run: load its policy (best or last checkpoint) on its own task or another catalogue task,
evaluate it, and optionally record a video.

Evaluating under another task answers the robustness question (a policy trained at a fixed control rate,
evaluated with jittered timing, dropped frames or sensor noise); the observation and action spaces must match
the training task's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from lnn_control.checks import positive_int
from lnn_control.runs.checkpoint import check_spaces, load_model, read_extras
from lnn_control.runs.config import ResolvedRun, load_resolved, load_task
from lnn_control.runs.errors import RunError
from lnn_control.runs.eval_episodes import eval_env_count, run_episodes
from lnn_control.runs.evalcsv import EvalRow, stats_row
from lnn_control.runs.layout import RunDir
from lnn_control.sim import make_vec_env

__all__ = ["EvalReport", "LoadedPolicy", "evaluate_run", "load_policy"]


@dataclass
class LoadedPolicy:
    """A run's policy on an env: the model (its env is ``env``), the env (VecNormalize frozen), the run."""

    model: BaseAlgorithm
    env: VecEnv
    resolved: ResolvedRun
    task: Any
    checkpoint: Path
    info: dict[str, Any]

    def close(self) -> None:
        self.env.close()


def load_policy(
    run_dir: str | Path,
    *,
    checkpoint: str = "best",
    env: str | Any = None,
    n_envs: int = 1,
    seed: int | None = None,
    device: str = "cpu",
    render_mode: str | None = None,
    wrap: Any = None,
) -> LoadedPolicy:
    """Load a run's policy with frozen normalisation on ``n_envs`` envs of its task (or task ``env``).

    Args:
        run_dir: the run directory.
        checkpoint: "best" or "last".
        env: another task (catalogue id, YAML file or TaskSpec) with the same observation/action spaces.
        n_envs: evaluation envs.
        seed: env seed (default: the run's evaluation seed).
        device: torch device of the policy.
        render_mode: "rgb_array" to render.
        wrap: optional callable applied to the raw VecEnv before normalisation (e.g. a frame recorder).
    """
    run = RunDir.open(run_dir)
    resolved = load_resolved(run.read_config(), str(run.config))
    path = run.checkpoint(checkpoint)
    extras = read_extras(path)
    task = resolved.task if env is None else load_task(env) if isinstance(env, (str, Path)) else env
    venv = make_vec_env(
        task,
        n_envs,
        batched=resolved.batched,
        seed=resolved.eval_seed if seed is None else seed,
        render_mode=render_mode,
        check_nan=True,
    )
    try:
        check_spaces(path, venv)
        if wrap is not None:
            venv = wrap(venv)
        venv = extras.wrap(venv, training=False)
        model = load_model(path, resolved.agent["algorithm"], venv, device=device)
    except BaseException:
        venv.close()
        raise
    return LoadedPolicy(model, venv, resolved, task, path, extras.info)


@dataclass(frozen=True)
class EvalReport:
    """What ``lnn-control eval`` prints (and writes with ``--json``)."""

    run_dir: str
    checkpoint: str
    trained_timesteps: int
    env: str
    trained_env: str
    deterministic: bool
    seed: int
    stats: EvalRow
    returns: list[float]
    video: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(out.pop("stats"))
        out.pop("timesteps")
        out.pop("wall_time_s")
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def evaluate_run(
    run_dir: str | Path,
    *,
    episodes: int = 10,
    checkpoint: str = "best",
    env: str | None = None,
    deterministic: bool = True,
    seed: int | None = None,
    video: str | Path | None = None,
    video_steps: int = 1000,
    device: str = "cpu",
) -> EvalReport:
    """Evaluate a run's policy over ``episodes`` episodes; with ``video``, record env 0 up to ``video_steps``
    frames in a separate pass (one env) and write it as GIF/MP4.

    Raises:
        RunError: missing run/checkpoint, corrupt checkpoint, incompatible task, video writer missing.
    """
    positive_int("episodes", episodes, error=RunError)
    if video is not None:
        from lnn_control.runs.video import check_video_path

        check_video_path(video)
        if video_steps < 1:
            raise RunError(f"video steps must be >= 1, got {video_steps}")
    policy = load_policy(run_dir, checkpoint=checkpoint, env=env, n_envs=eval_env_count(episodes), seed=seed)
    eval_seed = policy.resolved.eval_seed if seed is None else seed
    try:
        returns, lengths = run_episodes(
            policy.model, policy.env, episodes, seed=eval_seed, deterministic=deterministic
        )
    finally:
        policy.close()
    video_path = None
    if video is not None:
        video_path = str(_record(run_dir, checkpoint, env, deterministic, eval_seed, video, video_steps))
    return EvalReport(
        run_dir=str(run_dir),
        checkpoint=checkpoint,
        trained_timesteps=int(policy.info.get("timesteps", policy.model.num_timesteps)),
        env=str(policy.task.id),
        trained_env=policy.resolved.task_id,
        deterministic=deterministic,
        seed=eval_seed,
        stats=stats_row(int(policy.info.get("timesteps", 0)), returns, lengths, 0.0),
        returns=[float(r) for r in np.asarray(returns)],
        video=video_path,
    )


def _record(
    run_dir: str | Path,
    checkpoint: str,
    env: str | None,
    deterministic: bool,
    seed: int,
    video: str | Path,
    max_frames: int,
) -> Path:
    from lnn_control.runs.video import FrameRecorder, write_video

    recorders: list[FrameRecorder] = []

    def wrap(venv: VecEnv) -> VecEnv:
        recorders.append(FrameRecorder(venv, max_frames))
        return recorders[0]

    try:
        policy = load_policy(
            run_dir, checkpoint=checkpoint, env=env, n_envs=1, seed=seed, render_mode="rgb_array", wrap=wrap
        )
    except RuntimeError as exc:  # no OpenGL context
        raise RunError(str(exc).splitlines()[0]) from exc
    try:
        policy.env.seed(seed)
        _play(policy, recorders[0], deterministic)
    except RuntimeError as exc:
        raise RunError(f"rendering failed: {str(exc).splitlines()[0]}") from exc
    finally:
        policy.close()
    return write_video(recorders[0].frames, video, fps=1.0 / float(policy.task.nominal_dt))


def _play(policy: LoadedPolicy, recorder: Any, deterministic: bool) -> None:
    """Run episodes on the single recording env until ``recorder`` has its frames (at least one episode)."""
    while len(recorder.frames) < recorder.max_frames:
        run_episodes(policy.model, policy.env, 1, seed=None, deterministic=deterministic)
