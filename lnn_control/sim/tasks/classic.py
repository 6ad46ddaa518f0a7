"""Classic control tasks: InvertedPendulum, InvertedDoublePendulum, Reacher (Gymnasium v5 semantics)."""

from __future__ import annotations

from typing import Any, ClassVar

import mujoco
import numpy as np

from lnn_control.sim.tasks.base import Ids, MujocoTask, StepResult


class InvertedPendulum(MujocoTask):
    name = "InvertedPendulum"
    gym_module = "inverted_pendulum_v5"
    xml_file = "inverted_pendulum.xml"
    frame_skip = 2
    defaults: ClassVar[dict[str, Any]] = {"reset_noise_scale": 0.01}

    def observation_size(self) -> int:
        return self.model.nq + self.model.nv

    def observe(self, ids: Ids = slice(None)) -> np.ndarray:
        return np.concatenate((self.qpos[ids], self.qvel[ids]), axis=1)

    def evaluate(self, before: Any, actions: np.ndarray, dt: np.ndarray) -> StepResult:
        obs = self.observe()
        terminated = ~np.isfinite(obs).all(axis=1) | (np.abs(obs[:, 1]) > 0.2)
        reward = (~terminated).astype(np.float64)
        return StepResult(reward, terminated, {"reward_survive": reward})

    def sample_reset(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.params["reset_noise_scale"]
        qpos = self.init_qpos + self._uniform(rng, s, k, self.model.nq)
        qvel = self.init_qvel + self._uniform(rng, s, k, self.model.nv)
        return qpos, qvel


class InvertedDoublePendulum(MujocoTask):
    """Reads the tip site position and the constraint force of the last substep (as Gymnasium does)."""

    name = "InvertedDoublePendulum"
    gym_module = "inverted_double_pendulum_v5"
    xml_file = "inverted_double_pendulum.xml"
    frame_skip = 5
    defaults: ClassVar[dict[str, Any]] = {"healthy_reward": 10.0, "reset_noise_scale": 0.1}

    def _bind(self, batch: mujoco.batch.Batch) -> None:
        self.site_xpos = batch.bind("site_xpos")  # (n, nsite, 3)
        self.qfrc_constraint = batch.bind("qfrc_constraint")  # (n, nv)

    def observation_size(self) -> int:
        return 1 + 2 * (self.model.nq - 1) + self.model.nv + 1

    def observe(self, ids: Ids = slice(None)) -> np.ndarray:
        qpos = self.qpos[ids]
        return np.concatenate(
            (
                qpos[:, :1],
                np.sin(qpos[:, 1:]),
                np.cos(qpos[:, 1:]),
                np.clip(self.qvel[ids], -10, 10),
                np.clip(self.qfrc_constraint[ids], -10, 10)[:, :1],
            ),
            axis=1,
        )

    def evaluate(self, before: Any, actions: np.ndarray, dt: np.ndarray) -> StepResult:
        x = self.site_xpos[:, 0, 0].copy()
        y = self.site_xpos[:, 0, 2].copy()
        terminated = y <= 1
        v1 = self.qvel[:, 1]
        v2 = self.qvel[:, 2]
        dist_penalty = 0.01 * x**2 + (y - 2) ** 2
        vel_penalty = 1e-3 * v1**2 + 5e-3 * v2**2
        alive_bonus = self.params["healthy_reward"] * (~terminated).astype(np.float64)
        reward = alive_bonus - dist_penalty - vel_penalty
        info = {
            "reward_survive": alive_bonus,
            "distance_penalty": -dist_penalty,
            "velocity_penalty": -vel_penalty,
        }
        return StepResult(reward, terminated, info)

    def sample_reset(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.params["reset_noise_scale"]
        qpos = self.init_qpos + self._uniform(rng, s, k, self.model.nq)
        qvel = self.init_qvel + rng.standard_normal((k, self.model.nv)) * s
        return qpos, qvel


class Reacher(MujocoTask):
    """Reacher v5: the distance reward reads body positions of the last substep's kinematics (as
    Gymnasium's ``get_body_com`` after ``mj_step`` does); the goal is sampled uniformly in the disc of
    radius 0.2 by rejection, as Gymnasium does."""

    name = "Reacher"
    gym_module = "reacher_v5"
    xml_file = "reacher.xml"
    frame_skip = 2
    defaults: ClassVar[dict[str, Any]] = {"reward_dist_weight": 1.0, "reward_control_weight": 1.0}

    def _bind(self, batch: mujoco.batch.Batch) -> None:
        self.xpos = batch.bind("xpos")  # (n, nbody, 3)
        self._fingertip = self.body_id("fingertip")
        self._target = self.body_id("target")

    def observation_size(self) -> int:
        return 2 + 2 + (self.model.nq - 2) + 2 + 2

    def _fingertip_to_target(self, ids: Ids = slice(None)) -> np.ndarray:
        return self.xpos[ids, self._fingertip] - self.xpos[ids, self._target]  # (k, 3)

    def observe(self, ids: Ids = slice(None)) -> np.ndarray:
        qpos = self.qpos[ids]
        theta = qpos[:, :2]
        return np.concatenate(
            (
                np.cos(theta),
                np.sin(theta),
                qpos[:, 2:],
                self.qvel[ids, :2],
                self._fingertip_to_target(ids)[:, :2],
            ),
            axis=1,
        )

    def evaluate(self, before: Any, actions: np.ndarray, dt: np.ndarray) -> StepResult:
        vec = self._fingertip_to_target()
        reward_dist = -np.linalg.norm(vec, axis=1) * self.params["reward_dist_weight"]
        reward_ctrl = -np.square(actions).sum(axis=1) * self.params["reward_control_weight"]
        info = {"reward_dist": reward_dist, "reward_ctrl": reward_ctrl}
        return StepResult(reward_dist + reward_ctrl, np.zeros(self.n, dtype=bool), info)

    def sample_reset(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        nq, nv = self.model.nq, self.model.nv
        qpos = rng.uniform(low=-0.1, high=0.1, size=(k, nq)) + self.init_qpos
        goal = rng.uniform(low=-0.2, high=0.2, size=(k, 2))
        redo = np.linalg.norm(goal, axis=1) >= 0.2
        while redo.any():  # rejection rounds (vectorised over the rejected envs)
            goal[redo] = rng.uniform(low=-0.2, high=0.2, size=(int(redo.sum()), 2))
            redo = np.linalg.norm(goal, axis=1) >= 0.2
        qpos[:, -2:] = goal
        qvel = self.init_qvel + rng.uniform(low=-0.005, high=0.005, size=(k, nv))
        qvel[:, -2:] = 0
        return qpos, qvel
