"""What a run is: the request (:class:`RunSpec`), its resolution against the task and agent catalogues
(:class:`ResolvedRun`), and the ``config.yaml`` record that makes a run directory self-contained.

``config.yaml`` embeds the full task entry and the effective agent entry (the agent's per-task section for
the run's task, then the ``--set`` overrides, applied; no ``tasks:`` left), so a run resumes and evaluates
with what it was trained on even after the catalogues change::

    format: lnn-control-run/1
    env: {id: InvertedPendulum-NoVel-Jitter-v0, source: InvertedPendulum-NoVel-Jitter-v0, entry: {...}}
    agent: {name: liquid-ppo-cfc, source: liquid-ppo-cfc, entry: {...}}
    overrides: {hyperparameters.learning_rate: 0.001}
    seed: 0
    n_envs: 8
    total_timesteps: 50000
    device: auto
    batched: true
    eval: {freq: 4096, episodes: 5, seed: 10000}
    checkpoint_freq: 4096
    versions: {lnn-control: 0.1.0, torch: ..., stable-baselines3: ..., ...}
    created: 2025-01-01T12:00:00+00:00

When the agent has a per-task section for the task, ``agent`` also holds ``task_section: {task: <id>, values:
{...}}`` (the section as it was in the agent file; its values are already in ``entry``). Runs without one, and
run folders written before per-task sections existed, have no ``task_section``.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import importlib.metadata
import platform
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from lnn_control.checks import positive_int
from lnn_control.runs.errors import RunError
from lnn_control.runs.overrides import apply_overrides

__all__ = [
    "CONFIG_FORMAT",
    "EVAL_SEED_OFFSET",
    "ResolvedRun",
    "RunSpec",
    "load_resolved",
    "load_task",
    "resolve",
    "versions",
]

CONFIG_FORMAT = "lnn-control-run/1"
EVAL_SEED_OFFSET = 10_000  # evaluation envs are seeded with seed + this, the same at every evaluation
_TARGET_EVALUATIONS = 20  # default eval_freq: about this many evaluations per run
_VERSIONED = ("lnn-control", "torch", "stable-baselines3", "sb3-contrib", "gymnasium", "mujoco", "numpy")


@dataclass(frozen=True)
class RunSpec:
    """A training request, as the ``train`` command takes it.

    Attributes:
        env: task catalogue id (``"InvertedPendulum-NoVel-Jitter-v0"``) or a task YAML file.
        agent: agent catalogue name (``"liquid-ppo-cfc"``) or an agent YAML file.
        timesteps: training budget in env steps; None: the agent's ``n_timesteps``.
        seed: seed of the model, the training envs (seed) and the evaluation envs (seed + 10000).
        n_envs: parallel training envs; None: the agent's ``n_envs``.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        overrides: dotted keys of the agent entry -> values (``--set``).
        eval_freq: env steps between evaluations; None: about 20 evaluations per run. Evaluations happen at
            rollout boundaries (the first boundary at or after each multiple).
        eval_episodes: episodes per evaluation.
        checkpoint_freq: env steps between "last" checkpoints; None: as eval_freq.
        batched: use the batched MuJoCo VecEnv (falls back to Gymnasium envs for tasks without one).
    """

    env: str
    agent: str
    timesteps: int | None = None
    seed: int = 0
    n_envs: int | None = None
    device: str = "auto"
    overrides: dict[str, Any] = field(default_factory=dict)
    eval_freq: int | None = None
    eval_episodes: int = 5
    checkpoint_freq: int | None = None
    batched: bool = True

    def with_(self, **changes: Any) -> RunSpec:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class ResolvedRun:
    """A run with every default filled in and both catalogue entries validated.

    Attributes:
        task: the validated task (:class:`lnn_control.sim.catalogue.TaskSpec`).
        task_entry: the task's YAML entry (a dict as in the file).
        agent: the validated agent config (:func:`lnn_control.sb3.agents.load_agent_config`), with the
            task's per-task section and then the overrides applied; no ``tasks`` left.
        agent_entry: the agent's YAML entry as ``agent`` (``agent`` without ``name``): what config.yaml
            records.
        env_source, agent_source: what the user named (catalogue name or file).
        overrides, seed, n_envs, total_timesteps, device, batched, eval_freq, eval_episodes, eval_seed,
        checkpoint_freq: as in :class:`RunSpec`, defaults resolved.
        task_section: ``{"task": <id>, "values": {...}}`` when the agent's per-task section for the task
            applied (:func:`lnn_control.sb3.agents.agent_for_task`), else None.
    """

    task: Any
    task_entry: dict[str, Any]
    agent: dict[str, Any]
    agent_entry: dict[str, Any]
    env_source: str
    agent_source: str
    overrides: dict[str, Any]
    seed: int
    n_envs: int
    total_timesteps: int
    device: str
    batched: bool
    eval_freq: int
    eval_episodes: int
    eval_seed: int
    checkpoint_freq: int
    task_section: dict[str, Any] | None = None

    @property
    def task_id(self) -> str:
        return str(self.task.id)

    @property
    def agent_name(self) -> str:
        return str(self.agent["name"])

    def task_section_line(self) -> str | None:
        """One line naming the per-task section that applied and its values (None when none did)."""
        from lnn_control.sb3.agents import describe_task_section

        return describe_task_section({"name": self.agent_name, "task_section": self.task_section})

    @property
    def rollout_size(self) -> int:
        """Env steps per rollout: n_steps x n_envs (n_steps 2048 when the agent does not set it)."""
        return int(self.agent["hyperparameters"].get("n_steps", 2048)) * self.n_envs

    def to_record(self) -> dict[str, Any]:
        """The ``config.yaml`` mapping (see the module docstring)."""
        return {
            "format": CONFIG_FORMAT,
            "env": {"id": self.task_id, "source": self.env_source, "entry": self.task_entry},
            "agent": {
                "name": self.agent_name,
                "source": self.agent_source,
                **({"task_section": self.task_section} if self.task_section else {}),
                "entry": self.agent_entry,
            },
            "overrides": dict(self.overrides),
            "seed": self.seed,
            "n_envs": self.n_envs,
            "total_timesteps": self.total_timesteps,
            "device": self.device,
            "batched": self.batched,
            "eval": {"freq": self.eval_freq, "episodes": self.eval_episodes, "seed": self.eval_seed},
            "checkpoint_freq": self.checkpoint_freq,
            "versions": versions(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }


def versions() -> dict[str, str]:
    """Versions of Python and the packages that decide a run's numbers."""
    out = {"python": platform.python_version()}
    for dist in _VERSIONED:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# ------------------------------------------------------------------------------------ catalogue entries
