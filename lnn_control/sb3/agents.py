"""The agent catalogue: ``agents/*.yaml`` (shipped as ``lnn_control/catalogue/agents``) -> SB3 models.

An agent file::

    algorithm: LiquidPPO            # PPO | RecurrentPPO | LiquidPPO | SAC | LiquidSAC
    policy: LiquidPolicy            # a policy alias of that algorithm
    description: ...                # optional, free text
    n_envs: 8                       # parallel environments the hyperparameters were chosen for
    n_timesteps: 1000000            # optional default training budget
    policy_kwargs: {cell: cfc, units: 64, activation_fn: Tanh, ...}
    hyperparameters: {n_steps: 256, batch_size: 256, learning_rate: 3.0e-4, normalize: true, ...}

``hyperparameters`` holds the algorithm's constructor arguments plus ``normalize`` (VecNormalize: true, false
or a dict of VecNormalize arguments); ``lr`` is accepted for ``learning_rate``, and ``"lin_<x>"`` for a
learning rate or clip range decaying linearly from x to 0 (RL Zoo's notation). ``activation_fn`` names a
``torch.nn`` module (``Tanh``, ``ReLU``, ...).
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

import yaml
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from torch import nn

from lnn_control.checks import positive_int
from lnn_control.sb3.liquid_ppo import LiquidPPO
from lnn_control.sb3.liquid_sac import LiquidSAC
from lnn_control.sim.torch_normalize import TorchVecNormalize
from lnn_control.sim.torch_vec_env import supports_torch_steps

__all__ = ["agent_catalogue_dir", "available_agents", "build_agent", "load_agent_config"]

TOP_LEVEL_KEYS = (
    "algorithm",
    "policy",
    "description",
    "n_envs",
    "n_timesteps",
    "policy_kwargs",
    "hyperparameters",
)
_NOT_HYPERPARAMETERS = frozenset({"self", "policy", "env", "policy_kwargs", "_init_setup_model"})


def _algorithms() -> dict[str, type[BaseAlgorithm]]:
    from sb3_contrib import RecurrentPPO

    return {
        "PPO": PPO,
        "RecurrentPPO": RecurrentPPO,
        "LiquidPPO": LiquidPPO,
        "SAC": SAC,
        "LiquidSAC": LiquidSAC,
    }


def agent_catalogue_dir() -> Path:
    """The directory of the agent YAML files (``lnn_control/catalogue/agents``, a link to ``agents/``)."""
    return Path(__file__).resolve().parent.parent / "catalogue" / "agents"


def available_agents() -> list[str]:
    """Names of the catalogue's agents (file stems), sorted."""
    return sorted(p.stem for p in agent_catalogue_dir().glob("*.yaml"))


def _linear(initial: float) -> Any:
    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule


def _schedule(name: str, value: Any, where: str) -> Any:
    if isinstance(value, str):
        if not value.startswith("lin_"):
            raise ValueError(f"{where}: {name} must be a number or 'lin_<number>', got {value!r}")
        try:
            return _linear(float(value[4:]))
        except ValueError as err:
            raise ValueError(f"{where}: {name} must be a number or 'lin_<number>', got {value!r}") from err
    return value


def _policy_class(algorithm: type[BaseAlgorithm], policy: Any, where: str) -> type:
    aliases = algorithm.policy_aliases
    if isinstance(policy, str):
        if policy not in aliases:
            raise ValueError(
                f"{where}: unknown policy {policy!r} for {algorithm.__name__}; "
                f"expected one of {sorted(aliases)}"
            )
        return aliases[policy]
    raise ValueError(f"{where}: policy must be the name of a policy, got {policy!r}")


