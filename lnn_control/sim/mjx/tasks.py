"""The Gymnasium v5 MuJoCo tasks in JAX, one environment at a time (the env ``jax.vmap``s them).

Each :class:`JaxTask` takes its settings (v5 constructor arguments, model file, frame skip, reset noise) from
the numpy task of :mod:`lnn_control.sim.tasks`, so that one catalogue entry configures both backends; the
formulas mirror the numpy ones line for line and tests/test_sim_mjx_parity.py holds the two together
(observations and rewards within 1e-9 relative in float64 from the same states).

Shapes, per env: ``qpos (nq,)``, ``qvel (nv,)``, ``action (nu,)``, ``dt ()``; observations ``(D,)``.
``d`` is one env's ``mjx.Data`` after the control step's physics: as with ``mj_step``, its derived fields
(``xpos``, ``site_xpos``, contacts) describe the state before the last substep, which is what Gymnasium reads.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from lnn_control.sim.tasks import MujocoTask, make_task

__all__ = ["JAX_TASKS", "JaxTask", "make_jax_task"]

Info = dict[str, jax.Array]


def _ctrl_cost(weight: float, action: jax.Array) -> jax.Array:
    """``weight * sum(action**2)`` in the action's dtype, as Gymnasium computes it."""
    return weight * jnp.sum(jnp.square(action))


