"""MJX backend pieces that need no MJX compile: errors, the on-device timing draw, DLPack hand-off,
model randomisation values, a task's observation/reward/reset code on given states. The physics parity
tests are in test_sim_mjx_parity.py (slow)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

jax = pytest.importorskip(
    "jax", reason="the MJX backend needs the gpu extra (pip install 'lnn-control[gpu]')"
)
pytest.importorskip("mujoco.mjx", reason="the MJX backend needs the gpu extra")

import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402
import torch  # noqa: E402

from lnn_control.extras import MissingExtraError  # noqa: E402
from lnn_control.sim.control_timing import ControlTiming  # noqa: E402
from lnn_control.sim.mjx import _deps  # noqa: E402
from lnn_control.sim.mjx.core import check_mjx_model, max_substeps, randomized_fields, sample_substeps  # noqa: E402
from lnn_control.sim.mjx.dlpack import jax_to_torch, torch_to_jax  # noqa: E402
from lnn_control.sim.randomization import ModelRandomization  # noqa: E402

IMPLICIT_PENDULUM = """
<mujoco>
  <option integrator="implicit" timestep="0.02"/>
  <worldbody>
    <body name="cart"><joint name="slider" type="slide" axis="1 0 0"/><geom size="0.1"/>
      <body name="pole"><joint name="hinge" type="hinge" axis="0 1 0"/><geom type="capsule" size="0.05 0.3"/>
      </body>
    </body>
  </worldbody>
  <actuator><motor joint="slider" ctrlrange="-3 3"/></actuator>
