"""``make_vec_env``: the one factory of VecEnvs, for catalogue tasks and plain Gymnasium envs alike.

A catalogue entry (id, YAML file or :class:`~lnn_control.sim.catalogue.TaskSpec`) comes in two forms with the
same semantics:

* ``batched=True``: :class:`~lnn_control.sim.batched.BatchedMujocoVecEnv` over ``mujoco.batch`` (physics-side
  timing through ``timing=``), then the Vec* observation wrappers in the catalogue's order. Where the batched
  env does not implement the entry's base task, Gymnasium envs as ``batched=False``.
* ``batched=False``: Stable-Baselines3 ``DummyVecEnv`` (or ``vec_env_cls``) over
  ``gymnasium.make("lnn/<id>")`` envs, each with its Gymnasium wrappers.

``backend="mjx"`` builds the base env on a JAX device instead (:class:`~lnn_control.sim.mjx.MjxVecEnv`).
The catalogue entry is resolved to its base env here, in :func:`base_env_args`, and only here: the env
classes take a base task and explicit timing.

A Gymnasium id that is not in the catalogue (``"Pendulum-v1"``) or a callable returning a ``gymnasium.Env``
gives SB3's ``DummyVecEnv`` (or ``vec_env_cls``) over those envs, as SB3's own ``make_vec_env`` does.

All report ``infos[i]["dt"]`` (catalogue tasks; a plain Gymnasium env where it reports one) and, with
``monitor=True``, ``infos[i]["episode"]`` at episode ends (SB3's ``Monitor`` per env, or ``VecMonitor`` over
the batched env).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.vec_env import VecCheckNan, VecEnv, VecMonitor

from lnn_control.checks import positive_int
from lnn_control.sim.catalogue import (
    AppendDtSpec,
    CatalogueError,
    DelaySpec,
    MaskSpec,
    NoiseSpec,
    TaskSpec,
    catalogue_dir,
    get_task,
)
from lnn_control.sim.masks import observation_indices
from lnn_control.sim.registration import ENTRY_POINT
from lnn_control.sim.vec_wrappers import (
    VecAppendDt,
    VecObservationDelay,
    VecObservationMask,
    VecObservationNoise,
)

__all__ = ["apply_vec_wrappers", "base_env_args", "make_vec_env"]

# What a catalogue entry fixes for its base env (a new entry changes them, not a keyword argument).
_FROM_ENTRY = ("frame_skip", "timing", "max_episode_steps")

EnvSource = str | Path | TaskSpec | Callable[..., gymnasium.Env]


def base_env_args(spec: TaskSpec, overrides: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The base task and constructor keyword arguments of catalogue entry ``spec``'s base VecEnv
    (:class:`~lnn_control.sim.batched.BatchedMujocoVecEnv` or :class:`~lnn_control.sim.mjx.MjxVecEnv`):
    ``frame_skip``, ``timing`` (None for regular timing), ``max_episode_steps`` and the entry's v5 task
    arguments with ``overrides`` on top. The entry's observation wrappers are not part of it
    (:func:`apply_vec_wrappers`).

    Raises:
        ValueError: ``overrides`` sets frame_skip, timing or max_episode_steps (the entry fixes them).
    """
    overrides = dict(overrides or {})
    fixed = [k for k in _FROM_ENTRY if k in overrides]
    if fixed:
        raise ValueError(
            f"frame_skip, timing and max_episode_steps come from the catalogue entry {spec.id}, got {fixed} "
            "(write a new entry to change them)"
        )
    return spec.base, {
        "frame_skip": spec.timing.frame_skip,
        "timing": None if spec.timing.is_regular else spec.timing,
        "max_episode_steps": spec.max_episode_steps,
        **spec.env_kwargs,
        **overrides,
    }


