"""The ``lnn-control`` command: train, eval, compare, sweep and export runs.

A thin argparse layer over :mod:`lnn_control.runs`: each subcommand parses its arguments, calls one library
function and prints its result. Problems the user can fix (unknown task, bad ``--set``, missing run
directory, corrupt checkpoint, a feature whose pip extra is not installed) are one line on stderr with exit
code 2; ``--debug`` shows the traceback.
An interrupted ``train``/``sweep`` (Ctrl-C, SIGTERM) saves a checkpoint and exits with 130/143.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from lnn_control.checks import positive_int

__all__ = ["build_parser", "main"]

PROG = "lnn-control"


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line (and exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks."""


def _int_argument(text: str, *, allow_zero: bool) -> int:
    """An argparse value through :func:`lnn_control.checks.positive_int` ("1_000" reads as 1000)."""
    try:
        value: Any = int(text.replace("_", ""))
    except ValueError:
        value = text  # not an integer: the check rejects it, quoting the text
    return positive_int("value", value, allow_zero=allow_zero, error=argparse.ArgumentTypeError)


def _positive_int(text: str) -> int:
    return _int_argument(text, allow_zero=False)


def _seed(text: str) -> int:
    return _int_argument(text, allow_zero=True)


def _out(line: str = "") -> None:
    print(line, flush=True)


def _set_threads(n: int) -> None:
    """torch's CPU threads. One is the default: the small recurrent policies run fastest single-threaded,
    and a second torch thread competes with MuJoCo's physics threads (several times slower on 2 cores)."""
    import torch

    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------ commands
def _spec_from(args: argparse.Namespace) -> Any:
    from lnn_control.runs.config import RunSpec
    from lnn_control.runs.overrides import parse_set

    return RunSpec(
        env=args.env,
        agent=args.agent,
        timesteps=args.timesteps,
        seed=0 if args.seed is None else args.seed,
        n_envs=args.n_envs,
        device=args.device or "auto",
        overrides=parse_set(args.set),
        eval_freq=args.eval_freq,
        eval_episodes=5 if args.eval_episodes is None else args.eval_episodes,
        checkpoint_freq=args.checkpoint_freq,
        batched=True if args.batched is None else args.batched,
    )


_FRESH_ONLY = (
    "env",
    "agent",
    "set",
    "seed",
    "n_envs",
    "eval_freq",
    "eval_episodes",
    "checkpoint_freq",
    "out",
)


def cmd_train(args: argparse.Namespace) -> int:
    from lnn_control.runs import training
    from lnn_control.runs.errors import RunError

    _set_threads(args.torch_threads)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    if args.resume is not None:
        given = [
            f"--{name.replace('_', '-')}" for name in _FRESH_ONLY if getattr(args, name) not in (None, [])
        ]
        if args.batched is not None:
            given.append("--batched/--no-batched")
        if given:
            raise RunError(
                f"--resume continues a run with its recorded config; {', '.join(given)} cannot be combined "
                "with it (only --timesteps and --device can)"
            )
        result = training.resume(
            args.resume, timesteps=args.timesteps, device=args.device, progress_bar=progress
        )
    else:
        missing = [flag for flag, value in (("--env", args.env), ("--agent", args.agent)) if value is None]
        if missing:
            raise RunError(f"train needs {' and '.join(missing)} (or --resume DIR)")
        result = training.train(_spec_from(args), args.out, progress_bar=progress)
    if result.status == "interrupted":
        import signal

        name = signal.Signals(result.signal).name if result.signal else "signal"
        print(
            f"{PROG}: interrupted by {name} at {result.timesteps:,d} steps; checkpoint saved to "
            f"{result.checkpoint} (continue with: {PROG} train --resume {result.run_dir})",
            file=sys.stderr,
            flush=True,
        )
        return result.exit_code
    run = result.run_dir
    if result.best is not None:
        best = result.best
        _out(f"best     return {best.mean:.1f} ± {best.std:.1f} at {best.timesteps:,d} steps")
    _out(f"run      {run}")
    _out(f"curve    {run / 'learning_curve.png'}  (TensorBoard: tensorboard --logdir {run / 'tb'})")
    _out(f"next     {PROG} eval {run} --video {run / 'policy.gif'}")
    return 0


