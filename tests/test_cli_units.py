"""Unit tests of the run-directory helpers behind ``lnn-control``: argument values, atomic writes, RNG and
VecNormalize state, eval.csv, run comparison (fast; no training)."""

from __future__ import annotations

import os
import random

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from lnn_control import atomic
from lnn_control.runs.compare import compare_runs
from lnn_control.runs.config import RunSpec, resolve
from lnn_control.runs.errors import RunError
from lnn_control.runs.evalcsv import EvalRow, read_rows, stats_row, write_rows
from lnn_control.runs.normalization import frozen_normalization, normalization_from_npz, normalization_to_npz
from lnn_control.runs.overrides import apply_overrides, parse_grid, parse_seeds, parse_set, parse_value
from lnn_control.runs.rng import capture_rng, restore_rng


# ----------------------------------------------------------------------------------------- values
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e-3", 0.001),  # PyYAML alone reads this as a string
        ("3.0e-4", 3.0e-4),
        ("32", 32),
        ("true", True),
        ("null", None),
        ("lin_3e-4", "lin_3e-4"),
        ("[64, 64]", [64, 64]),
        ("{mode: no_gate}", {"mode": "no_gate"}),
        ("Tanh", "Tanh"),
    ],
)
def test_parse_value_reads_yaml_scalars_and_numbers(text, expected):
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_parse_set_keeps_order_and_last_value():
    assert parse_set(["a.b=1", "c=x", "a.b=2"]) == {"a.b": 2, "c": "x"}
    for bad in ("nokey", "=3", "a.b=", "a..b=1", "1a=2"):
        with pytest.raises(RunError, match="--set"):
            parse_set([bad])


def test_parse_seeds_and_grid():
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3") == [3]
    assert parse_seeds("0-2,7,1") == [0, 1, 2, 7]
    for bad in ("a", "4-2", "-1", "1-", ""):
        with pytest.raises(RunError, match="seeds"):
            parse_seeds(bad)
    grid = parse_grid(["hyperparameters.learning_rate=1e-3,3e-4", "policy_kwargs.net_arch=[64,64],[32]"])
    assert grid == {
        "hyperparameters.learning_rate": [0.001, 0.0003],
        "policy_kwargs.net_arch": [[64, 64], [32]],
    }
    with pytest.raises(RunError, match="twice"):
        parse_grid(["a.b=1", "a.b=2"])
    with pytest.raises(RunError, match="empty value"):
        parse_grid(["a.b=1,,2"])


def test_apply_overrides_sets_nested_keys_without_touching_the_input():
    entry = {"hyperparameters": {"n_steps": 256}, "policy_kwargs": {"units": 64}}
    out = apply_overrides(entry, {"hyperparameters.n_steps": 32, "policy_kwargs.cell_kwargs.mode": "pure"})
    assert out == {
        "hyperparameters": {"n_steps": 32},
        "policy_kwargs": {"units": 64, "cell_kwargs": {"mode": "pure"}},
    }
    assert entry == {"hyperparameters": {"n_steps": 256}, "policy_kwargs": {"units": 64}}
    with pytest.raises(RunError, match=r"unknown key 'learning_rate'.*hyperparameters\.learning_rate"):
        apply_overrides(entry, {"learning_rate": 1.0})
    with pytest.raises(RunError, match="not a mapping"):
        apply_overrides(entry, {"policy_kwargs.units.size": 3})


def test_resolve_validates_overrides_with_the_agent_loader_and_fills_defaults():
    resolved = resolve(
        RunSpec(
            "InvertedPendulum-NoVel-Jitter-v0", "liquid-ppo-cfc", overrides={"hyperparameters.gamma": 0.9}
        )
    )
    assert resolved.agent["hyperparameters"]["gamma"] == 0.9
    assert resolved.n_envs == resolved.agent["n_envs"] == 8
    assert resolved.total_timesteps == resolved.agent["n_timesteps"]
    # default: about 20 evaluations, a whole number of rollouts (n_steps x n_envs)
    assert resolved.eval_freq % resolved.rollout_size == 0
    assert resolved.total_timesteps / resolved.eval_freq == pytest.approx(20, rel=0.2)
    assert resolved.eval_seed == resolved.seed + 10_000
    with pytest.raises(RunError, match=r"unknown hyperparameter\(s\) \['gammma'\]"):
        resolve(RunSpec("InvertedPendulum-v0", "liquid-ppo-cfc", overrides={"hyperparameters.gammma": 0.9}))
    with pytest.raises(RunError, match="unknown task 'Nope-v0'"):
        resolve(RunSpec("Nope-v0", "liquid-ppo-cfc"))
    with pytest.raises(RunError, match="no agent 'nope'"):
        resolve(RunSpec("InvertedPendulum-v0", "nope"))


# ----------------------------------------------------------------------------------------- files
def test_atomic_write_replaces_whole_files_and_leaves_no_temp_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.bin"
    atomic.atomic_write_bytes(target, b"old")
    assert target.read_bytes() == b"old"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would create it, not mkstemp's 0o600

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.bin"]


