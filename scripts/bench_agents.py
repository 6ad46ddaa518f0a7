"""Training throughput of LiquidPPO vs sb3-contrib RecurrentPPO vs PPO (MLP), in env-steps per second.

Every agent comes from the catalogue (agents/*.yaml) with the same n_envs, n_steps, batch_size and n_epochs
(overridden here), on the same Gymnasium v5 MuJoCo tasks (SB3 DummyVecEnv), in one process with one torch
thread. Throughput = env steps / wall time of ``learn`` (rollouts + PPO updates), after a warm-up update; the
reported figure is the median over updates timed round-robin across the agents.

    python scripts/bench_agents.py            # --quick: 3 updates of 8 x 256 steps per agent and task
    python scripts/bench_agents.py --updates 5 --tasks HalfCheetah-v5
    python scripts/bench_agents.py --torch-loops   # also each liquid agent on its cells' torch loops
    python scripts/bench_agents.py --sac --tasks HalfCheetah-v5   # LiquidSAC vs SB3 SAC-MLP (one env)

``--torch-loops`` adds a "[torch loop]" row per liquid agent, trained with the compiled CfC/LTC kernels
turned off: the kernels' effect on training throughput, measured in the same run.

``--sac``: the off-policy agents (catalogue sizes: batch 256, one gradient step per env step, one env, replay
buffer 20k, learning after 1000 steps), timed over rounds of ``--sac-steps`` env steps (collection +
gradient steps), round-robin, median.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch
from stable_baselines3.common.base_class import BaseAlgorithm

from lnn_control.nn import cfc_native, ltc_native
from lnn_control.sb3.agents import build_agent
from lnn_control.sim import make_vec_env

TORCH_LOOP = " [torch loop]"  # label suffix: the agent trains with the compiled cell kernels off

# (label, catalogue agent, policy_kwargs overrides, algorithm overrides)
AGENTS: list[tuple[str, str, dict, dict]] = [
    ("PPO MLP 64x64", "ppo-mlp", {}, {}),
    ("RecurrentPPO LSTM 64 (actor+critic LSTMs)", "ppo-lstm", {}, {}),
    ("LiquidPPO CfC 64 (detached critic, default)", "liquid-ppo-cfc", {}, {}),
    ("LiquidPPO CfC 64 (detached, seq_len 16)", "liquid-ppo-cfc", {}, {"seq_len": 16}),
    ("LiquidPPO CfC 64 (separate critic)", "liquid-ppo-cfc", {"critic": "separate"}, {}),
    ("LiquidPPO LTC 64 (detached)", "liquid-ppo-ltc", {}, {}),
    ("LiquidPPO LSTM 64 (detached)", "liquid-ppo-cfc", {"cell": "lstm", "cell_kwargs": {}}, {}),
    ("LiquidPPO LTC-NCP 48 (detached)", "liquid-ppo-ncp", {}, {}),
    ("LiquidPPO CfC-NCP 48 (detached)", "liquid-ppo-ncp-cfc", {}, {}),
]
SAC_AGENTS: list[tuple[str, str, dict, dict]] = [
    ("SAC MLP 256x256", "sac-mlp", {}, {}),
    ("LiquidSAC CfC 64 (separate critics)", "liquid-sac-cfc", {}, {}),
    ("LiquidSAC CfC 64 (detached critics)", "liquid-sac-cfc", {"critic": "detached"}, {}),
    ("LiquidSAC LSTM 64 (separate critics)", "sac-lstm", {}, {}),
]


def build_sac(agent: str, policy_kwargs: dict, task: str, args: argparse.Namespace) -> BaseAlgorithm:
    """An off-policy catalogue agent on ``task``, its buffer warmed past ``learning_starts``."""
    env = make_vec_env(task, n_envs=1, seed=0)
    model = build_agent(
        agent, env, buffer_size=20_000, learning_starts=1000, seed=0, device=args.device,
        policy_kwargs=policy_kwargs,
    )  # fmt: skip
    model.learn(1000 + args.sac_steps)  # random warm-up, then first training steps
    return model


def build(
    agent: str, policy_kwargs: dict, overrides: dict, task: str, args: argparse.Namespace
) -> BaseAlgorithm:
    """The catalogue agent on ``task`` with the benchmark's common sizes, after one warm-up update."""
    env = make_vec_env(task, n_envs=args.n_envs, seed=0)
    model = build_agent(
        agent,
        env,
        n_steps=args.n_steps,
        batch_size=args.batch_size,
        n_epochs=args.n_epochs,
        seed=0,
        device=args.device,
        policy_kwargs=policy_kwargs,
        **overrides,
    )
    model.learn(args.n_envs * args.n_steps)  # warm-up: allocation, first-call overheads
    return model


