"""Run directories: training with checkpoints and resume, evaluation, videos, comparison, sweeps, export.

This is the library under the ``lnn-control`` command (:mod:`lnn_control.cli` is a thin argparse layer over
it). One concept per module:

- :mod:`~lnn_control.runs.config`: :class:`RunSpec` (a request) -> :class:`ResolvedRun` (``config.yaml``)
- :mod:`~lnn_control.runs.overrides`: ``--set key.path=value``, ``--grid``, ``--seeds``
- :mod:`~lnn_control.runs.layout`: where the files of a run live (:class:`RunDir`)
- :mod:`~lnn_control.runs.training`: :func:`train`, :func:`resume` (SIGINT/SIGTERM save a checkpoint)
- :mod:`~lnn_control.runs.callback`: periodic evaluation, best/last checkpoints, status
- :mod:`~lnn_control.runs.checkpoint`, :mod:`~lnn_control.runs.rng` (with :mod:`lnn_control.atomic`):
  atomic, self-contained checkpoints (model + VecNormalize statistics + RNG states)
- :mod:`~lnn_control.runs.normalization`: frozen normalisation of evaluation envs, VecNormalize statistics
  as arrays (the envs come from :func:`lnn_control.sim.make_vec_env`)
- :mod:`~lnn_control.runs.eval_episodes`, :mod:`~lnn_control.runs.evalcsv`: episodes and ``eval.csv``
- :mod:`~lnn_control.runs.playback`: :func:`evaluate_run`, :func:`load_policy`; :mod:`~lnn_control.runs.video`
- :mod:`~lnn_control.runs.plotting`, :mod:`~lnn_control.runs.compare`: :func:`compare_runs`
- :mod:`~lnn_control.runs.sweep`: :func:`run_sweep` (local processes or Ray)
- :mod:`~lnn_control.runs.run_export`: :func:`export_run`

Names are imported lazily, so that ``lnn-control --help`` does not load torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnn_control.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "RunError": "errors",
    "RunSpec": "config",
    "ResolvedRun": "config",
    "RunDir": "layout",
    "TrainResult": "training",
    "train": "training",
    "resume": "training",
    "default_run_dir": "training",
    "EvalReport": "playback",
    "evaluate_run": "playback",
    "load_policy": "playback",
    "Comparison": "compare",
    "compare_runs": "compare",
    "SweepResult": "sweep",
    "plan_sweep": "sweep",
    "run_sweep": "sweep",
    "export_run": "run_export",
    "EvalRow": "evalcsv",
    "read_rows": "evalcsv",
}

__all__ = [
    "Comparison",
    "EvalReport",
    "EvalRow",
    "ResolvedRun",
    "RunDir",
    "RunError",
    "RunSpec",
    "SweepResult",
    "TrainResult",
    "compare_runs",
    "default_run_dir",
    "evaluate_run",
    "export_run",
    "load_policy",
    "plan_sweep",
    "read_rows",
    "resume",
    "run_sweep",
    "train",
]

if TYPE_CHECKING:
    from .compare import Comparison, compare_runs
    from .config import ResolvedRun, RunSpec
    from .errors import RunError
    from .evalcsv import EvalRow, read_rows
    from .layout import RunDir
    from .playback import EvalReport, evaluate_run, load_policy
    from .run_export import export_run
    from .sweep import SweepResult, plan_sweep, run_sweep
    from .training import TrainResult, default_run_dir, resume, train


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