def apply_vec_wrappers(venv: VecEnv, spec: TaskSpec, seed: int | None = None) -> VecEnv:
    """Wrap ``venv`` (the base task's full observation, reporting ``infos[i]["dt"]``) with the entry's
    observation wrappers, in order."""
    for ws in spec.wrappers:
        if isinstance(ws, MaskSpec):
            dim = venv.observation_space.shape[0]
            idx = observation_indices(spec.base, ws.kind, dim) if ws.kind is not None else ws.indices
            venv = VecObservationMask(venv, idx)
        elif isinstance(ws, NoiseSpec):
            venv = VecObservationNoise(venv, ws.std, seed=seed)
        elif isinstance(ws, DelaySpec):
            venv = VecObservationDelay(venv, ws.steps)
        elif isinstance(ws, AppendDtSpec):
            venv = VecAppendDt(venv, nominal_dt=spec.nominal_dt)
        else:  # pragma: no cover - the catalogue validates wrapper types
            raise TypeError(f"unknown wrapper spec {ws!r}")
    return venv


def _gym_spec(spec: TaskSpec) -> str | gymnasium.envs.registration.EnvSpec:
    """What to pass to ``gymnasium.make``: the registered id, or an unregistered EnvSpec for outside files."""
    in_catalogue = spec.path is not None and spec.path.resolve().parent == catalogue_dir().resolve()
    if in_catalogue and spec.gym_id in gymnasium.registry:
        return spec.gym_id
    return gymnasium.envs.registration.EnvSpec(
        id=spec.gym_id,
        entry_point=ENTRY_POINT,
        max_episode_steps=spec.max_episode_steps,
        kwargs={"task": str(spec.path.resolve()) if spec.path is not None else spec.id},
    )


def _resolve(name: EnvSource) -> TaskSpec | str | Callable[..., gymnasium.Env]:
    """A catalogue entry's TaskSpec; else a registered Gymnasium id or a callable, returned as is."""
    if callable(name):
        return name
    try:
        return get_task(name)
    except CatalogueError:
        if isinstance(name, str) and name in gymnasium.registry:
            return name
        raise


def _batched_implements(spec: TaskSpec) -> bool:
    """Whether :class:`BatchedMujocoVecEnv` implements the entry's base task."""
    from lnn_control.sim.tasks import known_tasks

    return spec.base in known_tasks()