</mujoco>
"""


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("missing", ["jax", "mujoco.mjx"])
def test_missing_jax_or_mjx_is_one_clear_import_error(monkeypatch, missing) -> None:
    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name == missing:
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(_deps.importlib, "import_module", fake)
    with pytest.raises(MissingExtraError, match=r"lnn-control\[gpu\]") as err:
        _deps.require_mjx()
    assert ("mujoco-mjx" if missing == "mujoco.mjx" else "jax") in str(err.value)
    assert "\n" not in str(err.value) and err.value.extra == "gpu"
    from lnn_control.sim.make import make_vec_env

    with pytest.raises(ImportError, match=r"backend='mjx' needs"):
        make_vec_env("HalfCheetah-v0", 2, backend="mjx")


def test_unknown_backend_is_refused() -> None:
    from lnn_control.sim.make import make_vec_env

    with pytest.raises(ValueError, match=r"backend must be None or 'mjx', got 'warp'"):
        make_vec_env("HalfCheetah-v0", 2, backend="warp")


def test_device_jax_cannot_see_names_what_it_sees() -> None:
    assert _deps.resolve_device("cpu").platform == "cpu"
    assert _deps.resolve_device(None) == jax.devices()[0]
    with pytest.raises(ValueError, match=r"device 'cuda:99' is not visible to JAX, which sees: .*"):
        _deps.resolve_device("cuda:99")
    with pytest.raises(ValueError, match=r"device must be 'cpu', 'cuda'"):
        _deps.resolve_device("tpu")
    with pytest.raises(ValueError, match=r"device index must be an int"):
        _deps.resolve_device("cuda:x")


def test_unsupported_model_feature_is_named(tmp_path) -> None:
    model = mujoco.MjModel.from_xml_string(IMPLICIT_PENDULUM)
    _, mjx = _deps.require_mjx()
    with pytest.raises(NotImplementedError, match=r"Pendulum: .*MuJoCo XLA.*does not support.*IMPLICIT"):
        check_mjx_model(mjx, model, "Pendulum")
    from lnn_control.sim.mjx import MjxVecEnv

    path = tmp_path / "implicit_pendulum.xml"
    path.write_text(IMPLICIT_PENDULUM)
    with pytest.raises(NotImplementedError, match=r"InvertedPendulum: .*IMPLICIT"):
        MjxVecEnv("InvertedPendulum", 2, xml_file=str(path))


def test_unsupported_task_and_per_episode_randomisation_are_refused(monkeypatch) -> None:
    from lnn_control.sim.mjx import MjxVecEnv, tasks

    monkeypatch.delitem(tasks.JAX_TASKS, "Reacher")  # every task has an MJX version: pretend one lacks it
    with pytest.raises(ValueError, match=r"'Reacher' has no MJX version yet.*HalfCheetah"):
        MjxVecEnv("Reacher", 2)
    with pytest.raises(NotImplementedError, match="per_episode=True is not supported"):
        MjxVecEnv("HalfCheetah", 2, randomization=ModelRandomization(mass_scale=(0.9, 1.1), per_episode=True))
    with pytest.raises(TypeError, match="unknown keyword"):
        MjxVecEnv("HalfCheetah", 2, no_such_argument=1)


# ---------------------------------------------------------------- timing on device
TIMINGS = [
    ControlTiming(frame_skip=5, jitter=(0.5, 1.5)),
    ControlTiming(frame_skip=2, choices=(1, 2, 4), probs=(0.2, 0.5, 0.3)),
    ControlTiming(frame_skip=4, jitter=(0.8, 1.2), drop_prob=0.3, max_consecutive_drops=2),
    ControlTiming(frame_skip=3, drop_prob=0.1),
]


@pytest.mark.parametrize("timing", TIMINGS, ids=["jitter", "choices", "jitter-drops", "drops"])
def test_device_timing_draw_has_the_numpy_distribution(timing: ControlTiming) -> None:
    n = 40_000
    got = np.asarray(sample_substeps(jax.random.PRNGKey(0), n, timing.frame_skip, timing))
    ref = timing.sample_substeps(np.random.default_rng(0), n)
    smax = max_substeps(timing.frame_skip, timing)
    assert got.shape == (n,) and got.min() >= 1 and got.max() <= smax
    assert ref.max() <= smax
    # same support and frequencies (each within 4 standard errors), mean = the analytic mean
    values = np.arange(1, smax + 1)
    p_got = np.array([(got == v).mean() for v in values])
    p_ref = np.array([(ref == v).mean() for v in values])
    se = np.sqrt(np.maximum(p_ref * (1 - p_ref), 1e-6) * 2 / n)
    assert np.all(np.abs(p_got - p_ref) <= 4 * se + 1e-4), (p_got, p_ref)
    assert abs(got.mean() - timing.mean_substeps) <= 4 * got.std() / np.sqrt(n)


def test_regular_timing_and_max_substeps() -> None:
    got = sample_substeps(jax.random.PRNGKey(1), 7, 5, None)
    np.testing.assert_array_equal(np.asarray(got), np.full(7, 5))
    assert max_substeps(5, None) == 5
    assert max_substeps(5, ControlTiming(frame_skip=5, jitter=(0.5, 1.5))) == 8  # rint(7.5) = 8
    assert max_substeps(2, ControlTiming(frame_skip=2, choices=(1, 3), drop_prob=0.5)) == 3 + 3 * 2


# ---------------------------------------------------------------- DLPack
@pytest.mark.parametrize("dtype", ["float32", "float64", "bool", "int32"])
def test_dlpack_hand_off_is_zero_copy_both_ways(dtype: str) -> None:
    with jax.enable_x64(True):
        x = jnp.arange(12).reshape(3, 4).astype(dtype)
        t = jax_to_torch(x)
        assert t.data_ptr() == x.unsafe_buffer_pointer()  # same memory, no copy
        assert tuple(t.shape) == (3, 4) and str(t.dtype) == f"torch.{dtype}"
        np.testing.assert_array_equal(t.numpy(), np.asarray(x))
        src = (torch.arange(12).reshape(3, 4) % 3).to(getattr(torch, dtype))
        y = torch_to_jax(src, jax.devices("cpu")[0])
        assert y.unsafe_buffer_pointer() == src.data_ptr()
        np.testing.assert_array_equal(np.asarray(y), src.numpy())


# ---------------------------------------------------------------- randomisation values
def test_randomised_models_equal_the_cpu_backends_for_a_seed() -> None:
    """The MJX env's per-env model fields are the CPU backend's (same numpy draws), derived constants
    (subtree mass, inverse weights) included."""
    from lnn_control.sim.batched import BatchedMujocoVecEnv

    spec = ModelRandomization(
        mass_scale=(0.7, 1.3),
        friction_scale=(0.5, 1.5),
        damping_scale=(0.8, 1.2),
        actuator_gain_scale=(0.9, 1.1),
    )
    cpu = BatchedMujocoVecEnv("HalfCheetah", 3, seed=11, randomization=spec, nthread=1)
    fields = randomized_fields(cpu.model, spec, np.random.default_rng(11), 3)
    for name in ("body_mass", "body_inertia", "geom_friction", "dof_damping", "actuator_gainprm"):
        assert name in fields
    assert "body_subtreemass" in fields and "dof_invweight0" in fields
    for i in range(3):
        mi = cpu.batch.get_model(i)
        for name, values in fields.items():
            ref = mi.stat.meaninertia if name == "stat.meaninertia" else getattr(mi, name)
            np.testing.assert_array_equal(values[i], ref, err_msg=name)
    assert not np.array_equal(fields["body_mass"][0], fields["body_mass"][1])


# ---------------------------------------------------------------- task code on identical states
def _mjx_data_of(cpu, ids: list[int]):
    """The CPU envs' MjData (after mj_forward) as one batched mjx.Data, (len(ids), ...) leaves."""
    _, mjx = _deps.require_mjx()
    datas = [mjx.put_data(cpu.model, d) for d in cpu.get_attr("data", ids)]
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *datas)


