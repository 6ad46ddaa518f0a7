"""Gymnasium side of lnn-control: batched MuJoCo VecEnv, control timing, partial observability, catalogue.

Public names are imported lazily (PEP 562), so that ``import lnn_control`` (which registers the catalogue with
Gymnasium through :mod:`lnn_control.sim.registration`) does not import MuJoCo, Stable-Baselines3 or torch.

- control timing: :class:`ControlTiming`
- masks: :func:`observation_indices`
- Gymnasium wrappers: :class:`ControlTimingWrapper`, :class:`ReportDt`, :class:`ObservationMask`,
  :class:`NoVelocity`, :class:`NoPosition`, :class:`GaussianObservationNoise`, :class:`ObservationDelay`,
  :class:`AppendDt`
- VecEnv wrappers: :class:`VecObservationMask`, :class:`VecObservationNoise`, :class:`VecObservationDelay`,
  :class:`VecAppendDt`
- catalogue: :func:`load_catalogue`, :func:`get_task`, :class:`TaskSpec`, :class:`CatalogueError`
- construction: :func:`make_vec_env`, :class:`BatchedMujocoVecEnv`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnn_control.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "ControlTiming": "control_timing",
    "observation_indices": "masks",
    "ControlTimingWrapper": "wrappers",
    "ReportDt": "wrappers",
    "ObservationMask": "wrappers",
    "NoVelocity": "wrappers",
    "NoPosition": "wrappers",
    "GaussianObservationNoise": "wrappers",
    "ObservationDelay": "wrappers",
    "AppendDt": "wrappers",
    "VecObservationMask": "vec_wrappers",
    "VecObservationNoise": "vec_wrappers",
    "VecObservationDelay": "vec_wrappers",
    "VecAppendDt": "vec_wrappers",
    "CatalogueError": "catalogue",
    "TaskSpec": "catalogue",
    "get_task": "catalogue",
    "load_catalogue": "catalogue",
    "register_catalogue": "registration",
    "make_vec_env": "make",
    "BatchedMujocoVecEnv": "batched",
}

__all__ = [  # noqa: RUF022 - grouped as in _EXPORTS
    "ControlTiming",
    "observation_indices",
    "ControlTimingWrapper",
    "ReportDt",
    "ObservationMask",
    "NoVelocity",
    "NoPosition",
    "GaussianObservationNoise",
    "ObservationDelay",
    "AppendDt",
    "VecObservationMask",
    "VecObservationNoise",
    "VecObservationDelay",
    "VecAppendDt",
    "CatalogueError",
    "TaskSpec",
    "get_task",
    "load_catalogue",
    "register_catalogue",
    "make_vec_env",
    "BatchedMujocoVecEnv",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover - static analysers see the real names
    from lnn_control.sim.batched import BatchedMujocoVecEnv
    from lnn_control.sim.catalogue import CatalogueError, TaskSpec, get_task, load_catalogue
    from lnn_control.sim.control_timing import ControlTiming
    from lnn_control.sim.make import make_vec_env
    from lnn_control.sim.masks import observation_indices
    from lnn_control.sim.registration import register_catalogue
    from lnn_control.sim.vec_wrappers import (
        VecAppendDt,
        VecObservationDelay,
        VecObservationMask,
        VecObservationNoise,
    )
    from lnn_control.sim.wrappers import (
        AppendDt,
        ControlTimingWrapper,
        GaussianObservationNoise,
        NoPosition,
        NoVelocity,
        ObservationDelay,
        ObservationMask,
        ReportDt,
    )
