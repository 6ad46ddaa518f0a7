"""The task catalogue (envs/*.yaml): validation, Gymnasium registration and make_vec_env in both forms."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from checker_warnings import strict_checker_warnings
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.wrappers import PassiveEnvChecker
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecCheckNan, VecEnvWrapper, VecMonitor

import lnn_control  # noqa: F401  (registers the catalogue)
from lnn_control.sim import registration
from lnn_control.sim.batched import BatchedMujocoVecEnv
from lnn_control.sim.catalogue import (
    BASE_TASKS,
    CatalogueError,
    DelaySpec,
    MaskSpec,
    NoiseSpec,
    catalogue_dir,
    get_task,
    load_catalogue,
    load_task_file,
)
from lnn_control.sim.make import make_vec_env
from lnn_control.sim.masks import observation_indices
from lnn_control.sim.randomization import ModelRandomization
from lnn_control.sim.wrappers import ControlTimingWrapper, ReportDt

CATALOGUE = load_catalogue()
IDS = sorted(CATALOGUE)
REPO_ENVS = Path(__file__).resolve().parent.parent / "envs"


def test_base_task_table_matches_gymnasium():
    for name, bt in BASE_TASKS.items():
        spec = gym.spec(bt.gym_id)
        env = gym.make(bt.gym_id).unwrapped
        assert (env.model.opt.timestep, env.frame_skip) == (bt.timestep, bt.frame_skip), name
        assert spec.max_episode_steps == bt.max_episode_steps, name


def test_catalogue_folder_is_the_repository_envs_folder():
    assert catalogue_dir().resolve() == REPO_ENVS.resolve()
    assert {p.stem for p in REPO_ENVS.glob("*.yaml")} == set(IDS)


def test_catalogue_has_the_required_variants():
    for base in BASE_TASKS:
        assert f"{base}-v0" in CATALOGUE
    for base in ("HalfCheetah", "Hopper", "Walker2d", "Ant", "InvertedPendulum"):
        for suffix in ("NoVel", "Jitter", "NoVel-Jitter"):
            spec = CATALOGUE[f"{base}-{suffix}-v0"]
            assert spec.base == base
            assert (MaskSpec(kind="novel") in spec.wrappers) == ("NoVel" in suffix)
            assert (spec.timing.jitter is not None) == ("Jitter" in suffix)


def test_get_task_accepts_id_namespaced_id_and_path():
    spec = get_task("HalfCheetah-NoVel-Jitter-v0")
    assert get_task("lnn/HalfCheetah-NoVel-Jitter-v0") == spec
    assert get_task(REPO_ENVS / "HalfCheetah-NoVel-Jitter-v0.yaml") == spec
    assert get_task(str(REPO_ENVS / "HalfCheetah-NoVel-Jitter-v0.yaml")) == spec
    assert spec.gym_id == "lnn/HalfCheetah-NoVel-Jitter-v0"
    assert spec.nominal_dt == pytest.approx(0.05)
    with pytest.raises(CatalogueError, match="unknown task 'Cheetah-v0'"):
        get_task("Cheetah-v0")


@pytest.mark.parametrize("task_id", IDS)
def test_every_entry_builds_and_passes_both_env_checkers(task_id):
    spec = CATALOGUE[task_id]
    env = gym.make(spec.gym_id)
    assert env.spec.max_episode_steps == spec.max_episode_steps
    assert env.unwrapped.dt == pytest.approx(spec.nominal_dt)
    assert type(env.unwrapped).__name__ == f"{spec.base}Env"
    inner = ControlTimingWrapper if not spec.timing.is_regular else ReportDt
    assert any(isinstance(e, inner) for e in _stack(env))
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space
    total = 0.0
    for _ in range(5):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        total += info["dt"]
        if terminated or truncated:
            break
    else:
        assert total == pytest.approx(env.unwrapped.data.time, rel=1e-12)
    with strict_checker_warnings():
        gym_check_env(gym.make(spec.gym_id), skip_render_check=True)
        sb3_check_env(gym.make(spec.gym_id))


def _stack(env: gym.Env) -> list[gym.Env]:
    out = [env]
    while hasattr(out[-1], "env"):
        out.append(out[-1].env)
    return out


def test_max_episode_steps_is_honoured():
    env = gym.make("lnn/Reacher-v0")
    env.reset(seed=0)
    for t in range(1, 51):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (t == 50)
    assert gym.make("lnn/Reacher-v0", max_episode_steps=7).spec.max_episode_steps == 7


def test_observation_wrappers_follow_the_catalogue():
    env = gym.make("lnn/HalfCheetah-NoVel-Jitter-Dt-v0")
    full = gym.make("HalfCheetah-v5")
    obs, _ = env.reset(seed=3)
    full_obs, _ = full.reset(seed=3)
    idx = observation_indices("HalfCheetah", "novel")
    np.testing.assert_array_equal(obs, np.append(full_obs[idx], 0.05))
    sensor = get_task("HalfCheetah-Sensor-v0")
    assert sensor.wrappers == (NoiseSpec(std=0.01), DelaySpec(steps=1))


def test_env_kwargs_reach_the_v5_constructor_and_frame_skip_is_guarded():
    env = gym.make("lnn/HalfCheetah-v0", ctrl_cost_weight=0.5)
    assert env.unwrapped._ctrl_cost_weight == 0.5
    with pytest.raises(ValueError, match="frame_skip=2 cannot be overridden"):
        gym.make("lnn/HalfCheetah-v0", frame_skip=2)


# ------------------------------------------------------------------------------------------- bad entries
VALID = {
    "id": "Bad-v0",
    "base": "HalfCheetah",
    "description": "a test entry",
    "max_episode_steps": 100,
    "nominal_dt": 0.05,
    "timing": {"frame_skip": 5, "jitter": [0.5, 1.5]},
    "wrappers": [{"type": "mask", "kind": "novel"}],
}


def _write(tmp_path: Path, entry: dict, name: str = "Bad-v0") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(entry))
    return path


def _with(**changes) -> dict:
    entry = {**VALID, **changes}
    return {k: v for k, v in entry.items() if v is not None}


@pytest.mark.parametrize(
    ("entry", "field", "match"),
    [
        (_with(base="Humanoid"), "base", "unknown base task 'Humanoid'"),
        (_with(timing={"frame_skip": 0}), "timing.frame_skip", "frame_skip must be a positive integer"),
        (_with(timing={"frame_skip": -5}), "timing.frame_skip", "frame_skip must be a positive integer"),
        (_with(timing={"frame_skip": 5, "jitter": [0.0, 1.2]}), "timing.jitter", "lo must be > 0"),
        (_with(timing={"frame_skip": 5, "jitter": [1.5, 0.5]}), "timing.jitter", "lo <= hi"),
        (
            _with(timing={"frame_skip": 5, "choices": [2, 5], "probs": [0.3, 0.6]}),
            "timing.probs",
            "sum to 1",
        ),
        (
            _with(timing={"frame_skip": 5, "choices": [2, 5, 8], "probs": [0.5, 0.5]}),
            "timing.probs",
            "same length",
        ),
        (_with(timing={"frame_skip": 5, "choices": [0, 5]}), r"timing.choices", "must be a positive integer"),
        (_with(timing={"frame_skip": 5, "drop_prob": 1.0}), "timing.drop_prob", r"\[0, 1\)"),
        (_with(timing={"frame_skip": 5, "jiter": [0.5, 1.5]}), "timing.jiter", "unknown key"),
        (_with(wrappers=[{"type": "blur"}]), r"wrappers\[0\].type", "unknown wrapper 'blur'"),
        (_with(wrappers=[{"kind": "novel"}]), r"wrappers\[0\]", "'type' key"),
        (_with(wrappers=[{"type": "mask", "kind": "novel", "x": 1}]), r"wrappers\[0\].x", "unknown key"),
        (_with(wrappers=[{"type": "mask", "kind": "noacc"}]), r"wrappers\[0\].kind", "unknown mask kind"),
        (_with(wrappers=[{"type": "mask"}]), r"wrappers\[0\]", "exactly one of 'kind' or 'indices'"),
        (_with(wrappers=[{"type": "mask", "indices": [1, 1]}]), r"wrappers\[0\].indices", "distinct"),
        (_with(wrappers=[{"type": "delay", "steps": 0}]), r"wrappers\[0\].steps", "int >= 1"),
        (_with(wrappers=[{"type": "delay"}]), r"wrappers\[0\].steps", "missing"),
        (_with(wrappers=[{"type": "noise", "std": -0.1}]), r"wrappers\[0\].std", ">= 0"),
        (_with(wrappers={"type": "noise"}), "wrappers", "expected a list"),
        (_with(timestep=0.01), "timestep", "unknown key"),
        (_with(nominal_dt=0.04), "nominal_dt", r"does not match timestep 0.01 s x frame_skip 5"),
        (_with(nominal_dt=-0.05), "nominal_dt", "> 0"),
        (_with(max_episode_steps=0), "max_episode_steps", "int >= 1"),
        (_with(description=None), "description", "missing"),
        (_with(id="Other-v0"), "id", "must equal the file name 'Bad-v0'"),
        (_with(id="Bad"), "id", "ending in -v<N>"),
        (_with(env_kwargs={"frame_skip": 3}), "env_kwargs.frame_skip", "timing.frame_skip"),
    ],
)
def test_bad_entries_are_rejected_naming_file_and_field(tmp_path, entry, field, match):
    path = _write(tmp_path, entry)
    with pytest.raises(CatalogueError, match=match) as info:
        load_task_file(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert _field_in(message, field)
    with pytest.raises(CatalogueError, match=match):  # the same error when the folder is loaded
        load_catalogue(tmp_path)


def _field_in(message: str, field: str) -> bool:
    return re.search(rf"field '{field}'", message) is not None


def test_valid_entry_and_non_mapping_file(tmp_path):
    spec = load_task_file(_write(tmp_path, VALID))
    assert spec.timing.jitter == (0.5, 1.5) and spec.wrappers == (MaskSpec(kind="novel"),)
    bad = tmp_path / "List-v0.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(CatalogueError, match="expected a mapping"):
        load_task_file(bad)
    broken = tmp_path / "Broken-v0.yaml"
    broken.write_text("id: [unclosed\n")
    with pytest.raises(CatalogueError, match="invalid YAML"):
        load_task_file(broken)


def test_entry_from_a_path_outside_the_catalogue_builds_both_forms(tmp_path):
    entry = _with(id="Mine-v0", wrappers=[{"type": "mask", "kind": "nopos"}, {"type": "append_dt"}])
    path = _write(tmp_path, entry, "Mine-v0")
    env = registration.make_env(str(path))
    assert env.observation_space.shape == (10,)
    for batched in (False, True):
        venv = make_vec_env(path, 2, batched=batched, seed=0)
        assert venv.reset().shape == (2, 10)
        obs, _, _, infos = venv.step(np.zeros((2, 6), dtype=np.float32))
        np.testing.assert_array_equal(obs[:, -1], [info["dt"] for info in infos])


# ------------------------------------------------------------------------------------------- registration
def test_registration_is_idempotent_and_skips_bad_files(tmp_path):
    before = {k: v for k, v in gym.registry.items() if k.startswith("lnn/")}
    assert set(before) == {f"lnn/{i}" for i in IDS}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "overriding environment" warning on a second import
        importlib.reload(registration)
        assert registration.register_catalogue() == tuple(f"lnn/{i}" for i in IDS)
    assert {k: v for k, v in gym.registry.items() if k.startswith("lnn/")} == before

    _write(tmp_path, _with(id="Good-v0"), "Good-v0")
    _write(tmp_path, _with(base="Humanoid"), "Bad-v0")
    try:
        with pytest.warns(UserWarning, match=r"Bad-v0.yaml: field 'base'"):
            assert registration.register_catalogue(tmp_path) == ("lnn/Good-v0",)
        assert gym.make("lnn/Good-v0").observation_space.shape == (8,)
    finally:
        del gym.registry["lnn/Good-v0"]


def test_sim_package_exports_resolve():
    import lnn_control.sim as sim

    for name in sim.__all__:
        assert getattr(sim, name) is not None
    assert sim.BatchedMujocoVecEnv is BatchedMujocoVecEnv
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sim.nope  # noqa: B018


def test_import_registers_without_heavy_imports():
    code = (
        "import sys, gymnasium, lnn_control; "
        "assert 'lnn/HalfCheetah-NoVel-Jitter-v0' in gymnasium.registry; "
        "heavy = [m for m in ('torch', 'mujoco', 'stable_baselines3') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------------------------------- make_vec_env
@pytest.mark.parametrize(
    "task_id", ["HalfCheetah-NoVel-Jitter-Dt-v0", "HalfCheetah-Drop-v0", "Hopper-NoVel-v0"]
)
def test_make_vec_env_both_forms_report_dt_and_match_spaces(task_id):
    spec = CATALOGUE[task_id]
    venvs = {b: make_vec_env(task_id, 3, batched=b, seed=1) for b in (True, False)}
    assert venvs[True].observation_space == venvs[False].observation_space
    assert venvs[True].action_space == venvs[False].action_space
    assert isinstance(venvs[True].unwrapped, BatchedMujocoVecEnv)
    assert isinstance(venvs[False].unwrapped, DummyVecEnv)
    for venv in venvs.values():
        venv.reset()
        dts = []
        for _ in range(20):
            actions = np.stack([venv.action_space.sample() for _ in range(3)])
            _, _, _, infos = venv.step(actions)
            dts.append([info["dt"] for info in infos])
        dts = np.array(dts)
        assert np.all(dts > 0)
        if spec.timing.is_regular:
            np.testing.assert_allclose(dts, spec.nominal_dt)
        else:
            assert len(np.unique(dts)) > 1


def test_batched_form_applies_the_catalogue_wrappers_in_order():
    venv = make_vec_env("HalfCheetah-NoVel-Jitter-Dt-v0", 4, batched=True, seed=7, monitor=False)
    ref = BatchedMujocoVecEnv("HalfCheetah", 4, seed=7, timing=get_task("HalfCheetah-Jitter-v0").timing)
    idx = observation_indices("HalfCheetah", "novel")
    obs, ref_obs = venv.reset(), ref.reset()
    np.testing.assert_array_equal(obs, np.concatenate([ref_obs[:, idx], np.full((4, 1), 0.05)], axis=1))
    actions = np.random.default_rng(0).uniform(-1, 1, (10, 4, 6)).astype(np.float32)
    for a in actions:
        obs, rew, _, _ = venv.step(a)
        ref_obs, ref_rew, _, ref_infos = ref.step(a)
        dt = np.array([i["dt"] for i in ref_infos])
        np.testing.assert_array_equal(obs, np.concatenate([ref_obs[:, idx], dt[:, None]], axis=1))
        np.testing.assert_array_equal(rew, ref_rew)
    np.testing.assert_allclose(venv.unwrapped.sim_time, ref.sim_time)


def test_batched_simulated_time_is_the_summed_dt():
    venv = make_vec_env("HalfCheetah-Drop-v0", 3, batched=True, seed=2)
    venv.reset()
    total = np.zeros(3)
    for _ in range(50):
        _, _, _, infos = venv.step(np.zeros((3, 6), dtype=np.float32))
        total += [info["dt"] for info in infos]
    np.testing.assert_allclose(venv.unwrapped.sim_time, total, rtol=1e-12)
    assert np.any(total > 50 * 0.05 + 1e-9)  # some observations were dropped


def test_unbatched_form_reports_episodes_and_rejects_batched_only_options():
    venv = make_vec_env("InvertedPendulum-NoVel-Jitter-v0", 2, batched=False, seed=0)
    assert isinstance(venv, DummyVecEnv)
    venv.reset()
    episodes = 0
    for _ in range(100):
        _, _, dones, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
        for i in np.flatnonzero(dones):
            assert "episode" in infos[i] and "terminal_observation" in infos[i]
            episodes += 1
    assert episodes > 0
    with pytest.raises(ValueError, match=r"\['nthread'\] apply to batched=True only"):
        make_vec_env("HalfCheetah-v0", 2, batched=False, nthread=1)
    with pytest.raises(ValueError, match="come from the catalogue entry"):
        make_vec_env("HalfCheetah-v0", 2, batched=False, frame_skip=3)
    with pytest.raises(ValueError, match="n_envs must be a positive integer"):
        make_vec_env("HalfCheetah-v0", 0)
    assert not isinstance(make_vec_env("HalfCheetah-v0", 1, batched=True, monitor=False), VecEnvWrapper)


def test_make_vec_env_takes_plain_gymnasium_envs_as_sb3_does():
    """Outside the catalogue, a Gymnasium id or an env callable gives SB3's make_vec_env result."""
    ours, sb3s = make_vec_env("Pendulum-v1", 2, seed=4), sb3_make_vec_env("Pendulum-v1", n_envs=2, seed=4)
    assert isinstance(ours, DummyVecEnv) and ours.env_is_wrapped(Monitor) == [True, True]
    first = sb3s.reset()  # seeds seed + i, as ours
    np.testing.assert_array_equal(ours.reset(), first)
    plain = make_vec_env(lambda: gym.make("Pendulum-v1"), 3, seed=4, monitor=False)
    assert isinstance(plain, DummyVecEnv) and plain.env_is_wrapped(Monitor) == [False] * 3
    np.testing.assert_array_equal(plain.reset()[:2], first)
    with pytest.raises(ValueError, match="backend='mjx' needs a catalogue task, got 'Pendulum-v1'"):
        make_vec_env("Pendulum-v1", 2, backend="mjx")
    with pytest.raises(CatalogueError, match="unknown task 'NoSuchTask-v3'"):
        make_vec_env("NoSuchTask-v3", 2)


