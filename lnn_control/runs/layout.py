"""The run directory: where each file of a run lives, and its small JSON/YAML records.

::

    <run>/
      config.yaml              the resolved config (lnn_control.runs.config)
      status.json              running | finished | interrupted, timesteps, wall time, best/last evaluation
      eval.csv                 one row per evaluation (lnn_control.runs.evalcsv)
      learning_curve.png       mean +- std evaluation return over timesteps
      checkpoints/last.zip     the latest checkpoint (lnn_control.runs.checkpoint)
      checkpoints/best.zip     the checkpoint with the best mean evaluation return
      tb/                      TensorBoard events (train_1/, continued by --resume)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lnn_control.atomic import atomic_write_text
from lnn_control.runs.errors import RunError

__all__ = ["CHECKPOINT_NAMES", "RunDir"]

CHECKPOINT_NAMES = ("last", "best")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory (nothing is created until written)."""

    root: Path

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run directory; RunError if ``path`` is not one."""
        root = Path(path)
        if not root.is_dir():
            raise RunError(f"run directory {str(path)!r} does not exist")
        run = cls(root)
        if not run.config.is_file():
            raise RunError(f"{str(path)!r} is not a run directory (no config.yaml in it)")
        return run

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    @property
    def eval_csv(self) -> Path:
        return self.root / "eval.csv"

    @property
    def curve_png(self) -> Path:
        return self.root / "learning_curve.png"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, which: str) -> Path:
        """``checkpoints/<which>.zip`` for ``which`` in ("last", "best")."""
        if which not in CHECKPOINT_NAMES:
            raise RunError(f"checkpoint must be one of {list(CHECKPOINT_NAMES)}, got {which!r}")
        return self.checkpoints / f"{which}.zip"

    # ---------------------------------------------------------------------------------------- records
    def read_config(self) -> dict[str, Any]:
        try:
            record = yaml.safe_load(self.config.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise RunError(f"{self.config}: unreadable run config ({str(exc).splitlines()[0]})") from exc
        if not isinstance(record, dict):
            raise RunError(f"{self.config}: expected a mapping, got {type(record).__name__}")
        return record

    def write_config(self, record: dict[str, Any]) -> None:
        atomic_write_text(self.config, yaml.safe_dump(record, sort_keys=False))

    def read_status(self) -> dict[str, Any]:
        """status.json as a dict ({} when the run never wrote one)."""
        if not self.status_file.is_file():
            return {}
        try:
            status = json.loads(self.status_file.read_text())
        except (OSError, ValueError) as exc:
            raise RunError(f"{self.status_file}: unreadable ({exc})") from exc
        return status if isinstance(status, dict) else {}

    def write_status(self, status: dict[str, Any]) -> None:
        atomic_write_text(self.status_file, json.dumps(status, indent=2) + "\n")
