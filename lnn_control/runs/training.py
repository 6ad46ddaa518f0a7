"""Training a run: ``train`` starts a new run directory, ``resume`` continues one from its last checkpoint.

Both end in the same loop (:func:`_learn`): SB3's ``learn`` with the run callback (evaluation, best/last
checkpoints, TensorBoard under ``tb/``, optional progress bar), then a final evaluation and checkpoint, or, on
SIGINT/SIGTERM, a checkpoint at the last policy update and ``status: interrupted``.

What a resume restores: policy and optimizer state and the step count (``reset_num_timesteps=False``, so
learning-rate/clip schedules and TensorBoard continue), VecNormalize statistics, and the global RNG states.
What it cannot restore: the simulators' mid-episode states; the training envs start new episodes (seeded with
``seed + timesteps``).

CPU threads: small recurrent policies train fastest with ``torch.set_num_threads(1)`` (the CLI's default);
a second torch thread competes with MuJoCo's physics threads and was several times slower on 2 cores.
"""

from __future__ import annotations

import datetime as _dt
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from lnn_control.checks import positive_int
from lnn_control.runs.callback import RunCallback, TrainingState, format_row
from lnn_control.runs.checkpoint import load_model, read_extras
from lnn_control.runs.config import ResolvedRun, RunSpec, load_resolved, resolve
from lnn_control.runs.errors import RunError
from lnn_control.runs.eval_episodes import eval_env_count
from lnn_control.runs.evalcsv import EvalRow, read_rows, write_rows
from lnn_control.runs.layout import RunDir
from lnn_control.runs.normalization import frozen_normalization
from lnn_control.runs.rng import restore_rng
from lnn_control.runs.signals import GracefulStop, exit_code
from lnn_control.sim import make_vec_env

__all__ = ["TrainResult", "default_run_dir", "resume", "train"]

TB_NAME = "train"


@dataclass(frozen=True)
class TrainResult:
    """How a training call ended.

    Attributes:
        run_dir: the run directory.
        status: "finished" or "interrupted".
        timesteps: env steps learned from (the saved model's ``num_timesteps``).
        total_timesteps: the run's budget.
        wall_time_s: training wall time over all sessions of the run.
        best, last: the best and the last evaluation (None before the first).
        signal: the signal that interrupted the run, else None.
    """

    run_dir: Path
    status: str
    timesteps: int
    total_timesteps: int
    wall_time_s: float
    best: EvalRow | None
    last: EvalRow | None
    signal: int | None = None

    @property
    def exit_code(self) -> int:
        """0, or 128 + signal number (130 for SIGINT, 143 for SIGTERM) for an interrupted run."""
        return 0 if self.signal is None else exit_code(self.signal)

    @property
    def checkpoint(self) -> Path:
        return RunDir(self.run_dir).checkpoint("last")


