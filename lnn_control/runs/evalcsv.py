"""``eval.csv``: one row per evaluation of a run.

Columns: ``timesteps, mean, std, min, max, episodes, mean_length, wall_time_s`` (returns are undiscounted,
unnormalised episode returns; wall_time_s is the training wall time when the evaluation ran).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path

import numpy as np

from lnn_control.atomic import atomic_write_text
from lnn_control.runs.errors import RunError

__all__ = ["COLUMNS", "EvalRow", "append_row", "read_rows", "stats_row", "write_rows"]


@dataclass(frozen=True)
class EvalRow:
    """One evaluation: statistics of the episode returns."""

    timesteps: int
    mean: float
    std: float
    min: float
    max: float
    episodes: int
    mean_length: float
    wall_time_s: float


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(EvalRow))


def stats_row(timesteps: int, returns: np.ndarray, lengths: np.ndarray, wall_time_s: float) -> EvalRow:
    """The row of returns (n,) and lengths (n,) of n >= 1 episodes."""
    returns = np.asarray(returns, dtype=np.float64)
    if returns.size == 0:
        raise ValueError("an evaluation needs at least one episode")
    return EvalRow(
        timesteps=int(timesteps),
        mean=float(returns.mean()),
        std=float(returns.std()),
        min=float(returns.min()),
        max=float(returns.max()),
        episodes=int(returns.size),
        mean_length=float(np.mean(lengths)),
        wall_time_s=float(wall_time_s),
    )


def _format(rows: Sequence[EvalRow]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in astuple(row)])
    return buf.getvalue()


def write_rows(path: str | Path, rows: Sequence[EvalRow]) -> None:
    """(Re)write the whole file atomically."""
    atomic_write_text(path, _format(rows))


def append_row(path: str | Path, row: EvalRow) -> list[EvalRow]:
    """Add a row (rewriting the file atomically; the file is small) and return all rows."""
    rows = [*read_rows(path), row] if Path(path).is_file() else [row]
    write_rows(path, rows)
    return rows


def read_rows(path: str | Path) -> list[EvalRow]:
    """All rows of an eval.csv, in file order; RunError naming the file for a malformed one."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise RunError(f"cannot read {path} ({exc.strerror or exc})") from exc
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    missing = [c for c in COLUMNS[:6] if c not in reader.fieldnames]
    if missing:
        raise RunError(f"{path}: missing column(s) {missing}; expected {list(COLUMNS)}")
    rows = []
    for i, rec in enumerate(reader, start=2):
        try:
            rows.append(
                EvalRow(
                    timesteps=int(rec["timesteps"]),
                    mean=float(rec["mean"]),
                    std=float(rec["std"]),
                    min=float(rec["min"]),
                    max=float(rec["max"]),
                    episodes=int(rec["episodes"]),
                    mean_length=float(rec.get("mean_length") or math.nan),
                    wall_time_s=float(rec.get("wall_time_s") or math.nan),
                )
            )
        except (TypeError, ValueError) as exc:
            raise RunError(f"{path}, line {i}: malformed row {rec} ({exc})") from exc
    return rows