def _accepted_kwargs(cls: type) -> set[str]:
    """Keyword arguments of a policy class, following ``**kwargs`` up the MRO to ActorCriticPolicy."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters
        names |= {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if klass is ActorCriticPolicy or not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return names - {"self", "observation_space", "action_space", "lr_schedule"}


def _convert_policy_kwargs(policy_kwargs: dict[str, Any], where: str) -> dict[str, Any]:
    converted = dict(policy_kwargs)
    activation = converted.get("activation_fn")
    if isinstance(activation, str):
        module = getattr(nn, activation, None)
        if not (isinstance(module, type) and issubclass(module, nn.Module)):
            raise ValueError(
                f"{where}: activation_fn {activation!r} is not a torch.nn module (e.g. 'Tanh', 'ReLU')"
            )
        converted["activation_fn"] = module
    return converted


def load_agent_config(name_or_path: str | Path) -> dict[str, Any]:
    """Load and validate an agent: a catalogue name (``"liquid-ppo-cfc"``) or a path to a YAML file.

    Returns:
        the agent as a dict with the keys of the file (``policy_kwargs``/``hyperparameters`` default to {},
        ``n_envs`` to 1), plus ``name`` (the file stem). Values are as in the file (no conversion yet).
    Raises:
        FileNotFoundError for an unknown name (listing the catalogue); ValueError for an unknown algorithm,
        policy, top-level key, hyperparameter or policy_kwargs key, naming the value and the options.
    """
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = agent_catalogue_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"no agent {str(name_or_path)!r}: not a file, and not one of {available_agents()}"
        )
    raw = yaml.safe_load(path.read_text())
    where = f"agent {path.name}"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {list(TOP_LEVEL_KEYS)}")
    for key in ("algorithm", "policy"):
        if key not in raw:
            raise ValueError(f"{where}: missing required key {key!r}")
    config: dict[str, Any] = {
        "name": path.stem,
        "n_envs": 1,
        "policy_kwargs": {},
        "hyperparameters": {},
        **copy.deepcopy(raw),
    }
    _validate(config, where)
    return config


def _validate(config: dict[str, Any], where: str) -> None:
    algorithms = _algorithms()
    name = config["algorithm"]
    if name not in algorithms:
        raise ValueError(f"{where}: unknown algorithm {name!r}; expected one of {sorted(algorithms)}")
    algorithm = algorithms[name]
    n_envs = config["n_envs"]
    positive_int(f"{where}: n_envs", n_envs)
    for key in ("policy_kwargs", "hyperparameters"):
        if not isinstance(config[key], dict):
            raise ValueError(f"{where}: {key} must be a mapping, got {config[key]!r}")
    policy_class = _policy_class(algorithm, config["policy"], where)
    accepted = _accepted_kwargs(policy_class)
    unknown = sorted(set(config["policy_kwargs"]) - accepted)
    if unknown:
        raise ValueError(
            f"{where}: unknown policy_kwargs key(s) {unknown}; expected some of {sorted(accepted)}"
        )
    _convert_policy_kwargs(config["policy_kwargs"], where)
    allowed = set(inspect.signature(algorithm.__init__).parameters) - _NOT_HYPERPARAMETERS
    hyper = config["hyperparameters"]
    unknown = sorted(set(hyper) - allowed - {"normalize", "lr"})
    if unknown:
        raise ValueError(
            f"{where}: unknown hyperparameter(s) {unknown} for {name}; "
            f"expected some of {sorted(allowed | {'normalize'})}"
        )
    if "lr" in hyper and "learning_rate" in hyper:
        raise ValueError(f"{where}: give either lr or learning_rate, not both")
    normalize = hyper.get("normalize", False)
    if not isinstance(normalize, (bool, dict)):
        raise ValueError(f"{where}: normalize must be true, false or a dict of VecNormalize arguments")
    if isinstance(normalize, dict):
        vec_normalize_args = set(inspect.signature(VecNormalize.__init__).parameters) - {"self", "venv"}
        bad = sorted(set(normalize) - vec_normalize_args)
        if bad:
            raise ValueError(
                f"{where}: unknown VecNormalize argument(s) {bad}; expected {sorted(vec_normalize_args)}"
            )
    for key in ("learning_rate", "lr", "clip_range"):
        if key in hyper:
            _schedule(key, hyper[key], where)


def build_agent(config: dict[str, Any] | str | Path, env: Any, **overrides: Any) -> BaseAlgorithm:
    """Build the SB3 model of an agent on ``env``.

    Args:
        config: a dict from :func:`load_agent_config`, or a catalogue name / YAML path.
        env: a VecEnv (used as is, wrapped in VecNormalize when the agent normalises and it is not yet; one
            that steps on torch tensors, such as MJX's, in :class:`~lnn_control.sim.torch_normalize.
            TorchVecNormalize`, which normalises on its device),
            a gymnasium Env, or a task: a catalogue id or YAML file, or a Gymnasium id, made with
            :func:`lnn_control.sim.make_vec_env` and the agent's ``n_envs``.
        **overrides: algorithm arguments replacing the agent's (``seed``, ``device``, ``verbose``,
            ``tensorboard_log``, ``n_steps``, ...); ``policy_kwargs`` is merged key by key, ``normalize``
            replaces the agent's, ``n_envs`` applies when ``env`` is an id.
    Returns:
        a PPO, RecurrentPPO, LiquidPPO, SAC or LiquidSAC model; ``model.get_env()`` is the (possibly
        normalised) env.
    """
    if not isinstance(config, dict):
        config = load_agent_config(config)
    where = f"agent {config.get('name', '<dict>')}"
    config = copy.deepcopy(config)
    overrides = dict(overrides)
    config["policy_kwargs"] = {**config.get("policy_kwargs", {}), **overrides.pop("policy_kwargs", {})}
    config["n_envs"] = overrides.pop("n_envs", config.get("n_envs", 1))
    hyper = {**config.get("hyperparameters", {}), **overrides}
    config["hyperparameters"] = hyper
    _validate(config, where)

    algorithm = _algorithms()[config["algorithm"]]
    normalize = hyper.pop("normalize", False)
    if "lr" in hyper:
        hyper["learning_rate"] = hyper.pop("lr")
    for key in ("learning_rate", "clip_range"):
        if key in hyper:
            hyper[key] = _schedule(key, hyper[key], where)

    if isinstance(env, (str, Path)):
        from lnn_control.sim import make_vec_env

        env = make_vec_env(env, config["n_envs"], seed=hyper.get("seed"))
    if normalize and isinstance(env, VecEnv) and not isinstance(env, (VecNormalize, TorchVecNormalize)):
        # an env that steps on torch tensors keeps them: normalised on its device, rollouts stay there
        wrapper = TorchVecNormalize if supports_torch_steps(env) else VecNormalize
        env = wrapper(env, **(normalize if isinstance(normalize, dict) else {}))
    elif normalize and not isinstance(env, VecEnv):
        from stable_baselines3.common.vec_env import DummyVecEnv

        single = env
        env = VecNormalize(
            DummyVecEnv([lambda: single]), **(normalize if isinstance(normalize, dict) else {})
        )
    policy_kwargs = _convert_policy_kwargs(config["policy_kwargs"], where)
    return algorithm(config["policy"], env, policy_kwargs=policy_kwargs, **hyper)
