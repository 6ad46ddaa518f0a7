"""Control timing, observation masks and the Gymnasium / VecEnv observation wrappers of lnn_control.sim."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from checker_warnings import MARK_ARGS
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.sim.control_timing import ControlTiming
from lnn_control.sim.masks import MASK_TASKS, observation_indices
from lnn_control.sim.vec_wrappers import (
    VecAppendDt,
    VecObservationDelay,
    VecObservationMask,
    VecObservationNoise,
)
from lnn_control.sim.wrappers import (
    AppendDt,
    ControlTimingWrapper,
    GaussianObservationNoise,
    NoPosition,
    NoVelocity,
    ObservationDelay,
    ObservationMask,
    ReportDt,
)

pytestmark = pytest.mark.filterwarnings(*MARK_ARGS)  # checker complaints fail the tests


def raw_env(task: str, **kwargs) -> gym.Env:
    """The bare Gymnasium v5 env (no TimeLimit / checker wrappers)."""
    return gym.make(f"{task}-v5", **kwargs).unwrapped


# ------------------------------------------------------------------------------------------- ControlTiming
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frame_skip": 0}, "frame_skip must be a positive integer"),
        ({"frame_skip": -3}, "frame_skip must be a positive integer"),
        ({"frame_skip": 2.5}, "frame_skip must be a positive integer"),
        ({"frame_skip": 5, "jitter": (0.0, 1.5)}, "jitter lo must be > 0"),
        ({"frame_skip": 5, "jitter": (-0.5, 1.5)}, "jitter lo must be > 0"),
        ({"frame_skip": 5, "jitter": (1.5, 0.5)}, "lo <= hi"),
        ({"frame_skip": 5, "jitter": (0.5,)}, "pair"),
        ({"frame_skip": 5, "choices": (2, 0)}, r"choices\[1\] must be a positive integer, got 0"),
        ({"frame_skip": 5, "choices": ()}, "must not be empty"),
        ({"frame_skip": 5, "choices": (2, 4), "probs": (0.5, 0.6)}, "sum to 1"),
        ({"frame_skip": 5, "choices": (2, 4), "probs": (1.0,)}, "same length"),
        ({"frame_skip": 5, "choices": (2, 4), "probs": (1.5, -0.5)}, r"probs\[1\]"),
        ({"frame_skip": 5, "probs": (1.0,)}, "without choices"),
        ({"frame_skip": 5, "jitter": (0.5, 1.5), "choices": (2,)}, "mutually exclusive"),
        ({"frame_skip": 5, "drop_prob": 1.0}, r"drop_prob must be a probability in \[0, 1\)"),
        ({"frame_skip": 5, "drop_prob": -0.1}, "drop_prob"),
        ({"frame_skip": 5, "drop_prob": 0.1, "max_consecutive_drops": 0}, "max_consecutive_drops"),
    ],
)
def test_control_timing_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ControlTiming(**kwargs)


def test_regular_timing_is_constant():
    timing = ControlTiming(4)
    assert timing.is_regular and timing.nominal_substeps == 4
    out = timing.sample_substeps(np.random.default_rng(0), 100)
    assert out.dtype == np.int64 and out.shape == (100,)
    np.testing.assert_array_equal(out, 4)


def test_jitter_distribution_matches_rounded_uniform():
    # frame_skip 4 x U[0.5, 1.5] = U[2, 6]; rint gives 2 on [2, 2.5), 3, 4, 5 on unit cells, 6 on [5.5, 6].
    timing = ControlTiming(4, jitter=(0.5, 1.5))
    n = 200_000
    out = timing.sample_substeps(np.random.default_rng(1), n)
    values, counts = np.unique(out, return_counts=True)
    np.testing.assert_array_equal(values, [2, 3, 4, 5, 6])
    np.testing.assert_allclose(counts / n, [0.125, 0.25, 0.25, 0.25, 0.125], atol=0.006)
    assert abs(out.mean() - 4.0) < 0.02
    assert timing.mean_substeps == pytest.approx(4.0)


def test_jitter_period_is_at_least_one_substep():
    timing = ControlTiming(1, jitter=(0.1, 0.4))  # rint(U[0.1, 0.4]) = 0 always -> clamped to 1
    np.testing.assert_array_equal(timing.sample_substeps(np.random.default_rng(0), 1000), 1)


def test_choices_distribution_matches_probs():
    timing = ControlTiming(2, choices=(1, 2, 4), probs=(0.25, 0.5, 0.25))
    n = 100_000
    out = timing.sample_substeps(np.random.default_rng(2), n)
    values, counts = np.unique(out, return_counts=True)
    np.testing.assert_array_equal(values, [1, 2, 4])
    np.testing.assert_allclose(counts / n, [0.25, 0.5, 0.25], atol=0.006)
    assert timing.mean_substeps == pytest.approx(0.25 + 1.0 + 1.0)
    uniform = ControlTiming(2, choices=(3, 5))
    assert set(np.unique(uniform.sample_substeps(np.random.default_rng(0), 1000))) == {3, 5}
    assert uniform.mean_substeps == pytest.approx(4.0)


def test_drops_are_geometric_and_capped():
    p, cap, fs = 0.4, 3, 5
    timing = ControlTiming(fs, drop_prob=p, max_consecutive_drops=cap)
    n = 200_000
    base, drops = timing.sample_periods(np.random.default_rng(3), n)
    np.testing.assert_array_equal(base, fs)
    assert drops.min() == 0 and drops.max() == cap
    for j in range(1, cap + 1):  # P(D >= j) = p**j for j <= cap
        assert abs(np.mean(drops >= j) - p**j) < 0.006
    total = timing.sample_substeps(np.random.default_rng(3), n)
    np.testing.assert_array_equal(total, base + drops * fs)  # same stream, same draws
    assert abs(total.mean() - timing.mean_substeps) < 0.03
    assert timing.mean_substeps == pytest.approx(fs * (1 + p + p**2 + p**3))


def test_timing_sampling_is_reproducible_per_seed():
    timing = ControlTiming(5, jitter=(0.6, 1.4), drop_prob=0.2)
    a = timing.sample_substeps(np.random.default_rng(7), 500)
    b = timing.sample_substeps(np.random.default_rng(7), 500)
    c = timing.sample_substeps(np.random.default_rng(8), 500)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_timing_dict_round_trip_and_unknown_key():
    timing = ControlTiming(
        5, choices=(3, 5, 7), probs=(0.2, 0.6, 0.2), drop_prob=0.1, max_consecutive_drops=2
    )
    assert ControlTiming.from_dict(timing.to_dict()) == timing
    with pytest.raises(ValueError, match="unknown timing key"):
        ControlTiming.from_dict({"frame_skip": 5, "jiter": [0.5, 1.5]})


# ------------------------------------------------------------------------------------------- physics timing
def _rollout(env: gym.Env, steps: int, seed: int = 0) -> list[dict]:
    env.reset(seed=seed)
    env.action_space.seed(seed)
    infos = []
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        infos.append(info)
        if terminated or truncated:
            break
    return infos


def test_reported_dt_sums_to_simulated_time_under_jitter_and_drops():
    timing = ControlTiming(5, jitter=(0.5, 1.5), drop_prob=0.3, max_consecutive_drops=2)
    env = ControlTimingWrapper(raw_env("HalfCheetah"), timing, seed=0)
    infos = _rollout(env, 200)
    dts = np.array([info["dt"] for info in infos])
    assert np.sum(dts) == pytest.approx(env.unwrapped.data.time, rel=1e-12)
    assert len(np.unique(dts)) > 3  # the period really varies
    assert sum(info["dropped"] for info in infos) > 0
    np.testing.assert_allclose(dts, [info["substeps"] * 0.01 for info in infos], rtol=1e-12)
    assert env.unwrapped.dt == pytest.approx(0.05)  # nominal between steps


def test_velocity_reward_is_a_rate_under_jitter():
    env = ControlTimingWrapper(raw_env("HalfCheetah"), ControlTiming(5, jitter=(0.4, 1.6)), seed=1)
    env.reset(seed=1)
    x_before = env.unwrapped.data.qpos[0]
    for _ in range(30):
        _, _, _, _, info = env.step(env.action_space.sample())
        assert info["x_velocity"] == pytest.approx((info["x_position"] - x_before) / info["dt"], rel=1e-9)
        x_before = info["x_position"]


@pytest.mark.parametrize("task", ["HalfCheetah", "Hopper"])
def test_drops_extend_the_control_period(task):
    """Replaying a wrapped rollout by hand (one step of base + drops * nominal substeps with the action held)
    gives the same observations, rewards, terminations and simulated time, as the batched VecEnv does."""
    fs = raw_env(task).frame_skip
    timing = ControlTiming(fs, jitter=(0.5, 1.5), drop_prob=0.7, max_consecutive_drops=3)
    env = ControlTimingWrapper(raw_env(task), timing, seed=3)
    twin = raw_env(task)
    obs, _ = env.reset(seed=5)
    twin_obs, _ = twin.reset(seed=5)
    np.testing.assert_array_equal(obs, twin_obs)
    rng = np.random.default_rng(0)
    for _ in range(300):
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        obs, reward, terminated, _, info = env.step(action)
        assert info["substeps"] >= info["dropped"] * fs + 1
        twin.frame_skip = info["substeps"]
        twin_obs, total, twin_term, _, _ = twin.step(action)
        twin.frame_skip = fs
        np.testing.assert_array_equal(obs, twin_obs)
        assert reward == pytest.approx(total, rel=1e-12)
        assert terminated == twin_term
        assert env.unwrapped.data.time == pytest.approx(twin.data.time, rel=1e-12)
        if terminated:
            break


def test_timing_wrapper_reseeds_on_seeded_reset():
    env = ControlTimingWrapper(raw_env("HalfCheetah"), ControlTiming(5, jitter=(0.5, 1.5), drop_prob=0.2))
    a = [info["substeps"] for info in _rollout(env, 50, seed=11)]
    b = [info["substeps"] for info in _rollout(env, 50, seed=11)]
    c = [info["substeps"] for info in _rollout(env, 50, seed=12)]
    assert a == b and a != c


def test_timing_wrapper_needs_a_mujoco_env():
    with pytest.raises(TypeError, match="MujocoEnv"):
        ControlTimingWrapper(gym.make("CartPole-v1"), ControlTiming(2))


def test_report_dt_on_plain_env():
    env = ReportDt(raw_env("Hopper"))
    infos = _rollout(env, 20)
    assert all(info["dt"] == pytest.approx(0.008) for info in infos)
    assert sum(info["dt"] for info in infos) == pytest.approx(env.unwrapped.data.time)


# ------------------------------------------------------------------------------------------- masks
def _kept_reference(task: str, kind: str, env: gym.Env) -> np.ndarray:
    """What each mask keeps, computed from the MuJoCo state (independently of the index tables)."""
    d = env.unwrapped.data
    qpos, qvel = d.qpos.copy(), d.qvel.copy()
    clipped = np.clip(qvel, -10, 10)
    if task == "Reacher":
        tip = (env.unwrapped.get_body_com("fingertip") - env.unwrapped.get_body_com("target"))[:2]
        if kind == "novel":
            return np.concatenate([np.cos(qpos[:2]), np.sin(qpos[:2]), qpos[2:], tip])
        return np.concatenate([qpos[2:], qvel[:2]])
    if task == "InvertedDoublePendulum":
        if kind == "novel":
            return np.concatenate([qpos[:1], np.sin(qpos[1:]), np.cos(qpos[1:])])
        return clipped
    skip = {"HalfCheetah": 1, "Hopper": 1, "Walker2d": 1, "Ant": 2, "Swimmer": 2, "InvertedPendulum": 0}[task]
    if kind == "novel":
        return qpos[skip:]
    return clipped if task in ("Hopper", "Walker2d") else qvel


@pytest.mark.parametrize("task", MASK_TASKS)
@pytest.mark.parametrize("kind", ["novel", "nopos"])
def test_masks_keep_exactly_the_documented_elements(task, kind):
    full = raw_env(task)
    masked = (NoVelocity if kind == "novel" else NoPosition)(raw_env(task))
    full_obs, _ = full.reset(seed=4)
    obs, _ = masked.reset(seed=4)
    idx = observation_indices(task, kind)
    assert masked.observation_space.shape == (len(idx),)
    rng = np.random.default_rng(0)
    for _ in range(5):
        np.testing.assert_array_equal(obs, full_obs[idx])
        np.testing.assert_allclose(obs, _kept_reference(task, kind, masked), rtol=1e-12, atol=1e-12)
        action = rng.uniform(-1, 1, full.action_space.shape).astype(np.float32)
        full_obs, *_ = full.step(action)
        obs, *_ = masked.step(action)
    # The two masks never share a robot-state element (only Reacher's goal, kept by both).
    shared = np.intersect1d(observation_indices(task, "novel"), observation_indices(task, "nopos"))
    np.testing.assert_array_equal(shared, [4, 5] if task == "Reacher" else [])


def test_masks_with_non_default_observation_sizes():
    env = raw_env(
        "Ant", include_cfrc_ext_in_observation=False, exclude_current_positions_from_observation=False
    )
    obs, _ = NoVelocity(env).reset(seed=0)
    np.testing.assert_array_equal(obs, env.unwrapped.data.qpos)
    env = raw_env("HalfCheetah", exclude_current_positions_from_observation=False)
    obs, _ = NoPosition(env).reset(seed=0)
    np.testing.assert_array_equal(obs, env.unwrapped.data.qvel)
    with pytest.raises(ValueError, match="matches no known v5 layout"):
        observation_indices("Hopper", "novel", obs_dim=13)


def test_masks_reject_unknown_task_and_kind():
    with pytest.raises(ValueError, match="unknown task 'Humanoid'"):
        observation_indices("Humanoid", "novel")
    with pytest.raises(ValueError, match="unknown mask kind 'noacc'"):
        observation_indices("HalfCheetah", "noacc")


@pytest.mark.parametrize(
    ("indices", "match"),
    [
        ([], "non-empty"),
        ([0, 17], r"out of range"),
        ([1, 1], "distinct"),
        ([0.5], "integers"),
        ([-1], "range"),
    ],
)
def test_observation_mask_rejects_bad_indices(indices, match):
    with pytest.raises(ValueError, match=match):
        ObservationMask(raw_env("HalfCheetah"), indices)


# ------------------------------------------------------------------------------------------- delay, noise, dt
@pytest.mark.parametrize("k", [0, 1, 3])
def test_delay_returns_observation_of_k_steps_earlier(k):
    env = ObservationDelay(raw_env("HalfCheetah"), k)
    obs, _ = env.reset(seed=0)
    history = [env.unwrapped._get_obs()]  # undelayed observations; index 0 = reset
    np.testing.assert_array_equal(obs, history[0])
    for t in range(1, 12):
        obs, *_ = env.step(env.action_space.sample())
        history.append(env.unwrapped._get_obs())
        np.testing.assert_array_equal(obs, history[max(t - k, 0)])
    with pytest.raises(ValueError, match=r"delay k \(control steps\) must be a non-negative integer"):
        ObservationDelay(raw_env("HalfCheetah"), -1)


def test_append_dt_appends_the_step_dt():
    timing = ControlTiming(5, jitter=(0.5, 1.5), drop_prob=0.2)
    env = AppendDt(ControlTimingWrapper(raw_env("HalfCheetah"), timing, seed=0))
    assert env.observation_space.shape == (18,)
    assert env.observation_space.low[-1] == 0.0
    obs, _ = env.reset(seed=0)
    assert obs[-1] == pytest.approx(0.05)  # nominal at reset
    np.testing.assert_array_equal(obs[:-1], env.unwrapped._get_obs())
    seen = set()
    for _ in range(40):
        obs, _, _, _, info = env.step(env.action_space.sample())
        assert obs[-1] == info["dt"]
        np.testing.assert_array_equal(obs[:-1], env.unwrapped._get_obs())
        seen.add(info["dt"])
    assert len(seen) > 3
    plain = AppendDt(ReportDt(raw_env("Swimmer")))
    plain.reset(seed=0)
    obs, *_ = plain.step(plain.action_space.sample())
    assert obs[-1] == pytest.approx(0.04)


def test_gaussian_noise_statistics_and_seeding():
    std = np.linspace(0.1, 1.0, 17)
    env = GaussianObservationNoise(raw_env("HalfCheetah"), std, seed=0)
    obs, _ = env.reset(seed=3)
    errors = [obs - env.unwrapped._get_obs()]
    for _ in range(2000):
        obs, *_ = env.step(np.zeros(6, dtype=np.float32))
        errors.append(obs - env.unwrapped._get_obs())
    errors = np.array(errors)
    np.testing.assert_allclose(errors.std(axis=0), std, rtol=0.08)
    assert np.all(np.abs(errors.mean(axis=0)) < 4 * std / np.sqrt(len(errors)))
    a, _ = env.reset(seed=9)
    b, _ = env.reset(seed=9)
    np.testing.assert_array_equal(a, b)
    clean = GaussianObservationNoise(raw_env("HalfCheetah"), 0.0)
    obs, _ = clean.reset(seed=1)
    np.testing.assert_array_equal(obs, clean.unwrapped._get_obs())
    with pytest.raises(ValueError, match="noise std must be finite and >= 0"):
        GaussianObservationNoise(raw_env("HalfCheetah"), -0.1)
    with pytest.raises(ValueError, match="list of 17 floats"):
        GaussianObservationNoise(raw_env("HalfCheetah"), [0.1, 0.2])


def _full_stack(task: str = "Hopper") -> gym.Env:
    env = ControlTimingWrapper(raw_env(task), ControlTiming(4, jitter=(0.5, 1.5), drop_prob=0.2), seed=0)
    env = NoVelocity(env)
    env = GaussianObservationNoise(env, 0.05, seed=1)
    env = ObservationDelay(env, 2)
    return AppendDt(env)


def test_wrapper_stack_passes_gymnasium_and_sb3_checkers():
    gym_check_env(_full_stack(), skip_render_check=True)
    sb3_check_env(_full_stack())
    gym_check_env(ObservationMask(ReportDt(raw_env("Reacher")), [0, 2, 8]), skip_render_check=True)


# ------------------------------------------------------------------------------------------- VecEnv wrappers
def _physics_only(task: str, timing: ControlTiming):
    return lambda: ControlTimingWrapper(raw_env(task), timing)


def _run_pair(gym_venv, vec_venv, steps: int, seed: int = 0):
    """Step both VecEnvs with the same actions; check obs, rewards, dones, dts and terminal observations."""
    gym_venv.seed(seed)
    vec_venv.seed(seed)
    a, b = gym_venv.reset(), vec_venv.reset()
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(seed)
    n_done = 0
    for _ in range(steps):
        actions = rng.uniform(-1, 1, (gym_venv.num_envs, *gym_venv.action_space.shape)).astype(np.float32)
        oa, ra, da, ia = gym_venv.step(actions)
        ob, rb, db, ib = vec_venv.step(actions)
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(ra, rb)
        np.testing.assert_array_equal(da, db)
        for i in np.flatnonzero(da):
            np.testing.assert_array_equal(ia[i]["terminal_observation"], ib[i]["terminal_observation"])
        assert [x["dt"] for x in ia] == [x["dt"] for x in ib]
        n_done += int(da.sum())
    return n_done


def test_vec_wrappers_agree_with_gymnasium_wrappers_through_auto_resets():
    task, timing, n = "InvertedPendulum", ControlTiming(2, jitter=(0.5, 1.5)), 3
    idx = observation_indices(task, "novel")

    def gym_side():
        return AppendDt(ObservationDelay(ObservationMask(_physics_only(task, timing)(), idx), 2))

    gym_venv = DummyVecEnv([gym_side] * n)
    vec_venv = VecAppendDt(
        VecObservationDelay(VecObservationMask(DummyVecEnv([_physics_only(task, timing)] * n), idx), 2)
    )
    assert vec_venv.observation_space == gym_venv.observation_space
    assert _run_pair(gym_venv, vec_venv, 120) >= 3  # several auto-resets happened


def test_vec_append_dt_before_delay_and_nominal_dt_argument():
    task, timing = "Hopper", ControlTiming(4, choices=(2, 4, 8))

    def gym_side():
        return ObservationDelay(AppendDt(_physics_only(task, timing)()), 1)

    gym_venv = DummyVecEnv([gym_side] * 2)
    vec_venv = VecObservationDelay(
        VecAppendDt(DummyVecEnv([_physics_only(task, timing)] * 2), nominal_dt=0.008), 1
    )
    assert _run_pair(gym_venv, vec_venv, 150) >= 1


def test_vec_noise_matches_gymnasium_noise_for_one_env():
    task, timing = "InvertedPendulum", ControlTiming(2)

    def gym_side():
        return GaussianObservationNoise(_physics_only(task, timing)(), 0.3)

    gym_venv = DummyVecEnv([gym_side])
    vec_venv = VecObservationNoise(DummyVecEnv([_physics_only(task, timing)]), 0.3)
    assert _run_pair(gym_venv, vec_venv, 80, seed=5) >= 1


def test_vec_append_dt_requires_dt_in_infos():
    venv = VecAppendDt(DummyVecEnv([lambda: raw_env("Swimmer")]))  # nominal dt from get_attr("dt")
    np.testing.assert_allclose(venv.reset()[:, -1], 0.04)
    with pytest.raises(KeyError, match=r"infos\[i\]\['dt'\]"):
        venv.step(np.zeros((1, 2), dtype=np.float32))