@pytest.mark.parametrize("action_dtype", [np.float64, np.float32])
def test_reacher_observation_and_reward_equal_the_numpy_task_on_identical_states(action_dtype) -> None:
    """The JAX Reacher reads the same physics state as the numpy task (no MJX physics involved): the
    observation (angles, target, velocities, fingertip-to-target) and reward terms agree within 1e-12, at
    states with the elbow past its joint limit and goals all over the disc; float32 actions give a float32
    control cost on both."""
    from lnn_control.sim.batched import BatchedMujocoVecEnv
    from lnn_control.sim.mjx.tasks import make_jax_task

    n = 8
    cpu = BatchedMujocoVecEnv("Reacher", n, seed=0, nthread=1)
    rng = np.random.default_rng(14)
    q = np.column_stack((rng.uniform(-6, 6, n), rng.uniform(-3.2, 3.2, n), rng.uniform(-0.2, 0.2, (n, 2))))
    q[0, 1] = 3.1  # past the elbow's limit of 3
    v = rng.uniform(-20, 20, (n, 4))
    cpu.set_state(q, v)
    actions = rng.uniform(-1, 1, (n, 2)).astype(action_dtype)
    dt = np.full(n, 0.02)
    ref = cpu.task.evaluate(None, actions, dt)
    jtask = make_jax_task("Reacher", model=cpu.model)
    with jax.enable_x64(True):
        d = _mjx_data_of(cpu, list(range(n)))
        obs = np.asarray(jax.vmap(jtask.observe)(d))
        reward, terminated, info = jax.vmap(jtask.evaluate)(None, d, jnp.asarray(actions), jnp.asarray(dt))
    assert obs.shape == (n, jtask.observation_size()) == cpu.observe().shape
    np.testing.assert_allclose(obs, cpu.observe(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(reward), ref.reward, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(terminated), ref.terminated)
    assert set(info) == set(ref.info)
    for k in info:
        np.testing.assert_allclose(np.asarray(info[k]), ref.info[k], rtol=1e-12, atol=1e-12, err_msg=k)
    assert np.asarray(info["reward_ctrl"]).dtype == ref.info["reward_ctrl"].dtype == action_dtype


def test_reacher_reset_draws_have_the_numpy_tasks_distribution() -> None:
    """JAX's Reacher resets: arm angles within 0.1 of qpos0, goals uniform in the open disc of radius 0.2
    (E|g|^2 = 0.02; the square it is drawn from would give 0.027), arm velocities within 0.005, the target
    at rest; the numpy task's draws have the same statistics."""
    from lnn_control.sim.batched import BatchedMujocoVecEnv
    from lnn_control.sim.mjx.tasks import make_jax_task

    n = 4000
    cpu = BatchedMujocoVecEnv("Reacher", 1, seed=0, nthread=1)
    jtask = make_jax_task("Reacher", model=cpu.model)
    with jax.enable_x64(True):
        qpos, qvel = jax.vmap(jtask.sample_reset)(jax.random.split(jax.random.PRNGKey(15), n))
    qpos, qvel = np.asarray(qpos), np.asarray(qvel)
    ref_qpos, ref_qvel = cpu.task.sample_reset(np.random.default_rng(15), n)
    for q, v in ((qpos, qvel), (ref_qpos, ref_qvel)):
        assert np.all(np.abs(q[:, :2] - cpu.model.qpos0[:2]) <= 0.1)
        assert np.all(np.abs(v[:, :2]) <= 0.005) and np.all(v[:, 2:] == 0)
        r2 = np.sum(q[:, 2:] ** 2, axis=1)
        assert np.all(r2 < 0.04)
        assert abs(r2.mean() - 0.02) < 1.5e-3, r2.mean()  # sd of the mean: 2.6e-4
        assert abs(np.mean(q[:, 2] > 0) - 0.5) < 0.05 and abs(np.mean(q[:, 3] > 0) - 0.5) < 0.05
    assert len(np.unique(qpos[:, 2])) == n  # one goal per env, not one shared draw
