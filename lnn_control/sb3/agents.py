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

Per-task values (RL Zoo style), where the defaults fall short on some tasks::

    tasks:
      # where the values come from and what they reached (by convention: every section says so)
      HalfCheetah-NoVel-Jitter-v0:
        hyperparameters: {learning_rate: 1.0e-3}
        policy_kwargs: {units: 32}
        n_envs: 16
        n_timesteps: 2000000

Keys are task catalogue ids (``lnn_control/catalogue/envs``, exact match: no ``lnn/`` prefix); a section
may hold ``hyperparameters``, ``policy_kwargs``, ``n_envs`` and ``n_timesteps``, checked at load like the top
level.
:func:`agent_for_task` applies a section: ``hyperparameters`` and ``policy_kwargs`` are merged one key deep
(a nested value such as ``cell_kwargs``, ``net_arch`` or a ``normalize`` dict replaces the agent's whole; an
``lr`` replaces a ``learning_rate`` and the reverse), ``n_envs``/``n_timesteps`` replace the agent's.
Precedence: the agent's defaults < the task's section < the caller's overrides (``--set``, build_agent
keyword arguments). Runs (``lnn_control.runs.config.resolve``) record the effective values, so a resumed run
keeps what it trained with after the file changes.
"""

from __future__ import annotations

import copy
import difflib
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

__all__ = [
    "TASK_SECTION_KEYS",
    "agent_catalogue_dir",
    "agent_for_task",
    "available_agents",
    "build_agent",
    "describe_task_section",
    "load_agent_config",
]

TOP_LEVEL_KEYS = (
    "algorithm",
    "policy",
    "description",
    "n_envs",
    "n_timesteps",
    "policy_kwargs",
    "hyperparameters",
    "tasks",
)
TASK_SECTION_KEYS = ("hyperparameters", "policy_kwargs", "n_envs", "n_timesteps")
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
        ``n_envs`` to 1), plus ``name`` (the file stem). Values are as in the file (no conversion yet); a
        ``tasks`` section is kept as is (apply it with :func:`agent_for_task`).
    Raises:
        FileNotFoundError for an unknown name (listing the catalogue); ValueError for an unknown algorithm,
        policy, top-level key, hyperparameter or policy_kwargs key, naming the value and the options; and
        for a ``tasks`` key that is no catalogue task id (with the closest ids) or a section holding an
        unknown key or an invalid value (checked as the section merged into the agent).
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
    if config.get("tasks") is None:
        config.pop("tasks", None)  # `tasks:` with every section commented out
    else:
        _validate_tasks(config, where)
    return config


def _catalogue_task_ids() -> list[str]:
    from lnn_control.sim.catalogue import catalogue_dir

    return sorted(p.stem for p in catalogue_dir().glob("*.yaml"))  # ids equal file names


def _validate_tasks(config: dict[str, Any], where: str) -> None:
    tasks = config["tasks"]
    if not isinstance(tasks, dict):
        raise ValueError(f"{where}: tasks must be a mapping of task ids to sections, got {tasks!r}")
    known = _catalogue_task_ids()
    base = {k: v for k, v in config.items() if k != "tasks"}
    for task_id, section in tasks.items():
        if task_id not in known:
            close = difflib.get_close_matches(str(task_id), known, n=3, cutoff=0.6)
            hint = f"closest: {close}" if close else f"the catalogue has {len(known)} tasks, e.g. {known[:3]}"
            raise ValueError(f"{where}: tasks: {task_id!r} is not a task catalogue id ({hint})")
        here = f"{where}: tasks.{task_id}"
        if not isinstance(section, dict):
            raise ValueError(
                f"{here}: expected a mapping with some of {list(TASK_SECTION_KEYS)}, got {section!r}"
            )
        unknown = sorted(set(section) - set(TASK_SECTION_KEYS))
        if unknown:
            raise ValueError(f"{here}: unknown key(s) {unknown}; expected some of {list(TASK_SECTION_KEYS)}")
        for key in ("hyperparameters", "policy_kwargs"):
            if key in section and not isinstance(section[key], dict):
                raise ValueError(f"{here}: {key} must be a mapping, got {section[key]!r}")
        if "n_timesteps" in section:
            positive_int(f"{here}: n_timesteps", section["n_timesteps"])
        _validate(_merge_section(base, section), here)


def _merge_section(config: dict[str, Any], section: dict[str, Any]) -> dict[str, Any]:
    """``config`` with a task section applied (see the module docstring); a new dict."""
    out = copy.deepcopy(config)
    section = copy.deepcopy(section)
    hyper = dict(out.get("hyperparameters", {}))
    new_hyper = section.get("hyperparameters", {})
    for given, replaced in (("lr", "learning_rate"), ("learning_rate", "lr")):
        if given in new_hyper:
            hyper.pop(replaced, None)
    out["hyperparameters"] = {**hyper, **new_hyper}
    out["policy_kwargs"] = {**out.get("policy_kwargs", {}), **section.get("policy_kwargs", {})}
    for key in ("n_envs", "n_timesteps"):
        if key in section:
            out[key] = section[key]
    return out


def _task_id(task: Any) -> str:
    """The id of a task named by catalogue id (``lnn/`` prefix allowed), YAML file or TaskSpec."""
    from lnn_control.sim.catalogue import NAMESPACE, get_task

    if not isinstance(task, (str, Path)):
        return str(task.id)  # a TaskSpec
    if isinstance(task, Path) or str(task).endswith((".yaml", ".yml")):
        return str(get_task(task).id)
    return str(task).removeprefix(f"{NAMESPACE}/")


def agent_for_task(config: dict[str, Any], task: Any) -> dict[str, Any]:
    """The agent as it applies to ``task``: its ``tasks`` section for that task merged in.

    Args:
        config: a dict from :func:`load_agent_config`.
        task: a task catalogue id (``"HalfCheetah-NoVel-Jitter-v0"``, ``"lnn/..."``), a task YAML file or
            TaskSpec (matched by its ``id``, so a file outside the catalogue with a catalogue task's id gets
            that task's section), any other id (a Gymnasium id: no section), or None (no section).
    Returns:
        a new dict without ``tasks``. When a section applied, its values are merged in (see the module
        docstring) and ``task_section`` records it: ``{"task": <id>, "values": <the section as in the
        file>}``; otherwise the agent is unchanged apart from losing ``tasks``. Applying it again is a
        no-op (the result has no ``tasks``), so a config specialised once keeps later overrides on top.
    """
    out = copy.deepcopy(config)
    sections = out.pop("tasks", None) or {}
    if task is None or not sections:
        return out
    task_id = _task_id(task)
    if task_id not in sections:
        return out
    out = _merge_section(out, sections[task_id])
    out["task_section"] = {"task": task_id, "values": copy.deepcopy(sections[task_id])}
    return out


def _flatten(mapping: dict[str, Any], prefix: str = "") -> list[str]:
    items = []
    for key, value in mapping.items():
        if isinstance(value, dict) and key in ("hyperparameters", "policy_kwargs") and not prefix:
            items += _flatten(value, f"{key}.")
        else:
            items.append(f"{prefix}{key}={value!r}")
    return items


def describe_task_section(config: dict[str, Any]) -> str | None:
    """One line naming the per-task section :func:`agent_for_task` applied and its values, else None.

    E.g. ``"agent liquid-ppo-cfc: per-task values for HalfCheetah-NoVel-Jitter-v0: n_envs=16
    hyperparameters.learning_rate=0.001"``.
    """
    applied = config.get("task_section")
    if not applied:
        return None
    values = " ".join(_flatten(applied.get("values") or {})) or "(empty section)"
    return f"agent {config.get('name', '<dict>')}: per-task values for {applied['task']}: {values}"


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


def build_agent(
    config: dict[str, Any] | str | Path, env: Any, *, task: Any = None, **overrides: Any
) -> BaseAlgorithm:
    """Build the SB3 model of an agent on ``env``.

    Args:
        config: a dict from :func:`load_agent_config`, or a catalogue name / YAML path.
        env: a VecEnv (used as is, wrapped in VecNormalize when the agent normalises and it is not yet; one
            that steps on torch tensors, such as MJX's, in :class:`~lnn_control.sim.torch_normalize.
            TorchVecNormalize`, which normalises on its device),
            a gymnasium Env, or a task: a catalogue id or YAML file, or a Gymnasium id, made with
            :func:`lnn_control.sim.make_vec_env` and the agent's ``n_envs``.
        task: the task whose per-task section of the agent (``tasks:``) applies, as :func:`agent_for_task`
            takes it. Default: ``env`` when it is an id or YAML file, else none (a VecEnv or Env does not
            say which catalogue task it is: pass ``task=`` to get the section). Giving both a task id as
            ``env`` and a different ``task`` is an error. A config already through :func:`agent_for_task`
            has no sections left, so nothing is applied twice.
        **overrides: algorithm arguments replacing the agent's (``seed``, ``device``, ``verbose``,
            ``tensorboard_log``, ``n_steps``, ...) and the per-task section's; ``policy_kwargs`` is merged
            key by key, ``normalize`` replaces the agent's, ``n_envs`` applies when ``env`` is an id.
    Returns:
        a PPO, RecurrentPPO, LiquidPPO, SAC or LiquidSAC model; ``model.get_env()`` is the (possibly
        normalised) env. With ``verbose >= 1`` the applied per-task section is printed (one line).
    Raises:
        ValueError: invalid agent or overrides; ``task`` disagreeing with an ``env`` id.
    """
    if not isinstance(config, dict):
        config = load_agent_config(config)
    if isinstance(env, (str, Path)):
        if task is not None and _task_id(task) != _task_id(env):
            raise ValueError(
                f"build_agent: task={_task_id(task)!r} but env={_task_id(env)!r}; give the task once "
                "(as env, or task= with a VecEnv)"
            )
        task = env
    config = agent_for_task(config, task)
    where = f"agent {config.get('name', '<dict>')}"
    applied = describe_task_section(config)
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
    if applied is not None and hyper.get("verbose", 0) >= 1:
        print(applied, flush=True)
    return algorithm(config["policy"], env, policy_kwargs=policy_kwargs, **hyper)
