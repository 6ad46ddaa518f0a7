"""Gymnasium registration of the task catalogue under the ``lnn`` namespace.

Importing this module (``import lnn_control`` does) registers every valid file of the catalogue as
``lnn/<id>``, so that ``gymnasium.make("lnn/HalfCheetah-NoVel-Jitter-v0")`` builds the Gymnasium v5 env plus
the catalogue's wrappers, with ``max_episode_steps`` from the entry. Registration only parses the YAML files
and calls ``gymnasium.register`` with a string entry point (:func:`make_env`); MuJoCo is loaded when an env is
made. Importing twice (or calling :func:`register_catalogue` again) is harmless. An invalid catalogue file is
skipped with a warning naming the file and field (``load_catalogue()`` raises the same error).

Env stack built by :func:`make_env` (innermost first)::

    <Base>Env (Gymnasium v5, frame_skip = timing.frame_skip)
    -> ReportDt (regular timing) | ControlTimingWrapper (jitter / choices / drops)
    -> observation wrappers of the entry, in order (mask, noise, delay, append_dt)
    -> [gymnasium.make adds PassiveEnvChecker, OrderEnforcing, TimeLimit(max_episode_steps)]
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import gymnasium

from lnn_control.sim.catalogue import (
    AppendDtSpec,
    CatalogueError,
    DelaySpec,
    MaskSpec,
    NoiseSpec,
    TaskSpec,
    catalogue_dir,
    get_task,
    load_task_file,
)

__all__ = ["ENTRY_POINT", "build_env", "make_env", "register_catalogue"]

ENTRY_POINT = "lnn_control.sim.registration:make_env"


def build_env(spec: TaskSpec, *, render_mode: str | None = None, **env_kwargs: Any) -> gymnasium.Env:
    """Build the env of a catalogue entry without ``TimeLimit`` (see the module docstring for the stack).

    Args:
        spec: a validated catalogue entry.
        render_mode: passed to the Gymnasium v5 constructor.
        **env_kwargs: v5 constructor arguments, overriding the entry's ``env_kwargs`` (not ``frame_skip``:
            the control period is the entry's ``timing``).
    """
    from gymnasium.envs.registration import load_env_creator

    from lnn_control.sim import wrappers as w

    if "frame_skip" in env_kwargs:
        raise ValueError(
            f"frame_skip={env_kwargs['frame_skip']!r} cannot be overridden for {spec.id}; the control period "
            "comes from the catalogue entry's timing (write a new entry to change it)"
        )
    creator = load_env_creator(gymnasium.spec(spec.base_task.gym_id).entry_point)
    kwargs = {**spec.env_kwargs, **env_kwargs, "frame_skip": spec.timing.frame_skip}
    env = creator(render_mode=render_mode, **kwargs)
    env = w.ReportDt(env) if spec.timing.is_regular else w.ControlTimingWrapper(env, spec.timing)
    for ws in spec.wrappers:
        if isinstance(ws, MaskSpec) and ws.kind == "novel":
            env = w.NoVelocity(env, spec.base)
        elif isinstance(ws, MaskSpec) and ws.kind == "nopos":
            env = w.NoPosition(env, spec.base)
        elif isinstance(ws, MaskSpec):
            env = w.ObservationMask(env, ws.indices)
        elif isinstance(ws, NoiseSpec):
            env = w.GaussianObservationNoise(env, ws.std)
        elif isinstance(ws, DelaySpec):
            env = w.ObservationDelay(env, ws.steps)
        elif isinstance(ws, AppendDtSpec):
            env = w.AppendDt(env)
        else:  # pragma: no cover - the catalogue validates wrapper types
            raise TypeError(f"unknown wrapper spec {ws!r}")
    return env


def make_env(task: str, render_mode: str | None = None, **env_kwargs: Any) -> gymnasium.Env:
    """Gymnasium entry point of ``lnn/<id>``: :func:`build_env` of ``get_task(task)`` (id or YAML path)."""
    return build_env(get_task(task), render_mode=render_mode, **env_kwargs)


def register_catalogue(directory: str | Path | None = None) -> tuple[str, ...]:
    """Register every valid catalogue file as ``lnn/<id>``; returns the registered Gymnasium ids.

    Entries already registered with the same entry point, kwargs and ``max_episode_steps`` are left alone;
    changed ones are replaced silently. Invalid files are skipped with a ``UserWarning``.
    """
    directory = catalogue_dir() if directory is None else Path(directory)
    in_default = directory.resolve() == catalogue_dir().resolve()
    registered: list[str] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            spec = load_task_file(path)
        except CatalogueError as exc:
            warnings.warn(f"lnn_control: task not registered: {exc}", UserWarning, stacklevel=2)
            continue
        kwargs = {"task": spec.id if in_default else str(path.resolve())}
        existing = gymnasium.registry.get(spec.gym_id)
        if existing is not None:
            same = (
                existing.entry_point == ENTRY_POINT
                and existing.kwargs == kwargs
                and existing.max_episode_steps == spec.max_episode_steps
            )
            if same:
                registered.append(spec.gym_id)
                continue
            del gymnasium.registry[spec.gym_id]
        gymnasium.register(
            id=spec.gym_id,
            entry_point=ENTRY_POINT,
            max_episode_steps=spec.max_episode_steps,
            kwargs=kwargs,
        )
        registered.append(spec.gym_id)
    return tuple(registered)


register_catalogue()
