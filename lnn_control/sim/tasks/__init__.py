"""Registry of the vectorised Gymnasium v5 MuJoCo tasks used by :class:`BatchedMujocoVecEnv`."""

from __future__ import annotations

from typing import Any

from lnn_control.sim.tasks.base import MujocoTask, StepResult
from lnn_control.sim.tasks.classic import InvertedDoublePendulum, InvertedPendulum, Reacher
from lnn_control.sim.tasks.locomotion import Ant, HalfCheetah, Hopper, Swimmer, Walker2d

TASKS: dict[str, type[MujocoTask]] = {
    cls.name: cls
    for cls in (
        HalfCheetah,
        Hopper,
        Walker2d,
        Ant,
        Swimmer,
        InvertedPendulum,
        InvertedDoublePendulum,
        Reacher,
    )
}


def known_tasks() -> list[str]:
    """Names of the supported tasks (Gymnasium MuJoCo names without version)."""
    return list(TASKS)


def make_task(name: str, **kwargs: Any) -> MujocoTask:
    """Instantiate task ``name`` (e.g. "HalfCheetah") with its v5 constructor arguments."""
    if name not in TASKS:
        hint = ""
        base = name.split("-v")[0]
        if base != name and base in TASKS:
            hint = f" (pass the name without version: {base!r})"
        raise ValueError(
            f"unknown task {name!r}{hint}; known tasks: {known_tasks()} (catalogue entries such as "
            "'Hopper-NoVel-Jitter-v0' are built by lnn_control.sim.make_vec_env)"
        )
    return TASKS[name](**kwargs)


__all__ = ["TASKS", "MujocoTask", "StepResult", "known_tasks", "make_task"]
