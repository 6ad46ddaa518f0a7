"""``make_vec_env``: one catalogue entry, two VecEnv forms with the same semantics.

* ``batched=True``: :class:`~lnn_control.sim.batched.BatchedMujocoVecEnv` over ``mujoco.batch`` (physics-side
  timing through ``timing=``), then the Vec* observation wrappers in the catalogue's order.
* ``batched=False``: Stable-Baselines3 ``DummyVecEnv`` (or ``vec_env_cls``) over
  ``gymnasium.make("lnn/<id>")`` envs, each with its Gymnasium wrappers.

Both report ``infos[i]["dt"]`` and, with ``monitor=True``, ``infos[i]["episode"]`` at episode ends (SB3's
``Monitor`` per env, or ``VecMonitor`` over the batched env).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from lnn_control.checks import positive_int
from lnn_control.sim.catalogue import (
    AppendDtSpec,
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

__all__ = ["apply_vec_wrappers", "make_vec_env"]

# Keyword arguments that only the batched env understands.
_BATCHED_ONLY = ("nthread", "randomization")


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


def make_vec_env(
    name: str | Path | TaskSpec,
    n_envs: int = 1,
    *,
    batched: bool = True,
    seed: int | None = None,
    monitor: bool = True,
    vec_env_cls: type[VecEnv] | None = None,
    backend: str | None = None,
    **kwargs: Any,
) -> VecEnv:
    """Build ``n_envs`` copies of catalogue task ``name`` as one VecEnv.

    Args:
        name: catalogue id (``"HalfCheetah-NoVel-Jitter-v0"``, ``"lnn/"`` prefix allowed), a YAML file path,
            or a :class:`~lnn_control.sim.catalogue.TaskSpec`.
        n_envs: number of environments (>= 1).
        batched: True for :class:`BatchedMujocoVecEnv`, False for SB3's ``DummyVecEnv`` over Gymnasium envs.
        seed: seed of the envs (env ``i`` gets ``seed + i`` in the unbatched form, as in SB3) and of the
            observation noise.
        monitor: record episode returns/lengths in ``infos[i]["episode"]`` (``Monitor``/``VecMonitor``).
        vec_env_cls: unbatched only: the SB3 VecEnv class (default ``DummyVecEnv``).
        backend: None (``batched`` decides), or ``"mjx"``: :class:`~lnn_control.sim.mjx.MjxVecEnv` on a
            JAX device (``device=``, ``x64=`` in ``kwargs``; needs the ``gpu`` extra).
        **kwargs: batched: ``BatchedMujocoVecEnv`` arguments (``nthread``, ``randomization``, ``render_mode``,
            v5 task arguments) overriding the entry's ``env_kwargs``; unbatched: ``gymnasium.make`` arguments
            (``render_mode``, v5 constructor arguments).
    Returns:
        the VecEnv; observations ``(n_envs, D)`` as the catalogue entry defines them.
    """
    spec = get_task(name)
    positive_int("n_envs", n_envs)
    if "frame_skip" in kwargs or "timing" in kwargs or "max_episode_steps" in kwargs:
        raise ValueError(
            f"frame_skip, timing and max_episode_steps come from the catalogue entry {spec.id} "
            "(write a new entry to change them)"
        )

    if backend is not None:
        if backend != "mjx":
            raise ValueError(f"backend must be None or 'mjx', got {backend!r}")
        if vec_env_cls is not None:
            raise ValueError("vec_env_cls applies to batched=False only")
        from lnn_control.sim.mjx._deps import require_mjx

        require_mjx()  # one clear ImportError naming the gpu extra
        from lnn_control.sim.mjx.env import MjxVecEnv

        venv = MjxVecEnv(
            spec.base,
            n_envs,
            seed=seed,
            frame_skip=spec.timing.frame_skip,
            timing=None if spec.timing.is_regular else spec.timing,
            max_episode_steps=spec.max_episode_steps,
            **{**spec.env_kwargs, **kwargs},
        )
        venv = apply_vec_wrappers(venv, spec, seed=seed)
        return VecMonitor(venv) if monitor else venv

    if batched:
        if vec_env_cls is not None:
            raise ValueError("vec_env_cls applies to batched=False only")
        from lnn_control.sim.batched import BatchedMujocoVecEnv

        venv: VecEnv = BatchedMujocoVecEnv(
            spec.base,
            n_envs,
            seed=seed,
            frame_skip=spec.timing.frame_skip,
            timing=None if spec.timing.is_regular else spec.timing,
            max_episode_steps=spec.max_episode_steps,
            **{**spec.env_kwargs, **kwargs},
        )
        venv = apply_vec_wrappers(venv, spec, seed=seed)
        return VecMonitor(venv) if monitor else venv

    bad = [k for k in _BATCHED_ONLY if k in kwargs]
    if bad:
        raise ValueError(f"{bad} apply to batched=True only")
    target = _gym_spec(spec)

    def make_one(**env_kwargs: Any) -> gymnasium.Env:
        return gymnasium.make(target, **env_kwargs)

    if monitor:  # SB3's helper: Monitor per env, seeds seed + i
        return sb3_make_vec_env(
            make_one, n_envs=n_envs, seed=seed, env_kwargs=kwargs, vec_env_cls=vec_env_cls
        )
    return _plain_vec_env(make_one, n_envs, seed, kwargs, vec_env_cls)


def _plain_vec_env(
    make_one: Any, n_envs: int, seed: int | None, kwargs: dict[str, Any], vec_env_cls: type[VecEnv] | None
) -> VecEnv:
    from stable_baselines3.common.vec_env import DummyVecEnv

    cls = DummyVecEnv if vec_env_cls is None else vec_env_cls
    venv = cls([lambda: make_one(**kwargs) for _ in range(n_envs)])
    if seed is not None:
        venv.seed(seed)
    return venv
