"""Vectorised task definitions: the reward, termination, observation and reset of a Gymnasium v5 MuJoCo task
computed with numpy over all simulations of a ``mujoco.batch.Batch``.

A task reads the batch's *bound* fields (``batch.bind("qpos")`` etc., live ``(n_envs, ...)`` arrays). As with
``mj_step`` (and therefore with Gymnasium), derived fields such as ``xpos`` or ``site_xpos`` after a step
describe the state before the last substep (for the RK4 tasks: the last Runge-Kutta stage), which is
exactly what Gymnasium's v5 code reads; the bound views reproduce that bit for bit.

Shapes: ``n`` = number of envs of the batch, ``k`` = number of envs addressed by ``ids``.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium.envs.mujoco.mujoco_env import DEFAULT_SIZE, expand_model_path

Ids = np.ndarray | slice

#: Constructor arguments of every Gymnasium MuJoCo v5 task that concern rendering only (not physics).
RENDER_KWARGS: dict[str, Any] = {
    "width": DEFAULT_SIZE,
    "height": DEFAULT_SIZE,
    "camera_id": None,
    "camera_name": None,
    "max_geom": 1000,
}


@dataclass
class StepResult:
    """What a task computes after the physics of one control step.

    Attributes:
        reward: (n,) float64 (float32 parts stay as Gymnasium computes them, see ``ctrl_cost``).
        terminated: (n,) bool.
        info: per-key (n,) arrays, the keys Gymnasium v5 puts in ``info``.
    """

    reward: np.ndarray
    terminated: np.ndarray
    info: dict[str, np.ndarray]


def ctrl_cost(weight: float, actions: np.ndarray) -> np.ndarray:
    """``weight * sum(action**2)`` per env, (n,), computed in the actions' dtype as Gymnasium does."""
    return weight * np.sum(np.square(actions), axis=1)


class MujocoTask(ABC):
    """One Gymnasium v5 MuJoCo task, vectorised over the simulations of a batch.

    Subclasses set the class variables and implement ``observe``, ``evaluate`` and ``sample_reset``.
    Keyword arguments are the task's v5 constructor arguments (same names and defaults); unknown
    names raise ``TypeError`` listing the accepted ones.
    """

    name: ClassVar[str]
    #: Gymnasium module holding the task (for DEFAULT_CAMERA_CONFIG), e.g. "half_cheetah_v5".
    gym_module: ClassVar[str]
    xml_file: ClassVar[str]
    frame_skip: ClassVar[int]
    #: The task-specific v5 constructor arguments with their defaults (xml_file and rendering ones are added).
    defaults: ClassVar[Mapping[str, Any]]
    #: Whether the batch must keep one MjData per simulation (needed to read per-env contact data).
    persistent: ClassVar[bool] = False

    def __init__(self, **kwargs: Any) -> None:
        accepted = self.accepted_kwargs()
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise TypeError(
                f"{self.name}: unknown keyword argument(s) {unknown}; accepted: {sorted(accepted)}"
            )
        self.params: dict[str, Any] = {**accepted, **kwargs}
        self.model: mujoco.MjModel
        self.qpos: np.ndarray  # (n, nq) live
        self.qvel: np.ndarray  # (n, nv) live

    @classmethod
    def default_camera_config(cls) -> dict[str, Any] | None:
        """The task's Gymnasium default free-camera settings."""
        module = importlib.import_module(f"gymnasium.envs.mujoco.{cls.gym_module}")
        return getattr(module, "DEFAULT_CAMERA_CONFIG", None)

    @classmethod
    def accepted_kwargs(cls) -> dict[str, Any]:
        """All accepted constructor arguments (besides frame_skip) with their defaults."""
        return {
            "xml_file": cls.xml_file,
            "default_camera_config": cls.default_camera_config(),
            **RENDER_KWARGS,
            **cls.defaults,
        }

    # ------------------------------------------------------------------ model
    def build_model(self) -> mujoco.MjModel:
        """Load the model as Gymnasium's MujocoEnv does (its only edit, the offscreen buffer size, is
        visual: it is grown to the render size here too)."""
        model = mujoco.MjModel.from_xml_path(expand_model_path(self.params["xml_file"]))
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, int(self.params["width"]))
        model.vis.global_.offheight = max(model.vis.global_.offheight, int(self.params["height"]))
        return model

    def setup(self, model: mujoco.MjModel, batch: mujoco.batch.Batch) -> None:
        """Bind the batch fields the task reads. Must run before the batch's first call (a derived field
        bound later is zero until the next call)."""
        self.model = model
        self.n = batch.nsim
        self.init_qpos = model.qpos0.copy()  # = MjData(model).qpos, Gymnasium's init_qpos
        self.init_qvel = np.zeros(model.nv)
        self.qpos = batch.bind("qpos")
        self.qvel = batch.bind("qvel")
        self._bind(batch)

    def _bind(self, batch: mujoco.batch.Batch) -> None:  # noqa: B027 (optional hook)
        """Bind further fields (subclass hook)."""

    # ------------------------------------------------------------------ per step
    @abstractmethod
    def observation_size(self) -> int:
        """Length of one observation."""

    @abstractmethod
    def observe(self, ids: Ids = slice(None)) -> np.ndarray:
        """Observations of envs ``ids``: (k, obs_dim) float64."""

    def before_step(self) -> Any:
        """Snapshot taken before the physics of a step (e.g. positions for velocities)."""
        return None

    def after_physics(self, batch: mujoco.batch.Batch) -> None:  # noqa: B027 (optional hook)
        """Hook run after the physics of a step, before ``observe``/``evaluate``."""

    @abstractmethod
    def evaluate(self, before: Any, actions: np.ndarray, dt: np.ndarray) -> StepResult:
        """Reward, termination and info of all envs after a step.

        Args:
            before: what ``before_step`` returned.
            actions: (n, nu) the actions as given (their dtype is kept for the control costs).
            dt: (n,) float64 physical seconds this step took per env (substeps * timestep).
        """

    # ------------------------------------------------------------------ reset
    @abstractmethod
    def sample_reset(self, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Initial states of ``k`` envs with the task's reset noise: qpos (k, nq), qvel (k, nv)."""

    def on_reset(self, ids: np.ndarray) -> None:  # noqa: B027 (optional hook)
        """Hook run after envs ``ids`` were reset and forwarded."""

    def reset_info(self, ids: Ids) -> dict[str, np.ndarray]:
        """Gymnasium's reset info of envs ``ids``: per-key (k,) arrays."""
        return {}

    # ------------------------------------------------------------------ helpers
    def body_id(self, key: int | str) -> int:
        """Body id from an id or a name (as ``data.body(key)`` accepts)."""
        if isinstance(key, (int, np.integer)):
            if not 0 <= int(key) < self.model.nbody:
                raise ValueError(f"{self.name}: body id {key} out of range [0, {self.model.nbody})")
            return int(key)
        idx = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, str(key))
        if idx < 0:
            raise ValueError(f"{self.name}: no body named {key!r} in the model")
        return idx

    def _uniform(self, rng: np.random.Generator, scale: float, k: int, size: int) -> np.ndarray:
        return rng.uniform(low=-scale, high=scale, size=(k, size))
