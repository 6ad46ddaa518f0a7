"""Per-environment time steps for liquid policies: which dt belongs to which observation.

Convention: the dt paired with observation o_t is the time elapsed since o_{t-1}, i.e. ``infos[i]["dt"]``
returned by ``step`` together with o_t. An observation that starts an episode (state zeroed) gets the env's
nominal dt, ``env.get_attr("dt")`` (``env.unwrapped.dt`` for Gymnasium MuJoCo tasks); an env without that
attribute adopts the first dt it reports, and one that reports none gets 1.0 (with a warning).
dt is never part of the observation, so VecNormalize leaves it alone.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from lnn_control.checks import nonnegative_number


def _valid_dt(value: Any, where: str) -> float:
    try:
        dt = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"dt must be a number of seconds, got {value!r} {where}") from err
    return nonnegative_number("dt", dt, where=where)


def query_nominal_dts(env: VecEnv) -> np.ndarray:
    """Nominal control period of each env (n_envs,) float64, NaN where the env has no ``dt`` attribute."""
    nominal = np.full(env.num_envs, np.nan)
    if env.has_attr("dt"):
        for i, value in enumerate(env.get_attr("dt")):
            if value is not None:
                nominal[i] = _valid_dt(value, f"from env.get_attr('dt') of env {i}")
    return nominal


class DtTracker:
    """Turns ``infos`` into the dt of each env's next observation during a rollout.

    Args:
        nominal: (n_envs,) nominal dt per env, NaN where unknown (see :func:`query_nominal_dts`).
    """

    def __init__(self, nominal: np.ndarray) -> None:
        self.nominal = np.asarray(nominal, dtype=np.float64).copy()
        self._warned = False
        self.irregular = False  # True once some env reported a dt other than its nominal period

    @classmethod
    def from_env(cls, env: VecEnv) -> DtTracker:
        return cls(query_nominal_dts(env))

    def nominal_or_default(self) -> np.ndarray:
        """(n_envs,) float32 nominal dt, 1.0 (with a one-time warning) where still unknown."""
        unknown = np.isnan(self.nominal)
        if unknown.any() and not self._warned:
            self._warned = True
            warnings.warn(
                f"env(s) {np.flatnonzero(unknown).tolist()} have no 'dt' attribute and have not reported "
                "info['dt'] yet; the liquid policy uses dt = 1.0 for them until they do",
                UserWarning,
                stacklevel=3,
            )
        return np.where(unknown, 1.0, self.nominal).astype(np.float32)

    def mean_nominal(self) -> float | None:
        """Mean known nominal dt, or None when no env's is known."""
        known = self.nominal[~np.isnan(self.nominal)]
        return float(known.mean()) if known.size else None

    def start_dts(self) -> np.ndarray:
        """dt for observations that start episodes: (n_envs,) float32."""
        return self.nominal_or_default()

    def step(self, infos: list[dict[str, Any]], dones: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dts after one ``VecEnv.step``.

        Returns:
            next_dts (n_envs,): dt paired with each returned observation (nominal after a reset);
            step_dts (n_envs,): dt of the transition just taken (for a done env, the time to its terminal
            observation, used to bootstrap truncated episodes).
        """
        reported = np.full(len(infos), np.nan)
        for i, info in enumerate(infos):
            if info.get("dt") is not None:
                reported[i] = _valid_dt(info["dt"], f"in infos[{i}]['dt']")
        learn = np.isnan(self.nominal) & ~np.isnan(reported)
        self.nominal[learn] = reported[learn]
        if not self.irregular:
            known = ~np.isnan(reported)
            self.irregular = bool(
                np.any(np.abs(reported[known] - self.nominal[known]) > 1e-6 * np.abs(self.nominal[known]))
            )
        fallback = self.nominal_or_default()
        step_dts = np.where(np.isnan(reported), fallback, reported).astype(np.float32)
        next_dts = np.where(np.asarray(dones, dtype=bool), fallback, step_dts).astype(np.float32)
        return next_dts, step_dts
