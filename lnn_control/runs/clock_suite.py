"""The clock benchmark: does a trained policy use the time that passes between control steps?

Task: :class:`~lnn_control.sb3.diagnostic_envs.IntervalTimingEnv` (switch the action from -1 to +1 once 0.5 s
have passed since a cue, on a control period jittered to 0.2-1.8x its nominal 0.05 s). Only the elapsed
*time* tells when to switch; counting steps is an imprecise clock there. Each catalogue agent trains with its
own hyperparameters, unchanged; every final policy is evaluated (deterministic) with the real ``info["dt"]``
and, for liquid policies, with the nominal period fed at every step instead (the clock ablation). A policy
that uses the clock scores near the time-aware optimum (0) with the real dt and falls to about the
step-counting optimum (or below) without it; the table lists both ideal returns beside the agents'.

Layout of ``out``: one ``<agent>/seed<S>.json`` record per finished run (written atomically), so the suite
resumes where it stopped (a run interrupted part-way starts again: runs take minutes) and can be split over
processes by ``agents``/``seeds``. :func:`write_clock_report` writes
``<report_dir>/bench_clock.{md,json,png}``.
"""

from __future__ import annotations

import datetime
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.env_util import make_vec_env

from lnn_control.atomic import atomic_write_text
from lnn_control.checks import positive_int
from lnn_control.runs.callback import TrainingCurve

__all__ = ["CLOCK_AGENTS", "clock_run", "run_clock_suite", "write_clock_report"]

CLOCK_AGENTS = ("ppo-mlp", "ppo-lstm", "liquid-ppo-cfc", "liquid-ppo-ltc", "liquid-ppo-ncp")
EVAL_SEED_OFFSET = 10_000


def clock_run(
    agent: str, seed: int, timesteps: int, *, episodes: int = 100, env_kwargs: dict | None = None
) -> dict[str, Any]:
    """Train a catalogue agent on the interval-timing task and evaluate it with the real and the nominal dt.

    Returns:
        ``{"agent", "seed", "timesteps", "env_kwargs", "wall_time_s", "curve": [(steps, return)], "return":
        mean over ``episodes`` with the real dt, "nominal_dt_return": with the nominal dt (liquid agents,
        else None)}``.
    """
    from lnn_control.runs.normalization import frozen_normalization
    from lnn_control.sb3.agent_evaluation import evaluate_agent
    from lnn_control.sb3.agents import build_agent, load_agent_config
    from lnn_control.sb3.diagnostic_envs import IntervalTimingEnv
    from lnn_control.sb3.liquid_algorithm import LiquidAlgorithmMixin

    env_kwargs = dict(env_kwargs or {})
    config = load_agent_config(agent)
    train_env = make_vec_env(IntervalTimingEnv, n_envs=config["n_envs"], seed=seed, env_kwargs=env_kwargs)
    model = build_agent(config, train_env, seed=seed)
    curve = TrainingCurve()
    start = time.perf_counter()
    model.learn(timesteps, callback=curve)
    wall = time.perf_counter() - start

    def evaluate(use_reported_dt: bool) -> float:
        venv = make_vec_env(IntervalTimingEnv, n_envs=5, seed=seed + EVAL_SEED_OFFSET, env_kwargs=env_kwargs)
        eval_env = frozen_normalization(model.get_env(), venv)
        returns, _ = evaluate_agent(
            model, eval_env, n_eval_episodes=episodes, use_reported_dt=use_reported_dt
        )
        return float(np.mean(returns))

    liquid = isinstance(model, LiquidAlgorithmMixin)
    return dict(
        agent=agent,
        seed=seed,
        timesteps=timesteps,
        env_kwargs=env_kwargs,
        wall_time_s=wall,
        curve=curve.points,
        **{"return": evaluate(True)},
        nominal_dt_return=evaluate(False) if liquid else None,
    )