def default_run_dir(env: str, agent: str, seed: int, root: str | Path = "runs") -> Path:
    """``runs/<env>__<agent>__seed<S>__<YYYYmmdd-HHMMSS>`` (file paths reduced to their stems)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    parts = [
        Path(env).stem if env.endswith((".yaml", ".yml")) else env,
        Path(agent).stem,
        f"seed{seed}",
        stamp,
    ]
    return Path(root) / re.sub(r"[^A-Za-z0-9._=-]+", "_", "__".join(parts))


def _logger(quiet: bool) -> Callable[[str], None]:
    if quiet:
        return lambda line: None
    return lambda line: print(line, flush=True)


def _run_env(resolved: ResolvedRun, n_envs: int, seed: int, nthread: int | None) -> VecEnv:
    """``n_envs`` envs of the run's task: monitored, NaN-checked, batched as the run says (``nthread``, the
    physics threads, applies to the batched env only)."""
    nthread = nthread if resolved.batched else None
    return make_vec_env(
        resolved.task, n_envs, batched=resolved.batched, seed=seed, nthread=nthread, check_nan=True
    )


def _build_model(resolved: ResolvedRun, env: VecEnv, run: RunDir) -> BaseAlgorithm:
    from lnn_control.sb3.agents import build_agent

    try:
        return build_agent(
            resolved.agent,
            env,
            seed=resolved.seed,
            device=resolved.device,
            tensorboard_log=str(run.tensorboard),
            verbose=0,
        )
    except (
        ValueError,
        TypeError,
    ) as exc:  # sizes, unknown constructor arguments deeper than the loader checks
        env.close()
        overrides = f" (with --set {resolved.overrides})" if resolved.overrides else ""
        raise RunError(f"cannot build agent {resolved.agent_name}{overrides}: {exc}") from exc


def train(
    spec: RunSpec,
    out: str | Path | None = None,
    *,
    progress_bar: bool = False,
    quiet: bool = False,
    handle_signals: bool = True,
    nthread: int | None = None,
    stop_event: Any = None,
) -> TrainResult:
    """Train a new run into ``out`` (default :func:`default_run_dir`); see the module docstring.

    Args:
        spec: what to train.
        out: the run directory; must not exist yet or be empty.
        progress_bar: SB3's progress bar (tqdm + rich).
        quiet: no progress lines on stdout.
        handle_signals: turn SIGINT/SIGTERM into "checkpoint and stop" (main thread only).
        nthread: physics threads of the batched env (None: all CPUs).
        stop_event: optional event (``is_set()``) that stops the run like SIGINT (used by sweeps).
    Raises:
        RunError: for bad input (see :func:`lnn_control.runs.config.resolve`) or an occupied ``out``.
    """
    resolved = resolve(spec)
    run = RunDir(Path(out) if out is not None else default_run_dir(spec.env, spec.agent, resolved.seed))
    if run.root.exists() and (not run.root.is_dir() or any(run.root.iterdir())):
        hint = "resume it with --resume" if run.config.is_file() else "choose another --out"
        raise RunError(f"{run.root} already exists and is not empty; {hint}")
    env = _run_env(resolved, resolved.n_envs, resolved.seed, nthread)
    model = _build_model(resolved, env, run)
    eval_env = frozen_normalization(
        model.get_env(),
        _run_env(resolved, eval_env_count(resolved.eval_episodes), resolved.eval_seed, nthread),
    )
    run.root.mkdir(parents=True, exist_ok=True)
    try:
        run.write_config(resolved.to_record())
    except BaseException:
        shutil.rmtree(run.root, ignore_errors=True)
        raise
    log = _logger(quiet)
    log(
        f"training {resolved.agent_name} on {resolved.task_id} for {resolved.total_timesteps:,d} steps "
        f"({resolved.n_envs} envs, seed {resolved.seed}) -> {run.root}"
    )
    if (line := resolved.task_section_line()) is not None:
        log(line)
    stop = GracefulStop(enabled=handle_signals, event=stop_event)
    return _learn(model, run, resolved, eval_env, TrainingState(), True, progress_bar, log, stop)


def resume(
    run_dir: str | Path,
    *,
    timesteps: int | None = None,
    device: str | None = None,
    progress_bar: bool = False,
    quiet: bool = False,
    handle_signals: bool = True,
    nthread: int | None = None,
    stop_event: Any = None,
) -> TrainResult:
    """Continue a run from ``checkpoints/last.zip`` up to its budget (or a new budget ``timesteps``).

    A finished run is returned as is unless ``timesteps`` exceeds what it has learned. Other arguments as
    :func:`train`; ``device`` replaces the recorded device.
    """
    run = RunDir.open(run_dir)
    record = run.read_config()
    resolved = load_resolved(record, str(run.config))
    extras = read_extras(run.checkpoint("last"))
    state = TrainingState.from_dict(extras.info)
    if timesteps is not None:
        positive_int("timesteps", timesteps, error=RunError)
        record["total_timesteps"] = timesteps
        resolved = load_resolved(record, str(run.config))
    if device is not None:
        record["device"] = device
        resolved = load_resolved(record, str(run.config))
    log = _logger(quiet)
    if state.timesteps >= resolved.total_timesteps:
        log(f"{run.root} has already trained {state.timesteps:,d} of {resolved.total_timesteps:,d} steps")
        return _result(run, "finished", state, resolved, None)
    base_env = _run_env(resolved, resolved.n_envs, resolved.seed + state.timesteps, nthread)
    env = extras.wrap(base_env, training=True)
    model = load_model(run.checkpoint("last"), resolved.agent["algorithm"], env, device=resolved.device)
    model.tensorboard_log = str(run.tensorboard)
    model.get_env().seed(resolved.seed + state.timesteps)  # loading re-seeded the env with the original seed
    eval_env = frozen_normalization(
        model.get_env(),
        _run_env(resolved, eval_env_count(resolved.eval_episodes), resolved.eval_seed, nthread),
    )
    if run.eval_csv.is_file():  # evaluations after the checkpoint belong to a lost timeline
        write_rows(run.eval_csv, [r for r in read_rows(run.eval_csv) if r.timesteps <= state.timesteps])
    run.write_config(record)
    if extras.rng is not None:
        try:
            restore_rng(extras.rng)
        except ValueError as exc:
            raise RunError(f"checkpoint {extras.path}: {exc}") from exc
    log(
        f"resuming {resolved.agent_name} on {resolved.task_id} at {state.timesteps:,d} of "
        f"{resolved.total_timesteps:,d} steps -> {run.root}"
    )
    if (line := resolved.task_section_line()) is not None:
        log(line)
    stop = GracefulStop(enabled=handle_signals, event=stop_event)
    return _learn(model, run, resolved, eval_env, state, False, progress_bar, log, stop)


def _row(data: dict[str, Any] | None) -> EvalRow | None:
    return None if data is None else EvalRow(**data)


def _result(
    run: RunDir, status: str, state: TrainingState, resolved: ResolvedRun, signum: int | None
) -> TrainResult:
    return TrainResult(
        run_dir=run.root,
        status=status,
        timesteps=state.timesteps,
        total_timesteps=resolved.total_timesteps,
        wall_time_s=state.wall_time_s,
        best=_row(state.best),
        last=_row(state.last_eval),
        signal=signum,
    )


def _learn(
    model: BaseAlgorithm,
    run: RunDir,
    resolved: ResolvedRun,
    eval_env: VecEnv,
    state: TrainingState,
    fresh: bool,
    progress_bar: bool,
    log: Callable[[str], None],
    stop: GracefulStop,
) -> TrainResult:
    with stop:
        callback = RunCallback(run, resolved, eval_env, state, stop, log)
        try:
            model.learn(
                resolved.total_timesteps - (0 if fresh else model.num_timesteps),
                callback=callback,
                tb_log_name=TB_NAME,
                reset_num_timesteps=fresh,
                progress_bar=progress_bar,
            )
            if stop.requested is not None and model.num_timesteps < resolved.total_timesteps:
                model.num_timesteps = callback.update_timesteps  # drop the unfinished rollout
                callback.save_last("interrupted")
                status = "interrupted"
            else:
                callback.checkpoint_if_due(final=True)
                status = "finished"
        finally:
            model.get_env().close()
            eval_env.close()
            if sys.stdout is not None:
                sys.stdout.flush()
    result = _result(run, status, state, resolved, stop.requested if status == "interrupted" else None)
    if status == "finished" and result.last is not None:
        log(
            f"finished {result.timesteps:,d} steps in {result.wall_time_s:.0f} s; "
            f"last {format_row(result.last)}"
        )
    return result