def test_eval_csv_round_trip(tmp_path):
    returns, lengths = np.array([10.0, 20.0, 60.0]), np.array([10, 20, 60])
    row = stats_row(1234, returns, lengths, 5.5)
    assert (row.mean, row.std, row.min, row.max, row.episodes) == (30.0, np.std(returns), 10.0, 60.0, 3)
    write_rows(tmp_path / "eval.csv", [row, EvalRow(2000, 1.5, 0.0, 1.5, 1.5, 1, 3.0, 9.0)])
    header = (tmp_path / "eval.csv").read_text().splitlines()[0]
    assert header == "timesteps,mean,std,min,max,episodes,mean_length,wall_time_s"
    back = read_rows(tmp_path / "eval.csv")
    assert [r.timesteps for r in back] == [1234, 2000]
    assert back[0].std == pytest.approx(row.std, rel=1e-5)
    (tmp_path / "bad.csv").write_text("timesteps,mean\n1,2\n")
    with pytest.raises(RunError, match="missing column"):
        read_rows(tmp_path / "bad.csv")


# ----------------------------------------------------------------------------------------- state
def test_rng_capture_restore_replays_python_numpy_and_torch():
    state = capture_rng()
    first = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), np.random.randn())
    restore_rng(yaml.safe_load(yaml.safe_dump(state)))  # JSON/YAML types only
    second = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist(), np.random.randn())
    assert first == second
    with pytest.raises(ValueError, match="malformed RNG state"):
        restore_rng({"python": {}})


def test_vecnormalize_statistics_round_trip_without_pickle():
    def make():
        return gym.make("Pendulum-v1")

    train = VecNormalize(DummyVecEnv([make, make]), clip_obs=7.0, gamma=0.95)
    train.reset()
    for _ in range(20):
        train.step(np.array([[0.5], [-0.5]]))
    data = normalization_to_npz(train)
    assert b"pickle" not in data[:200]
    restored = normalization_from_npz(data, DummyVecEnv([make]), training=True, where="test")
    np.testing.assert_array_equal(restored.obs_rms.mean, train.obs_rms.mean)
    np.testing.assert_array_equal(restored.obs_rms.var, train.obs_rms.var)
    assert restored.obs_rms.count == train.obs_rms.count
    assert (restored.clip_obs, restored.gamma, restored.norm_reward, restored.training) == (
        7.0,
        0.95,
        True,
        True,
    )
    frozen = normalization_from_npz(data, DummyVecEnv([make]), training=False, where="test")
    assert frozen.training is False and frozen.norm_reward is False
    copy = frozen_normalization(train, DummyVecEnv([make]))
    obs = np.array([[0.3, -0.2, 1.0]])
    np.testing.assert_allclose(copy.normalize_obs(obs), train.normalize_obs(obs))
    with pytest.raises(RunError, match="VecNormalize statistics"):
        normalization_from_npz(b"not an npz", DummyVecEnv([make]), training=False, where="x.zip")


# ----------------------------------------------------------------------------------------- compare
def _fake_run(root, name, seed, means, overrides=None, wall=60.0):
    run = root / name
    run.mkdir(parents=True)
    record = {
        "format": "lnn-control-run/1",
        "env": {"id": "InvertedPendulum-v0"},
        "agent": {"name": "liquid-ppo-cfc"},
        "seed": seed,
        "overrides": overrides or {},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(record))
    (run / "status.json").write_text(f'{{"status": "finished", "wall_time_s": {wall}}}')
    rows = [EvalRow(1000 * i, m, 1.0, m - 1, m + 1, 5, 10.0, float(i)) for i, m in enumerate(means)]
    write_rows(run / "eval.csv", rows)
    return run


def test_compare_groups_seeds_and_tabulates_mean_and_std(tmp_path):
    a = _fake_run(tmp_path / "sweep", "s0", 0, [0.0, 50.0, 40.0])
    b = _fake_run(tmp_path / "sweep", "s1", 1, [0.0, 70.0, 80.0])
    _fake_run(tmp_path / "other", "lr", 0, [5.0, 6.0], overrides={"hyperparameters.learning_rate": 0.001})
    result = compare_runs(
        [tmp_path / "sweep", tmp_path / "other"], out=tmp_path / "c.png", markdown=tmp_path / "c.md"
    )
    assert [len(g.runs) for g in result.groups] == [2, 1]
    assert [g.label for g in result.groups] == ["agent defaults", "learning_rate=0.001"]
    lines = result.markdown.splitlines()
    finals, bests = [40.0, 80.0], [50.0, 80.0]
    assert lines[2].startswith("| agent defaults | 2 | 0, 1 | 2,000 |")
    assert f"{np.mean(finals):.1f} ± {np.std(finals):.1f}" in lines[2]
    assert f"{np.mean(bests):.1f} ± {np.std(bests):.1f}" in lines[2]
    assert "| learning_rate=0.001 | 1 | 0 | 1,000 | 6.0 | 6.0 | 1m 00s |" in lines[3]
    assert (tmp_path / "c.md").read_text() == result.markdown
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {a, b} <= {r.path for g in result.groups for r in g.runs}
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="contains none"):
        compare_runs([tmp_path / "empty"])
    with pytest.raises(RunError, match="does not exist"):
        compare_runs([tmp_path / "missing"])
    with pytest.raises(RunError, match=r"\.png"):
        compare_runs([tmp_path / "sweep"], out=tmp_path / "c.jpg")
