"""Pure JAX pieces of the MJX backend: control timing, per-env models, masked substeps, NaN recovery.

Shapes: ``n`` envs; ``S`` = the timing's maximum substeps per control step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import mujoco
import mujoco.batch
import numpy as np

from lnn_control.sim.control_timing import ControlTiming
from lnn_control.sim.randomization import ModelRandomization, ModelRandomizer

__all__ = [
    "MJ_MAXVAL",
    "check_mjx_model",
    "max_substeps",
    "physics_step",
    "randomized_fields",
    "sample_substeps",
]

#: MuJoCo's mjMAXVAL: a qpos/qvel entry beyond this (or non-finite) makes mj_step reset the data.
MJ_MAXVAL = 1e10


def max_substeps(frame_skip: int, timing: ControlTiming | None) -> int:
    """The most substeps one control step can take under ``timing`` (None: constant ``frame_skip``)."""
    if timing is None:
        return int(frame_skip)
    if timing.choices is not None:
        base = max(timing.choices)
    elif timing.jitter is not None:
        base = max(1, int(np.rint(timing.frame_skip * timing.jitter[1])))
    else:
        base = timing.frame_skip
    drops = timing.max_consecutive_drops if timing.drop_prob > 0 else 0
    return int(base + drops * timing.frame_skip)


def sample_substeps(key: jax.Array, n: int, frame_skip: int, timing: ControlTiming | None) -> jax.Array:
    """Substeps of one control step for ``n`` envs, int32 ``(n,)``: the distribution of
    :meth:`ControlTiming.sample_substeps` (jitter, choices, dropped frames), drawn with JAX's PRNG."""
    if timing is None or timing.is_regular:
        return jnp.full((n,), frame_skip if timing is None else timing.frame_skip, jnp.int32)
    kb, kd = jax.random.split(key)
    fs = timing.frame_skip
    if timing.choices is not None:
        choices = jnp.asarray(timing.choices, jnp.int32)
        probs = None if timing.probs is None else jnp.asarray(np.asarray(timing.probs) / sum(timing.probs))
        base = jax.random.choice(kb, choices, (n,), p=probs)
    elif timing.jitter is not None:
        lo, hi = timing.jitter
        u = jax.random.uniform(kb, (n,), jnp.float32, lo, hi)
        base = jnp.maximum(jnp.rint(fs * u).astype(jnp.int32), 1)
    else:
        base = jnp.full((n,), fs, jnp.int32)
    if timing.drop_prob > 0:
        trials = jax.random.uniform(kd, (n, timing.max_consecutive_drops)) < timing.drop_prob
        drops = jnp.cumprod(trials.astype(jnp.int32), axis=1).sum(axis=1)
        base = base + drops * fs
    return base.astype(jnp.int32)


def _select(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per-env ``where`` over two pytrees of the same structure (``mask`` broadcast from the left)."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        if not hasattr(a, "ndim") or a.ndim == 0:
            return jnp.where(mask, a, b)
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim)), a, b)

    return jax.tree_util.tree_map(pick, new, old)


def physics_step(
    mjx: Any, m: Any, d: Any, d_reset: Any, ctrl: jax.Array, substeps: jax.Array, smax: int
) -> Any:
    """One env's control-step physics: ``substeps`` (<= ``smax``) ``mjx.step`` calls with ``ctrl``.

    The loop always runs ``smax`` iterations (one compiled program for every env); iterations past the
    env's own count leave its data unchanged, so derived fields describe the state before its last real
    substep, as with ``mj_step``. As ``mj_step``'s ``mj_checkPos``/``mj_checkVel`` do, a substep that starts
    from a non-finite or huge (> 1e10) qpos/qvel first resets the data to ``d_reset`` (``mj_resetData``:
    qpos0, zero velocity and controls).

    Returns:
        ``(data, reset_flag)``: the data after the step and whether a bad state was reset.
    """
    d = d.replace(ctrl=ctrl)

    def body(k: jax.Array, carry: tuple[Any, jax.Array]) -> tuple[Any, jax.Array]:
        d, flagged = carry
        active = k < substeps
        state = jnp.concatenate((d.qpos, d.qvel))
        bad = active & ~jnp.all(jnp.isfinite(state) & (jnp.abs(state) <= MJ_MAXVAL))
        d = _select(bad, d_reset, d)
        nd = mjx.step(m, d)
        return _select(active, nd, d), flagged | bad

    return jax.lax.fori_loop(0, smax, body, (d, jnp.zeros((), bool)))


def check_mjx_model(mjx: Any, model: mujoco.MjModel, task: str) -> Any:
    """``mjx.put_model(model)``, turning MJX's refusal of a model feature into one clear error.

    Raises:
        NotImplementedError: naming the task and the feature MJX does not support.
    """
    try:
        return mjx.put_model(model)
    except NotImplementedError as err:
        raise NotImplementedError(
            f"{task}: the model uses a feature MuJoCo XLA (backend='mjx') does not support: {err}. "
            "Use the CPU batched backend for this model."
        ) from err


def randomized_fields(
    model: mujoco.MjModel, spec: ModelRandomization, rng: np.random.Generator, n: int
) -> dict[str, np.ndarray]:
    """Per-env model fields under ``spec``: ``{field: (n, ...) array}``, the randomised fields and every
    constant ``mj_setConst`` derives from them (subtree masses, inverse weights, mean inertia, ...).

    The values come from :class:`~lnn_control.sim.randomization.ModelRandomizer` on a ``mujoco.batch``
    of the model, drawn from ``rng`` in the CPU backend's order, so that the same seed gives the same
    models on both backends.
    """
    batch = mujoco.batch.Batch(model, n, nthread=1)
    ModelRandomizer(spec, model, batch).apply(rng, np.arange(n))
    models = [batch.get_model(i) for i in range(n)]
    names = []
    for name in dir(model):
        if name.startswith("_"):
            continue
        nominal = getattr(model, name, None)
        if not isinstance(nominal, np.ndarray) or nominal.dtype.kind != "f":
            continue
        if any(not np.array_equal(getattr(mi, name), nominal) for mi in models):
            names.append(name)
    out = {name: np.stack([getattr(mi, name) for mi in models]) for name in names}
    meaninertia = np.array([mi.stat.meaninertia for mi in models])
    if not np.all(meaninertia == model.stat.meaninertia):
        out["stat.meaninertia"] = meaninertia
    return out
