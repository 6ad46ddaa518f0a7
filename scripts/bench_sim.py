"""Throughput of BatchedMujocoVecEnv vs SB3 DummyVecEnv / SubprocVecEnv over gymnasium.make("<Task>-v5").

Env-steps per second (control steps x envs), random actions (pre-drawn, float32), auto-reset included;
median over interleaved repeats, ratio vs DummyVecEnv in the same run. Usage:

    .venv/bin/python scripts/bench_sim.py [--quick] [--task HalfCheetah] [--envs 1 16 64 256]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from lnn_control.sim.batched import BatchedMujocoVecEnv


def _make_gym(task: str) -> Callable[[], gym.Env]:
    return lambda: gym.make(f"{task}-v5")


def build(kind: str, task: str, n_envs: int, nthread: int) -> VecEnv:
    if kind == "batched":
        return BatchedMujocoVecEnv(task, n_envs, seed=0, nthread=nthread)
    if kind == "dummy":
        return DummyVecEnv([_make_gym(task)] * n_envs)
    if kind == "subproc":
        return SubprocVecEnv([_make_gym(task)] * n_envs, start_method="fork")
    raise ValueError(f"unknown kind {kind!r}")


class Runner:
    """A VecEnv with pre-drawn random actions; ``run()`` times one pass of ``steps`` control steps."""

    def __init__(self, venv: VecEnv, steps: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        low, high = venv.action_space.low, venv.action_space.high
        self.venv = venv
        self.actions = rng.uniform(low, high, size=(steps, venv.num_envs, low.size)).astype(np.float32)
        venv.seed(seed)
        venv.reset()
        for a in self.actions[: max(1, steps // 10)]:  # warm-up
            venv.step(a)

    def run(self) -> float:
        """Env-steps per second of one pass."""
        t0 = time.perf_counter()
        for a in self.actions:
            self.venv.step(a)
        return self.actions.shape[0] * self.venv.num_envs / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="HalfCheetah")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--kinds", nargs="+", default=["batched", "dummy", "subproc"])
    parser.add_argument("--env-steps", type=int, default=6_000, help="env-steps per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nthread", type=int, default=0, help="batch threads (0: all CPUs)")
    parser.add_argument("--quick", action="store_true", help="4x fewer steps, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.env_steps, args.repeats = args.env_steps // 4, 3

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    load0 = os.getloadavg()[0]
    print(
        f"# {args.task}-v5, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.repeats} repeats (median), ~{args.env_steps} env-steps each, random actions"
    )
    header = f"{'n_envs':>6} | " + " | ".join(f"{k + ' steps/s':>17} | {'x dummy':>7}" for k in args.kinds)
    print(header)
    print("-" * len(header))
    for n in args.envs:
        steps = max(20, args.env_steps // n)
        runners = {kind: Runner(build(kind, args.task, n, args.nthread), steps) for kind in args.kinds}
        samples: dict[str, list[float]] = {kind: [] for kind in args.kinds}
        try:
            for _ in range(args.repeats):  # interleaved, so that load changes hit every kind alike
                for kind, runner in runners.items():
                    samples[kind].append(runner.run())
        finally:
            for runner in runners.values():
                runner.venv.close()
        rates = {kind: statistics.median(v) for kind, v in samples.items()}
        ref = rates.get("dummy")
        cells = [f"{rates[k]:17.0f} | {rates[k] / ref if ref else float('nan'):7.2f}" for k in args.kinds]
        print(f"{n:>6} | " + " | ".join(cells), flush=True)
    print(
        f"# 1-min load average: start {load0:.1f}, end {os.getloadavg()[0]:.1f} (on a loaded machine the "
        "ratios understate the batched env, whose batch threads need idle cores)"
    )


if __name__ == "__main__":
    main()
