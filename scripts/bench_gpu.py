"""Batched-rollout throughput of the MJX backend beside the CPU batched backend, in one run.

1. Physics only (random actions, auto-reset included): env steps per second of ``MjxVecEnv`` at each
   ``--sizes`` (default 1k, 4k, 16k, 64k envs) for each ``--tasks`` entry, stepped on device with no host
   transfer (actions drawn on device, one ``block_until_ready`` per timed block), and of
   ``BatchedMujocoVecEnv`` (all CPU threads) at ``--cpu-size`` envs.
2. End to end: LiquidPPO with the CfC catalogue agent learning on ``--train-envs`` envs of HalfCheetah, on
   the MJX backend (policy on ``--device``) and on the CPU batched backend: env steps per second of
   ``learn`` after a warm-up update. Both train as the catalogue agent does, with observation and reward
   normalisation: on MJX the env is a ``TorchVecEnv`` in ``TorchVecNormalize`` (``build_agent`` picks it for a
   torch-stepping env), so LiquidPPO's rollouts and the normalisation statistics stay on the device (no host
   round trip per step); on the CPU backend a numpy VecEnv in ``VecNormalize``.

Prints Markdown tables (same-run ratios) and, with ``--json``/``--md``, writes them to files.

    python scripts/bench_gpu.py                                   # full sizes (a GPU machine)
    python scripts/bench_gpu.py --sizes 64 256 --cpu-size 64 --train-envs 16 --steps 20   # CPU smoke
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def _device_name(jax) -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '')}"


def physics_mjx(task: str, n: int, steps: int, x64: bool, device: str | None) -> tuple[float, float]:
    """(env steps/s, compile seconds) of MjxVecEnv's jitted step at ``n`` envs."""
    import jax

    from lnn_control.sim.mjx import MjxVecEnv

    t0 = time.perf_counter()
    env = MjxVecEnv(task, n, seed=0, x64=x64, device=device)
    nu = env.action_space.shape[0]
    with env._x64():
        key = jax.device_put(jax.random.PRNGKey(1), env.device)
        draw = jax.jit(lambda k: jax.random.uniform(k, (n, nu), minval=-1.0, maxval=1.0))
        actions = draw(key)
        env._advance(actions)["obs"].block_until_ready()  # compile
        compile_s = time.perf_counter() - t0
        keys = jax.random.split(key, steps)
        env._advance(draw(keys[0]))["obs"].block_until_ready()
        t = time.perf_counter()
        for i in range(steps):
            out = env._advance(draw(keys[i]))
        out["obs"].block_until_ready()
        elapsed = time.perf_counter() - t
    return n * steps / elapsed, compile_s


def physics_cpu(task: str, n: int, steps: int) -> float:
    from lnn_control.sim.batched import BatchedMujocoVecEnv

    env = BatchedMujocoVecEnv(task, n, seed=0)
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, (steps + 1, n, env.action_space.shape[0])).astype(np.float32)
    env.step(acts[0])
    t = time.perf_counter()
    for i in range(steps):
        env.step(acts[i + 1])
    return n * steps / (time.perf_counter() - t)