def test_make_vec_env_check_nan_stops_on_non_finite_values():
    venv = make_vec_env("HalfCheetah-v0", 2, seed=0, check_nan=True)
    assert isinstance(venv, VecCheckNan) and isinstance(venv.venv, VecMonitor)
    venv.reset()
    with pytest.raises(ValueError, match="nan"):
        venv.step(np.full((2, 6), np.nan, dtype=np.float32))


def test_make_vec_env_falls_back_to_gymnasium_envs_where_the_batched_env_lacks_the_task(monkeypatch):
    from lnn_control.sim import make as make_module

    batched_space = make_vec_env("Hopper-NoVel-v0", 1, monitor=False).observation_space
    monkeypatch.setattr(make_module, "_batched_implements", lambda spec: False)
    venv = make_vec_env("Hopper-NoVel-v0", 2, seed=0, nthread=1)  # nthread: the batched env's, ignored
    assert isinstance(venv, DummyVecEnv) and venv.observation_space == batched_space
    with pytest.raises(
        ValueError, match="randomization needs the batched env, which does not implement 'Hopper'"
    ):
        make_vec_env("Hopper-NoVel-v0", 2, randomization=ModelRandomization(mass_scale=(0.9, 1.1)))


class _BrokenReward(gym.Wrapper):
    """A catalogue env whose rewards are NaN (the passive checker warns; it does not raise)."""

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        return obs, float("nan"), terminated, truncated, info


class _BrokenObservation(gym.ObservationWrapper):
    """A catalogue env whose observations are float32 and far outside a (bounded) float64 space."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        shape = env.observation_space.shape
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=shape, dtype=np.float64)

    def observation(self, observation):
        return (np.asarray(observation) + 100.0).astype(np.float32)


@pytest.mark.parametrize(
    ("wrapper", "message"),
    [(_BrokenReward, "NaN"), (_BrokenObservation, "not within the observation space|dtype|precision")],
)
def test_strict_checker_filters_let_real_complaints_through(wrapper, message):
    """Control: the filters of the checker tests ignore only the known messages, so Gymnasium's passive
    checker (which ``gymnasium.make`` puts around every registered env) stops an env with NaN rewards or
    observations outside their space; the blanket "ignore" the tests had let both pass."""

    def run() -> None:
        env = PassiveEnvChecker(wrapper(registration.build_env(get_task("Hopper-v0"))))
        env.reset(seed=0)
        env.step(env.action_space.sample())

    with strict_checker_warnings(), pytest.raises(UserWarning, match=message):
        run()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()