_scratch: tempfile.TemporaryDirectory[str] | None = None


def _scratch_dir() -> Path:
    """A folder for entry files materialised from a config.yaml (lives as long as the process)."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.TemporaryDirectory(prefix="lnn-control-entries-")
        atexit.register(_scratch.cleanup)
    return Path(_scratch.name)


def _write_entry(entry: dict[str, Any], stem: str) -> Path:
    """Write an entry as ``<scratch>/<unique>/<stem>.yaml`` (loaders take the name from the file stem)."""
    folder = Path(tempfile.mkdtemp(dir=_scratch_dir()))
    path = folder / f"{stem}.yaml"
    path.write_text(yaml.safe_dump(entry, sort_keys=False))
    return path


def load_task(name_or_path: str | Path) -> Any:
    """The TaskSpec of a catalogue id or task YAML file; RunError for an unknown or invalid one."""
    from lnn_control.sim.catalogue import get_task

    try:
        return get_task(str(name_or_path))
    except ValueError as exc:  # CatalogueError
        raise RunError(str(exc)) from exc


def _task_entry(task: Any) -> dict[str, Any]:
    if task.path is None:  # pragma: no cover - get_task always records the file
        raise RunError(f"task {task.id} has no catalogue file to record")
    return yaml.safe_load(Path(task.path).read_text())


def _load_agent(name_or_path: str | Path) -> dict[str, Any]:
    from lnn_control.sb3.agents import load_agent_config

    try:
        return load_agent_config(name_or_path)
    except (FileNotFoundError, ValueError, yaml.YAMLError) as exc:
        raise RunError(str(exc).splitlines()[0] if isinstance(exc, yaml.YAMLError) else str(exc)) from exc


def _agent_with_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> tuple[dict[str, Any], dict]:
    """(validated config, entry) of an agent config with dotted-key overrides applied."""
    from lnn_control.sb3.agents import TOP_LEVEL_KEYS

    entry = {k: base[k] for k in TOP_LEVEL_KEYS if k in base}
    if not overrides:
        return dict(base), entry
    entry = apply_overrides(entry, overrides)
    try:
        config = _load_agent(_write_entry(entry, str(base["name"])))
    except RunError as exc:
        shown = " ".join(f"{k}={v!r}" for k, v in overrides.items())
        raise RunError(f"--set {shown}: {exc}") from exc
    return config, entry


def resolve(spec: RunSpec) -> ResolvedRun:
    """Validate a :class:`RunSpec` against the catalogues and fill in its defaults.

    Raises:
        RunError: unknown task or agent, invalid entry, bad override, non-positive sizes.
    """
    from lnn_control.sb3.agents import agent_for_task

    task = load_task(spec.env)
    specialised = agent_for_task(_load_agent(spec.agent), task.id)  # defaults < task section < --set
    task_section = specialised.pop("task_section", None)
    agent, agent_entry = _agent_with_overrides(specialised, dict(spec.overrides))
    seed = positive_int("seed", spec.seed, allow_zero=True, error=RunError)
    n_envs = positive_int("n_envs", agent["n_envs"] if spec.n_envs is None else spec.n_envs, error=RunError)
    timesteps = spec.timesteps if spec.timesteps is not None else agent.get("n_timesteps")
    if timesteps is None:
        raise RunError(f"agent {agent['name']} has no n_timesteps; give the budget with --timesteps N")
    timesteps = positive_int("timesteps", timesteps, error=RunError)
    if spec.device not in ("auto", "cpu", "cuda") and not str(spec.device).startswith("cuda:"):
        raise RunError(f"device must be auto, cpu or cuda[:N], got {spec.device!r}")
    rollout = int(agent["hyperparameters"].get("n_steps", 2048)) * n_envs
    eval_freq = spec.eval_freq
    if eval_freq is None:
        eval_freq = max(rollout, -(-timesteps // _TARGET_EVALUATIONS // rollout) * rollout)
    eval_freq = positive_int("eval_freq", eval_freq, error=RunError)
    eval_episodes = positive_int("eval_episodes", spec.eval_episodes, error=RunError)
    checkpoint_freq = positive_int(
        "checkpoint_freq", eval_freq if spec.checkpoint_freq is None else spec.checkpoint_freq, error=RunError
    )
    return ResolvedRun(
        task=task,
        task_entry=_task_entry(task),
        agent=agent,
        agent_entry=agent_entry,
        env_source=str(spec.env),
        agent_source=str(spec.agent),
        overrides=dict(spec.overrides),
        seed=seed,
        n_envs=n_envs,
        total_timesteps=timesteps,
        device=str(spec.device),
        batched=bool(spec.batched),
        eval_freq=eval_freq,
        eval_episodes=eval_episodes,
        eval_seed=seed + EVAL_SEED_OFFSET,
        checkpoint_freq=checkpoint_freq,
        task_section=task_section,
    )


def load_resolved(record: dict[str, Any], where: str) -> ResolvedRun:
    """The :class:`ResolvedRun` of a ``config.yaml`` mapping (entries as recorded, not the catalogues')."""
    try:
        if record.get("format") != CONFIG_FORMAT:
            raise RunError(f"{where}: not an lnn-control run config (format {record.get('format')!r})")
        env, agent = record["env"], record["agent"]
        task = load_task(_write_entry(env["entry"], env["id"]))
        agent_config = _load_agent(_write_entry(agent["entry"], agent["name"]))
        ev = record["eval"]
        return ResolvedRun(
            task=task,
            task_entry=env["entry"],
            agent=agent_config,
            agent_entry=agent["entry"],
            env_source=str(env.get("source", env["id"])),
            agent_source=str(agent.get("source", agent["name"])),
            overrides=dict(record.get("overrides") or {}),
            seed=int(record["seed"]),
            n_envs=int(record["n_envs"]),
            total_timesteps=int(record["total_timesteps"]),
            device=str(record.get("device", "auto")),
            batched=bool(record.get("batched", True)),
            eval_freq=int(ev["freq"]),
            eval_episodes=int(ev["episodes"]),
            eval_seed=int(ev["seed"]),
            checkpoint_freq=int(record.get("checkpoint_freq", ev["freq"])),
            task_section=agent.get("task_section") or None,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise RunError(f"{where}: incomplete or malformed run config ({type(exc).__name__}: {exc})") from exc