def train(backend: str, n_envs: int, n_steps: int, updates: int, device: str, x64: bool) -> float:
    """Env steps/s of LiquidPPO-CfC ``learn`` (rollouts + updates) after one warm-up update."""
    from lnn_control.sb3.agents import build_agent
    from lnn_control.sim import make_vec_env

    if backend == "mjx":
        from lnn_control.sim.mjx import make_torch_vec_env

        # the agent's normalize: true wraps it in TorchVecNormalize: observations never visit the host
        env = make_torch_vec_env("HalfCheetah-v0", n_envs, seed=0, x64=x64, device=device)
    else:
        env = make_vec_env("HalfCheetah-v0", n_envs, seed=0)
    batch = n_envs * n_steps // 4  # 4 minibatches; a multiple of seq_len = n_steps
    model = build_agent(
        "liquid-ppo-cfc",
        env,
        n_steps=n_steps,
        seq_len=n_steps,
        batch_size=batch,
        n_epochs=1,
        seed=0,
        device=device,
    )
    model.learn(n_envs * n_steps)  # warm-up (compile, allocation)
    t = time.perf_counter()
    model.learn(n_envs * n_steps * updates, reset_num_timesteps=False)
    return n_envs * n_steps * updates / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["HalfCheetah", "Hopper"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1024, 4096, 16384, 65536])
    parser.add_argument("--steps", type=int, default=100, help="timed control steps per size")
    parser.add_argument("--cpu-size", type=int, default=1024, help="envs of the CPU batched backend")
    parser.add_argument("--cpu-steps", type=int, default=50)
    parser.add_argument("--train-envs", type=int, default=4096)
    parser.add_argument("--train-steps", type=int, default=32, help="n_steps of a PPO rollout")
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--cpu-train-envs", type=int, default=16)
    parser.add_argument("--x64", action="store_true", help="simulate in float64 (default float32)")
    parser.add_argument("--device", default=None, help="JAX/torch device (default: JAX's default)")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--cache-dir", help="JAX persistent compilation cache (a rerun skips the compiles)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from lnn_control.sim.mjx import require_mjx

    jax, _ = require_mjx()
    if args.cache_dir:
        jax.config.update("jax_compilation_cache_dir", args.cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    device = args.device or ("cuda" if jax.default_backend() == "gpu" else "cpu")
    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.node()} {platform.processor()} ({_device_name(jax)}), jax {jax.__version__}",
        "x64": args.x64,
        "physics": [],
        "train": [],
    }
    lines = [f"# bench_gpu ({results['date']}, {results['machine']}, {'float64' if args.x64 else 'float32'})"]
    lines += [
        "",
        "| task | backend | envs | env-steps/s | vs CPU batched | compile s |",
        "|---|---|---|---|---|---|",
    ]

    def flush() -> None:  # after every measurement, so that a run cut short keeps what it measured
        print(lines[-1], flush=True)
        if args.md:
            args.md.write_text("\n".join(lines) + "\n")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))

    for task in args.tasks:
        cpu = physics_cpu(task, args.cpu_size, args.cpu_steps)
        results["physics"].append({"task": task, "backend": "cpu-batched", "envs": args.cpu_size, "sps": cpu})
        lines.append(f"| {task} | CPU mujoco.batch | {args.cpu_size} | {cpu:,.0f} | 1.0 | - |")
        flush()
        for n in args.sizes:
            sps, comp = physics_mjx(task, n, args.steps, args.x64, device)
            results["physics"].append(
                {"task": task, "backend": "mjx", "envs": n, "sps": sps, "compile_s": comp}
            )
            lines.append(f"| {task} | MJX {device} | {n} | {sps:,.0f} | {sps / cpu:.1f} | {comp:.0f} |")
            flush()
    if not args.no_train:
        lines += [
            "",
            "| training (LiquidPPO CfC, HalfCheetah) | envs | env-steps/s | vs CPU |",
            "|---|---|---|---|",
        ]
        cpu = train("batched", args.cpu_train_envs, args.train_steps, args.updates, "cpu", args.x64)
        results["train"].append({"backend": "cpu-batched", "envs": args.cpu_train_envs, "sps": cpu})
        lines.append(f"| CPU batched, policy on cpu | {args.cpu_train_envs} | {cpu:,.0f} | 1.0 |")
        flush()
        sps = train("mjx", args.train_envs, args.train_steps, args.updates, device, args.x64)
        results["train"].append({"backend": "mjx", "envs": args.train_envs, "sps": sps, "device": device})
        lines.append(
            f"| MJX + policy on {device} (device rollouts) | {args.train_envs} | {sps:,.0f} "
            f"| {sps / cpu:.1f} |"
        )
        flush()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
