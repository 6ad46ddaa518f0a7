"""A learning benchmark suite: tasks x agents x seeds through the sweep machinery, then timing robustness of
every final policy, reported as one Markdown table, a JSON of records and a PNG of learning curves.

Layout of ``out``: ``<out>/<task>/<agent>/seed<S>/`` (one resumable sweep folder per task and agent); each
finished run also gets ``timing_eval.json`` (see :mod:`lnn_control.runs.timing_eval`), computed once.
"""

from __future__ import annotations

import datetime
import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lnn_control.atomic import atomic_write_text
from lnn_control.runs.config import RunSpec
from lnn_control.runs.evalcsv import read_rows
from lnn_control.runs.layout import RunDir
from lnn_control.runs.sweep import SweepPlan, run_sweeps
from lnn_control.runs.timing_eval import evaluate_timing

__all__ = ["collect_records", "run_learning_suite", "suite_plans", "write_report"]

TIMING_FILE = "timing_eval.json"


def suite_plans(
    tasks: Sequence[str], agents: Sequence[str], seeds: Sequence[int], timesteps: int, out: Path
) -> list[SweepPlan]:
    """One sweep per task and agent; about 10 evaluations of 5 episodes per run."""
    return [
        SweepPlan(
            RunSpec(env=task, agent=agent, timesteps=timesteps, eval_freq=max(1, timesteps // 10)),
            list(seeds),
            {},
            out / task / agent,
        )
        for task in tasks
        for agent in agents
    ]


def run_learning_suite(
    *,
    tasks: Sequence[str],
    agents: Sequence[str],
    seeds: Sequence[int],
    timesteps: int,
    out: Path,
    report_dir: Path,
    workers: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    report_only: bool = False,
    report_name: str = "bench_mujoco",
) -> list[dict[str, Any]]:
    """Train what is missing (seed-major, so a part-way stop leaves one seed of everything first), evaluate
    timing robustness of the finished runs, and write the report. Returns the records."""
    out = Path(out).expanduser()
    plans = suite_plans(tasks, agents, seeds, timesteps, out)
    if not report_only:
        results = run_sweeps(
            plans, workers=workers, backend=backend, ray_address=ray_address, seed_major=True
        )
        if any(r.signal is not None for r in results):
            print("stopped: finished runs are kept; run the same command again to resume")
            return []
    records = collect_records(plans)
    write_report(records, report_dir, timesteps=timesteps, seeds=seeds, name=report_name)
    return records


def collect_records(plans: Sequence[SweepPlan]) -> list[dict[str, Any]]:
    """Records of the finished runs of ``plans`` (timing evaluation computed where missing)."""
    records = []
    for plan in plans:
        for seed in plan.seeds:
            run = RunDir(Path(plan.out) / f"seed{seed}")
            if not run.status_file.is_file() or run.read_status().get("status") != "finished":
                continue
            timing_path = run.root / TIMING_FILE
            if timing_path.is_file():
                timing = json.loads(timing_path.read_text())
            else:
                print(f"timing evaluation: {run.root}", flush=True)
                timing = evaluate_timing(run.root)
                atomic_write_text(timing_path, json.dumps(timing, indent=1))
            rows = read_rows(run.eval_csv) if run.eval_csv.is_file() else []
            records.append(
                dict(
                    task=plan.base.env,
                    agent=plan.base.agent,
                    seed=seed,
                    timesteps=plan.base.timesteps,
                    wall_time_s=float(run.read_status().get("wall_time_s", np.nan)),
                    curve=[(row.timesteps, row.mean) for row in rows],
                    timing=timing,
                )
            )
    return records


def _pm(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.0f} ± {np.std(values):.0f}"


def _share(records: Sequence[dict[str, Any]], factor: str) -> str:
    base = np.mean([r["timing"]["factors"]["1"]["return"] for r in records])
    other = np.mean([r["timing"]["factors"][factor]["return"] for r in records])
    return f"{other / base:.2f}" if base > 0 else "-"


def _sensitivity(records: Sequence[dict[str, Any]], kind: str) -> str:
    found = [r["timing"].get("sensitivity") for r in records]
    found = [f for f in found if f]
    if not found:
        return "-"
    scale = np.mean([f["mean_abs_action"] for f in found])
    if kind == "dt":
        change = np.mean([max(f["dt_half"], f["dt_double"]) for f in found])
    else:
        change = np.mean([f["input_noise"] for f in found])
    return f"{change / scale:.2g}" if scale > 0 else "-"


def write_report(
    records: Sequence[dict[str, Any]],
    report_dir: Path,
    *,
    timesteps: int,
    seeds: Sequence[int],
    name: str = "bench_mujoco",
) -> None:
    """``<name>.md`` (table), ``<name>.json`` (records) and ``<name>.png`` (curves)."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["task"], r["agent"]), []).append(r)
    lines = [
        f"Learning suite, {timesteps:,d} env steps per run, seeds {list(seeds)} (n = finished seeds); "
        f"{datetime.date.today().isoformat()}, {platform.machine()} {platform.processor() or ''}".rstrip(),
        "",
        "Return of the final policy (deterministic, 5 episodes, mean ± std over seeds) at its task's control "
        "period (1x) and at 0.5x / 2x the period (return x period factor: reward per unit of simulated "
        "time, comparable with 1x); kept = mean return at that period / mean at 1x; nominal dt = the liquid "
        "policy fed the nominal period instead of the real dt (clock ablation, jittered tasks); "
        "Δa dt, Δa obs = mean |action change| along one trajectory when every dt is halved/doubled "
        "(the larger) and under N(0, 0.1) input noise, relative to the mean |action| (liquid policies).",
        "",
        "| task | agent | n | return 1x | 0.5x | 2x | kept 0.5x | kept 2x | nominal dt | Δa dt | Δa obs "
        "| wall time / run |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (task, agent), runs in groups.items():
        returns = {f: [r["timing"]["factors"][f]["return"] for r in runs] for f in ("0.5", "1", "2")}
        ablation = [
            r["timing"]["nominal_dt_return"] for r in runs if r["timing"]["nominal_dt_return"] is not None
        ]
        wall = np.mean([r["wall_time_s"] for r in runs]) / 60.0
        lines.append(
            f"| {task} | {agent} | {len(runs)} | {_pm(returns['1'])} | {_pm(returns['0.5'])} | "
            f"{_pm(returns['2'])} | {_share(runs, '0.5')} | {_share(runs, '2')} | {_pm(ablation)} | "
            f"{_sensitivity(runs, 'dt')} | {_sensitivity(runs, 'obs')} | {wall:.0f} min |"
        )
    table = "\n".join(lines) + "\n"
    atomic_write_text(report_dir / f"{name}.md", table)
    atomic_write_text(report_dir / f"{name}.json", json.dumps(list(records), indent=1))
    _plot(records, report_dir / f"{name}.png", timesteps)
    print(table)


def _plot(records: Sequence[dict[str, Any]], path: Path, timesteps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in records))
    if not tasks:
        return
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    grid = np.linspace(0, timesteps, 40)
    every_agent = list(dict.fromkeys(r["agent"] for r in records))
    colors = {agent: f"C{i % 10}" for i, agent in enumerate(every_agent)}  # one colour per agent everywhere
    for ax, task in zip(axes[0], tasks, strict=True):
        agents = list(dict.fromkeys(r["agent"] for r in records if r["task"] == task))
        for agent in agents:
            curves = [np.array(r["curve"]) for r in records if (r["task"], r["agent"]) == (task, agent)]
            curves = [c for c in curves if len(c)]
            if not curves:
                continue
            values = np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in curves])
            mean, std = values.mean(0), values.std(0)
            ax.plot(grid, mean, label=f"{agent} (n={len(curves)})", color=colors[agent])
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2, color=colors[agent])
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
