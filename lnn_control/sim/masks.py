"""Observation index sets for partially observable variants of the Gymnasium v5 MuJoCo tasks.

``observation_indices(task, kind)`` returns the indices of the v5 observation vector that are KEPT:

* ``"novel"`` (velocity-masked): only configuration (positions, angles, and Reacher's task goal) is kept;
  the policy must infer velocities from the history of observations (and the time between them).
* ``"nopos"`` (position-masked): only velocities (and the task goal for Reacher) are kept.

Force-like extras (Ant's ``cfrc_ext`` contact forces, InvertedDoublePendulum's cart constraint force) are
neither positions nor velocities; they are dropped by BOTH masks, so that each variant sees exactly one
kinematic group. (Contact forces depend on penetration depth and contact velocity through MuJoCo's soft
constraints, so keeping them would leak both groups.) Reacher's target position is the task goal, constant
within an episode; both masks keep it, since without it the task is not defined. Reacher's
fingertip-minus-target vector is a function of the joint angles and the goal, so it counts as a position.

Layouts of the default v5 observations (``exclude_current_positions_from_observation=True``, Ant with
``include_cfrc_ext_in_observation=True``), derived from ``gymnasium/envs/mujoco/*_v5.py``:

========================  ====  ==========================================  ==================  ============
task                      dim   layout                                      novel keeps         nopos keeps
========================  ====  ==========================================  ==================  ============
HalfCheetah               17    0-7 qpos[1:] (rootz, rooty, 6 joints),      0-7                 8-16
                                8-16 qvel (9)
Hopper                    11    0-4 qpos[1:] (rootz, rooty, 3 joints),      0-4                 5-10
                                5-10 clip(qvel, ±10) (6)
Walker2d                  17    0-7 qpos[1:] (rootz, rooty, 6 joints),      0-7                 8-16
                                8-16 clip(qvel, ±10) (9)
Ant                       105   0-12 qpos[2:] (z, quat(4), 8 joints),       0-12                13-26
                                13-26 qvel (14), 27-104 cfrc_ext[1:] (78)
Swimmer                   8     0-2 qpos[2:] (body rot, 2 joints),          0-2                 3-7
                                3-7 qvel (5)
InvertedPendulum          4     0-1 qpos (slider, hinge), 2-3 qvel          0-1                 2-3
InvertedDoublePendulum    9     0 cart x, 1-2 sin(hinges), 3-4 cos(hinges), 0-4                 5-7
                                5-7 clip(qvel, ±10), 8 clip(qfrc_constraint[0], ±10)
Reacher                   10    0-1 cos(joints), 2-3 sin(joints),           0-5, 8-9            4-7
                                4-5 target xy (goal), 6-7 joint qvel,
                                8-9 fingertip - target (xy)
========================  ====  ==========================================  ==================  ============

Non-default observation sizes are recognised through ``obs_dim``: the tasks that drop the root x
(HalfCheetah, Hopper, Walker2d: +1) or x, y (Ant, Swimmer: +2) keep them with
``exclude_current_positions_from_observation=False`` (they are positions, at the front of the position
block), and Ant without contact forces has 27 (or 29) elements. Any other ``obs_dim`` raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MASK_KINDS", "MASK_TASKS", "observation_groups", "observation_indices"]

MASK_KINDS: tuple[str, ...] = ("novel", "nopos")

# Group labels of each observation element: "pos", "vel", "goal" (kept by both masks), "force" (kept by none).
_KEEP: dict[str, frozenset[str]] = {
    "novel": frozenset({"pos", "goal"}),
    "nopos": frozenset({"vel", "goal"}),
}


def _blocks(*blocks: tuple[str, int]) -> tuple[str, ...]:
    return tuple(label for label, size in blocks for _ in range(size))


# (positions kept by default, positions excluded by default, velocities, force extras that may be disabled)
_LOCOMOTION: dict[str, tuple[int, int, int, int]] = {
    "HalfCheetah": (8, 1, 9, 0),
    "Hopper": (5, 1, 6, 0),
    "Walker2d": (8, 1, 9, 0),
    "Ant": (13, 2, 14, 78),
    "Swimmer": (3, 2, 5, 0),
}

_FIXED: dict[str, tuple[str, ...]] = {
    "InvertedPendulum": _blocks(("pos", 2), ("vel", 2)),
    "InvertedDoublePendulum": _blocks(("pos", 5), ("vel", 3), ("force", 1)),
    "Reacher": _blocks(("pos", 4), ("goal", 2), ("vel", 2), ("pos", 2)),
}

MASK_TASKS: tuple[str, ...] = (*_LOCOMOTION, *_FIXED)


def _layouts(task: str) -> dict[int, tuple[str, ...]]:
    """All recognised layouts of ``task``: observation size -> group label per element."""
    if task in _FIXED:
        labels = _FIXED[task]
        return {len(labels): labels}
    n_pos, n_excluded, n_vel, n_force = _LOCOMOTION[task]
    out: dict[int, tuple[str, ...]] = {}
    for extra_pos in (0, n_excluded):
        for force in {n_force, 0}:
            labels = _blocks(("pos", n_pos + extra_pos), ("vel", n_vel), ("force", force))
            out[len(labels)] = labels
    return out


def _check_task(task: str) -> str:
    if not isinstance(task, str):
        raise TypeError(f"task must be a str, got {type(task).__name__}")
    base = task.split("-")[0] if "-" in task else task  # accept "HalfCheetah-v5"
    if base not in MASK_TASKS:
        raise ValueError(f"unknown task {task!r} for observation masks; expected one of {list(MASK_TASKS)}")
    return base


def observation_groups(task: str, obs_dim: int | None = None) -> tuple[str, ...]:
    """Group label ("pos", "vel", "goal", "force") of every element of ``task``'s v5 observation.

    Args:
        task: base task name (``"HalfCheetah"``; a suffix like ``"-v5"`` is ignored).
        obs_dim: observation size, None for the v5 default.
    Returns:
        tuple of length ``obs_dim``.
    """
    base = _check_task(task)
    layouts = _layouts(base)
    if obs_dim is None:
        return _default_layout(base)
    if int(obs_dim) not in layouts:
        raise ValueError(
            f"observation size {obs_dim} of {base} matches no known v5 layout; "
            f"expected one of {sorted(layouts)}"
        )
    return layouts[int(obs_dim)]


def _default_layout(task: str) -> tuple[str, ...]:
    if task in _FIXED:
        return _FIXED[task]
    n_pos, _, n_vel, n_force = _LOCOMOTION[task]
    return _blocks(("pos", n_pos), ("vel", n_vel), ("force", n_force))


def observation_indices(task: str, kind: str, obs_dim: int | None = None) -> np.ndarray:
    """Indices of the observation elements kept by mask ``kind`` for ``task``.

    Args:
        task: base task name, one of :data:`MASK_TASKS` (``"-v5"``-style suffixes are ignored).
        kind: ``"novel"`` (keep positions) or ``"nopos"`` (keep velocities); see the module docstring.
        obs_dim: the observation size, None for the v5 default (see the module docstring for the others).
    Returns:
        int64 array of shape ``(k,)``, sorted ascending, indices into the full observation.
    """
    if kind not in _KEEP:
        raise ValueError(f"unknown mask kind {kind!r}; expected one of {list(MASK_KINDS)}")
    labels = observation_groups(task, obs_dim)
    keep = _KEEP[kind]
    return np.asarray([i for i, label in enumerate(labels) if label in keep], dtype=np.int64)
