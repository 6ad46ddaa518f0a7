"""BatchedMujocoVecEnv: VecEnv semantics, seeding, state, timing, randomisation, errors, SB3 smoke test.

Parity of observations/rewards with Gymnasium is in tests/test_sim_tasks_parity.py.
"""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from lnn_control.sim.batched import BatchedMujocoVecEnv
from lnn_control.sim.catalogue import get_task
from lnn_control.sim.make import make_vec_env
from lnn_control.sim.randomization import ModelRandomization
from lnn_control.sim.tasks import known_tasks


def random_actions(venv: VecEnv, rng: np.random.Generator) -> np.ndarray:
    low, high = venv.action_space.low, venv.action_space.high
    return rng.uniform(low, high, size=(venv.num_envs, low.size)).astype(np.float32)


class StubTiming:
    """Draws substeps in [lo, hi] per env (like ControlTiming's interface) and records them."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.history: list[np.ndarray] = []

    def sample_substeps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        s = rng.integers(self.lo, self.hi + 1, size=n)
        self.history.append(s)
        return s


# ---------------------------------------------------------------------------------------------- API
def test_is_sb3_vecenv_with_gymnasium_spaces() -> None:
    venv = BatchedMujocoVecEnv("Hopper", 3, seed=0)
    ref = gym.make("Hopper-v5")
    assert isinstance(venv, VecEnv)
    assert venv.num_envs == 3
    assert venv.observation_space == ref.observation_space
    assert venv.action_space == ref.action_space
    obs = venv.reset()
    assert obs.shape == (3, 11) and obs.dtype == np.float64
    obs, rew, dones, infos = venv.step(random_actions(venv, np.random.default_rng(0)))
    assert rew.shape == (3,) and rew.dtype == np.float32
    assert dones.shape == (3,) and dones.dtype == bool
    assert len(infos) == 3 and all(isinstance(i, dict) for i in infos)
    assert venv.get_attr("dt") == [pytest.approx(ref.unwrapped.dt)] * 3
    assert venv.get_attr("frame_skip", indices=[0, 2]) == [4, 4]
    assert venv.get_attr("spec")[0].id == "Hopper-v5"
    assert venv.get_attr("render_mode") == [None] * 3
    assert venv.env_is_wrapped(Monitor) == [False] * 3
    assert venv.has_attr("dt") and not venv.has_attr("no_such_attribute")
    models = venv.get_attr("model", indices=1)
    assert len(models) == 1 and isinstance(models[0], mujoco.MjModel)
    data = venv.get_attr("data", indices=[2])[0]
    np.testing.assert_array_equal(data.qpos, venv.get_state()[0][2])
    assert venv.env_method("get_state", indices=[0, 1])[0][0].shape == (3, 6)
    venv.set_attr("max_episode_steps", 7)
    assert venv.get_attr("max_episode_steps") == [7] * 3
    with pytest.raises(ValueError, match="all 3 envs"):
        venv.set_attr("max_episode_steps", 9, indices=[0])
    venv.close()


@pytest.mark.parametrize("task", known_tasks())
def test_spaces_match_gymnasium(task: str) -> None:
    venv = BatchedMujocoVecEnv(task, 2)
    ref = gym.make(f"{task}-v5")
    assert venv.observation_space == ref.observation_space
    assert venv.action_space == ref.action_space
    assert venv.max_episode_steps == ref.spec.max_episode_steps
    assert venv.dt == pytest.approx(ref.unwrapped.dt, rel=1e-12)


def test_auto_reset_time_limit_and_terminal_observation() -> None:
    """At the time limit every env is done with TimeLimit.truncated; terminal_observation is the last real
    observation (checked against a twin without time limit) and the returned obs is the reset obs."""
    limit = 5
    venv = BatchedMujocoVecEnv("HalfCheetah", 3, seed=11, max_episode_steps=limit)
    twin = BatchedMujocoVecEnv("HalfCheetah", 3, seed=11, max_episode_steps=0)
    venv.reset()
    twin.reset()
    rng = np.random.default_rng(0)
    for t in range(1, limit + 1):
        a = random_actions(venv, rng)
        obs, _, dones, infos = venv.step(a)
        twin_obs, _, twin_dones, twin_infos = twin.step(a)
        assert not twin_dones.any() and not any(i["TimeLimit.truncated"] for i in twin_infos)
        if t < limit:
            np.testing.assert_array_equal(obs, twin_obs)
            assert not dones.any()
            assert all(not i["TimeLimit.truncated"] and "terminal_observation" not in i for i in infos)
            np.testing.assert_array_equal(venv.episode_steps, [t] * 3)
    assert dones.all()
    for k in range(3):
        assert infos[k]["TimeLimit.truncated"] is True
        np.testing.assert_array_equal(infos[k]["terminal_observation"], twin_obs[k])
    assert not np.allclose(obs, twin_obs)
    np.testing.assert_array_equal(obs, venv.observe())  # returned obs is the (stored) reset observation
    np.testing.assert_array_equal(venv.episode_steps, [0, 0, 0])
    np.testing.assert_array_equal(venv.sim_time, [0.0, 0.0, 0.0])
    # reset observation has the reset distribution: near the initial pose
    np.testing.assert_allclose(obs[:, :8], np.broadcast_to(venv.task.init_qpos[1:], (3, 8)), atol=0.1 + 1e-12)


def test_per_env_episode_counters_termination_and_truncation() -> None:
    """InvertedPendulum terminates at different steps per env: counters, flags and resets are per env;
    a terminated env is never flagged TimeLimit.truncated, even at the limit."""
    limit = 12
    venv = BatchedMujocoVecEnv("InvertedPendulum", 6, seed=3, max_episode_steps=limit)
    venv.reset()
    rng = np.random.default_rng(1)
    counter = np.zeros(6, dtype=int)
    n_term = n_trunc = 0
    for _ in range(120):
        prev_obs = venv.observe()
        obs, rew, dones, infos = venv.step(random_actions(venv, rng) * 3)
        counter += 1
        for k in range(6):
            terminated = bool(dones[k]) and not infos[k]["TimeLimit.truncated"]
            if dones[k]:
                term_obs = infos[k]["terminal_observation"]
                fell = abs(term_obs[1]) > 0.2
                assert terminated == fell
                assert rew[k] == (0.0 if terminated else 1.0)
                assert infos[k]["TimeLimit.truncated"] == (counter[k] >= limit and not fell)
                assert counter[k] <= limit
                assert not np.array_equal(obs[k], prev_obs[k])
                n_term += terminated
                n_trunc += not terminated
            else:
                assert "terminal_observation" not in infos[k] and rew[k] == 1.0
        counter[dones] = 0
        np.testing.assert_array_equal(venv.episode_steps, counter)
    assert n_term > 0 and n_trunc > 0


def test_seeding_reproducible() -> None:
    def rollout(venv: BatchedMujocoVecEnv) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(5)
        obs = [venv.reset()]
        rews = []
        for _ in range(40):
            o, r, _, _ = venv.step(random_actions(venv, rng))
            obs.append(o)
            rews.append(r)
        return np.stack(obs), np.stack(rews)

    kw = {
        "timing": StubTiming(1, 6),
        "randomization": ModelRandomization(mass_scale=(0.8, 1.2), per_episode=True),
    }
    a_obs, a_rew = rollout(BatchedMujocoVecEnv("Hopper", 4, seed=42, **kw))
    b_obs, b_rew = rollout(BatchedMujocoVecEnv("Hopper", 4, seed=42, **kw))
    np.testing.assert_array_equal(a_obs, b_obs)
    np.testing.assert_array_equal(a_rew, b_rew)
    c_obs, _ = rollout(BatchedMujocoVecEnv("Hopper", 4, seed=43, **kw))
    assert not np.allclose(a_obs, c_obs)
    # seed() then reset() restarts the stream, as with DummyVecEnv
    venv = BatchedMujocoVecEnv("Hopper", 4)
    assert venv.seed(7) == [7] * 4
    first = venv.reset()
    venv.step(random_actions(venv, np.random.default_rng(0)))
    venv.seed(7)
    np.testing.assert_array_equal(venv.reset(), first)
    assert not np.array_equal(venv.reset(), first)  # the seed is used once
    # envs get different noise from the shared generator
    assert len({tuple(row) for row in first}) == 4


def test_thread_count_does_not_change_results() -> None:
    rng_a, rng_b = np.random.default_rng(0), np.random.default_rng(0)
    a = BatchedMujocoVecEnv("Ant", 5, seed=1, nthread=1)
    b = BatchedMujocoVecEnv("Ant", 5, seed=1, nthread=2)
    np.testing.assert_array_equal(a.reset(), b.reset())
    for _ in range(30):
        oa, ra, _, _ = a.step(random_actions(a, rng_a))
        ob, rb, _, _ = b.step(random_actions(b, rng_b))
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(ra, rb)


# ---------------------------------------------------------------------------------------------- state
def test_get_set_state_round_trip_and_observation_consistency() -> None:
    venv = BatchedMujocoVecEnv("Reacher", 3, seed=0)
    ref = gym.make("Reacher-v5").unwrapped
    ref.reset(seed=0)
    rng = np.random.default_rng(2)
    qpos = ref.init_qpos + rng.uniform(-0.5, 0.5, size=(3, venv.model.nq))
    qvel = rng.normal(size=(3, venv.model.nv))
    venv.set_state(qpos, qvel)
    got_qpos, got_qvel = venv.get_state()
    np.testing.assert_array_equal(got_qpos, qpos)
    np.testing.assert_array_equal(got_qvel, qvel)
    got_qpos[:] = 0  # copies, not views
    assert not np.array_equal(venv.get_state()[0], got_qpos)
    obs = venv.observe()
    for k in range(3):  # the observation depends on body positions: forward must have run
        ref.set_state(qpos[k], qvel[k])
        np.testing.assert_allclose(obs[k], ref._get_obs(), rtol=1e-12, atol=1e-14)
    venv.set_state(qpos[:1] * 0.5, qvel[:1], indices=[2])
    np.testing.assert_array_equal(venv.get_state()[0][2], qpos[0] * 0.5)
    np.testing.assert_array_equal(venv.get_state()[0][:2], qpos[:2])


def test_set_state_rejects_bad_shapes() -> None:
    venv = BatchedMujocoVecEnv("HalfCheetah", 2)
    nq, nv = venv.model.nq, venv.model.nv
    with pytest.raises(ValueError, match=r"qpos must have shape \(2, 9\).*got \(9,\)"):
        venv.set_state(np.zeros(nq), np.zeros((2, nv)))
    with pytest.raises(ValueError, match=r"qvel must have shape \(2, 9\).*got \(2, 8\)"):
        venv.set_state(np.zeros((2, nq)), np.zeros((2, nv - 1)))
    with pytest.raises(ValueError, match=r"qpos must have shape \(1, 9\)"):
        venv.set_state(np.zeros((2, nq)), np.zeros((1, nv)), indices=[1])
    with pytest.raises(ValueError, match=r"indices must be in \[0, 2\)"):
        venv.set_state(np.zeros((1, nq)), np.zeros((1, nv)), indices=[5])


# ---------------------------------------------------------------------------------------------- timing
def test_dt_reports_simulated_time_under_variable_substeps() -> None:
    timing = StubTiming(1, 9)
    venv = BatchedMujocoVecEnv("HalfCheetah", 8, seed=0, timing=timing, max_episode_steps=0)
    venv.reset()
    t0 = venv.sim_time
    total = np.zeros(8)
    rng = np.random.default_rng(0)
    for _ in range(25):
        _, _, _, infos = venv.step(random_actions(venv, rng))
        dts = np.array([i["dt"] for i in infos])
        np.testing.assert_allclose(dts, timing.history[-1] * venv.model.opt.timestep, rtol=1e-15)
        total += dts
    assert len({int(s) for h in timing.history for s in h}) > 3  # several groups per step were exercised
    np.testing.assert_allclose(venv.sim_time - t0, total, rtol=1e-12)
    assert not np.allclose(total, total[0])


def test_variable_substeps_match_gymnasium_with_that_frame_skip() -> None:
    """With per-env substeps k, env i must match a gymnasium env stepped with frame_skip k: rate terms
    (x_velocity, reward_forward) divide by the actual dt."""
    timing = StubTiming(1, 7)
    n = 4
    venv = BatchedMujocoVecEnv("Swimmer", n, seed=0, timing=timing, max_episode_steps=0)
    venv.reset()
    refs = [gym.make("Swimmer-v5").unwrapped for _ in range(n)]
    for k, ref in enumerate(refs):
        ref.reset(seed=k)
        venv.set_state(ref.data.qpos[None].copy(), ref.data.qvel[None].copy(), indices=[k])
    rng = np.random.default_rng(3)
    for _ in range(60):
        a = random_actions(venv, rng)
        obs, rew, _, infos = venv.step(a)
        for k, ref in enumerate(refs):
            ref.frame_skip = int(timing.history[-1][k])
            g_obs, g_rew, _, _, g_info = ref.step(a[k])
            np.testing.assert_allclose(obs[k], g_obs, rtol=1e-6, atol=1e-10)
            np.testing.assert_allclose(rew[k], g_rew, rtol=1e-6, atol=1e-10)
            np.testing.assert_allclose(infos[k]["x_velocity"], g_info["x_velocity"], rtol=1e-6, atol=1e-10)
            assert infos[k]["dt"] == pytest.approx(ref.dt, rel=1e-15)


def test_frame_skip_override() -> None:
    venv = BatchedMujocoVecEnv("HalfCheetah", 2, frame_skip=2, max_episode_steps=0)
    assert venv.dt == pytest.approx(0.02)
    venv.reset()
    _, _, _, infos = venv.step(np.zeros((2, 6), dtype=np.float32))
    assert infos[0]["dt"] == pytest.approx(0.02)
    np.testing.assert_allclose(venv.sim_time, [0.02, 0.02])


def test_bad_timing_output_is_rejected() -> None:
    venv = BatchedMujocoVecEnv("HalfCheetah", 3, timing=StubTiming(0, 0))
    with pytest.raises(ValueError, match="substeps must be >= 1, got 0 for env 0"):
        venv.step(np.zeros((3, 6), dtype=np.float32))
    with pytest.raises(TypeError, match="sample_substeps"):
        BatchedMujocoVecEnv("HalfCheetah", 3, timing=object())


# ---------------------------------------------------------------------------------------------- randomisation
def test_randomization_reproducible_within_ranges_and_changes_dynamics() -> None:
    spec = ModelRandomization(
        mass_scale=(0.5, 1.5),
        friction_scale=(0.7, 1.3),
        damping_scale=(0.5, 2.0),
        actuator_gain_scale=(0.6, 1.4),
    )
    a = BatchedMujocoVecEnv("HalfCheetah", 4, seed=9, randomization=spec)
    b = BatchedMujocoVecEnv("HalfCheetah", 4, seed=9, randomization=spec)
    c = BatchedMujocoVecEnv("HalfCheetah", 4, seed=10, randomization=spec)
    nominal = a.model
    fields = {
        "body_mass": (nominal.body_mass, (0.5, 1.5)),
        "geom_friction": (nominal.geom_friction, (0.7, 1.3)),
        "dof_damping": (nominal.dof_damping, (0.5, 2.0)),
        "actuator_gainprm": (nominal.actuator_gainprm, (0.6, 1.4)),
    }
    for name, (nom, (lo, hi)) in fields.items():
        va, vb, vc = (v.batch.expanded(name) for v in (a, b, c))
        assert va is not None and va.shape == (4, *nom.shape), name
        np.testing.assert_array_equal(va, vb, err_msg=name)
        assert not np.allclose(va, vc), name
        mask = nom != 0
        if name == "actuator_gainprm":
            mask[:, 1:] = False
            np.testing.assert_array_equal(va[:, :, 1:], np.broadcast_to(nom[:, 1:], va[:, :, 1:].shape))
        ratio = va[:, mask] / nom[mask]
        assert ratio.min() >= lo - 1e-12 and ratio.max() <= hi + 1e-12, name
        assert len(np.unique(np.round(ratio, 12))) > 4, name  # per env and per element
    inertia_ratio = a.batch.expanded("body_inertia")[:, 1:] / nominal.body_inertia[1:]
    mass_ratio = a.batch.expanded("body_mass")[:, 1:] / nominal.body_mass[1:]
    np.testing.assert_allclose(inertia_ratio, np.repeat(mass_ratio[:, :, None], 3, axis=2), rtol=1e-12)
    # set_const ran: derived subtree masses follow the new masses
    subtree = a.batch.expanded("body_subtreemass")
    assert subtree is not None
    np.testing.assert_allclose(subtree[:, 0], a.batch.expanded("body_mass").sum(axis=1), rtol=1e-12)
    # each env's model carries its values
    np.testing.assert_array_equal(a.batch.get_model(2).body_mass, a.batch.expanded("body_mass")[2])

    # dynamics: same state and actions, different parameters -> different trajectories; nominal env unchanged
    plain = BatchedMujocoVecEnv("HalfCheetah", 4, seed=9)
    qpos, qvel = plain.get_state()
    qpos[:] = qpos[0]
    qvel[:] = qvel[0]
    for venv in (a, plain):
        venv.set_state(qpos, qvel)
        act = np.tile(np.linspace(-1, 1, 6, dtype=np.float32), (4, 1))
        for _ in range(20):
            obs, *_ = venv.step(act)
        if venv is plain:
            np.testing.assert_array_equal(obs, np.broadcast_to(obs[0], obs.shape))
        else:
            assert min(np.abs(obs[i] - obs[j]).max() for i in range(4) for j in range(i)) > 1e-3


def test_actuator_gain_scale_scales_force() -> None:
    spec = ModelRandomization(actuator_gain_scale=(0.5, 2.0))
    venv = BatchedMujocoVecEnv("Hopper", 3, seed=0, randomization=spec)
    force = venv.batch.bind("actuator_force")
    ctrl = np.full((3, 3), 0.5, dtype=np.float32)
    venv.step(ctrl)
    gain = venv.batch.expanded("actuator_gainprm")[:, :, 0]
    np.testing.assert_allclose(force, gain * 0.5, rtol=1e-12)


def test_per_episode_randomization_resamples_only_reset_envs() -> None:
    spec = ModelRandomization(mass_scale=(0.5, 1.5), per_episode=True)
    venv = BatchedMujocoVecEnv("InvertedPendulum", 4, seed=0, randomization=spec, max_episode_steps=0)
    venv.reset()
    before = venv.batch.expanded("body_mass").copy()
    rng = np.random.default_rng(0)
    reset_any = False
    for _ in range(50):
        _, _, dones, _ = venv.step(random_actions(venv, rng) * 3)
        after = venv.batch.expanded("body_mass").copy()
        changed = np.any(after != before, axis=1)
        np.testing.assert_array_equal(changed, dones)
        reset_any |= dones.any()
        before = after
    assert reset_any
    fixed = BatchedMujocoVecEnv(
        "InvertedPendulum", 4, seed=0, randomization=ModelRandomization(mass_scale=(0.5, 1.5))
    )
    masses = fixed.batch.expanded("body_mass").copy()
    fixed.reset()
    for _ in range(50):
        fixed.step(random_actions(fixed, rng) * 3)
    np.testing.assert_array_equal(fixed.batch.expanded("body_mass"), masses)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mass_scale": (1.2, 0.8)}, r"mass_scale must satisfy lo <= hi, got lo=1.2 > hi=0.8"),
        ({"friction_scale": (0.0, 1.0)}, r"friction_scale lo must be > 0"),
        ({"damping_scale": (-1.0, 1.0)}, r"damping_scale lo must be > 0"),
        ({"actuator_gain_scale": (1.0,)}, r"actuator_gain_scale must be a pair \(lo, hi\) of numbers"),
        ({"mass_scale": (0.5, float("inf"))}, r"mass_scale bounds must be finite"),
        ({"per_episode": "yes"}, r"per_episode must be a bool"),
    ],
)
def test_randomization_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ModelRandomization(**kwargs)


# ---------------------------------------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'Humanoid'; known tasks: \['HalfCheetah', 'Hopper'"):
        BatchedMujocoVecEnv("Humanoid", 2)
    with pytest.raises(ValueError, match=r"without version: 'Ant'"):
        BatchedMujocoVecEnv("Ant-v5", 2)
    with pytest.raises(ValueError, match="n_envs must be a positive integer, got 0"):
        BatchedMujocoVecEnv("Ant", 0)
    with pytest.raises(
        TypeError, match=r"unknown keyword argument\(s\) \['ctrl_weight'\]; accepted: .*ctrl_cost_weight"
    ):
        BatchedMujocoVecEnv("HalfCheetah", 2, ctrl_weight=0.1)
    with pytest.raises(ValueError, match="render_mode must be one of"):
        BatchedMujocoVecEnv("HalfCheetah", 2, render_mode="human")
    with pytest.raises(ValueError, match="frame_skip must be a positive integer, got 0"):
        BatchedMujocoVecEnv("HalfCheetah", 2, frame_skip=0)
    with pytest.raises(ValueError, match="no body named 'head'"):
        BatchedMujocoVecEnv("Ant", 2, main_body="head")
    venv = BatchedMujocoVecEnv("HalfCheetah", 2)
    with pytest.raises(
        ValueError, match=r"actions must have shape \(2, 6\) \(n_envs, action_dim\), got \(6,\)"
    ):
        venv.step(np.zeros(6, dtype=np.float32))
    with pytest.raises(ValueError, match=r"got \(2, 5\)"):
        venv.step(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(RuntimeError, match="without a pending step_async"):
        venv.step_wait()


# ---------------------------------------------------------------------------------------------- SB3 / render
def test_ppo_learns_on_batched_env_smoke() -> None:
    venv = VecMonitor(BatchedMujocoVecEnv("InvertedPendulum", 4, seed=0))
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    assert model.num_timesteps >= 256
    assert len(model.ep_info_buffer) > 0  # episodes finished through auto-reset and were monitored
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (4, 1)


def test_render_without_render_mode_warns() -> None:
    venv = BatchedMujocoVecEnv("Reacher", 2)
    with pytest.warns(UserWarning, match="no `render_mode`"):
        assert venv.render() is None


def test_render_rgb_array_offscreen() -> None:
    """Runs in a subprocess with MUJOCO_GL=egl (the variable is read when mujoco is imported). With an EGL
    library present, the tiled image of all envs comes back; without one, the clear error names MUJOCO_GL."""
    code = textwrap.dedent(
        """
        import numpy as np
        from lnn_control.sim.batched import BatchedMujocoVecEnv
        venv = BatchedMujocoVecEnv("Reacher", 4, seed=0, render_mode="rgb_array", width=64, height=48)
        venv.reset()
        try:
            img = venv.render()
        except RuntimeError as err:
            assert "MUJOCO_GL" in str(err), err
            print("ERROR-OK")
        else:
            imgs = venv.get_images([1])
            assert img.shape == (96, 128, 3) and img.dtype == np.uint8, img.shape
            assert imgs[0].shape == (48, 64, 3) and imgs[0].std() > 0
            print("IMAGE-OK")
        venv.close()
        """
    )
    env = {**os.environ, "MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    expected = "IMAGE-OK" if ctypes.util.find_library("EGL") else "ERROR-OK"
    assert expected in out.stdout, out.stdout + out.stderr


def test_catalogue_entries_are_built_by_the_factory_not_the_env():
    """The env takes a base task; make_vec_env resolves a catalogue entry to it (timing, time limit)."""
    env = make_vec_env("Hopper-Jitter-v0", 3, seed=0, monitor=False)
    assert isinstance(env, BatchedMujocoVecEnv) and env.task_name == "Hopper"
    assert env.timing == get_task("Hopper-Jitter-v0").timing and env.max_episode_steps == 1000
    env.reset()
    _, _, _, infos = env.step(np.zeros((3, env.action_space.shape[0]), dtype=np.float32))
    assert len({info["dt"] for info in infos}) > 1 or infos[0]["dt"] != env.dt  # jittered periods
    for name in ("Hopper-Jitter-v0", "Hopper-NoVel-v0"):
        with pytest.raises(ValueError, match=r"unknown task .*built by lnn_control\.sim\.make_vec_env"):
            BatchedMujocoVecEnv(name, 2)
