"""What LiquidPPO and LiquidSAC share on top of SB3's algorithms: the recurrent carry's (re)start, atomic
saves, CPU loads and a dt-aware ``predict``. Mixed in before the SB3 base class:
``class LiquidPPO(LiquidAlgorithmMixin, OnPolicyAlgorithm)``.
"""

from __future__ import annotations

import io
import pathlib
from typing import Any, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback

from lnn_control.atomic import atomic_write_bytes
from lnn_control.sb3.carry import RecurrentCarry

__all__ = ["LiquidAlgorithmMixin"]

SelfLiquid = TypeVar("SelfLiquid", bound="LiquidAlgorithmMixin")


class LiquidAlgorithmMixin:
    """The carry's start, atomic ``save``, ``load`` on the CPU by default, and ``predict(..., dt=...)``.

    ``carry_bootstraps``: whether the carry computes truncation bootstrap values (on-policy: yes; off-policy
    algorithms bootstrap from their replay buffer instead).
    """

    policy: Any
    env: Any
    _carry: RecurrentCarry | None
    _last_obs: Any
    carry_bootstraps: bool = True

    def _reset_recurrence(self) -> None:
        """A fresh carry for the current env (every env starts an episode); the policy learns its nominal dt
        (``default_dt``) and, the first time, its time unit from it."""
        if self.env is None:
            self._carry = None
            return
        self._carry = RecurrentCarry(self.policy, self.env, bootstrap=self.carry_bootstraps)
        nominal = self._carry.nominal_dt()
        if nominal is not None:
            self.policy.default_dt.fill_(nominal)
        if th.isnan(self.policy.time_unit):  # first env of this policy: its period becomes the time unit
            self.policy.time_unit.fill_(1.0 if nominal is None else nominal)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        """SB3's set-up, then a fresh carry when the env restarts its episodes (a new run, or no carry yet);
        ``learn(reset_num_timesteps=False)`` continues the episodes and states of the previous call."""
        env_resets = reset_num_timesteps or self._last_obs is None
        result = super()._setup_learn(  # type: ignore[misc]
            total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar
        )
        if env_resets or self._carry is None:
            self._episodes_restart()
        return result

    def _episodes_restart(self) -> None:
        """Every env starts a new episode: a fresh carry (subclasses also close what they stored)."""
        self._reset_recurrence()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_carry"]  # type: ignore[misc]

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        super().set_env(env, force_reset=force_reset)  # type: ignore[misc]
        if force_reset or self._carry is None:
            self._reset_recurrence()

    def save(
        self,
        path: str | pathlib.Path | io.BufferedIOBase,
        exclude: Any = None,
        include: Any = None,
    ) -> None:
        """SB3's ``save``, except that a file path is written atomically (a temporary file in the same
        folder, then a rename), so that a crash or Ctrl-C during the save never leaves a corrupt checkpoint.
        As in SB3, a path without a suffix gets ``.zip``."""
        if not isinstance(path, (str, pathlib.Path)):
            super().save(path, exclude=exclude, include=include)  # type: ignore[misc]
            return
        target = pathlib.Path(path)
        if target.suffix == "":
            target = target.with_name(f"{target.name}.zip")
        buffer = io.BytesIO()
        super().save(buffer, exclude=exclude, include=include)  # type: ignore[misc]
        atomic_write_bytes(target, buffer.getvalue())

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfLiquid],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "cpu",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfLiquid:
        """SB3's ``load``, on the CPU unless ``device`` says otherwise (as the constructor)."""
        return super().load(  # type: ignore[misc]
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: np.ndarray | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        dt: float | np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Action and next actor state, as RecurrentPPO's ``predict``.

        ``dt`` (float or (n,)) is the time since the previous observation; default: the training env's
        nominal control period (``policy.default_dt``), refused for a policy trained on irregular timing.
        Shapes: see ``LiquidActorCriticPolicy.predict``.
        """
        return self.policy.predict(observation, state, episode_start, deterministic, dt=dt)