class JaxTask:
    """One task in JAX. Subclasses implement ``observe``, ``before``, ``evaluate`` and ``sample_reset``.

    Args:
        task: the numpy task (its ``params`` and class constants are the configuration).
        model: the ``mujoco.MjModel`` the env simulates (``task.build_model()``).
    """

    name: ClassVar[str]
    #: whether ``after_physics`` must run (Ant's contact forces)
    needs_after_physics: ClassVar[bool] = False

    def __init__(self, task: MujocoTask, model: Any) -> None:
        self.task = task
        task.model = model  # the numpy task reads sizes and body ids from it
        self.params = task.params
        self.nq, self.nv, self.nu, self.nbody = model.nq, model.nv, model.nu, model.nbody
        self.init_qpos = np.asarray(model.qpos0, dtype=np.float64).copy()
        self.init_qvel = np.zeros(model.nv)
        self.model = model

    def observation_size(self) -> int:
        return int(self.task.observation_size())

    def observe(self, d: Any) -> jax.Array:
        """Observation of one env, (D,)."""
        raise NotImplementedError

    def before(self, d: Any) -> Any:
        """What ``evaluate`` needs from before the physics (e.g. positions for velocities)."""
        return jnp.zeros(())

    def after_physics(self, m: Any, d: Any) -> Any:
        """Data after the physics of a step, with what the task reads computed (default: unchanged)."""
        return d

    def evaluate(self, before: Any, d: Any, action: jax.Array, dt: jax.Array) -> tuple[Any, Any, Info]:
        """``(reward (), terminated () bool, info {key: ()})`` of one env after a step."""
        raise NotImplementedError

    def sample_reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Initial ``qpos (nq,)`` and ``qvel (nv,)`` with the task's reset noise."""
        raise NotImplementedError

    def reset_info(self, d: Any) -> Info:
        """Gymnasium's reset info of one env."""
        return {}

    def _uniform(self, key: jax.Array, scale: float, size: int, dtype: Any) -> jax.Array:
        return jax.random.uniform(key, (size,), dtype=dtype, minval=-scale, maxval=scale)

    def _uniform_qpos_normal_qvel(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """qpos0 + U(-s, s) and qvel ~ N(0, s^2), s the reset noise scale (Ant, InvertedDoublePendulum)."""
        s = self.params["reset_noise_scale"]
        kq, kv = jax.random.split(key)
        dtype = jnp.result_type(float)
        qpos = jnp.asarray(self.init_qpos, dtype) + self._uniform(kq, s, self.nq, dtype)
        return qpos, s * jax.random.normal(kv, (self.nv,), dtype)


def _dtype(d: Any) -> Any:
    return d.qpos.dtype


class _PlanarRunner(JaxTask):
    clip_qvel: ClassVar[bool] = False
    reset_qvel_normal: ClassVar[bool] = False

    def observe(self, d: Any) -> jax.Array:
        qpos, qvel = d.qpos, d.qvel
        if self.clip_qvel:
            qvel = jnp.clip(qvel, -10, 10)
        if self.params["exclude_current_positions_from_observation"]:
            qpos = qpos[1:]
        return jnp.concatenate((qpos, qvel))

    def before(self, d: Any) -> jax.Array:
        return d.qpos[0]

    def sample_reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = self.params["reset_noise_scale"]
        kq, kv = jax.random.split(key)
        dtype = jnp.result_type(float)
        qpos = jnp.asarray(self.init_qpos, dtype) + self._uniform(kq, s, self.nq, dtype)
        if self.reset_qvel_normal:
            qvel = s * jax.random.normal(kv, (self.nv,), dtype)
        else:
            qvel = self._uniform(kv, s, self.nv, dtype)
        return qpos, qvel


class HalfCheetah(_PlanarRunner):
    name = "HalfCheetah"
    reset_qvel_normal = True

    def evaluate(self, before: Any, d: Any, action: jax.Array, dt: jax.Array) -> tuple[Any, Any, Info]:
        x_after = d.qpos[0]
        x_velocity = (x_after - before) / dt
        forward_reward = self.params["forward_reward_weight"] * x_velocity
        ctrl = _ctrl_cost(self.params["ctrl_cost_weight"], action)
        info = {
            "x_position": x_after,
            "x_velocity": x_velocity,
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl,
        }
        return forward_reward - ctrl, jnp.zeros((), bool), info

    def reset_info(self, d: Any) -> Info:
        return {"x_position": d.qpos[0]}


class _HealthyRunner(_PlanarRunner):
    clip_qvel = True

    def is_healthy(self, d: Any) -> jax.Array:
        z, angle = d.qpos[1], d.qpos[2]
        min_z, max_z = self.params["healthy_z_range"]
        min_a, max_a = self.params["healthy_angle_range"]
        return (min_z < z) & (z < max_z) & (min_a < angle) & (angle < max_a)

    def evaluate(self, before: Any, d: Any, action: jax.Array, dt: jax.Array) -> tuple[Any, Any, Info]:
        x_after = d.qpos[0]
        x_velocity = (x_after - before) / dt
        healthy = self.is_healthy(d)
        forward_reward = self.params["forward_reward_weight"] * x_velocity
        healthy_reward = healthy * self.params["healthy_reward"]
        ctrl = _ctrl_cost(self.params["ctrl_cost_weight"], action)
        reward = forward_reward + healthy_reward - ctrl
        terminated = ~healthy if self.params["terminate_when_unhealthy"] else jnp.zeros((), bool)
        info = {
            "x_position": x_after,
            "z_distance_from_origin": d.qpos[1] - self.init_qpos[1],
            "x_velocity": x_velocity,
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl,
            "reward_survive": healthy_reward,
        }
        return reward, terminated, info

    def reset_info(self, d: Any) -> Info:
        return {"x_position": d.qpos[0], "z_distance_from_origin": d.qpos[1] - self.init_qpos[1]}


class Hopper(_HealthyRunner):
    name = "Hopper"

    def is_healthy(self, d: Any) -> jax.Array:
        lo, hi = self.params["healthy_state_range"]
        state = jnp.concatenate((d.qpos[2:], d.qvel))
        return jnp.all((lo < state) & (state < hi)) & super().is_healthy(d)


class Walker2d(_HealthyRunner):
    name = "Walker2d"


class Swimmer(JaxTask):
    name = "Swimmer"

    def observe(self, d: Any) -> jax.Array:
        qpos = d.qpos[2:] if self.params["exclude_current_positions_from_observation"] else d.qpos
        return jnp.concatenate((qpos, d.qvel))

    def before(self, d: Any) -> jax.Array:
        return d.qpos[0:2]

    def evaluate(self, before: Any, d: Any, action: jax.Array, dt: jax.Array) -> tuple[Any, Any, Info]:
        xy_after = d.qpos[0:2]
        xy_velocity = (xy_after - before) / dt
        forward_reward = self.params["forward_reward_weight"] * xy_velocity[0]
        ctrl = _ctrl_cost(self.params["ctrl_cost_weight"], action)
        info = {
            "x_position": xy_after[0],
            "y_position": xy_after[1],
            "distance_from_origin": jnp.linalg.norm(xy_after),
            "x_velocity": xy_velocity[0],
            "y_velocity": xy_velocity[1],
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl,
        }
        return forward_reward - ctrl, jnp.zeros((), bool), info

    def sample_reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = self.params["reset_noise_scale"]
        kq, kv = jax.random.split(key)
        dtype = jnp.result_type(float)
        qpos = jnp.asarray(self.init_qpos, dtype) + self._uniform(kq, s, self.nq, dtype)
        return qpos, self._uniform(kv, s, self.nv, dtype)

    def reset_info(self, d: Any) -> Info:
        xy = d.qpos[0:2]
        return {"x_position": xy[0], "y_position": xy[1], "distance_from_origin": jnp.linalg.norm(xy)}


def _cfrc_ext(d: Any) -> jax.Array:
    impl = getattr(d, "_impl", None)
    return impl.cfrc_ext if impl is not None and hasattr(impl, "cfrc_ext") else d.cfrc_ext


class Ant(JaxTask):
    """Ant v5; the contact forces ``cfrc_ext`` come from ``mjx.rne_postconstraint`` after the step, as
    Gymnasium's ``mj_rnePostConstraint`` (zero after a reset, as ``mj_resetData`` leaves them)."""

    name = "Ant"

    def __init__(self, task: MujocoTask, model: Any) -> None:
        super().__init__(task, model)
        self.main_body = task.body_id(task.params["main_body"])

    @property
    def needs_after_physics(self) -> bool:  # type: ignore[override]
        p = self.params
        return bool(p["include_cfrc_ext_in_observation"] or p["contact_cost_weight"] != 0)

    def after_physics(self, m: Any, d: Any) -> Any:
        from mujoco import mjx

        return mjx.rne_postconstraint(m, d)

    def contact_forces(self, d: Any) -> jax.Array:
        lo, hi = self.params["contact_force_range"]
        return jnp.clip(_cfrc_ext(d), lo, hi)

    def observe(self, d: Any) -> jax.Array:
        qpos = d.qpos[2:] if self.params["exclude_current_positions_from_observation"] else d.qpos
        parts = [qpos, d.qvel]
        if self.params["include_cfrc_ext_in_observation"]:
            parts.append(self.contact_forces(d)[1:].reshape(-1))
        return jnp.concatenate(parts)

    def before(self, d: Any) -> jax.Array:
        return d.xpos[self.main_body, :2]

    def is_healthy(self, d: Any) -> jax.Array:
        min_z, max_z = self.params["healthy_z_range"]
        z = d.qpos[2]
        finite = jnp.isfinite(d.qpos).all() & jnp.isfinite(d.qvel).all()
        return finite & (min_z <= z) & (z <= max_z)

    def evaluate(self, before: Any, d: Any, action: jax.Array, dt: jax.Array) -> tuple[Any, Any, Info]:
        xy_after = d.xpos[self.main_body, :2]
        xy_velocity = (xy_after - before) / dt
        healthy = self.is_healthy(d)
        forward_reward = xy_velocity[0] * self.params["forward_reward_weight"]
        healthy_reward = healthy * self.params["healthy_reward"]
        ctrl = _ctrl_cost(self.params["ctrl_cost_weight"], action)
        contact = self.params["contact_cost_weight"] * jnp.sum(jnp.square(self.contact_forces(d)))
        reward = forward_reward + healthy_reward - (ctrl + contact)
        terminated = ~healthy if self.params["terminate_when_unhealthy"] else jnp.zeros((), bool)
        qxy = d.qpos[0:2]
        info = {
            "x_position": qxy[0],
            "y_position": qxy[1],
            "distance_from_origin": jnp.linalg.norm(qxy),
            "x_velocity": xy_velocity[0],
            "y_velocity": xy_velocity[1],
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl,
            "reward_contact": -contact,
            "reward_survive": healthy_reward,
        }
        return reward, terminated, info

    def sample_reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self._uniform_qpos_normal_qvel(key)

    def reset_info(self, d: Any) -> Info:
        xy = d.qpos[0:2]
        return {"x_position": xy[0], "y_position": xy[1], "distance_from_origin": jnp.linalg.norm(xy)}


class InvertedPendulum(JaxTask):
    name = "InvertedPendulum"

    def observe(self, d: Any) -> jax.Array:
        return jnp.concatenate((d.qpos, d.qvel))

    def evaluate(self, before: Any, d: Any, action: jax.Array, dt: jax.Array) -> tuple[Any, Any, Info]:
        obs = self.observe(d)
        terminated = ~jnp.isfinite(obs).all() | (jnp.abs(obs[1]) > 0.2)
        reward = (~terminated).astype(obs.dtype)
        return reward, terminated, {"reward_survive": reward}

    def sample_reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        s = self.params["reset_noise_scale"]
        kq, kv = jax.random.split(key)
        dtype = jnp.result_type(float)
        qpos = jnp.asarray(self.init_qpos, dtype) + self._uniform(kq, s, self.nq, dtype)
        return qpos, self._uniform(kv, s, self.nv, dtype)


class InvertedDoublePendulum(JaxTask):
    """Reads the tip site and the constraint force of the last substep, as the numpy task (and Gymnasium)."""

    name = "InvertedDoublePendulum"

    def observe(self, d: Any) -> jax.Array:
        return jnp.concatenate(
            (
                d.qpos[:1],
                jnp.sin(d.qpos[1:]),
                jnp.cos(d.qpos[1:]),
                jnp.clip(d.qvel, -10, 10),
                jnp.clip(d.qfrc_constraint, -10, 10)[:1],
            )
        )

    def evaluate(self, before: Any, d: Any, action: jax.Array, dt: jax.Array) -> tuple[Any, Any, Info]:
        x, y = d.site_xpos[0, 0], d.site_xpos[0, 2]
        terminated = y <= 1
        dist_penalty = 0.01 * x**2 + (y - 2) ** 2
        vel_penalty = 1e-3 * d.qvel[1] ** 2 + 5e-3 * d.qvel[2] ** 2
        alive_bonus = self.params["healthy_reward"] * (~terminated).astype(x.dtype)
        info = {
            "reward_survive": alive_bonus,
            "distance_penalty": -dist_penalty,
            "velocity_penalty": -vel_penalty,
        }
        return alive_bonus - dist_penalty - vel_penalty, terminated, info

    def sample_reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self._uniform_qpos_normal_qvel(key)


class Reacher(JaxTask):
    """Reacher v5. The fingertip-to-target vector reads ``xpos`` of the last substep's kinematics, as the
    numpy task (and Gymnasium's ``get_body_com``); the target is two slide joints (the last two of qpos),
    so the per-episode goal lives in the state and survives ``set_state``. The goal is drawn uniformly in
    the open disc of radius 0.2 by rejection, per env, as Gymnasium does (JAX's stream, not numpy's)."""

    name = "Reacher"
    #: goal coordinates are drawn in [-GOAL_RANGE, GOAL_RANGE]^2 and kept when their norm is below it
    GOAL_RANGE: ClassVar[float] = 0.2

    def __init__(self, task: MujocoTask, model: Any) -> None:
        super().__init__(task, model)
        self.fingertip = task.body_id("fingertip")
        self.target = task.body_id("target")

    def fingertip_to_target(self, d: Any) -> jax.Array:
        """``xpos[fingertip] - xpos[target]``, (3,)."""
        return d.xpos[self.fingertip] - d.xpos[self.target]

    def observe(self, d: Any) -> jax.Array:
        theta = d.qpos[:2]
        return jnp.concatenate(
            (jnp.cos(theta), jnp.sin(theta), d.qpos[2:], d.qvel[:2], self.fingertip_to_target(d)[:2])
        )

    def evaluate(self, before: Any, d: Any, action: jax.Array, dt: jax.Array) -> tuple[Any, Any, Info]:
        reward_dist = -jnp.linalg.norm(self.fingertip_to_target(d)) * self.params["reward_dist_weight"]
        # the numpy task's order of operations, in the action's dtype (float32 actions: a float32 cost)
        reward_ctrl = -jnp.sum(jnp.square(action)) * self.params["reward_control_weight"]
        info = {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl}
        return reward_dist + reward_ctrl, jnp.zeros((), bool), info

    def sample_goal(self, key: jax.Array) -> jax.Array:
        """A goal ``(2,)`` uniform in the open disc of radius GOAL_RANGE: uniform draws in the square,
        redrawn while outside (each round keeps with probability pi/4)."""
        r = self.GOAL_RANGE
        dtype = jnp.result_type(float)

        def draw(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            key, _ = carry
            key, sub = jax.random.split(key)
            return key, jax.random.uniform(sub, (2,), dtype, minval=-r, maxval=r)

        def outside(carry: tuple[jax.Array, jax.Array]) -> jax.Array:
            return jnp.linalg.norm(carry[1]) >= r

        return jax.lax.while_loop(outside, draw, draw((key, jnp.zeros(2, dtype))))[1]

    def sample_reset(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        kq, kg, kv = jax.random.split(key, 3)
        dtype = jnp.result_type(float)
        qpos = jnp.asarray(self.init_qpos, dtype) + self._uniform(kq, 0.1, self.nq, dtype)
        qpos = qpos.at[-2:].set(self.sample_goal(kg))
        qvel = self._uniform(kv, 0.005, self.nv, dtype).at[-2:].set(0)
        return qpos, qvel


_CLASSES = (HalfCheetah, Hopper, Walker2d, Ant, Swimmer, InvertedPendulum, InvertedDoublePendulum, Reacher)
JAX_TASKS: dict[str, type[JaxTask]] = {cls.name: cls for cls in _CLASSES}


def make_jax_task(name: str, model: Any = None, **kwargs: Any) -> JaxTask:
    """The JAX twin of numpy task ``name`` with v5 constructor arguments ``kwargs``.

    Raises:
        ValueError: a task with no JAX version yet (naming the ones that have one).
    """
    task = make_task(name, **kwargs)  # validates the name and the arguments, as the CPU backend does
    if name not in JAX_TASKS:
        raise ValueError(
            f"task {name!r} has no MJX version yet; backend='mjx' supports {sorted(JAX_TASKS)} "
            "(use the CPU batched backend for it)"
        )
    if model is None:
        model = task.build_model()
    return JAX_TASKS[name](task, model)
