"""Per-task sections of agent files (``tasks:``, RL Zoo style): loading, precedence, and what runs record."""

from pathlib import Path

import pytest
import yaml
from stable_baselines3.common.vec_env import VecNormalize

from lnn_control.runs.config import RunSpec, load_resolved, resolve
from lnn_control.runs.errors import RunError
from lnn_control.sb3.agents import (
    TOP_LEVEL_KEYS,
    agent_for_task,
    available_agents,
    build_agent,
    describe_task_section,
    load_agent_config,
)
from lnn_control.sim import make_vec_env

TUNED = "InvertedPendulum-NoVel-Jitter-v0"
OTHER = "InvertedPendulum-v0"
SECTION = {
    "hyperparameters": {"learning_rate": 1.0e-3, "gamma": 0.95},
    "policy_kwargs": {"units": 4},
    "n_envs": 3,
    "n_timesteps": 1234,
}


def _agent(tmp_path: Path, tasks: object = None, name: str = "tuned-agent") -> Path:
    """A small LiquidPPO agent file; ``tasks`` (if given) as its per-task sections."""
    entry: dict = {
        "algorithm": "LiquidPPO",
        "policy": "LiquidPolicy",
        "n_envs": 2,
        "n_timesteps": 5000,
        "policy_kwargs": {"cell": "cfc", "units": 8, "net_arch": {"pi": [16], "vf": [16]}},
        "hyperparameters": {
            "n_steps": 32,
            "batch_size": 32,
            "seq_len": 16,
            "learning_rate": 3.0e-4,
            "gamma": 0.99,
            "normalize": True,
        },
    }
    if tasks is not None:
        entry["tasks"] = tasks
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(entry, sort_keys=False))
    return path


def test_section_overrides_defaults_key_by_key(tmp_path) -> None:
    config = load_agent_config(_agent(tmp_path, {TUNED: SECTION}))
    assert config["tasks"] == {TUNED: SECTION}  # kept as in the file until applied

    tuned = agent_for_task(config, TUNED)
    assert tuned["hyperparameters"] == {
        "n_steps": 32,
        "batch_size": 32,
        "seq_len": 16,
        "learning_rate": 1.0e-3,
        "gamma": 0.95,
        "normalize": True,
    }
    assert tuned["policy_kwargs"] == {"cell": "cfc", "units": 4, "net_arch": {"pi": [16], "vf": [16]}}
    assert (tuned["n_envs"], tuned["n_timesteps"]) == (3, 1234)
    assert "tasks" not in tuned
    assert tuned["task_section"] == {"task": TUNED, "values": SECTION}
    assert config["hyperparameters"]["learning_rate"] == 3.0e-4  # the input is not modified
    assert agent_for_task(config, f"lnn/{TUNED}") == tuned  # the Gymnasium namespace prefix is allowed
    assert agent_for_task(tuned, OTHER) == tuned  # applied once: nothing left to apply

    line = describe_task_section(tuned)
    assert line is not None and TUNED in line and "hyperparameters.learning_rate=0.001" in line
    assert "policy_kwargs.units=4" in line and "n_envs=3" in line

    untouched = agent_for_task(config, OTHER)
    assert untouched == {k: v for k, v in config.items() if k != "tasks"}
    assert describe_task_section(untouched) is None
    assert agent_for_task(config, "Pendulum-v1") == untouched  # a Gymnasium id: no section, no error


def test_nested_values_and_lr_alias_replace_whole(tmp_path) -> None:
    section = {
        "hyperparameters": {"lr": "lin_2e-3", "normalize": {"norm_reward": False}},
        "policy_kwargs": {"net_arch": {"pi": [8]}},
    }
    tuned = agent_for_task(load_agent_config(_agent(tmp_path, {TUNED: section})), TUNED)
    assert tuned["hyperparameters"]["lr"] == "lin_2e-3" and "learning_rate" not in tuned["hyperparameters"]
    assert tuned["hyperparameters"]["normalize"] == {"norm_reward": False}
    assert tuned["policy_kwargs"]["net_arch"] == {"pi": [8]}  # replaced whole, no vf left
    model = build_agent(tuned, make_vec_env(TUNED, 2, seed=0), seed=0)
    assert model.learning_rate(0.5) == pytest.approx(1e-3)
    assert not model.get_env().norm_reward


