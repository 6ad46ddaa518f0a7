"""Locomotion tasks: HalfCheetah, Hopper, Walker2d, Swimmer, Ant (Gymnasium v5 semantics, vectorised).

Forward velocities are displacement / dt with each env's actual dt, so they stay rates under irregular
control timing.
"""

from __future__ import annotations

from typing import Any, ClassVar

import mujoco
import numpy as np

from lnn_control.sim.tasks.base import Ids, MujocoTask, StepResult, ctrl_cost


class _PlanarRunner(MujocoTask):
    """Shared code of HalfCheetah, Hopper and Walker2d: x velocity from qpos[0], obs = qpos[1:] ++ qvel."""

    clip_qvel: bool = False
    reset_qvel_normal: bool = False  # HalfCheetah: normal qvel noise, Hopper/Walker2d: uniform

    def observation_size(self) -> int:
        return (
            self.model.nq
            + self.model.nv
            - int(bool(self.params["exclude_current_positions_from_observation"]))
        )

    def observe(self, ids: Ids = slice(None)) -> np.ndarray:
        qpos = self.qpos[ids]
        qvel = self.qvel[ids]
        if self.clip_qvel:
            qvel = np.clip(qvel, -10, 10)
        if self.params["exclude_current_positions_from_observation"]:
            qpos = qpos[:, 1:]
        return np.concatenate((qpos, qvel), axis=1)

    def before_step(self) -> np.ndarray:
        return self.qpos[:, 0].copy()

    def _forward(self, before: np.ndarray, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x_after = self.qpos[:, 0].copy()
        x_velocity = (x_after - before) / dt
        return x_after, x_velocity

    def sample_reset(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.params["reset_noise_scale"]
        qpos = self.init_qpos + self._uniform(rng, s, k, self.model.nq)
        if self.reset_qvel_normal:
            qvel = self.init_qvel + s * rng.standard_normal((k, self.model.nv))
        else:
            qvel = self.init_qvel + self._uniform(rng, s, k, self.model.nv)
        return qpos, qvel


class HalfCheetah(_PlanarRunner):
    name = "HalfCheetah"
    gym_module = "half_cheetah_v5"
    xml_file = "half_cheetah.xml"
    frame_skip = 5
    defaults: ClassVar[dict[str, Any]] = {
        "forward_reward_weight": 1.0,
        "ctrl_cost_weight": 0.1,
        "reset_noise_scale": 0.1,
        "exclude_current_positions_from_observation": True,
    }
    reset_qvel_normal = True

    def evaluate(self, before: Any, actions: np.ndarray, dt: np.ndarray) -> StepResult:
        x_after, x_velocity = self._forward(before, dt)
        forward_reward = self.params["forward_reward_weight"] * x_velocity
        ctrl = ctrl_cost(self.params["ctrl_cost_weight"], actions)
        reward = forward_reward - ctrl
        info = {
            "x_position": x_after,
            "x_velocity": x_velocity,
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl,
        }
        return StepResult(reward, np.zeros(self.n, dtype=bool), info)

    def reset_info(self, ids: Ids) -> dict[str, np.ndarray]:
        return {"x_position": self.qpos[ids, 0].copy()}


class _HealthyRunner(_PlanarRunner):
    """Hopper and Walker2d: healthy checks on z and angle (strict inequalities), healthy reward."""

    clip_qvel = True

    def is_healthy(self) -> np.ndarray:
        """(n,) bool."""
        z = self.qpos[:, 1]
        angle = self.qpos[:, 2]
        min_z, max_z = self.params["healthy_z_range"]
        min_a, max_a = self.params["healthy_angle_range"]
        return (min_z < z) & (z < max_z) & (min_a < angle) & (angle < max_a)

    def evaluate(self, before: Any, actions: np.ndarray, dt: np.ndarray) -> StepResult:
        x_after, x_velocity = self._forward(before, dt)
        healthy = self.is_healthy()
        forward_reward = self.params["forward_reward_weight"] * x_velocity
        healthy_reward = healthy * self.params["healthy_reward"]
        ctrl = ctrl_cost(self.params["ctrl_cost_weight"], actions)
        reward = forward_reward + healthy_reward - ctrl
        terminated = ~healthy if self.params["terminate_when_unhealthy"] else np.zeros(self.n, dtype=bool)
        info = {
            "x_position": x_after,
            "z_distance_from_origin": self.qpos[:, 1] - self.init_qpos[1],
            "x_velocity": x_velocity,
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl,
            "reward_survive": healthy_reward,
        }
        return StepResult(reward, terminated, info)

    def reset_info(self, ids: Ids) -> dict[str, np.ndarray]:
        return {
            "x_position": self.qpos[ids, 0].copy(),
            "z_distance_from_origin": self.qpos[ids, 1] - self.init_qpos[1],
        }


class Hopper(_HealthyRunner):
    name = "Hopper"
    gym_module = "hopper_v5"
    xml_file = "hopper.xml"
    frame_skip = 4
    defaults: ClassVar[dict[str, Any]] = {
        "forward_reward_weight": 1.0,
        "ctrl_cost_weight": 1e-3,
        "healthy_reward": 1.0,
        "terminate_when_unhealthy": True,
        "healthy_state_range": (-100.0, 100.0),
        "healthy_z_range": (0.7, float("inf")),
        "healthy_angle_range": (-0.2, 0.2),
        "reset_noise_scale": 5e-3,
        "exclude_current_positions_from_observation": True,
    }

    def is_healthy(self) -> np.ndarray:
        lo, hi = self.params["healthy_state_range"]
        state = np.concatenate((self.qpos[:, 2:], self.qvel), axis=1)  # state_vector()[2:]
        healthy_state = np.all((lo < state) & (state < hi), axis=1)
        return healthy_state & super().is_healthy()


class Walker2d(_HealthyRunner):
    name = "Walker2d"
    gym_module = "walker2d_v5"
    xml_file = "walker2d_v5.xml"
    frame_skip = 4
    defaults: ClassVar[dict[str, Any]] = {
        "forward_reward_weight": 1.0,
        "ctrl_cost_weight": 1e-3,
        "healthy_reward": 1.0,
        "terminate_when_unhealthy": True,
        "healthy_z_range": (0.8, 2.0),
        "healthy_angle_range": (-1.0, 1.0),
        "reset_noise_scale": 5e-3,
        "exclude_current_positions_from_observation": True,
    }


class Swimmer(MujocoTask):
    name = "Swimmer"
    gym_module = "swimmer_v5"
    xml_file = "swimmer.xml"
    frame_skip = 4
    defaults: ClassVar[dict[str, Any]] = {
        "forward_reward_weight": 1.0,
        "ctrl_cost_weight": 1e-4,
        "reset_noise_scale": 0.1,
        "exclude_current_positions_from_observation": True,
    }

    def observation_size(self) -> int:
        return (
            self.model.nq
            + self.model.nv
            - 2 * int(bool(self.params["exclude_current_positions_from_observation"]))
        )

    def observe(self, ids: Ids = slice(None)) -> np.ndarray:
        qpos = self.qpos[ids]
        if self.params["exclude_current_positions_from_observation"]:
            qpos = qpos[:, 2:]
        return np.concatenate((qpos, self.qvel[ids]), axis=1)

    def before_step(self) -> np.ndarray:
        return self.qpos[:, 0:2].copy()

    def evaluate(self, before: Any, actions: np.ndarray, dt: np.ndarray) -> StepResult:
        xy_after = self.qpos[:, 0:2].copy()
        xy_velocity = (xy_after - before) / dt[:, None]
        forward_reward = self.params["forward_reward_weight"] * xy_velocity[:, 0]
        ctrl = ctrl_cost(self.params["ctrl_cost_weight"], actions)
        info = {
            "x_position": xy_after[:, 0],
            "y_position": xy_after[:, 1],
            "distance_from_origin": np.linalg.norm(xy_after, ord=2, axis=1),
            "x_velocity": xy_velocity[:, 0],
            "y_velocity": xy_velocity[:, 1],
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl,
        }
        return StepResult(forward_reward - ctrl, np.zeros(self.n, dtype=bool), info)

    def sample_reset(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.params["reset_noise_scale"]
        qpos = self.init_qpos + self._uniform(rng, s, k, self.model.nq)
        qvel = self.init_qvel + self._uniform(rng, s, k, self.model.nv)
        return qpos, qvel

    def reset_info(self, ids: Ids) -> dict[str, np.ndarray]:
        xy = self.qpos[ids, 0:2]
        return {
            "x_position": xy[:, 0].copy(),
            "y_position": xy[:, 1].copy(),
            "distance_from_origin": np.linalg.norm(xy, ord=2, axis=1),
        }


class Ant(MujocoTask):
    """Ant v5. The contact forces ``cfrc_ext`` (observation and contact cost) are what Gymnasium gets from
    ``mj_rnePostConstraint`` after ``mj_step``: computed from the contacts and constraint forces of the last
    RK4 stage. ``mj_step`` does not compute them, so the batch is persistent (one MjData per env) and the
    envs in contact get them from ``mj_rnePostConstraint`` on their MjData (a short loop over those envs
    only: an env without contacts, applied forces or equality constraints has cfrc_ext = 0 exactly)."""

    name = "Ant"
    gym_module = "ant_v5"
    xml_file = "ant.xml"
    frame_skip = 5
    persistent = True
    defaults: ClassVar[dict[str, Any]] = {
        "forward_reward_weight": 1.0,
        "ctrl_cost_weight": 0.5,
        "contact_cost_weight": 5e-4,
        "healthy_reward": 1.0,
        "main_body": 1,
        "terminate_when_unhealthy": True,
        "healthy_z_range": (0.2, 1.0),
        "contact_force_range": (-1.0, 1.0),
        "reset_noise_scale": 0.1,
        "exclude_current_positions_from_observation": True,
        "include_cfrc_ext_in_observation": True,
    }

    def _bind(self, batch: mujoco.batch.Batch) -> None:
        self._main_body = self.body_id(self.params["main_body"])
        self.xpos = batch.bind("xpos")  # (n, nbody, 3)
        self.ncon = batch.bind("ncon")  # (n,)
        self.xfrc_applied = batch.bind("xfrc_applied")  # (n, nbody, 6)
        self.cfrc_ext = np.zeros((self.n, self.model.nbody, 6))  # Gymnasium: zero after mj_resetData
        self._scratch = mujoco.MjData(self.model)

    def observation_size(self) -> int:
        size = (
            self.model.nq
            + self.model.nv
            - 2 * int(bool(self.params["exclude_current_positions_from_observation"]))
        )
        if self.params["include_cfrc_ext_in_observation"]:
            size += (self.model.nbody - 1) * 6
        return size

    def contact_forces(self, ids: Ids = slice(None)) -> np.ndarray:
        """Clipped cfrc_ext, (k, nbody, 6)."""
        lo, hi = self.params["contact_force_range"]
        return np.clip(self.cfrc_ext[ids], lo, hi)

    def observe(self, ids: Ids = slice(None)) -> np.ndarray:
        qpos = self.qpos[ids]
        if self.params["exclude_current_positions_from_observation"]:
            qpos = qpos[:, 2:]
        parts = [qpos, self.qvel[ids]]
        if self.params["include_cfrc_ext_in_observation"]:
            forces = self.contact_forces(ids)[:, 1:]
            parts.append(forces.reshape(forces.shape[0], -1))
        return np.concatenate(parts, axis=1)

    def after_physics(self, batch: mujoco.batch.Batch) -> None:
        if not self.params["include_cfrc_ext_in_observation"] and self.params["contact_cost_weight"] == 0:
            return  # contact forces unused
        if self.model.neq > 0:
            need = np.ones(self.n, dtype=bool)
        else:
            need = (self.ncon > 0) | np.any(self.xfrc_applied.reshape(self.n, -1) != 0, axis=1)
        self.cfrc_ext[~need] = 0.0
        scratch = self._scratch
        for i in np.flatnonzero(need).tolist():
            batch.get_data(i, scratch)
            mujoco.mj_rnePostConstraint(self.model, scratch)
            self.cfrc_ext[i] = scratch.cfrc_ext

    def before_step(self) -> np.ndarray:
        return self.xpos[:, self._main_body, :2].copy()

    def is_healthy(self) -> np.ndarray:
        min_z, max_z = self.params["healthy_z_range"]
        z = self.qpos[:, 2]
        finite = np.isfinite(self.qpos).all(axis=1) & np.isfinite(self.qvel).all(axis=1)
        return finite & (min_z <= z) & (z <= max_z)

    def evaluate(self, before: Any, actions: np.ndarray, dt: np.ndarray) -> StepResult:
        xy_after = self.xpos[:, self._main_body, :2].copy()
        xy_velocity = (xy_after - before) / dt[:, None]
        healthy = self.is_healthy()
        forward_reward = xy_velocity[:, 0] * self.params["forward_reward_weight"]
        healthy_reward = healthy * self.params["healthy_reward"]
        ctrl = ctrl_cost(self.params["ctrl_cost_weight"], actions)
        contact = self.params["contact_cost_weight"] * np.sum(
            np.square(self.contact_forces()).reshape(self.n, -1), axis=1
        )
        reward = forward_reward + healthy_reward - (ctrl + contact)
        terminated = ~healthy if self.params["terminate_when_unhealthy"] else np.zeros(self.n, dtype=bool)
        qxy = self.qpos[:, 0:2]
        info = {
            "x_position": qxy[:, 0].copy(),
            "y_position": qxy[:, 1].copy(),
            "distance_from_origin": np.linalg.norm(qxy, ord=2, axis=1),
            "x_velocity": xy_velocity[:, 0],
            "y_velocity": xy_velocity[:, 1],
            "reward_forward": forward_reward,
            "reward_ctrl": -ctrl,
            "reward_contact": -contact,
            "reward_survive": healthy_reward,
        }
        return StepResult(reward, terminated, info)

    def sample_reset(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.params["reset_noise_scale"]
        qpos = self.init_qpos + self._uniform(rng, s, k, self.model.nq)
        qvel = self.init_qvel + s * rng.standard_normal((k, self.model.nv))
        return qpos, qvel

    def on_reset(self, ids: np.ndarray) -> None:
        self.cfrc_ext[ids] = 0.0  # mj_resetData zeroes it and mj_forward does not compute it

    def reset_info(self, ids: Ids) -> dict[str, np.ndarray]:
        xy = self.qpos[ids, 0:2]
        return {
            "x_position": xy[:, 0].copy(),
            "y_position": xy[:, 1].copy(),
            "distance_from_origin": np.linalg.norm(xy, ord=2, axis=1),
        }
