"""Comparing runs: learning curves in one plot and one Markdown table.

Runs that share task, agent and overrides form a group (typically the seeds of one configuration); a group
is plotted as the mean over its seeds +- the std over seeds, and its table row gives final and best return as
mean +- std over seeds. A directory that is not a run is searched for runs (a sweep's output, for example).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lnn_control.atomic import atomic_write_text
from lnn_control.runs.errors import RunError
from lnn_control.runs.evalcsv import EvalRow, read_rows
from lnn_control.runs.layout import RunDir
from lnn_control.runs.overrides import format_overrides
from lnn_control.runs.plotting import mean_curve, plot_groups

__all__ = ["Comparison", "RunRecord", "compare_runs", "find_runs", "markdown_table"]


@dataclass(frozen=True)
class RunRecord:
    """What compare needs of one run."""

    path: Path
    env: str
    agent: str
    seed: int
    overrides: dict[str, Any]
    rows: list[EvalRow]
    wall_time_s: float
    status: str

    @property
    def group_key(self) -> str:
        return json.dumps([self.env, self.agent, self.overrides], sort_keys=True, default=str)


@dataclass
class Group:
    """Runs of one configuration."""

    label: str
    runs: list[RunRecord] = field(default_factory=list)


def _record(run: RunDir) -> RunRecord:
    config = run.read_config()
    status = run.read_status()
    rows = read_rows(run.eval_csv) if run.eval_csv.is_file() else []
    try:
        return RunRecord(
            path=run.root,
            env=str(config["env"]["id"]),
            agent=str(config["agent"]["name"]),
            seed=int(config["seed"]),
            overrides=dict(config.get("overrides") or {}),
            rows=rows,
            wall_time_s=float(status.get("wall_time_s", rows[-1].wall_time_s if rows else math.nan)),
            status=str(status.get("status", "unknown")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"{run.config}: malformed run config ({exc})") from exc


def find_runs(paths: Iterable[str | Path]) -> list[RunRecord]:
    """Records of ``paths``: run directories, or folders searched two levels deep for run directories."""
    records: list[RunRecord] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            raise RunError(f"run directory {str(given)!r} does not exist")
        if (path / "config.yaml").is_file():
            found = [path]
        else:
            found = sorted({p.parent for p in [*path.glob("*/config.yaml"), *path.glob("*/*/config.yaml")]})
            if not found:
                raise RunError(f"{str(given)!r} is not a run directory and contains none")
        for run_path in found:
            key = run_path.resolve()
            if key not in seen:
                seen.add(key)
                records.append(_record(RunDir(run_path)))
    return records


def _short_labels(keys: Sequence[tuple[str, str, dict[str, Any]]]) -> tuple[list[str], str]:
    """Labels naming only what differs between groups, and a line of what they have in common."""
    envs = {env for env, _, _ in keys}
    agents = {agent for _, agent, _ in keys}
    all_keys = {k for _, _, ov in keys for k in ov}
    fixed = {
        k: keys[0][2][k]
        for k in sorted(all_keys)
        if all(k in ov for _, _, ov in keys) and all(ov[k] == keys[0][2][k] for _, _, ov in keys)
    }
    labels = []
    for env, agent, overrides in keys:
        parts = []
        if len(agents) > 1:
            parts.append(agent)
        if len(envs) > 1:
            parts.append(f"on {env}")
        varying = {k: v for k, v in overrides.items() if k not in fixed}
        if varying:
            parts.append(format_overrides({k.rsplit(".", 1)[-1]: v for k, v in varying.items()}))
        labels.append(" ".join(parts) or (agent if len(keys) == 1 else "agent defaults"))
    common = []
    if len(agents) == 1:
        common.append(f"agent {next(iter(agents))}")
    if len(envs) == 1:
        common.append(f"task {next(iter(envs))}")
    if fixed:
        common.append(f"overrides {format_overrides(fixed)}")
    return labels, ", ".join(common)


def group_runs(records: Sequence[RunRecord]) -> tuple[list[Group], str]:
    """Groups in order of first appearance, and what all groups share (for titles and notes)."""
    by_key: dict[str, list[RunRecord]] = {}
    for record in records:
        by_key.setdefault(record.group_key, []).append(record)
    members = list(by_key.values())
    labels, common = _short_labels([(runs[0].env, runs[0].agent, runs[0].overrides) for runs in members])
    groups = [
        Group(label, sorted(runs, key=lambda r: r.seed)) for label, runs in zip(labels, members, strict=True)
    ]
    return groups, common


def _pm(values: Sequence[float], digits: int = 1) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def markdown_table(groups: Sequence[Group], common: str = "") -> str:
    """One row per group: runs, seeds, timesteps, final and best mean return (± std over seeds), wall time."""
    lines = [
        "| run / group | runs | seeds | timesteps | final return | best return | wall time / run |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for group in groups:
        finals = [r.rows[-1].mean for r in group.runs if r.rows]
        bests = [max(row.mean for row in r.rows) for r in group.runs if r.rows]
        steps = sorted({r.rows[-1].timesteps for r in group.runs if r.rows})
        shown_steps = (
            "—" if not steps else f"{steps[0]:,}" if len(steps) == 1 else f"{steps[0]:,}–{steps[-1]:,}"
        )
        seeds = ", ".join(str(r.seed) for r in group.runs)
        wall = float(np.mean([r.wall_time_s for r in group.runs]))
        unfinished = sum(r.status != "finished" for r in group.runs)
        label = group.label.replace("|", "\\|") + (f" ({unfinished} unfinished)" if unfinished else "")
        lines.append(
            f"| {label} | {len(group.runs)} | {seeds} | {shown_steps} | {_pm(finals)} | {_pm(bests)} | "
            f"{_duration(wall)} |"
        )
    lines.append("")
    if common:
        lines.append(f"All runs: {common}.")
        lines.append("")
    lines.append(
        "final / best: mean evaluation return of the last / best evaluation of each run; "
        "± is the standard deviation over the seeds of a group."
    )
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare_runs`."""

    groups: list[Group]
    markdown: str
    plot: Path | None
    markdown_file: Path | None


def compare_runs(
    paths: Iterable[str | Path], *, out: str | Path | None = None, markdown: str | Path | None = None
) -> Comparison:
    """Plot the learning curves of the runs under ``paths`` into ``out`` (PNG) and build the Markdown table
    (written to ``markdown`` when given)."""
    records = find_runs(paths)
    groups, common = group_runs(records)
    table = markdown_table(groups, common)
    plot = None
    if out is not None:
        if Path(out).suffix.lower() != ".png":
            raise RunError(f"--out must be a .png file, got {str(out)!r}")
        curves = [mean_curve(g.label, [r.rows for r in g.runs]) for g in groups]
        plot = plot_groups(curves, out, "evaluation return" + (f"\n{common}" if common else ""))
    md_file = None
    if markdown is not None:
        md_file = atomic_write_text(markdown, table)
    return Comparison(groups=groups, markdown=table, plot=plot, markdown_file=md_file)
