"""Batched MuJoCo VecEnv: all environments of a Gymnasium v5 MuJoCo task stepped in one
``mujoco.batch.Batch`` call per control step, with vectorised numpy reward/termination/observation.

It is a Stable-Baselines3 :class:`~stable_baselines3.common.vec_env.VecEnv` and behaves like
``DummyVecEnv([lambda: gymnasium.make("<Task>-v5")] * n_envs)``: same spaces, same auto-reset (the
returned observation of a finished env is its reset observation; ``infos[i]["terminal_observation"]`` is
the last real one; ``infos[i]["TimeLimit.truncated"]`` flags time-limit truncations), float32 rewards,
bool dones, and per-env ``info`` dicts with Gymnasium's keys plus ``info["dt"]``, the physical seconds
since the env's previous observation (``reset_infos[i]["dt"]``: the nominal period). Given the same state
and actions, observations and rewards agree with Gymnasium's to float precision (see
tests/test_sim_tasks_parity.py).

Differences from ``DummyVecEnv`` worth knowing:

- Reset noise of all envs comes from one ``numpy.random.Generator`` (seeded by ``seed=`` or by
  ``seed(s)`` before ``reset()``), so a seed gives reproducible trajectories but not the exact random
  streams of ``gymnasium.make(...).reset(seed=s + i)``.
- Control timing may vary per env and step (``timing``): each env then advances its own number of physics
  substeps, and rate terms (forward velocity) divide by that env's actual dt.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any, Protocol

import gymnasium as gym
import mujoco
import mujoco.batch
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from lnn_control.checks import positive_int
from lnn_control.sim.randomization import ModelRandomization, ModelRandomizer
from lnn_control.sim.tasks import MujocoTask, known_tasks, make_task

__all__ = ["BatchedMujocoVecEnv", "SubstepSampler"]


class SubstepSampler(Protocol):
    """What ``timing=`` must provide (e.g. :class:`lnn_control.sim.control_timing.ControlTiming`)."""

    def sample_substeps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Physics substeps (>= 1) of one control step per env: int array (n,)."""
        ...


