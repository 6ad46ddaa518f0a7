"""``MjxVecEnv``: the catalogue's MuJoCo tasks batched over envs on one JAX device with MuJoCo XLA.

The semantics are those of :class:`~lnn_control.sim.batched.BatchedMujocoVecEnv` (Gymnasium v5 observations,
rewards, termination, time-limit truncation, reset noise, auto-reset, per-env control timing, per-env
model randomisation, ``infos[i]["dt"]``); the whole control step (timing draw, physics, task, auto-reset)
is one jitted JAX function, so nothing leaves the device between steps.

Two interfaces:

* SB3's numpy :class:`VecEnv` API (``reset``/``step``/infos), what CPU users and the Vec* observation
  wrappers use; arrays are copied to the host each step.
* A torch API on the env's device, zero copy through DLPack: :meth:`MjxVecEnv.reset_torch` and
  :meth:`MjxVecEnv.step_torch` take and return ``torch.Tensor`` s (no infos, no host round trip).

Differences from the CPU backend worth knowing:

- Random streams are JAX's (``jax.random``, keyed by ``seed``): the same seed gives reproducible runs, not
  the CPU backend's numpy draws. Model randomisation is the exception: it is drawn with the CPU backend's
  numpy code, so a seed gives the same models on both backends.
- Every env runs the timing's maximum substeps each control step, masked after its own count.
- ``randomization.per_episode`` is not supported (models are sampled once, at construction).
- Rendering is not supported.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from lnn_control.checks import positive_int
from lnn_control.sim.control_timing import ControlTiming
from lnn_control.sim.mjx._deps import require_mjx, resolve_device
from lnn_control.sim.randomization import ModelRandomization
from lnn_control.sim.tasks import known_tasks
from lnn_control.sim.torch_vec_env import TorchStep

jax, mjx = require_mjx()
import jax.numpy as jnp  # noqa: E402

from lnn_control.sim.mjx import core  # noqa: E402
from lnn_control.sim.mjx.dlpack import jax_to_torch, torch_to_jax  # noqa: E402
from lnn_control.sim.mjx.tasks import JaxTask, make_jax_task  # noqa: E402

__all__ = ["MjxVecEnv", "TorchStep"]


#: jitted programs of MjxVecEnv configurations seen in this process (see ``MjxVecEnv._program_key``)
_PROGRAMS: dict[tuple[Any, ...], tuple[Any, ...]] = {}


#: the float64 mode of the last MJX computation in this process (see ``MjxVecEnv._x64``)
_MODE_IN_USE: list[bool | None] = [None]


def _x64_enabled() -> bool:
    return bool(jax.config.jax_enable_x64)


class MjxVecEnv(VecEnv):
    """``n_envs`` copies of a Gymnasium v5 MuJoCo task stepped together with MJX on one JAX device.

    Args:
        task: base task name without version ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Swimmer",
            "InvertedPendulum", "InvertedDoublePendulum", "Reacher"). A catalogue entry is built by
            ``lnn_control.sim.make_vec_env(name, n_envs, backend="mjx")`` or :func:`make_torch_vec_env`.
        n_envs: number of environments (>= 1).
        seed: seed of the JAX key (reset noise, timing) and of the numpy Generator of model randomisation.
        device: JAX device: None (JAX's default), "cpu", "cuda"/"gpu", "cuda:k" or a ``jax.Device``.
        x64: simulate in float64 (JAX's ``jax_enable_x64`` for this env's computations); None: JAX's
            current setting. float32 is the fast choice on GPUs.
        frame_skip: nominal substeps per control step (default: the task's v5 frame_skip).
        timing: a :class:`ControlTiming` for per-env jittered periods and dropped frames; None: constant.
        randomization: per-env model randomisation, sampled once at construction.
        max_episode_steps: time limit (None: the v5 registration's; 0: none).
        **task_kwargs: the task's v5 constructor arguments.
    Raises:
        ImportError: JAX or MJX missing (at import of this module).
        ValueError: bad arguments, a device JAX cannot see, a task without an MJX version.
        NotImplementedError: a model feature MJX does not support; per-episode randomisation.
    """

    def __init__(
        self,
        task: str,
        n_envs: int,
        *,
        seed: int | None = None,
        device: Any = None,
        x64: bool | None = None,
        frame_skip: int | None = None,
        timing: ControlTiming | None = None,
        randomization: ModelRandomization | None = None,
        max_episode_steps: int | None = None,
        **task_kwargs: Any,
    ) -> None:
        if not isinstance(task, str):
            raise TypeError(f"task must be a task name (str), got {task!r}; known tasks: {known_tasks()}")
        positive_int("n_envs", n_envs)
        if timing is not None and not isinstance(timing, ControlTiming):
            raise TypeError(f"timing must be a ControlTiming or None, got {timing!r}")
        if randomization is not None and not isinstance(randomization, ModelRandomization):
            raise TypeError(f"randomization must be a ModelRandomization or None, got {randomization!r}")
        if randomization is not None and randomization.per_episode:
            raise NotImplementedError(
                "backend='mjx' samples model randomisation once, at construction; per_episode=True is not "
                "supported (use the CPU batched backend for per-episode resampling)"
            )
        n = int(n_envs)
        self.device = resolve_device(device)
        self.x64 = _x64_enabled() if x64 is None else bool(x64)
        self.task_name = task
        self.jtask: JaxTask = make_jax_task(task, **task_kwargs)
        self.task = self.jtask.task
        self.model = self.jtask.model
        self.frame_skip = int(self.task.frame_skip if frame_skip is None else frame_skip)
        if self.frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip!r}")
        if timing is not None and timing.is_regular:
            self.frame_skip, timing = timing.frame_skip, None
        self.timing = timing
        self.max_substeps = core.max_substeps(self.frame_skip, timing)
        self.spec = gym.spec(f"{task}-v5")
        if max_episode_steps is None:
            max_episode_steps = self.spec.max_episode_steps
        if max_episode_steps is not None and max_episode_steps < 0:
            raise ValueError(f"max_episode_steps must be >= 0 (0 = no limit), got {max_episode_steps}")
        self.max_episode_steps = max_episode_steps or None
        self.timestep = float(self.model.opt.timestep)
        self.randomization = randomization
        self.render_mode = None
        self._seed = seed
        self._closed = False

        bounds = self.model.actuator_ctrlrange.copy().astype(np.float32)
        action_space = spaces.Box(low=bounds[:, 0], high=bounds[:, 1], dtype=np.float32)
        obs_dtype = np.float64 if self.x64 else np.float32
        size = self.jtask.observation_size()
        observation_space = spaces.Box(low=-np.inf, high=np.inf, shape=(size,), dtype=obs_dtype)
        super().__init__(n, observation_space, action_space)

        with self._x64():
            self._build(n, seed)
        self._actions: Any = None
        self._last_dt = np.full(n, self.dt)

    # ------------------------------------------------------------------ construction
    def _x64(self) -> Any:
        """JAX's float64 mode for this env's computations.

        JAX keeps some library functions' compiled forms (e.g. the ``jnp.tril`` inside MJX's RK4) without
        the float64 mode in their key: a float32 env compiled first makes a later float64 env's compile fail
        ("operand type mismatch ... f64 ... f32"), and the reverse. So the first computation in the other
        mode clears JAX's caches (the next calls of each mode recompile once).
        """
        if _MODE_IN_USE[0] is not None and _MODE_IN_USE[0] != self.x64:
            jax.clear_caches()
        _MODE_IN_USE[0] = self.x64
        return jax.enable_x64(self.x64)

    def _put(self, x: Any) -> Any:
        return jax.device_put(x, self.device)

    def _build(self, n: int, seed: int | None) -> None:
        mx = nominal = core.check_mjx_model(mjx, self.model, self.task_name)
        axes = jax.tree_util.tree_map(lambda _: None, mx)
        if self.randomization is not None and self.randomization.enabled:
            fields = core.randomized_fields(self.model, self.randomization, np.random.default_rng(seed), n)
            mx = mx.tree_replace({k: jnp.asarray(v) for k, v in fields.items()})
            axes = axes.tree_replace(dict.fromkeys(fields, 0))
        self._mx = self._put(mx)
        self._m_axes = axes
        self._d_reset = self._put(mjx.make_data(nominal))
        self._key = self._put(jax.random.PRNGKey(0 if seed is None else seed))
        batched = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), self._d_reset)
        self._d = self._put(batched)
        self._steps = self._put(jnp.zeros(n, jnp.int32))
        self._obs = self._put(jnp.zeros((n, self.observation_space.shape[0]), jnp.result_type(float)))
        key = None if self._randomized else self._program_key()
        programs = _PROGRAMS.get(key) if key is not None else None
        if programs is None:
            programs = (
                jax.jit(self._step_fn),
                jax.jit(self._reset_fn),
                jax.jit(self._set_fn),
                jax.jit(jax.vmap(self.jtask.reset_info)),
            )
            if key is not None:
                _PROGRAMS[key] = programs
        self._jit_step, self._jit_reset, self._jit_set, self._jit_reset_info = programs
        self._reset_all()

    def _program_key(self) -> tuple[Any, ...]:
        """What the jitted programs depend on besides their arguments: envs of equal keys share them (and
        their compiles); the programs read only configuration from the env that made them."""
        params = repr(sorted((k, repr(v)) for k, v in self.task.params.items()))
        return (
            self.task_name,
            params,
            self.frame_skip,
            self.timing,
            self.max_episode_steps,
            self.num_envs,
            self.x64,
            str(self.device),
        )

    @property
    def _randomized(self) -> bool:
        return self.randomization is not None and self.randomization.enabled

    # ------------------------------------------------------------------ pure functions (jitted)
    def _reset_fn(self, m: Any, d: Any, obs: Any, steps: Any, key: Any, mask: Any) -> tuple[Any, ...]:
        n = self.num_envs
        keys = jax.random.split(key, n)
        qpos, qvel = jax.vmap(self.jtask.sample_reset)(keys)
        fresh = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), self._d_reset)
        fresh = fresh.replace(qpos=qpos.astype(fresh.qpos.dtype), qvel=qvel.astype(fresh.qvel.dtype))
        fresh = jax.vmap(mjx.kinematics, in_axes=(self._m_axes, 0))(m, fresh)
        d = core._select(mask, fresh, d)
        new_obs = jax.vmap(self.jtask.observe)(d)
        obs = jnp.where(mask[:, None], new_obs, obs)
        steps = jnp.where(mask, 0, steps)
        info = jax.vmap(self.jtask.reset_info)(d)
        return d, obs, steps, info

    def _step_fn(
        self, m: Any, d: Any, obs: Any, steps: Any, key: Any, actions: Any, substeps: Any, given: Any
    ) -> tuple[Any, ...]:
        # one program whether the substeps are drawn here or given (given: a traced bool, not static)
        n = self.num_envs
        key, k_timing, k_reset = jax.random.split(key, 3)
        drawn = core.sample_substeps(k_timing, n, self.frame_skip, self.timing)
        substeps = jnp.where(given, substeps, drawn)
        dt = substeps.astype(jnp.result_type(float)) * self.timestep
        before = jax.vmap(self.jtask.before)(d)
        ctrl = actions.astype(d.ctrl.dtype)
        smax = self.max_substeps

        def physics(m1: Any, d1: Any, c1: Any, s1: Any) -> Any:
            return core.physics_step(mjx, m1, d1, self._d_reset, c1, s1, smax)

        d, bad = jax.vmap(physics, in_axes=(self._m_axes, 0, 0, 0))(m, d, ctrl, substeps)
        if self.jtask.needs_after_physics:
            d = jax.vmap(self.jtask.after_physics, in_axes=(self._m_axes, 0))(m, d)
        terminal_obs = jax.vmap(self.jtask.observe)(d)
        reward, terminated, info = jax.vmap(self.jtask.evaluate)(before, d, actions, dt)
        steps = steps + 1
        if self.max_episode_steps is not None:
            truncated = (steps >= self.max_episode_steps) & ~terminated
        else:
            truncated = jnp.zeros(n, bool)
        done = terminated | truncated

        def do_reset(args: tuple[Any, ...]) -> tuple[Any, ...]:
            d, obs, steps = args
            d, obs, steps, _ = self._reset_fn(m, d, obs, steps, k_reset, done)
            return d, obs, steps

        d, obs, steps = jax.lax.cond(jnp.any(done), do_reset, lambda a: a, (d, terminal_obs, steps))
        out = {  # the observations are the state's own buffer (returned once: zero-copy views stay valid)
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "dt": dt,
            "terminal_obs": terminal_obs,
            "physics_reset": bad,
            "info": info,
        }
        return d, obs, steps, key, out

    def _set_fn(
        self, m: Any, d: Any, obs: Any, qpos: Any, qvel: Any, warm: Any, mask: Any
    ) -> tuple[Any, Any]:
        new = d.replace(qpos=qpos, qvel=qvel, qacc_warmstart=warm)
        new = jax.vmap(mjx.kinematics, in_axes=(self._m_axes, 0))(m, new)
        d = core._select(mask, new, d)
        obs = jnp.where(mask[:, None], jax.vmap(self.jtask.observe)(d), obs)
        return d, obs

    # ------------------------------------------------------------------ device-side driving
    def _reset_all(self) -> None:
        with self._x64():
            self._key, sub = jax.random.split(self._key)
            mask = self._put(jnp.ones(self.num_envs, bool))
            self._d, self._obs, self._steps, info = self._jit_reset(
                self._mx, self._d, self._obs, self._steps, sub, mask
            )
        cols = {k: np.asarray(v).tolist() for k, v in info.items()}
        self.reset_infos = [{k: c[i] for k, c in cols.items()} for i in range(self.num_envs)]

    def _advance(self, actions: Any, substeps: Any = None) -> dict[str, Any]:
        with self._x64():
            given = substeps is not None
            if not given:
                substeps = jnp.zeros(self.num_envs, jnp.int32)
            self._d, self._obs, self._steps, self._key, out = self._jit_step(
                self._mx, self._d, self._obs, self._steps, self._key, actions, substeps, jnp.asarray(given)
            )
        return {**out, "obs": self._obs}

    # ------------------------------------------------------------------ properties
    @property
    def dt(self) -> float:
        """Nominal control period, seconds (timestep * frame_skip)."""
        return self.timestep * self.frame_skip

    @property
    def episode_steps(self) -> np.ndarray:
        """Steps taken in each env's current episode, (n_envs,) int (a host copy)."""
        return np.asarray(self._steps).astype(np.int64)

    # ------------------------------------------------------------------ numpy VecEnv API
    def reset(self) -> VecEnvObs:
        """Reset every env; a seed given to :meth:`seed` restarts the JAX key (once), as DummyVecEnv."""
        seed = self._seeds[0]
        if seed is not None:
            with self._x64():
                self._key = self._put(jax.random.PRNGKey(seed))
        self._reset_all()
        self._reset_seeds()
        self._reset_options()
        return np.asarray(self._obs).copy()

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next :meth:`reset` (all envs share one JAX key); returns ``[seed] * n_envs``."""
        if seed is None:
            seed = int(np.random.randint(0, np.iinfo(np.uint32).max, dtype=np.uint32))
        self._seeds = [int(seed)] * self.num_envs
        return list(self._seeds)

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.array(actions, copy=True)
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
        return self._host_step(actions, None)

    def step_with_substeps(self, actions: np.ndarray, substeps: np.ndarray) -> VecEnvStepReturn:
        """One step with given per-env substeps ``(n,)`` int >= 1 and <= ``max_substeps`` instead of the
        timing's draw (to replay the CPU backend's timing, e.g. in parity tests)."""
        substeps = np.asarray(substeps)
        if substeps.shape != (self.num_envs,) or substeps.min() < 1 or substeps.max() > self.max_substeps:
            raise ValueError(
                f"substeps must be ints in [1, {self.max_substeps}] of shape ({self.num_envs},), "
                f"got {substeps}"
            )
        self.step_async(actions)
        actions, self._actions = self._actions, None
        return self._host_step(actions, substeps.astype(np.int32))

    def _host_step(self, actions: np.ndarray, substeps: np.ndarray | None) -> VecEnvStepReturn:
        with self._x64():
            acts = self._put(jnp.asarray(actions))
            subs = None if substeps is None else self._put(jnp.asarray(substeps))
        out = jax.device_get(self._advance(acts, subs))
        obs = np.asarray(out["obs"])
        terminated, truncated = np.asarray(out["terminated"]), np.asarray(out["truncated"])
        dones = terminated | truncated
        dt = np.asarray(out["dt"], dtype=np.float64)
        self._last_dt = dt
        keys = [*out["info"], "dt"]
        columns = [np.asarray(v).tolist() for v in out["info"].values()]
        columns.append(dt.tolist())
        infos: list[dict[str, Any]] = [
            dict(zip(keys, row, strict=True)) for row in zip(*columns, strict=True)
        ]
        for info, tl in zip(infos, truncated.tolist(), strict=True):
            info["TimeLimit.truncated"] = tl
        bad = np.flatnonzero(out["physics_reset"])
        if bad.size:
            warnings.warn(
                f"MjxVecEnv: envs {bad.tolist()} reached a non-finite or huge state and were reset to the "
                "model's initial state, as mj_step does (infos[i]['physics_reset'])",
                RuntimeWarning,
                stacklevel=3,
            )
            for i in bad.tolist():
                infos[i]["physics_reset"] = True
        done_ids = np.flatnonzero(dones)
        if done_ids.size:
            terminal = np.asarray(out["terminal_obs"])
            for i in done_ids.tolist():
                infos[i]["terminal_observation"] = terminal[i].copy()
            cols = {k: np.asarray(v) for k, v in self._reset_info_now().items()}
            for i in done_ids.tolist():
                self.reset_infos[i] = {k: c[i].item() for k, c in cols.items()}
        return obs.copy(), np.asarray(out["reward"]).astype(np.float32), dones, infos

    def _reset_info_now(self) -> dict[str, Any]:
        with self._x64():
            return jax.device_get(self._jit_reset_info(self._d))

    # ------------------------------------------------------------------ torch API
    def reset_torch(self) -> Any:
        """Reset every env (as :meth:`reset`); observations ``(n, D)`` as a torch tensor on the env's
        device, sharing the JAX buffer (DLPack)."""
        if self._seeds[0] is not None:
            with self._x64():
                self._key = self._put(jax.random.PRNGKey(self._seeds[0]))
            self._reset_seeds()
        self._reset_all()
        return jax_to_torch(self._obs)

    def step_torch(self, actions: Any) -> TorchStep:
        """One control step with ``actions`` (torch tensor ``(n, nu)`` on the env's device, handed to JAX
        through DLPack); returns a :class:`TorchStep` of tensors on the same device. Nothing is copied to
        the host; there are no infos (``dt`` and the terminal observations are in the result)."""
        shape = tuple(actions.shape)
        if shape != (self.num_envs, *self.action_space.shape):
            raise ValueError(
                f"actions must have shape {(self.num_envs, *self.action_space.shape)}, got {shape}"
            )
        with self._x64():  # outside it, JAX (x64 off) would turn float64 actions into a float32 copy
            acts = torch_to_jax(actions.contiguous(), self.device)
        out = self._advance(acts)
        return TorchStep(
            obs=jax_to_torch(out["obs"]),
            reward=jax_to_torch(out["reward"]),
            terminated=jax_to_torch(out["terminated"]),
            truncated=jax_to_torch(out["truncated"]),
            dt=jax_to_torch(out["dt"]),
            terminal_obs=jax_to_torch(out["terminal_obs"]),
        )

    # ------------------------------------------------------------------ state
    def get_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Host copies of every env's qpos (n, nq) and qvel (n, nv)."""
        return np.asarray(self._d.qpos).copy(), np.asarray(self._d.qvel).copy()

    def set_state(
        self,
        qpos: np.ndarray,
        qvel: np.ndarray,
        indices: VecEnvIndices = None,
        warmstart: np.ndarray | None = None,
    ) -> None:
        """Set qpos (k, nq) and qvel (k, nv) of envs ``indices`` (default all) and run ``mjx.forward`` on
        them, as the CPU backend's ``set_state``; ``warmstart`` (k, nv) also sets the constraint solver's
        warm start ``qacc_warmstart`` (to re-synchronise with a C MuJoCo state exactly; default zero)."""
        ids = np.asarray(list(self._get_indices(indices)), dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_envs):
            raise ValueError(f"indices must be in [0, {self.num_envs}), got {ids.tolist()}")
        k, nq, nv = ids.size, self.model.nq, self.model.nv
        qpos = np.asarray(qpos, dtype=np.float64)
        qvel = np.asarray(qvel, dtype=np.float64)
        warm = np.zeros((k, nv)) if warmstart is None else np.asarray(warmstart, dtype=np.float64)
        for name, arr, shape in (
            ("qpos", qpos, (k, nq)),
            ("qvel", qvel, (k, nv)),
            ("warmstart", warm, (k, nv)),
        ):
            if arr.shape != shape:
                raise ValueError(f"{name} must have shape {shape} (envs, {name}_dim), got {arr.shape}")
        full_q, full_v = self.get_state()
        full_w = np.asarray(self._d.qacc_warmstart).copy()
        full_q[ids], full_v[ids], full_w[ids] = qpos, qvel, warm
        mask = np.zeros(self.num_envs, bool)
        mask[ids] = True
        with self._x64():
            dt = jnp.result_type(float)
            args = [self._put(jnp.asarray(a, dt)) for a in (full_q, full_v, full_w)]
            self._d, self._obs = self._jit_set(self._mx, self._d, self._obs, *args, self._put(mask))

    def observe(self) -> np.ndarray:
        """Current observations of all envs, (n_envs, D) (a host copy)."""
        return np.asarray(self._obs).copy()

    # ------------------------------------------------------------------ VecEnv plumbing
    def close(self) -> None:
        self._closed = True

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Attribute of the (shared) env object per index; "last_dt" gives each env's last dt."""
        ids = list(self._get_indices(indices))
        if attr_name == "last_dt":
            return [float(self._last_dt[i]) for i in ids]
        if attr_name in ("unwrapped", "env"):
            return [self for _ in ids]
        value = getattr(self, attr_name)
        return [value for _ in ids]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        ids = list(self._get_indices(indices))
        if sorted(ids) != list(range(self.num_envs)):
            raise ValueError(
                f"MjxVecEnv shares attributes among its envs; set_attr needs all envs, got {ids}"
            )
        setattr(self, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        ids = list(self._get_indices(indices))
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in ids]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        raise NotImplementedError("MjxVecEnv does not render; use the CPU batched backend to record videos")
