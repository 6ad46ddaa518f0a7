"""LiquidSAC's critic arrangement on a continuous-action memory task: CueHoldEnv (cue at the first step, held
for ``hold`` steps), final deterministic return after a fixed budget, several seeds; SAC-MLP as the floor.

    python scripts/bench_sac_memory.py --timesteps 4000 --seeds 0 1 2

A feed-forward policy's best return is ``-hold`` (action 0); perfect recall is 0.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch as th
from stable_baselines3 import SAC

from lnn_control.sb3 import LiquidSAC, evaluate_agent
from lnn_control.sb3.diagnostic_envs import CueHoldEnv
from lnn_control.sim import make_vec_env

ARMS = ("cfc-separate", "cfc-detached", "mlp")


def build(arm: str, env, seed: int):  # type: ignore[no-untyped-def]
    common = dict(
        learning_starts=200, gamma=0.9, learning_rate=3e-3, seed=seed, train_freq=1, gradient_steps=1
    )
    if arm == "mlp":
        return SAC("MlpPolicy", env, batch_size=128, policy_kwargs=dict(net_arch=[64, 64]), **common)
    critic = arm.split("-")[1]
    return LiquidSAC(
        "LiquidPolicy",
        env,
        batch_size=128,
        chunk_len=20,
        burn_in=4,
        buffer_size=20_000,
        policy_kwargs=dict(units=16, net_arch=[64, 64], critic=critic, cell_kwargs=dict(backbone_units=32)),
        **common,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timesteps", type=int, default=4000)
    parser.add_argument("--hold", type=int, default=10)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    args = parser.parse_args()
    th.set_num_threads(1)
    print(f"CueHoldEnv(hold={args.hold}), {args.timesteps} steps, n_envs={args.n_envs}; floor {-args.hold}")
    print("| agent | seeds | final return (mean +- std) | per seed | wall s |")
    print("|---|---|---|---|---|")
    for arm in args.arms:
        finals, walls = [], []
        for seed in args.seeds:
            env = make_vec_env(lambda: CueHoldEnv(hold=args.hold), n_envs=args.n_envs, seed=seed)
            model = build(arm, env, seed)
            start = time.perf_counter()
            model.learn(args.timesteps)
            walls.append(time.perf_counter() - start)
            eval_env = make_vec_env(lambda: CueHoldEnv(hold=args.hold), n_envs=4, seed=1000 + seed)
            returns, _ = evaluate_agent(model, eval_env, n_eval_episodes=40, deterministic=True)
            finals.append(float(np.mean(returns)))
        print(
            f"| {arm} | {len(finals)} | {np.mean(finals):.2f} +- {np.std(finals):.2f} | "
            f"{', '.join(f'{f:.2f}' for f in finals)} | {np.mean(walls):.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