class BatchedMujocoVecEnv(VecEnv):
    """``n_envs`` copies of a Gymnasium v5 MuJoCo task in one ``mujoco.batch.Batch``.

    Args:
        task: base task name without version: "HalfCheetah", "Hopper", "Walker2d", "Ant", "Swimmer",
            "InvertedPendulum", "InvertedDoublePendulum", "Reacher". A catalogue entry
            ("HalfCheetah-NoVel-Jitter-v0") is built by :func:`lnn_control.sim.make_vec_env`, which passes
            its base task, timing and time limit here and adds its observation wrappers.
        n_envs: number of environments (>= 1).
        seed: seed of the Generator used for reset noise, timing and randomisation.
        nthread: batch threads (0: all CPUs).
        frame_skip: nominal physics substeps per control step (default: the task's v5 frame_skip).
        timing: optional object with ``sample_substeps(rng, n) -> (n,) int`` drawing each env's substeps
            per control step (dropped frames included); None = constant ``frame_skip``.
        randomization: optional per-env model randomisation.
        max_episode_steps: time limit in steps (None: the v5 registration's, 1000, or 50 for Reacher;
            0: no time limit).
        render_mode: None or "rgb_array" (offscreen, needs ``MUJOCO_GL=egl`` or ``osmesa`` without display).
        **task_kwargs: the task's v5 constructor arguments (``ctrl_cost_weight``, ``reset_noise_scale``,
            ``exclude_current_positions_from_observation``, ``healthy_z_range``, ..., ``xml_file``,
            ``width``, ``height``, ``camera_id``, ``camera_name``, ``default_camera_config``).
    """

    render_modes = (None, "rgb_array")

    def __init__(
        self,
        task: str,
        n_envs: int,
        *,
        seed: int | None = None,
        nthread: int = 0,
        frame_skip: int | None = None,
        timing: SubstepSampler | None = None,
        randomization: ModelRandomization | None = None,
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        **task_kwargs: Any,
    ) -> None:
        if not isinstance(task, str):
            raise TypeError(f"task must be a task name (str), got {task!r}; known tasks: {known_tasks()}")
        positive_int("n_envs", n_envs)
        if render_mode not in self.render_modes:
            raise ValueError(f"render_mode must be one of {list(self.render_modes)}, got {render_mode!r}")
        if timing is not None and not callable(getattr(timing, "sample_substeps", None)):
            raise TypeError(f"timing must have a sample_substeps(rng, n) method, got {timing!r}")
        if randomization is not None and not isinstance(randomization, ModelRandomization):
            raise TypeError(f"randomization must be a ModelRandomization or None, got {randomization!r}")
        n_envs = int(n_envs)

        self.task_name = task
        self.task: MujocoTask = make_task(task, **task_kwargs)
        self.frame_skip = positive_int(
            "frame_skip", self.task.frame_skip if frame_skip is None else frame_skip
        )
        self.spec = gym.spec(f"{task}-v5")
        if max_episode_steps is None:
            max_episode_steps = self.spec.max_episode_steps
        if max_episode_steps is not None and max_episode_steps < 0:
            raise ValueError(f"max_episode_steps must be >= 0 (0 = no limit), got {max_episode_steps}")
        self.max_episode_steps = max_episode_steps or None
        self.render_mode = render_mode
        self.timing = timing
        self._rng = np.random.default_rng(seed)

        # physics: the task's model in one batch; bind every field before the first call
        self.model = self.task.build_model()
        self.batch = mujoco.batch.Batch(self.model, n_envs, nthread=nthread, persistent=self.task.persistent)
        self.task.setup(self.model, self.batch)
        self._qpos = self.task.qpos
        self._qvel = self.task.qvel
        self._ctrl = self.batch.bind("ctrl")
        self._time = self.batch.bind("time")
        self.timestep = float(self.model.opt.timestep)

        self.randomization = randomization
        self._randomizer: ModelRandomizer | None = None
        if randomization is not None and randomization.enabled:
            self._randomizer = ModelRandomizer(randomization, self.model, self.batch)
            self._randomizer.apply(self._rng, np.arange(n_envs))

        bounds = self.model.actuator_ctrlrange.copy().astype(np.float32)
        action_space = spaces.Box(low=bounds[:, 0], high=bounds[:, 1], dtype=np.float32)
        obs_size = self.task.observation_size()
        observation_space = spaces.Box(low=-np.inf, high=np.inf, shape=(obs_size,), dtype=np.float64)
        super().__init__(n_envs, observation_space, action_space)

        self._obs = np.zeros((n_envs, obs_size), dtype=np.float64)
        self._episode_steps = np.zeros(n_envs, dtype=np.int64)
        self._last_dt = np.full(n_envs, self.dt)
        self._actions: np.ndarray | None = None
        self._renderer: mujoco.Renderer | None = None
        self._render_data: mujoco.MjData | None = None
        self._closed = False
        # reset once so that the state is valid before the user's reset (as gymnasium.make envs are not)
        self._reset_envs(np.arange(n_envs))

    # ------------------------------------------------------------------ properties
    @property
    def dt(self) -> float:
        """Nominal control period, seconds (timestep * frame_skip), as ``env.unwrapped.dt``."""
        return self.timestep * self.frame_skip

    @property
    def episode_steps(self) -> np.ndarray:
        """Steps taken in each env's current episode, (n_envs,) int (a copy)."""
        return self._episode_steps.copy()

    @property
    def np_random(self) -> np.random.Generator:
        """The Generator of reset noise, timing and randomisation."""
        return self._rng

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> VecEnvObs:
        """Reset every env; uses the seed given to :meth:`seed` (once), like DummyVecEnv."""
        seed = self._seeds[0]
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._reset_envs(np.arange(self.num_envs))
        self._reset_seeds()
        self._reset_options()
        return self._obs.copy()

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next :meth:`reset`. All envs share one Generator seeded with ``seed``; returns
        ``[seed] * n_envs``."""
        if seed is None:
            seed = int(np.random.randint(0, np.iinfo(np.uint32).max, dtype=np.uint32))
        self._seeds = [int(seed)] * self.num_envs
        return list(self._seeds)

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.array(actions, copy=True)  # the caller may reuse its buffer before step_wait
        expected = (self.num_envs, *self.action_space.shape)
        if actions.shape != expected:
            raise ValueError(f"actions must have shape {expected} (n_envs, action_dim), got {actions.shape}")
        if not np.issubdtype(actions.dtype, np.number):
            raise ValueError(f"actions must be numeric, got dtype {actions.dtype}")
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without a pending step_async(actions)")
        actions, self._actions = self._actions, None
        n = self.num_envs
        substeps = self._sample_substeps()
        dt = substeps * self.timestep  # (n,) float64, as gymnasium's timestep * frame_skip

        before = self.task.before_step()
        self._ctrl[:] = actions
        self._physics(substeps)
        self.task.after_physics(self.batch)
        obs = self.task.observe()
        result = self.task.evaluate(before, actions, dt)

        self._episode_steps += 1
        self._last_dt = dt
        terminated = np.asarray(result.terminated, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = self._episode_steps >= self.max_episode_steps
        else:
            truncated = np.zeros(n, dtype=bool)
        dones = terminated | truncated
        time_limit = (truncated & ~terminated).tolist()

        keys = [*result.info, "dt"]
        columns = [np.asarray(v).tolist() for v in result.info.values()]
        columns.append(dt.tolist())
        infos: list[dict[str, Any]] = [
            dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)
        ]
        for info, tl in zip(infos, time_limit, strict=True):
            info["TimeLimit.truncated"] = tl

        done_ids = np.flatnonzero(dones)
        if done_ids.size:
            for i in done_ids.tolist():
                infos[i]["terminal_observation"] = obs[i].copy()
            self._obs[:] = obs
            self._reset_envs(done_ids)
            obs = self._obs.copy()
        else:
            self._obs[:] = obs
        return obs, result.reward.astype(np.float32), dones, infos

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._closed = True

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Per-env attribute values. The envs share one object, so most attributes are the same for every
        env; "model" and "data" give env i's own MjModel/MjData (copies, via ``batch.get_model/get_data``),
        "last_dt" the dt of env i's last step. Raises AttributeError for unknown names."""
        ids = list(self._get_indices(indices))
        if attr_name == "model":
            return [self.batch.get_model(i) for i in ids]
        if attr_name == "data":
            return [self._materialize_data(i) for i in ids]
        if attr_name == "last_dt":
            return [float(self._last_dt[i]) for i in ids]
        if attr_name in ("unwrapped", "env"):
            return [self for _ in ids]
        value = getattr(self, attr_name)  # AttributeError for unknown names, as has_attr expects
        return [value for _ in ids]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the (shared) env object; only for all envs at once."""
        ids = list(self._get_indices(indices))
        if sorted(ids) != list(range(self.num_envs)):
            raise ValueError(
                f"BatchedMujocoVecEnv shares attributes among its envs; set_attr({attr_name!r}) needs all "
                f"{self.num_envs} envs (indices=None), got indices {ids}"
            )
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        """Call a method of the env. "render" returns one image per index; other methods are called once
        on the shared object and their result is repeated per index."""
        ids = list(self._get_indices(indices))
        if method_name == "render":
            return list(self.get_images(ids))
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in ids]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """The envs are not gymnasium envs, so no gymnasium wrapper wraps them: all False."""
        return [False for _ in self._get_indices(indices)]

    # ------------------------------------------------------------------ state
    def get_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of every env's qpos (n_envs, nq) and qvel (n_envs, nv)."""
        return self._qpos.copy(), self._qvel.copy()

    def set_state(self, qpos: np.ndarray, qvel: np.ndarray, indices: VecEnvIndices = None) -> None:
        """Set qpos (k, nq) and qvel (k, nv) of envs ``indices`` (default all, k = n_envs), then run
        mj_forward on them (like gymnasium's ``MujocoEnv.set_state``), so that observations follow.
        The current observation buffer is refreshed too (``observe()``)."""
        ids = np.asarray(list(self._get_indices(indices)), dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_envs):
            raise ValueError(f"indices must be in [0, {self.num_envs}), got {ids.tolist()}")
        qpos = np.asarray(qpos, dtype=np.float64)
        qvel = np.asarray(qvel, dtype=np.float64)
        k, nq, nv = ids.size, self.model.nq, self.model.nv
        if qpos.shape != (k, nq):
            raise ValueError(f"qpos must have shape {(k, nq)} (envs, nq), got {qpos.shape}")
        if qvel.shape != (k, nv):
            raise ValueError(f"qvel must have shape {(k, nv)} (envs, nv), got {qvel.shape}")
        self._qpos[ids] = qpos
        self._qvel[ids] = qvel
        self.batch.forward(ids)
        self._obs[ids] = self.task.observe(ids)

    def observe(self) -> np.ndarray:
        """Current observations of all envs, (n_envs, obs_dim) float64 (a copy)."""
        return self._obs.copy()

    @property
    def sim_time(self) -> np.ndarray:
        """Simulated time of each env since its last reset, seconds, (n_envs,) (a copy)."""
        return self._time.copy()

    # ------------------------------------------------------------------ rendering
    def get_images(self, indices: VecEnvIndices = None) -> Sequence[np.ndarray | None]:
        """RGB images (H, W, 3) uint8 of envs ``indices`` (default all), for ``render_mode="rgb_array"``."""
        ids = list(self._get_indices(indices))
        if self.render_mode != "rgb_array":
            warnings.warn(
                f"The render mode is {self.render_mode}, but get_images() needs render_mode='rgb_array'.",
                stacklevel=2,
            )
            return [None for _ in ids]
        renderer = self._get_renderer()
        camera = self._camera()
        images = []
        for i in ids:
            data = self._materialize_data(i)
            renderer.update_scene(data, camera=camera)
            images.append(renderer.render().copy())
        return images

    def render(self, mode: str | None = None) -> np.ndarray | None:
        """Tiled RGB image of all envs (as DummyVecEnv); see :meth:`get_images` for single envs."""
        return super().render(mode=mode)

    def _materialize_data(self, i: int) -> mujoco.MjData:
        data = self.batch.get_data(i)
        if not self.batch.persistent:
            mujoco.mj_forward(self.batch.get_model(i), data)
        return data

    def _get_renderer(self) -> mujoco.Renderer:
        if self._renderer is None:
            p = self.task.params
            try:
                self._renderer = mujoco.Renderer(
                    self.model, height=int(p["height"]), width=int(p["width"]), max_geom=int(p["max_geom"])
                )
            except Exception as err:
                raise RuntimeError(
                    "BatchedMujocoVecEnv could not create an offscreen OpenGL context for rendering "
                    f"(MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}, "
                    f"DISPLAY={os.environ.get('DISPLAY')!r}): {err}. "
                    "Without a display set MUJOCO_GL=egl (GPU/EGL) or MUJOCO_GL=osmesa (software) in the "
                    "environment before Python imports mujoco."
                ) from err
        return self._renderer

    def _camera(self) -> mujoco.MjvCamera | int | str:
        p = self.task.params
        if p["camera_id"] is not None and p["camera_name"] is not None:
            raise ValueError("camera_id and camera_name cannot both be set")
        if p["camera_name"] is not None:
            return str(p["camera_name"])
        if p["camera_id"] is not None and p["camera_id"] != -1:
            return int(p["camera_id"])
        cam = mujoco.MjvCamera()
        mujoco.mjv_defaultFreeCamera(self.model, cam)
        for key, value in (p["default_camera_config"] or {}).items():
            if isinstance(value, np.ndarray):
                getattr(cam, key)[:] = value
            else:
                setattr(cam, key, value)
        return cam

    # ------------------------------------------------------------------ internals
    def _sample_substeps(self) -> np.ndarray:
        n = self.num_envs
        if self.timing is None:
            return np.full(n, self.frame_skip, dtype=np.int64)
        substeps = np.asarray(self.timing.sample_substeps(self._rng, n))
        if substeps.shape != (n,):
            raise ValueError(f"timing.sample_substeps must return shape ({n},), got {substeps.shape}")
        if not np.issubdtype(substeps.dtype, np.integer):
            if not np.all(np.mod(substeps, 1) == 0):
                raise ValueError(f"timing.sample_substeps must return integers, got {substeps}")
            substeps = substeps.astype(np.int64)
        if substeps.min() < 1:
            bad = int(np.argmin(substeps))
            raise ValueError(f"substeps must be >= 1, got {int(substeps[bad])} for env {bad}")
        return substeps.astype(np.int64, copy=False)

    def _physics(self, substeps: np.ndarray) -> None:
        """One batch.step call per distinct substep count (one call in the constant-timing case)."""
        first = int(substeps[0])
        if np.all(substeps == first):
            self.batch.step(nstep=first)
            return
        for k in np.unique(substeps).tolist():
            self.batch.step(ids=np.flatnonzero(substeps == k), nstep=int(k))

    def _reset_envs(self, ids: np.ndarray) -> None:
        """Reset envs ``ids`` as gymnasium's MujocoEnv.reset does (mj_resetData, noisy qpos/qvel,
        mj_forward), resample per-episode randomisation, store observations and reset infos."""
        if self._randomizer is not None and self.randomization is not None and self.randomization.per_episode:
            self._randomizer.apply(self._rng, ids)
        self.batch.reset(ids, stage=int(mujoco.mjtStage.mjSTAGE_NONE))
        qpos, qvel = self.task.sample_reset(self._rng, ids.size)
        self._qpos[ids] = qpos
        self._qvel[ids] = qvel
        self.batch.forward(ids)
        self.task.on_reset(ids)
        self._obs[ids] = self.task.observe(ids)
        self._episode_steps[ids] = 0
        info = self.task.reset_info(ids)
        keys = list(info)
        columns = [np.asarray(v).tolist() for v in info.values()]
        for j, i in enumerate(ids.tolist()):
            self.reset_infos[i] = {key: col[j] for key, col in zip(keys, columns, strict=True)}
            self.reset_infos[i]["dt"] = self.dt  # a new episode's first observation: the nominal period