def torch_loops(label: str) -> contextlib.AbstractContextManager:
    """The compiled cell kernels off for a "[torch loop]" row, else nothing."""
    if not label.endswith(TORCH_LOOP):
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(cfc_native.disabled())
    stack.enter_context(ltc_native.disabled())
    return stack


def measure(models: dict, args: argparse.Namespace, per_update: int | None = None) -> dict[str, float]:
    """Median env steps per second of one PPO update (rollout + training) per agent.

    Updates are timed round-robin over the agents, so that load changes on a shared machine hit all alike.
    """
    per_update = per_update or args.n_envs * args.n_steps
    samples: dict[str, list[float]] = {label: [] for label in models}
    for _ in range(args.updates):
        for label, model in models.items():
            with torch_loops(label):
                start = time.perf_counter()
                model.learn(per_update, reset_num_timesteps=False)
                samples[label].append(per_update / (time.perf_counter() - start))
    return {label: statistics.median(rates) for label, rates in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["InvertedPendulum-v5", "HalfCheetah-v5"])
    parser.add_argument("--n-envs", type=int, default=8)
    parser.add_argument("--n-steps", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-epochs", type=int, default=10)
    parser.add_argument("--updates", type=int, default=3, help="timed PPO updates per agent and task")
    parser.add_argument("--quick", action="store_true", help="the default sizes (kept for the Makefile)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None, help="substrings of agent labels to run")
    parser.add_argument(
        "--torch-loops", action="store_true", help="also each liquid agent with the compiled kernels off"
    )
    parser.add_argument("--sac", action="store_true", help="the off-policy agents (LiquidSAC vs SAC-MLP)")
    parser.add_argument("--sac-steps", type=int, default=200, help="--sac: env steps per timed round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.sac:
        main_sac(args)
        return

    print(
        f"# {platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), device {args.device}; "
        f"n_envs={args.n_envs} n_steps={args.n_steps} batch_size={args.batch_size} "
        f"n_epochs={args.n_epochs}; median of {args.updates} round-robin updates of "
        f"{args.n_envs * args.n_steps} steps"
    )
    agents = [a for a in AGENTS if args.only is None or any(s in a[0] for s in args.only)]
    if args.torch_loops:
        liquid = [(label + TORCH_LOOP, *rest) for label, *rest in agents if label.startswith("LiquidPPO")]
        agents += liquid
    for task in args.tasks:
        models = {}
        for label, agent, kwargs, extra in agents:
            with torch_loops(label):
                models[label] = build(agent, kwargs, extra, task, args)
        rates = measure(models, args)
        mlp = rates.get(AGENTS[0][0])
        lstm = rates.get(AGENTS[1][0])
        print(f"\n## {task}\n")
        print("| agent | env-steps/s | vs PPO-MLP | vs RecurrentPPO |")
        print("|---|---:|---:|---:|")
        for label, rate in rates.items():
            vs_mlp = f"{rate / mlp:.2f}x" if mlp else "-"
            vs_lstm = f"{rate / lstm:.2f}x" if lstm else "-"
            print(f"| {label} | {rate:,.0f} | {vs_mlp} | {vs_lstm} |", flush=True)


def main_sac(args: argparse.Namespace) -> None:
    """``--sac``: env steps per second of LiquidSAC agents vs SB3 SAC-MLP, same run."""
    print(
        f"# {platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), device {args.device}; "
        f"one env, batch 256, 1 gradient step per env step; median of {args.updates} round-robin rounds "
        f"of {args.sac_steps} steps"
    )
    agents = [a for a in SAC_AGENTS if args.only is None or any(s in a[0] for s in args.only)]
    for task in args.tasks:
        models = {label: build_sac(agent, kwargs, task, args) for label, agent, kwargs, _ in agents}
        rates = measure(models, args, per_update=args.sac_steps)
        mlp = rates.get(SAC_AGENTS[0][0])
        print(f"\n## {task}\n")
        print("| agent | env-steps/s | vs SAC-MLP |")
        print("|---|---:|---:|")
        for label, rate in rates.items():
            print(f"| {label} | {rate:,.1f} | {f'{rate / mlp:.2f}x' if mlp else '-'} |", flush=True)


if __name__ == "__main__":
    main()