def run_clock_suite(
    *,
    agents: Sequence[str] = CLOCK_AGENTS,
    seeds: Sequence[int] = (0, 1, 2),
    timesteps: int = 100_000,
    out: Path,
    report_dir: Path,
    episodes: int = 100,
    report_only: bool = False,
    env_kwargs: dict | None = None,
) -> list[dict[str, Any]]:
    """Train and evaluate what is missing (seed-major), then write the report. Returns the records."""
    timesteps = positive_int("timesteps", timesteps)
    out = Path(out).expanduser()
    records = []
    for seed in seeds:
        for agent in agents:
            path = out / agent / f"seed{seed}.json"
            if path.is_file():
                record = json.loads(path.read_text())
            elif report_only:
                continue
            else:
                print(f"clock suite: {agent} seed {seed} ({timesteps:,d} steps)", flush=True)
                record = clock_run(agent, seed, timesteps, episodes=episodes, env_kwargs=env_kwargs)
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(path, json.dumps(record, indent=1))
                nominal = record["nominal_dt_return"]
                print(
                    f"  return {record['return']:.2f}"
                    + (f", with the nominal dt {nominal:.2f}" if nominal is not None else "")
                    + f" ({record['wall_time_s']:.0f} s)",
                    flush=True,
                )
            if record["timesteps"] != timesteps:
                raise ValueError(
                    f"{path} holds a run of {record['timesteps']:,d} steps, not {timesteps:,d}: "
                    "use another out folder for another budget"
                )
            records.append(record)
    write_clock_report(records, report_dir, timesteps=timesteps, seeds=seeds, env_kwargs=env_kwargs)
    return records


def _pm(values: Sequence[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if len(values) else "-"


def write_clock_report(
    records: Sequence[dict[str, Any]],
    report_dir: Path,
    *,
    timesteps: int,
    seeds: Sequence[int],
    env_kwargs: dict | None = None,
) -> str:
    """``bench_clock.md`` (table), ``bench_clock.json`` (records), ``bench_clock.png`` (curves); returns the
    table."""
    from lnn_control.sb3.diagnostic_envs import IntervalTimingEnv, interval_timing_references

    env = IntervalTimingEnv(**(env_kwargs or {}))
    ideal = interval_timing_references(env)
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Clock suite (IntervalTimingEnv: switch from -1 to +1 once {env.interval:g} s have passed, period "
        f"{env.nominal_dt:g} s x U{list(env.jitter)}, {env.steps} rewarded steps), {timesteps:,d} env steps "
        f"per run, seeds {list(seeds)} (n = finished seeds); {datetime.date.today().isoformat()}, "
        f"{platform.machine()} {platform.processor() or ''}".rstrip(),
        "",
        "Return of the final policy (deterministic, mean ± std over seeds) with the real dt, and with the "
        "nominal period fed instead (clock ablation, liquid policies). Ideal returns: knowing the elapsed "
        f"time {ideal['time_aware']:.2f}; knowing only the step count {ideal['step_counting']:.2f}; "
        f"feed-forward (one action after the cue) {ideal['feed_forward']:.2f}.",
        "",
        "| agent | n | return (real dt) | return (nominal dt) | ablation cost | wall time / run |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    agents = list(dict.fromkeys(r["agent"] for r in records))
    for agent in agents:
        runs = [r for r in records if r["agent"] == agent]
        real = [r["return"] for r in runs]
        nominal = [r["nominal_dt_return"] for r in runs if r["nominal_dt_return"] is not None]
        cost = [r["return"] - r["nominal_dt_return"] for r in runs if r["nominal_dt_return"] is not None]
        wall = np.mean([r["wall_time_s"] for r in runs])
        lines.append(f"| {agent} | {len(runs)} | {_pm(real)} | {_pm(nominal)} | {_pm(cost)} | {wall:.0f} s |")
    table = "\n".join(lines) + "\n"
    atomic_write_text(report_dir / "bench_clock.md", table)
    atomic_write_text(report_dir / "bench_clock.json", json.dumps(list(records), indent=1))
    _plot(records, report_dir / "bench_clock.png", timesteps, ideal)
    print(table)
    return table


def _plot(records: Sequence[dict[str, Any]], path: Path, timesteps: int, ideal: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    grid = np.linspace(0, timesteps, 40)
    for i, agent in enumerate(dict.fromkeys(r["agent"] for r in records)):
        curves = [np.array(r["curve"]) for r in records if r["agent"] == agent and r["curve"]]
        if not curves:
            continue
        values = np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in curves])
        mean, std = values.mean(0), values.std(0)
        ax.plot(grid, mean, label=f"{agent} (n={len(curves)})", color=f"C{i % 10}")
        ax.fill_between(grid, mean - std, mean + std, alpha=0.2, color=f"C{i % 10}")
    for name, style in (("step_counting", "--"), ("feed_forward", ":")):
        ax.axhline(ideal[name], color="grey", linestyle=style, label=f"ideal, {name.replace('_', ' ')}")
    ax.set_title("IntervalTimingEnv (jittered clock)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("training episode return (last 20)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