def test_build_agent_precedence_defaults_section_overrides(tmp_path) -> None:
    path = _agent(tmp_path, {TUNED: SECTION})
    model = build_agent(path, TUNED, seed=0, gamma=0.5, policy_kwargs={"net_arch": {"pi": [4], "vf": [4]}})
    assert model.learning_rate == pytest.approx(1.0e-3)  # section over default
    assert model.gamma == 0.5  # override over section
    assert model.n_envs == 3  # the section's n_envs makes the env
    assert model.policy_kwargs["units"] == 4 and model.policy_kwargs["net_arch"] == {"pi": [4], "vf": [4]}
    assert model.n_steps == 32 and isinstance(model.get_env(), VecNormalize)  # defaults kept

    with_task = build_agent(path, make_vec_env(TUNED, 2, seed=0), task=TUNED, seed=0, learning_rate=5e-4)
    assert with_task.learning_rate == pytest.approx(5e-4) and with_task.gamma == 0.95
    plain_env = build_agent(path, make_vec_env(TUNED, 2, seed=0), seed=0)  # an env does not name its task
    assert plain_env.learning_rate == pytest.approx(3.0e-4) and plain_env.gamma == 0.99
    other = build_agent(path, OTHER, seed=0)
    assert other.learning_rate == pytest.approx(3.0e-4) and other.n_envs == 2
    with pytest.raises(ValueError, match=f"task='{OTHER}' but env='{TUNED}'"):
        build_agent(path, TUNED, task=OTHER)


def test_build_agent_prints_the_section_when_verbose(tmp_path, capsys) -> None:
    path = _agent(tmp_path, {TUNED: {"hyperparameters": {"gamma": 0.9}}})
    build_agent(path, TUNED, seed=0)
    assert capsys.readouterr().out == ""
    build_agent(path, TUNED, seed=0, verbose=1)
    out = capsys.readouterr().out
    assert f"agent tuned-agent: per-task values for {TUNED}: hyperparameters.gamma=0.9\n" in out


