"""Benchmark: single-step (batch 1) latency of exported actors, every runtime in the same run, one table.

Policies (untrained, LiquidPPO default heads pi=[64]) on a 17-observation, 6-action Box task (HalfCheetah's
sizes): CfC-64 (backbone 128), LTC-64 (6 unfolds, semi-implicit), and NCP-19 (``AutoNCP(19, 6)``) with a
CfC and with an LTC core. Runtimes: torch eager (the exported ActorStep module) and SB3 predict, TorchScript,
the torch.export program (and with ``--aoti`` its AOTInductor package, compiled here: minutes),
onnxruntime (1 intra-op thread; raw ``run`` and ``Controller.step``), the generated C step timed in a C
loop and called through ctypes. torch runs on one thread. Medians and p99 in microseconds.

Usage: ``python scripts/bench_export.py [--repeats N] [--c-repeats N] [--cflags "-std=c99 -O2"] [--aoti]``.
"""

from __future__ import annotations

import argparse
import os
import platform

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.export import build_actor
from lnn_control.export.bench import C_TIMING_FLAGS, bench_actor
from lnn_control.nn import AutoNCP
from lnn_control.sb3 import LiquidPPO

OBS, ACT, DT = 17, 6, 0.05
TARGETS_US = {("CfC-64", "c (loop)"): 20.0, ("NCP-19 CfC", "c (loop)"): 5.0, ("CfC-64", "onnxruntime"): 30.0}


class BoxTask(gym.Env):
    """A do-nothing task with HalfCheetah's observation/action sizes and a 0.05 s control period."""

    dt = DT

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (ACT,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(OBS, np.float32), {}

    def step(self, action):
        return np.zeros(OBS, np.float32), 0.0, False, False, {"dt": DT}


def policies() -> dict[str, dict]:
    return {
        "CfC-64": dict(cell="cfc", units=64),
        "LTC-64": dict(cell="ltc", units=64, cell_kwargs=dict(unfolds=6)),
        "NCP-19 CfC": dict(cell="cfc", units=19, wiring=AutoNCP(19, ACT)),
        "NCP-19 LTC": dict(cell="ltc", units=19, wiring=AutoNCP(19, ACT)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2000, help="timed calls per Python runtime")
    parser.add_argument("--c-repeats", type=int, default=20000, help="timed calls in the C loop")
    parser.add_argument("--cflags", default=" ".join(C_TIMING_FLAGS), help="gcc flags of the C builds")
    parser.add_argument("--aoti", action="store_true", help="also the AOTInductor package (compiles C++)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rows = []
    for name, kwargs in policies().items():
        env = DummyVecEnv([BoxTask])
        model = LiquidPPO(
            "LiquidPolicy", env, n_steps=32, seq_len=32, batch_size=32, seed=0, policy_kwargs=kwargs
        )
        actor, meta = build_actor(model)
        predict_state = {"s": None}

        def predict(obs, model=model, predict_state=predict_state):
            _, predict_state["s"] = model.predict(obs, predict_state["s"], deterministic=True, dt=DT)

        results = bench_actor(
            actor, meta, repeats=args.repeats, c_repeats=args.c_repeats, cflags=tuple(args.cflags.split()),
            predict=predict, aoti=args.aoti,
        )  # fmt: skip
        for runtime, (median, p99) in results.items():
            target = TARGETS_US.get((name, runtime))
            rows.append((name, runtime, median, p99, "" if target is None else f"<= {target:g}"))
    load_after = os.getloadavg()

    print(f"# exported actor step latency, batch 1 ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread; C: gcc {args.cflags})")  # fmt: skip
    print(f"# load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    print(
        f"# {args.repeats} timed calls per Python runtime, {args.c_repeats} in the C loop, "
        "interleaved in 10 rounds"
    )
    print(f"| {'policy':<11} | {'runtime':<16} | {'median us':>9} | {'p99 us':>8} | {'target':>7} |")
    print(f"|{'-' * 13}|{'-' * 18}|{'-' * 11}:|{'-' * 9}:|{'-' * 9}|")
    for name, runtime, median, p99, target in rows:
        print(f"| {name:<11} | {runtime:<16} | {median:>9.2f} | {p99:>8.2f} | {target:>7} |")


if __name__ == "__main__":
    main()
