"""Learning-curve figures (matplotlib's object API with the Agg canvas: no display, no pyplot state).

- :func:`plot_learning_curve`: one run's evaluation mean +- std (and min/max) over timesteps;
- :func:`plot_groups`: several runs or groups, each the mean over its seeds +- the std over seeds.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lnn_control.atomic import atomic_write_bytes
from lnn_control.runs.evalcsv import EvalRow

__all__ = ["Curve", "mean_curve", "plot_groups", "plot_learning_curve"]


@dataclass(frozen=True)
class Curve:
    """A learning curve: timesteps (n,), mean (n,), band half-width (n,) and its label."""

    label: str
    timesteps: np.ndarray
    mean: np.ndarray
    spread: np.ndarray
    n_runs: int


def _figure(title: str):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    wrapped = "\n".join(textwrap.fill(line, 85) for line in title.splitlines())
    ax.set_title(wrapped, fontsize=10 if "\n" in wrapped else 11)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())


def plot_learning_curve(rows: Sequence[EvalRow], path: str | Path, title: str) -> Path:
    """Mean return +- std over the evaluation episodes, min/max dotted, best marked; written atomically."""
    fig, ax = _figure(title)
    if rows:
        t = np.array([r.timesteps for r in rows], dtype=float)
        mean = np.array([r.mean for r in rows])
        std = np.array([r.std for r in rows])
        ax.plot(t, mean, marker="o", markersize=3, label="mean return")
        ax.fill_between(t, mean - std, mean + std, alpha=0.25, label="± std over episodes")
        ax.plot(t, [r.min for r in rows], ":", color="gray", linewidth=1, label="min / max")
        ax.plot(t, [r.max for r in rows], ":", color="gray", linewidth=1)
        best = len(mean) - 1 - int(np.argmax(mean[::-1]))  # the last of equal bests, as the run keeps it
        ax.scatter([t[best]], [mean[best]], marker="*", s=120, color="tab:red", zorder=3, label="best")
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def mean_curve(label: str, runs: Sequence[Sequence[EvalRow]]) -> Curve:
    """Mean over runs of their evaluation means (+- std over runs), on the union of their evaluation timesteps
    up to the shortest run's end (linear interpolation between evaluations). A single run keeps its episode
    std as the band."""
    runs = [r for r in runs if r]
    if not runs:
        return Curve(label, np.zeros(0), np.zeros(0), np.zeros(0), 0)
    if len(runs) == 1:
        rows = runs[0]
        return Curve(
            label,
            np.array([r.timesteps for r in rows], dtype=float),
            np.array([r.mean for r in rows]),
            np.array([r.std for r in rows]),
            1,
        )
    end = min(r[-1].timesteps for r in runs)
    grid = np.unique(
        np.array([row.timesteps for rows in runs for row in rows if row.timesteps <= end], float)
    )
    values = np.stack([np.interp(grid, [r.timesteps for r in rows], [r.mean for r in rows]) for rows in runs])
    return Curve(label, grid, values.mean(axis=0), values.std(axis=0), len(runs))


def plot_groups(curves: Sequence[Curve], path: str | Path, title: str) -> Path:
    """One line per curve with its band (std over seeds for groups, over episodes for single runs)."""
    fig, ax = _figure(title)
    for curve in curves:
        suffix = f" (n={curve.n_runs})" if curve.n_runs > 1 else ""
        (line,) = ax.plot(curve.timesteps, curve.mean, label=curve.label + suffix)
        ax.fill_between(
            curve.timesteps,
            curve.mean - curve.spread,
            curve.mean + curve.spread,
            alpha=0.2,
            color=line.get_color(),
        )
    if curves:
        ax.legend(loc="best", fontsize=8)
    return _save(fig, path)
