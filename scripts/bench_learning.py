"""Return after a fixed training budget: PPO-MLP vs RecurrentPPO vs LiquidPPO (CfC, LTC, NCP), several seeds.

Four suites:

- ``--suite pendulum`` (default): InvertedPendulum variants, in this process (below).
- ``--suite mujoco``: Hopper/Walker2d/HalfCheetah with velocities hidden and a jittered control period, and
  fully observed Hopper; 300k steps (``--long``: 1M), 3 seeds. Runs go through the sweep machinery
  (``lnn_control.runs.sweep.run_sweeps``: parallel workers, ``--backend ray`` for a cluster) into
  ``--out`` (default ``~/lnn-control-bench/mujoco-<steps>``), one resumable sweep folder per task and agent:
  re-running the same command skips finished runs and resumes interrupted ones, so the suite can run in
  pieces (``--tasks``, ``--agents``, ``--seeds``). Each finished run's final policy is then evaluated at 0.5x,
  1x and 2x its nominal control period (``lnn_control.runs.timing_eval``) and, for liquid agents on jittered
  tasks, with the nominal dt fed instead of the real one. ``--report-only`` writes the table
  (``<report-dir>/bench_mujoco.md``), the records (``.json``) and the curves (``.png``) of finished runs.
- ``--suite sac``: the off-policy comparison of issue 13 through the same machinery: HalfCheetah and Hopper
  with velocities hidden and a jittered period, and fully observed HalfCheetah; sac-mlp, sac-lstm,
  liquid-sac-cfc and LiquidPPO-CfC; 200k steps, 3 seeds; report ``<report-dir>/bench_sac.md``.
- ``--suite clock``: does the policy use the time between steps? ``IntervalTimingEnv`` (act once 0.5 s have
  passed since a cue, on a period jittered to 0.2-1.8x nominal), every agent of the mujoco suite with its
  catalogue hyperparameters, 100k steps, 3 seeds; each final policy evaluated with the real dt and (liquid
  ones) with the nominal dt fed instead (``lnn_control.runs.clock_suite``). One record per run in
  ``--out-dir`` (default ``~/lnn-control-bench/clock-100k``): re-running resumes. Report
  ``<report-dir>/bench_clock.md``.

The pendulum suite:

Tasks (the lnn catalogue): fully observed, velocity-masked, and velocity-masked with a jittered control
period. Agents come from agents/*.yaml, with their per-task section (``tasks:``) for the task. Each run
trains for ``--timesteps`` env steps, records the mean training-episode return after every update (learning
curve), then evaluates the final policy on fresh envs (deterministic, VecNormalize statistics frozen; liquid
policies get each step's real dt from infos).
Prints a mean +- std table over seeds and writes a learning-curve PNG.

    python scripts/bench_learning.py --timesteps 20000 --seeds 0 1
    python scripts/bench_learning.py --tasks T --agents A --save-json a.json   # one part of a parallel run
    python scripts/bench_learning.py --merge a.json b.json --out curves.png     # report the parts together
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from lnn_control.runs.callback import TrainingCurve
from lnn_control.sb3.agent_evaluation import evaluate_agent
from lnn_control.sb3.agents import agent_for_task, build_agent, describe_task_section, load_agent_config

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TASKS = ["InvertedPendulum-v0", "InvertedPendulum-NoVel-v0", "InvertedPendulum-NoVel-Jitter-v0"]
AGENTS = ["ppo-mlp", "ppo-lstm", "liquid-ppo-cfc", "liquid-ppo-ltc"]
MUJOCO_TASKS = [
    "Hopper-NoVel-Jitter-v0",
    "Walker2d-NoVel-Jitter-v0",
    "HalfCheetah-NoVel-Jitter-v0",
    "Hopper-v0",
]
MUJOCO_AGENTS = ["ppo-mlp", "ppo-lstm", "liquid-ppo-cfc", "liquid-ppo-ltc", "liquid-ppo-ncp"]
SAC_TASKS = ["HalfCheetah-NoVel-Jitter-v0", "Hopper-NoVel-Jitter-v0", "HalfCheetah-v0"]
SAC_AGENTS = ["sac-mlp", "sac-lstm", "liquid-sac-cfc", "liquid-ppo-cfc"]


def make_env(task: str, n_envs: int, seed: int, threads: int = 1) -> VecEnv:
    """The catalogue task as a batched VecEnv (lnn_control.sim) stepping on ``threads`` threads."""
    from lnn_control.sim import make_vec_env

    return make_vec_env(task, n_envs, seed=seed, nthread=threads)


def run(task: str, agent: str, seed: int, args: argparse.Namespace) -> tuple[float, list[tuple[int, float]]]:
    config = agent_for_task(load_agent_config(agent), task)  # the agent's per-task section, if any
    if (line := describe_task_section(config)) is not None:
        print(line, flush=True)
    env = make_env(task, config["n_envs"], seed, args.threads)
    model = build_agent(config, env, seed=seed, device=args.device)
    curve = TrainingCurve()
    model.learn(args.timesteps, callback=curve)
    eval_env = make_env(task, args.eval_envs, seed + 10_000, args.threads)
    train_env = model.get_env()
    if isinstance(train_env, VecNormalize):
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        eval_env.obs_rms = train_env.obs_rms
    returns, _ = evaluate_agent(model, eval_env, n_eval_episodes=args.eval_episodes)
    return float(returns.mean()), curve.points


def report(records: list[dict], out: Path) -> None:
    """Print the mean +- std table over seeds and write the learning-curve PNG."""
    tasks = list(dict.fromkeys(r["task"] for r in records))
    agents = list(dict.fromkeys(r["agent"] for r in records))
    budget = max(r["timesteps"] for r in records)
    by_key: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        by_key.setdefault((r["task"], r["agent"]), []).append(r)
    seeds = sorted({r["seed"] for r in records})
    print(f"\n## Evaluation return after {budget} env steps (seeds {seeds}, mean +- std over seeds)\n")
    print("| agent | " + " | ".join(tasks) + " |")
    print("|---|" + "---:|" * len(tasks))
    for agent in agents:
        cells = []
        for task in tasks:
            scores = [r["score"] for r in by_key.get((task, agent), [])]
            cells.append(
                f"{np.mean(scores):.1f} +- {np.std(scores):.1f} (n={len(scores)})" if scores else "-"
            )
        print(f"| {agent} | " + " | ".join(cells) + " |")

    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    grid = np.linspace(0, budget, 50)
    for ax, task in zip(axes[0], tasks, strict=True):
        for agent in agents:
            runs = [np.array(r["curve"]) for r in by_key.get((task, agent), []) if r["curve"]]
            if not runs:
                continue
            interpolated = np.stack([np.interp(grid, run[:, 0], run[:, 1]) for run in runs])
            mean, std = interpolated.mean(0), interpolated.std(0)
            ax.plot(grid, mean, label=agent)
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel("training episode return (last 20)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"\nlearning curves: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", choices=["pendulum", "mujoco", "sac", "clock"], default="pendulum")
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--agents", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--timesteps",
        type=int,
        default=None,
        help="default: 50k (pendulum), 300k (mujoco), 200k (sac), 100k (clock)",
    )
    parser.add_argument("--long", action="store_true", help="mujoco: 1M steps (a bigger machine)")
    parser.add_argument("--workers", type=int, default=None, help="mujoco: runs at a time (default: CPUs)")
    parser.add_argument("--backend", choices=["local", "ray"], default="local")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--report-only", action="store_true", help="mujoco: only write the report")
    parser.add_argument("--report-dir", type=Path, default=Path("docs"))
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--eval-envs", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench_learning.png"), help="pendulum: the PNG")
    parser.add_argument("--out-dir", type=Path, default=None, help="mujoco: the sweeps' folder")
    parser.add_argument("--save-json", type=Path, default=None, help="also write the runs' records here")
    parser.add_argument(
        "--merge", nargs="+", type=Path, default=None, help="only report: merge records from these JSON files"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.suite == "clock":
        from lnn_control.runs.clock_suite import CLOCK_AGENTS, run_clock_suite

        steps = args.timesteps or 100_000
        run_clock_suite(
            agents=args.agents or CLOCK_AGENTS,
            seeds=args.seeds,
            timesteps=steps,
            out=args.out_dir or Path.home() / "lnn-control-bench" / f"clock-{steps // 1000}k",
            report_dir=args.report_dir,
            report_only=args.report_only,
        )
        return
    if args.suite in ("mujoco", "sac"):
        from lnn_control.runs.suite import run_learning_suite

        sac = args.suite == "sac"
        steps = args.timesteps or (200_000 if sac else 1_000_000 if args.long else 300_000)
        run_learning_suite(
            tasks=args.tasks or (SAC_TASKS if sac else MUJOCO_TASKS),
            agents=args.agents or (SAC_AGENTS if sac else MUJOCO_AGENTS),
            seeds=args.seeds,
            timesteps=steps,
            out=args.out_dir or Path.home() / "lnn-control-bench" / f"{args.suite}-{steps // 1000}k",
            report_name=f"bench_{args.suite}",
            report_dir=args.report_dir,
            workers=args.workers,
            backend=args.backend,
            ray_address=args.ray_address,
            report_only=args.report_only,
        )
        return
    args.tasks = args.tasks or TASKS
    args.agents = args.agents or AGENTS
    args.timesteps = args.timesteps or 50_000

    if args.merge:
        records = [r for path in args.merge for r in json.loads(path.read_text())]
        report(records, args.out)
        return
    records = []
    for task in args.tasks:
        for agent in args.agents:
            for seed in args.seeds:
                start = time.perf_counter()
                score, points = run(task, agent, seed, args)
                seconds = time.perf_counter() - start
                records.append(
                    dict(task=task, agent=agent, seed=seed, timesteps=args.timesteps, score=score,
                         curve=points, seconds=seconds)
                )  # fmt: skip
                print(f"{task} {agent} seed={seed}: {score:.1f} ({seconds:.0f} s)", flush=True)
                if args.save_json:
                    args.save_json.write_text(json.dumps(records))
    report(records, args.out)


if __name__ == "__main__":
    main()