def test_unknown_task_key_names_it_and_the_closest_ids(tmp_path) -> None:
    typo = "InvertedPendulum-NoVel-Jiter-v0"
    path = _agent(tmp_path, {typo: SECTION})
    with pytest.raises(
        ValueError, match=rf"tasks: '{typo}' is not a task catalogue id \(closest: \['{TUNED}'"
    ):
        load_agent_config(path)
    with pytest.raises(RunError, match=f"'{typo}' is not a task catalogue id"):
        resolve(RunSpec(TUNED, str(path)))
    with pytest.raises(ValueError, match=r"'Zzz' is not a task catalogue id \(the catalogue has \d+ tasks"):
        load_agent_config(_agent(tmp_path, {"Zzz": SECTION}))
    with pytest.raises(ValueError, match=f"'lnn/{TUNED}' is not a task catalogue id"):  # exact ids only
        load_agent_config(_agent(tmp_path, {f"lnn/{TUNED}": SECTION}))


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([TUNED], r"tasks must be a mapping of task ids to sections, got \["),
        ({TUNED: None}, rf"tasks\.{TUNED}: expected a mapping with some of \['hyperparameters'"),
        ({TUNED: {"gamma": 0.9}}, rf"tasks\.{TUNED}: unknown key\(s\) \['gamma'\]; expected some of"),
        ({TUNED: {"algorithm": "PPO"}}, r"unknown key\(s\) \['algorithm'\]"),
        ({TUNED: {"hyperparameters": 3}}, rf"tasks\.{TUNED}: hyperparameters must be a mapping, got 3"),
        (
            {TUNED: {"hyperparameters": {"lerning_rate": 1e-3}}},
            rf"tasks\.{TUNED}: unknown hyperparameter\(s\) \['lerning_rate'\] for LiquidPPO",
        ),
        (
            {TUNED: {"policy_kwargs": {"unit": 4}}},
            rf"tasks\.{TUNED}: unknown policy_kwargs key\(s\) \['unit'\]",
        ),
        ({TUNED: {"policy_kwargs": {"activation_fn": "Swish"}}}, "activation_fn 'Swish' is not a torch.nn"),
        ({TUNED: {"n_envs": 0}}, rf"tasks\.{TUNED}: n_envs must be a positive integer, got 0"),
        ({TUNED: {"n_timesteps": -5}}, rf"tasks\.{TUNED}: n_timesteps must be a positive integer, got -5"),
        ({TUNED: {"hyperparameters": {"clip_range": "cos_1"}}}, "must be a number or 'lin_<number>'"),
    ],
)
def test_invalid_sections_raise_clear_errors(tmp_path, tasks: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_agent_config(_agent(tmp_path, tasks))


def test_empty_tasks_key_is_no_section(tmp_path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(_agent(tmp_path).read_text() + "tasks:\n  # nothing tuned yet\n")
    config = load_agent_config(path)
    assert "tasks" not in config and config == load_agent_config(_agent(tmp_path)) | {"name": "agent"}


def test_run_records_the_effective_values_and_reloads_them(tmp_path) -> None:
    path = _agent(tmp_path, {TUNED: SECTION})
    resolved = resolve(RunSpec(TUNED, str(path), overrides={"hyperparameters.gamma": 0.5}))
    assert resolved.agent["hyperparameters"]["learning_rate"] == 1.0e-3  # section
    assert resolved.agent["hyperparameters"]["gamma"] == 0.5  # --set over section
    assert resolved.agent["hyperparameters"]["n_steps"] == 32  # default
    assert (resolved.n_envs, resolved.total_timesteps) == (3, 1234)  # the section's sizes
    assert resolved.task_section == {"task": TUNED, "values": SECTION}
    assert resolved.task_section_line() == (
        f"agent tuned-agent: per-task values for {TUNED}: hyperparameters.learning_rate=0.001 "
        "hyperparameters.gamma=0.95 policy_kwargs.units=4 n_envs=3 n_timesteps=1234"
    )
    assert resolve(RunSpec(TUNED, str(path), n_envs=5, timesteps=99)).n_envs == 5  # flags win too

    record = yaml.safe_load(yaml.safe_dump(resolved.to_record(), sort_keys=False))  # as in config.yaml
    entry = record["agent"]["entry"]
    assert "tasks" not in entry and entry["hyperparameters"]["learning_rate"] == 1.0e-3
    assert entry["hyperparameters"]["gamma"] == 0.5 and entry["policy_kwargs"]["units"] == 4
    assert record["agent"]["task_section"] == {"task": TUNED, "values": SECTION}

    path.write_text(_agent(tmp_path).read_text())  # the catalogue changes: the section is gone
    reloaded = load_resolved(record, "config.yaml")
    assert reloaded.agent == resolved.agent and reloaded.agent_entry == resolved.agent_entry
    assert (reloaded.n_envs, reloaded.total_timesteps) == (3, 1234)
    assert reloaded.task_section == resolved.task_section
    model = build_agent(reloaded.agent, make_vec_env(TUNED, reloaded.n_envs, seed=0), seed=0)
    assert model.learning_rate == pytest.approx(1.0e-3) and model.gamma == 0.5
    assert model.policy_kwargs["units"] == 4

    del record["agent"]["task_section"]  # a run folder from before per-task sections
    old = load_resolved(record, "config.yaml")
    assert old.task_section is None and old.agent == resolved.agent and old.task_section_line() is None


_TASKS = [
    "InvertedPendulum-v0",
    "InvertedPendulum-NoVel-Jitter-v0",
    "HalfCheetah-NoVel-Jitter-v0",
    "Hopper-v0",
]


@pytest.mark.parametrize("name", available_agents())
def test_tasks_without_a_section_resolve_as_before(name: str) -> None:
    """What resolve gave before per-task sections: the loaded agent as is, its entry the file's keys."""
    base = load_agent_config(name)
    before = {k: v for k, v in base.items() if k != "tasks"}
    for task in _TASKS:
        if task in (base.get("tasks") or {}):
            continue  # a tuned pair: covered by the tests above
        resolved = resolve(RunSpec(task, name))
        assert resolved.agent == before
        assert resolved.agent_entry == {k: before[k] for k in TOP_LEVEL_KEYS if k in before}
        assert resolved.task_section is None and resolved.task_section_line() is None
        record = resolved.to_record()
        assert list(record["agent"]) == ["name", "source", "entry"]
        assert (resolved.n_envs, resolved.total_timesteps) == (base["n_envs"], base["n_timesteps"])
