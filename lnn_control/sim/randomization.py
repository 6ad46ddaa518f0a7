"""Per-environment model randomisation (domain randomisation) for :class:`BatchedMujocoVecEnv`.

Each simulation of a ``mujoco.batch.Batch`` can carry its own values of a model field
(``batch.expand(name)`` returns the live ``(nsim, ...)`` array). :class:`ModelRandomization` describes
multiplicative scale ranges; :class:`ModelRandomizer` samples them (vectorised, one numpy Generator)
and writes ``nominal * scale`` into the expanded fields, then runs ``batch.set_const()`` for the fields
that ``mj_setConst`` reads (body masses and inertias), so that derived constants follow.

What each scale acts on:

- ``mass_scale``: one factor per body and env, applied to ``body_mass`` *and* ``body_inertia``
  (uniform density scaling: the geometry stays, so the inertia scales with the mass).
- ``friction_scale``: one factor per geom and env, applied to all three ``geom_friction`` coefficients
  (sliding, torsional, rolling), which keeps their ratios.
- ``damping_scale``: one factor per dof and env, applied to ``dof_damping``.
- ``actuator_gain_scale``: one factor per actuator and env, applied to ``actuator_gainprm[:, 0]``.
  For the motor actuators of the Gymnasium tasks (gaintype "fixed", biastype "none") the actuator force
  is ``gainprm[0] * ctrl`` and the joint torque ``gear * force``; scaling ``gainprm[0]`` scales the force
  and nothing else, whereas ``actuator_gear`` also changes the transmission (actuator length, moment
  arm) and is an ``mj_setConst`` input. Actuators with a bias (position/velocity servos) are refused,
  because scaling only their gain would not scale their force.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import mujoco
import numpy as np

from lnn_control.checks import positive_range

Range = tuple[float, float]

__all__ = ["ModelRandomization", "ModelRandomizer"]


def _check_range(name: str, value: Range | None) -> Range | None:
    if value is None:
        return None
    return positive_range(name, value, meaning=" (a multiplicative scale)")


@dataclass(frozen=True)
class ModelRandomization:
    """Multiplicative scale ranges ``(lo, hi)`` with ``0 < lo <= hi``, sampled uniformly; None = off.

    Attributes:
        mass_scale: scales ``body_mass`` and ``body_inertia`` per body.
        friction_scale: scales ``geom_friction`` per geom.
        damping_scale: scales ``dof_damping`` per dof.
        actuator_gain_scale: scales ``actuator_gainprm[:, 0]`` per actuator (motor force).
        per_episode: resample an env's values at each of its resets; otherwise sample once at
            construction of the VecEnv.
    """

    mass_scale: Range | None = None
    friction_scale: Range | None = None
    damping_scale: Range | None = None
    actuator_gain_scale: Range | None = None
    per_episode: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "per_episode":
                if not isinstance(self.per_episode, (bool, np.bool_)):
                    raise ValueError(f"per_episode must be a bool, got {self.per_episode!r}")
                continue
            object.__setattr__(self, f.name, _check_range(f.name, getattr(self, f.name)))

    @property
    def enabled(self) -> bool:
        """Whether any field is randomised."""
        return any(
            r is not None
            for r in (self.mass_scale, self.friction_scale, self.damping_scale, self.actuator_gain_scale)
        )


class ModelRandomizer:
    """Applies a :class:`ModelRandomization` to a ``mujoco.batch.Batch``.

    Args:
        spec: the scale ranges.
        model: the nominal model (the batch's model); its values are the ones scaled.
        batch: the batch whose per-simulation fields are written.
    """

    def __init__(self, spec: ModelRandomization, model: mujoco.MjModel, batch: mujoco.batch.Batch) -> None:
        self.spec = spec
        self._batch = batch
        self._nominal_mass = model.body_mass.copy()  # (nbody,)
        self._nominal_inertia = model.body_inertia.copy()  # (nbody, 3)
        self._nominal_friction = model.geom_friction.copy()  # (ngeom, 3)
        self._nominal_damping = model.dof_damping.copy()  # (nv,)
        self._nominal_gain = model.actuator_gainprm[:, 0].copy()  # (nu,)
        if spec.actuator_gain_scale is not None:
            fixed = int(mujoco.mjtGain.mjGAIN_FIXED)
            no_bias = int(mujoco.mjtBias.mjBIAS_NONE)
            bad = [
                i
                for i in range(model.nu)
                if model.actuator_gaintype[i] != fixed or model.actuator_biastype[i] != no_bias
            ]
            if bad:
                raise ValueError(
                    f"actuator_gain_scale supports motor actuators only (gaintype fixed, biastype none); "
                    f"actuators {bad} are not"
                )
        # expand only the fields that are randomised (expanding is what makes them per-simulation)
        self._mass = batch.expand("body_mass") if spec.mass_scale else None
        self._inertia = batch.expand("body_inertia") if spec.mass_scale else None
        self._friction = batch.expand("geom_friction") if spec.friction_scale else None
        self._damping = batch.expand("dof_damping") if spec.damping_scale else None
        self._gain = batch.expand("actuator_gainprm") if spec.actuator_gain_scale else None

    def apply(self, rng: np.random.Generator, ids: np.ndarray) -> None:
        """Sample new scales for simulations ``ids`` (int array, (k,)) and write them into the batch."""
        k = len(ids)
        if k == 0:
            return
        s = self.spec
        if s.mass_scale is not None:
            scale = rng.uniform(*s.mass_scale, size=(k, self._nominal_mass.shape[0]))
            self._mass[ids] = self._nominal_mass * scale
            self._inertia[ids] = self._nominal_inertia * scale[:, :, None]
        if s.friction_scale is not None:
            scale = rng.uniform(*s.friction_scale, size=(k, self._nominal_friction.shape[0]))
            self._friction[ids] = self._nominal_friction * scale[:, :, None]
        if s.damping_scale is not None:
            scale = rng.uniform(*s.damping_scale, size=(k, self._nominal_damping.shape[0]))
            self._damping[ids] = self._nominal_damping * scale
        if s.actuator_gain_scale is not None:
            scale = rng.uniform(*s.actuator_gain_scale, size=(k, self._nominal_gain.shape[0]))
            self._gain[ids, :, 0] = self._nominal_gain * scale
        if s.mass_scale is not None:
            # body_mass / body_inertia are mj_setConst inputs (subtree mass, invweight, meaninertia, ...)
            self._batch.set_const(ids)
