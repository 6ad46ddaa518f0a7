"""The agent catalogue (agents/*.yaml) and its loader."""

import pytest
import yaml
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecNormalize
from torch import nn

from lnn_control.sb3 import LiquidPPO
from lnn_control.sb3.agents import agent_catalogue_dir, available_agents, build_agent, load_agent_config

EXPECTED = {
    "ppo-mlp": PPO,
    "ppo-lstm": RecurrentPPO,
    "liquid-ppo-cfc": LiquidPPO,
    "liquid-ppo-ltc": LiquidPPO,
    "liquid-ppo-ncp": LiquidPPO,
}


def test_catalogue_lists_the_agents() -> None:
    assert set(EXPECTED) <= set(available_agents())
    assert agent_catalogue_dir().name == "agents"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_agent_loads_and_builds(name: str) -> None:
    config = load_agent_config(name)
    assert config["name"] == name
    model = build_agent(config, "InvertedPendulum-v5", seed=0)
    assert type(model) is EXPECTED[name]
    hyper = config["hyperparameters"]
    assert model.n_steps == hyper["n_steps"] and model.batch_size == hyper["batch_size"]
    assert model.n_envs == config["n_envs"]
    assert isinstance(model.get_env(), VecNormalize) == hyper.get("normalize", False)
    assert model.policy_kwargs["activation_fn"] in (nn.Tanh, nn.ReLU)


def test_liquid_agent_learns_with_overrides() -> None:
    model = build_agent(
        "liquid-ppo-ncp", "InvertedPendulum-v5", n_envs=2, n_steps=32, batch_size=64, n_epochs=1, seed=0,
        policy_kwargs={"net_arch": {"pi": [], "vf": [16]}},
    )  # fmt: skip
    assert model.n_envs == 2 and model.policy.mlp_extractor.latent_dim_pi == 8  # the 8 motor neurons
    assert model.policy_kwargs["wiring"] == "ncp"  # merged, not replaced
    model.learn(64)


def _write(tmp_path, **fields) -> str:
    base = {
        "algorithm": "LiquidPPO",
        "policy": "LiquidPolicy",
        "hyperparameters": {"n_steps": 32, "batch_size": 32},
    }
    base.update(fields)
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(base))
    return str(path)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            dict(algorithm="TD3"),
            r"unknown algorithm 'TD3'; expected one of "
            r"\['LiquidPPO', 'LiquidSAC', 'PPO', 'RecurrentPPO', 'SAC'\]",
        ),
        (
            dict(policy="MlpPolicy"),
            r"unknown policy 'MlpPolicy' for LiquidPPO; expected one of \['LiquidPolicy'",
        ),
        (dict(hyperparameters={"n_step": 32}), r"unknown hyperparameter\(s\) \['n_step'\] for LiquidPPO"),
        (dict(policy_kwargs={"cells": "cfc"}), r"unknown policy_kwargs key\(s\) \['cells'\]"),
        (dict(policy_kwargs={"activation_fn": "Swish"}), "activation_fn 'Swish' is not a torch.nn module"),
        (dict(n_env=4), r"unknown key\(s\) \['n_env'\]"),
        (dict(n_envs=0), "n_envs must be a positive integer, got 0"),
        (dict(hyperparameters={"normalize": "yes"}), "normalize must be true, false or a dict"),
        (dict(hyperparameters={"normalize": {"clip": 5}}), r"unknown VecNormalize argument\(s\) \['clip'\]"),
        (dict(hyperparameters={"learning_rate": "cos_1e-3"}), "must be a number or 'lin_<number>'"),
        (dict(hyperparameters={"lr": 1e-3, "learning_rate": 1e-3}), "either lr or learning_rate"),
    ],
)
def test_invalid_agents_raise_clear_errors(tmp_path, fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_agent_config(_write(tmp_path, **fields))


def test_missing_fields_and_unknown_names(tmp_path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"algorithm": "PPO"}))
    with pytest.raises(ValueError, match="missing required key 'policy'"):
        load_agent_config(path)
    with pytest.raises(FileNotFoundError, match=r"no agent 'liquid-ppo-xyz'.*'liquid-ppo-cfc'"):
        load_agent_config("liquid-ppo-xyz")


def test_schedules_and_lr_alias(tmp_path) -> None:
    path = _write(
        tmp_path, hyperparameters={"n_steps": 32, "batch_size": 32, "lr": "lin_1e-3", "clip_range": 0.3}
    )
    model = build_agent(path, "Pendulum-v1", seed=0)
    assert model.learning_rate(1.0) == pytest.approx(1e-3) and model.learning_rate(0.5) == pytest.approx(5e-4)
    assert model.clip_range(0.5) == pytest.approx(0.3)
    assert not isinstance(model.get_env(), VecNormalize)
