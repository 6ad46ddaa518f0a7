"""The main job (``make train``): train a liquid policy where memory and timing matter, evaluate it under
fixed and jittered timing, plot its learning curve and export the controller.

Default: ``liquid-ppo-cfc`` (LiquidPPO, 64-unit CfC) on ``InvertedPendulum-NoVel-Jitter-v0``, the pendulum
with its velocities hidden (the policy must infer them from the history of positions) and a control period
jittered between 0.02 and 0.06 s (reported to the policy as each step's dt). Equivalent to::

    lnn-control train --env InvertedPendulum-NoVel-Jitter-v0 --agent liquid-ppo-cfc --timesteps 60000 \\
        --eval-freq 8192 --out runs/main-<time>
    lnn-control eval runs/main-<time> --episodes 20                                  # jittered timing
    lnn-control eval runs/main-<time> --episodes 20 --env InvertedPendulum-NoVel-v0  # fixed 0.04 s
    lnn-control export runs/main-<time>

Ctrl-C saves a checkpoint; ``python scripts/train_default.py --resume runs/main-<time>`` continues it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

ENV = "InvertedPendulum-NoVel-Jitter-v0"
FIXED_RATE_ENV = "InvertedPendulum-NoVel-v0"
AGENT = "liquid-ppo-cfc"
TIMESTEPS = 60_000
EVAL_FREQ = 8_192
FINAL_EPISODES = 20


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timesteps", type=int, default=TIMESTEPS, help=f"budget (default {TIMESTEPS:,})")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--out", help="run directory (default runs/main-<time>)")
    parser.add_argument("--resume", metavar="DIR", help="continue an interrupted main job")
    parser.add_argument("--episodes", type=int, default=FINAL_EPISODES, help="final evaluation episodes")
    return parser.parse_args(argv)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    import torch

    torch.set_num_threads(1)  # small recurrent nets: one thread is fastest; physics uses the other core
    from lnn_control.runs import RunError, RunSpec, evaluate_run, export_run, resume, train

    started = time.monotonic()
    print(f"lnn-control main job: {AGENT} (liquid CfC policy) on {ENV}")
    print(
        "  pendulum with hidden velocities, control period jittered in 0.02-0.06 s (dt given to the policy)\n"
    )
    try:
        if args.resume:
            result = resume(args.resume, progress_bar=sys.stderr.isatty())
        else:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            spec = RunSpec(
                ENV, AGENT, timesteps=args.timesteps, seed=args.seed, eval_freq=EVAL_FREQ, device="cpu"
            )
            result = train(spec, args.out or f"runs/main-{stamp}", progress_bar=sys.stderr.isatty())
    except RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run = result.run_dir
    if result.status == "interrupted":
        print(
            f"\ninterrupted at {result.timesteps:,d} steps; checkpoint saved to {result.checkpoint}\n"
            f"continue with: python scripts/train_default.py --resume {run}",
            file=sys.stderr,
        )
        return result.exit_code

    print(f"\nevaluating the best checkpoint ({args.episodes} episodes each, deterministic) ...")
    reports = [
        ("jittered 0.02-0.06 s (trained)", evaluate_run(run, episodes=args.episodes)),
        ("fixed 0.04 s", evaluate_run(run, episodes=args.episodes, env=FIXED_RATE_ENV)),
    ]
    try:
        exported = export_run(run)
        controller = f"{exported['onnx']} (+ {exported['torchscript'].name}, {exported['c_source'].name}/.h)"
    except (RunError, ImportError) as exc:  # the export extra (onnx) may be missing
        controller = f"not exported ({exc})"

    best = result.best
    width = max(len(r.env) for _, r in reports)
    print("\n" + "=" * 78)
    print(f"run directory   {run}")
    print(f"training        {result.timesteps:,d} steps in {_duration(result.wall_time_s)}")
    if best is not None:
        print(f"best evaluation {best.mean:.1f} ± {best.std:.1f} at {best.timesteps:,d} steps (max 1000)")
    print("best checkpoint under both timings:")
    print(f"  {'task':<{width}}  {'control period':<30} {'return':>16}  {'min':>7} {'max':>7}")
    for timing, report in reports:
        s = report.stats
        stats = f"{s.mean:>7.1f} ± {s.std:<6.1f}  {s.min:>7.1f} {s.max:>7.1f}"
        print(f"  {report.env:<{width}}  {timing:<30} {stats}")
    print(f"learning curve  {Path(run) / 'learning_curve.png'}")
    print(f"controller      {controller}")
    print(f"TensorBoard     tensorboard --logdir {Path(run) / 'tb'}")
    print(f"video           lnn-control eval {run} --video {Path(run) / 'pendulum.gif'} --video-steps 300")
    print(f"total time      {_duration(time.monotonic() - started)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