def _print_report(report: Any) -> None:
    s = report.stats
    mode = "deterministic" if report.deterministic else "stochastic"
    _out(
        f"policy   {report.run_dir} [{report.checkpoint}] trained {report.trained_timesteps:,d} steps on "
        f"{report.trained_env}"
    )
    _out(f"task     {report.env} ({s.episodes} episodes, {mode}, seed {report.seed})")
    _out(
        f"return   mean {s.mean:.1f}  std {s.std:.1f}  min {s.min:.1f}  max {s.max:.1f}  "
        f"(mean length {s.mean_length:.0f} steps)"
    )
    if report.video:
        _out(f"video    {report.video}")


def cmd_eval(args: argparse.Namespace) -> int:
    if args.video is not None:
        from lnn_control.runs.video import ensure_offscreen_gl

        ensure_offscreen_gl()
    _set_threads(args.torch_threads)
    from lnn_control.atomic import atomic_write_text
    from lnn_control.runs.playback import evaluate_run

    report = evaluate_run(
        args.run_dir,
        episodes=args.episodes,
        checkpoint=args.checkpoint,
        env=args.env,
        deterministic=args.deterministic,
        seed=args.seed,
        video=args.video,
        video_steps=args.video_steps,
        device=args.device,
    )
    if args.json == "-":
        print(report.to_json(), flush=True)
        return 0
    _print_report(report)
    if args.json is not None:
        atomic_write_text(args.json, report.to_json() + "\n")
        _out(f"json     {args.json}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from lnn_control.runs.compare import compare_runs

    result = compare_runs(args.run_dirs, out=args.out, markdown=args.markdown)
    print(result.markdown, end="", flush=True)
    if result.plot is not None:
        _out(f"plot     {result.plot}")
    if result.markdown_file is not None:
        _out(f"table    {result.markdown_file}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from lnn_control.runs.config import RunSpec
    from lnn_control.runs.overrides import parse_grid, parse_seeds, parse_set
    from lnn_control.runs.sweep import run_sweep

    base = RunSpec(
        env=args.env,
        agent=args.agent,
        timesteps=args.timesteps,
        n_envs=args.n_envs,
        device=args.device,
        overrides=parse_set(args.set),
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        batched=args.batched,
    )
    result = run_sweep(
        base,
        parse_seeds(args.seeds),
        parse_grid(args.grid),
        args.out,
        workers=args.workers,
        backend=args.backend,
        ray_address=args.ray_address,
    )
    if result.comparison is not None:
        _out()
        print(result.comparison.markdown, end="", flush=True)
        _out(f"plot     {result.comparison.plot}")
        _out(f"table    {result.comparison.markdown_file}")
    if result.signal is not None:
        print(
            f"{PROG}: sweep interrupted; finished and interrupted runs are kept in {result.out} "
            f"(rerun the same command to continue)",
            file=sys.stderr,
        )
    elif result.failed:
        print(
            f"{PROG}: {len(result.failed)} of {len(result.outcomes)} runs failed (see above)", file=sys.stderr
        )
    return result.exit_code


def cmd_export(args: argparse.Namespace) -> int:
    from lnn_control.runs.run_export import DEFAULT_EXPORT_FORMATS, export_run

    formats = args.format or list(DEFAULT_EXPORT_FORMATS)
    paths = export_run(args.run_dir, formats, out=args.out, checkpoint=args.checkpoint, prefix=args.prefix)
    for role, path in paths.items():
        _out(f"{role:20s} {path}")
    return 0


# ------------------------------------------------------------------------------------------ the parser
_TRAIN_EPILOG = f"""\
examples:
  {PROG} train --env InvertedPendulum-NoVel-Jitter-v0 --agent liquid-ppo-cfc --timesteps 50000
  {PROG} train --env HalfCheetah-NoVel-v0 --agent liquid-ppo-ltc --seed 3 --out runs/hc-ltc-3 \\
      --set hyperparameters.learning_rate=1e-3 --set policy_kwargs.units=32
  {PROG} train --env my_task.yaml --agent my_agent.yaml --no-batched --device cuda
  {PROG} train --resume runs/hc-ltc-3                    # continue an interrupted run
  {PROG} train --resume runs/hc-ltc-3 --timesteps 2000000 # extend a finished run

The run directory holds config.yaml, checkpoints/{{best,last}}.zip, eval.csv, learning_curve.png, tb/ and
status.json. Ctrl-C or SIGTERM saves checkpoints/last.zip and exits with 130 / 143.
"""

_EVAL_EPILOG = f"""\
examples:
  {PROG} eval runs/my-run
  {PROG} eval runs/my-run --episodes 20 --checkpoint last --json report.json
  {PROG} eval runs/my-run --env InvertedPendulum-NoVel-v0     # same observations, other timing
  {PROG} eval runs/my-run --video pendulum.gif --video-steps 300
  MUJOCO_GL=osmesa {PROG} eval runs/my-run --video run.mp4     # software rendering; MP4 needs imageio-ffmpeg
"""

_COMPARE_EPILOG = f"""\
examples:
  {PROG} compare runs/cfc-seed0 runs/cfc-seed1 runs/lstm-seed0 --out curves.png --markdown table.md
  {PROG} compare runs/sweep-lr                               # every run found in a sweep folder
"""

_SWEEP_EPILOG = f"""\
examples:
  {PROG} sweep --env InvertedPendulum-NoVel-Jitter-v0 --agent liquid-ppo-cfc --seeds 0-4 \\
      --timesteps 50000 --workers 2 --out runs/sweep-seeds
  {PROG} sweep --env HalfCheetah-NoVel-v0 --agent liquid-ppo-cfc --seeds 0-2 \\
      --grid hyperparameters.learning_rate=3e-4,1e-3 --grid policy_kwargs.units=32,64 --out runs/grid
  ray start --head   # or an existing cluster; --out must be on storage all nodes share
  {PROG} sweep ... --backend ray --ray-address auto --out /shared/runs/grid

Runs are named <key>=<value>_..._seed<S> under --out; summary.md and curves.png are written at the end.
Running the same command again skips finished runs and resumes interrupted ones.
"""

_EXPORT_EPILOG = f"""\
examples:
  {PROG} export runs/my-run                          # TorchScript, ONNX and C into runs/my-run/export
  {PROG} export runs/my-run --format onnx --out controller/ --checkpoint last
  {PROG} export runs/my-run --format pt2 --format aoti  # torch.export; AOTInductor for C++ (needs g++)

ONNX needs the export extra: pip install 'lnn-control[export]'.
"""


def _add_train_like(p: argparse.ArgumentParser, *, fresh_defaults: bool) -> None:
    """Options shared by train and sweep (sweep takes --seeds instead of --seed)."""
    p.add_argument("--env", metavar="NAME|FILE", help="task catalogue id (envs/*.yaml) or a task YAML file")
    p.add_argument(
        "--agent",
        metavar="NAME|FILE",
        help="agent catalogue name (agents/*.yaml) or a YAML file; its per-task section for --env (tasks:) "
        "applies, below --set",
    )
    p.add_argument(
        "--timesteps", type=_positive_int, metavar="N", help="budget (default: the agent's n_timesteps)"
    )
    p.add_argument(
        "--n-envs", type=_positive_int, metavar="N", help="training envs (default: the agent's n_envs)"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a dotted key of the agent entry, value as YAML "
        "(e.g. hyperparameters.learning_rate=1e-3, policy_kwargs.units=32); repeatable",
    )
    p.add_argument(
        "--eval-freq", type=_positive_int, metavar="N", help="steps between evaluations (default: ~20)"
    )
    p.add_argument(
        "--eval-episodes", type=_positive_int, metavar="N", help="episodes per evaluation (default: 5)"
    )
    p.add_argument(
        "--batched",
        action=argparse.BooleanOptionalAction,
        default=None if not fresh_defaults else True,
        help="batched MuJoCo VecEnv (else Gymnasium envs); default: batched",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Train, evaluate, compare, sweep and export liquid-network (LTC/CfC/NCP) policies.",
        epilog=f"run '{PROG} COMMAND --help' for a command's options and examples",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_: str, epilog: str, threads: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, epilog=epilog, formatter_class=_Formatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        if threads:
            p.add_argument(
                "--torch-threads",
                type=_positive_int,
                default=1,
                metavar="N",
                help="torch CPU threads (default: 1, fastest for small policies next to the physics threads)",
            )
        return p

    p = command("train", "train a policy into a run directory (or resume one)", _TRAIN_EPILOG, threads=True)
    _add_train_like(p, fresh_defaults=False)
    p.add_argument("--seed", type=_seed, metavar="S", help="seed (default: 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="torch device (default: auto)")
    p.add_argument(
        "--out", metavar="DIR", help="run directory (default: runs/<env>__<agent>__seed<S>__<time>)"
    )
    p.add_argument(
        "--checkpoint-freq",
        type=_positive_int,
        metavar="N",
        help="steps between 'last' checkpoints (default: as --eval-freq)",
    )
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from checkpoints/last.zip")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )
    p.set_defaults(func=cmd_train)

    p = command(
        "eval",
        "evaluate a run's policy (optionally under another task, with a video)",
        _EVAL_EPILOG,
        threads=True,
    )
    p.add_argument("run_dir", metavar="DIR", help="run directory")
    p.add_argument("--episodes", type=_positive_int, default=10, metavar="N", help="episodes (default: 10)")
    p.add_argument("--env", metavar="NAME|FILE", help="evaluate under this task instead of the training task")
    p.add_argument(
        "--checkpoint", choices=("best", "last"), default="best", help="which checkpoint (default: best)"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--deterministic",
        dest="deterministic",
        action="store_true",
        default=True,
        help="the policy's mean action",
    )
    mode.add_argument("--stochastic", dest="deterministic", action="store_false", help="sampled actions")
    p.add_argument("--seed", type=_seed, metavar="S", help="env seed (default: the run's evaluation seed)")
    p.add_argument("--video", metavar="FILE.gif|FILE.mp4", help="record a video of one env (offscreen)")
    p.add_argument(
        "--video-steps",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="frames to record (default: 1000)",
    )
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the result as JSON to FILE (no FILE: print JSON instead of text)",
    )
    p.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="cpu", help="torch device (default: cpu)"
    )
    p.set_defaults(func=cmd_eval)

    p = command("compare", "plot learning curves and tabulate returns of several runs", _COMPARE_EPILOG)
    p.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directories, or folders holding runs")
    p.add_argument(
        "--out", default="compare.png", metavar="FILE.png", help="learning-curve plot (default: compare.png)"
    )
    p.add_argument("--markdown", metavar="FILE.md", help="also write the table to this file")
    p.set_defaults(func=cmd_compare)

    p = command("sweep", "train seeds x grid values in parallel (local processes or Ray)", _SWEEP_EPILOG)
    _add_train_like(p, fresh_defaults=True)
    p.add_argument("--seeds", default="0", metavar="SEEDS", help="seeds: 0-4, 0,1,2 or 0-2,7 (default: 0)")
    p.add_argument(
        "--grid", action="append", metavar="KEY=V1,V2", help="values of a dotted agent key; repeatable"
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="cpu",
        help="torch device of each run (default: cpu)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="runs at a time (default: CPU count locally, cluster-scheduled on Ray)",
    )
    p.add_argument(
        "--backend", choices=("local", "ray"), default="local", help="where runs execute (default: local)"
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster address ('auto', 'ray://host:10001'); default: start a local Ray instance",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="sweep folder")
    p.set_defaults(func=cmd_sweep, eval_episodes=5)

    p = command("export", "export a run's controller (TorchScript, ONNX, C, torch.export)", _EXPORT_EPILOG)
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory")
    p.add_argument(
        "--format",
        action="append",
        choices=("torchscript", "onnx", "c", "pt2", "aoti"),
        help="format; repeatable (default: torchscript, onnx and c)",
    )
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/export)")
    p.add_argument(
        "--checkpoint", choices=("best", "last"), default="best", help="which checkpoint (default: best)"
    )
    p.add_argument("--prefix", default="policy", help="file stem and C symbol prefix (default: policy)")
    p.set_defaults(func=cmd_export)
    return parser


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lnn-control`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed as one line)
        return int(exc.code or 0)
    try:
        from tqdm import TqdmExperimentalWarning

        warnings.filterwarnings("ignore", category=TqdmExperimentalWarning)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        pass
    from lnn_control.extras import MissingExtraError
    from lnn_control.runs.errors import RunError

    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except (RunError, MissingExtraError, ValueError, FileNotFoundError, KeyError) as exc:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