def make_vec_env(
    name: EnvSource,
    n_envs: int = 1,
    *,
    batched: bool = True,
    seed: int | None = None,
    monitor: bool = True,
    check_nan: bool = False,
    vec_env_cls: type[VecEnv] | None = None,
    backend: str | None = None,
    nthread: int | None = None,
    render_mode: str | None = None,
    **kwargs: Any,
) -> VecEnv:
    """Build ``n_envs`` copies of task ``name`` as one VecEnv.

    Args:
        name: catalogue id (``"HalfCheetah-NoVel-Jitter-v0"``, ``"lnn/"`` prefix allowed), a YAML file path,
            a :class:`~lnn_control.sim.catalogue.TaskSpec`; or, outside the catalogue, a registered Gymnasium
            id (``"Pendulum-v1"``) or a callable returning a ``gymnasium.Env`` (both as SB3's
            ``make_vec_env``: ``DummyVecEnv``, whatever ``batched`` says).
        n_envs: number of environments (>= 1).
        batched: True for :class:`BatchedMujocoVecEnv` where it implements the catalogue task (else Gymnasium
            envs, as False), False for SB3's ``DummyVecEnv`` over Gymnasium envs.
        seed: seed of the envs (env ``i`` gets ``seed + i`` in the unbatched form, as in SB3) and of the
            observation noise.
        monitor: record episode returns/lengths in ``infos[i]["episode"]`` (``Monitor``/``VecMonitor``).
        check_nan: wrap the result in ``VecCheckNan(raise_exception=True)``: a NaN or inf from the simulator
            (or in the actions) raises instead of poisoning a policy.
        vec_env_cls: Gymnasium envs only: the SB3 VecEnv class (default ``DummyVecEnv``).
        backend: None (``batched`` decides), or ``"mjx"``: :class:`~lnn_control.sim.mjx.MjxVecEnv` on a
            JAX device (``device=``, ``x64=`` in ``kwargs``; needs the ``gpu`` extra).
        nthread: physics threads of the batched env (None: its default, all CPUs); ignored where a
            ``batched=True`` request falls back to Gymnasium envs, an error with ``batched=False``.
        render_mode: None or ``"rgb_array"``.
        **kwargs: batched: ``BatchedMujocoVecEnv`` arguments (``randomization``, v5 task arguments)
            overriding the entry's ``env_kwargs``; Gymnasium envs: ``gymnasium.make`` arguments (v5
            constructor arguments) or the callable's.
    Returns:
        the VecEnv; observations ``(n_envs, D)`` as the catalogue entry (or the Gymnasium env) defines them.
    """
    source = _resolve(name)
    positive_int("n_envs", n_envs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if isinstance(source, TaskSpec):
        venv = _catalogue_vec_env(
            source, n_envs, batched, seed, monitor, vec_env_cls, backend, nthread, kwargs
        )
    else:  # a plain Gymnasium env: no batched form
        if backend is not None:
            raise ValueError(f"backend={backend!r} needs a catalogue task, got {name!r}")
        venv = _gymnasium_vec_env(source, n_envs, seed, monitor, vec_env_cls, kwargs)
    # VecCheckNan outermost: it checks what the caller sees
    return VecCheckNan(venv, raise_exception=True) if check_nan else venv


def _catalogue_vec_env(
    spec: TaskSpec,
    n_envs: int,
    batched: bool,
    seed: int | None,
    monitor: bool,
    vec_env_cls: type[VecEnv] | None,
    backend: str | None,
    nthread: int | None,
    kwargs: dict[str, Any],
) -> VecEnv:
    """:func:`make_vec_env` of a catalogue entry."""
    base, env_kwargs = base_env_args(spec, kwargs)  # raises for frame_skip, timing, max_episode_steps
    if backend is not None and backend != "mjx":
        raise ValueError(f"backend must be None or 'mjx', got {backend!r}")
    if backend is not None or (batched and _batched_implements(spec)):
        if vec_env_cls is not None:
            raise ValueError("vec_env_cls applies to batched=False only")
        if nthread is not None:
            if backend is not None:
                raise ValueError(
                    f"nthread={nthread} sets the CPU batched backend's threads; backend='mjx' has none"
                )
            env_kwargs["nthread"] = nthread
        if backend is not None:
            from lnn_control.sim.mjx._deps import require_mjx

            require_mjx()  # one clear ImportError naming the gpu extra
            from lnn_control.sim.mjx.env import MjxVecEnv

            venv: VecEnv = MjxVecEnv(base, n_envs, seed=seed, **env_kwargs)
        else:
            from lnn_control.sim.batched import BatchedMujocoVecEnv

            venv = BatchedMujocoVecEnv(base, n_envs, seed=seed, **env_kwargs)
        venv = apply_vec_wrappers(venv, spec, seed=seed)
        return VecMonitor(venv) if monitor else venv

    given = {"nthread": nthread is not None, "randomization": "randomization" in kwargs}
    bad = [k for k, v in given.items() if v]
    if bad and not batched:
        raise ValueError(f"{bad} apply to batched=True only")
    if given["randomization"]:  # batched=True, but the batched env does not implement the task
        raise ValueError(f"randomization needs the batched env, which does not implement {base!r}")
    target = _gym_spec(spec)

    def make_one(**make_kwargs: Any) -> gymnasium.Env:
        return gymnasium.make(target, **make_kwargs)

    return _gymnasium_vec_env(make_one, n_envs, seed, monitor, vec_env_cls, kwargs)


def _gymnasium_vec_env(
    make_one: str | Callable[..., gymnasium.Env],
    n_envs: int,
    seed: int | None,
    monitor: bool,
    vec_env_cls: type[VecEnv] | None,
    kwargs: dict[str, Any],
) -> VecEnv:
    """``n_envs`` Gymnasium envs in a VecEnv (``make_one``: a Gymnasium id or a callable of ``kwargs``)."""
    if monitor:  # SB3's helper: Monitor per env, seeds seed + i
        return sb3_make_vec_env(
            make_one, n_envs=n_envs, seed=seed, env_kwargs=kwargs, vec_env_cls=vec_env_cls
        )
    from stable_baselines3.common.vec_env import DummyVecEnv

    make = functools.partial(gymnasium.make, make_one) if isinstance(make_one, str) else make_one
    cls = DummyVecEnv if vec_env_cls is None else vec_env_cls
    venv = cls([lambda: make(**kwargs) for _ in range(n_envs)])
    if seed is not None:
        venv.seed(seed)
    return venv
