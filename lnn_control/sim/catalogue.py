"""The task catalogue: one YAML file per task variant in the repository's ``envs/`` folder.

The folder ships inside the wheel as ``lnn_control/catalogue/envs`` (a symlink to ``envs/`` in a clone).
A file ``envs/<id>.yaml`` looks like::

    id: HalfCheetah-NoVel-Jitter-v0      # must equal the file name (without .yaml) and end in -v<N>
    base: HalfCheetah                    # a Gymnasium v5 MuJoCo task, see BASE_TASKS
    description: >
      Velocity-masked HalfCheetah with a control period jittered uniformly in [0.6, 1.4] x nominal.
    max_episode_steps: 1000              # control steps per episode (TimeLimit)
    nominal_dt: 0.05                     # seconds; must equal timestep * timing.frame_skip
    timing:                              # optional; default: the base task's frame_skip, regular
      frame_skip: 5
      jitter: [0.6, 1.4]
    wrappers:                            # optional; observation-side, applied in this order
      - {type: mask, kind: novel}        # or {type: mask, indices: [0, 1, 5]}
      - {type: noise, std: 0.01}         # float or one std per observation element
      - {type: delay, steps: 2}          # control steps
      - {type: append_dt}
    env_kwargs: {}                       # optional; passed to the Gymnasium v5 constructor

``load_catalogue()`` validates every file and raises :class:`CatalogueError` naming the file and the field
at the first problem (unknown key, base task or wrapper; non-positive period; probabilities not summing to 1,
...). ``get_task(name_or_path)`` returns the typed :class:`TaskSpec` of a catalogue id (``"lnn/"`` prefix
allowed) or of a YAML file path.

This module imports numpy and PyYAML only (it runs at ``import lnn_control`` for Gymnasium registration).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lnn_control.sim.control_timing import ControlTiming
from lnn_control.sim.masks import MASK_KINDS

__all__ = [
    "BASE_TASKS",
    "NAMESPACE",
    "WRAPPER_TYPES",
    "AppendDtSpec",
    "BaseTask",
    "CatalogueError",
    "DelaySpec",
    "MaskSpec",
    "NoiseSpec",
    "TaskSpec",
    "WrapperSpec",
    "catalogue_dir",
    "get_task",
    "load_catalogue",
    "load_task_file",
]

NAMESPACE = "lnn"


@dataclass(frozen=True)
class BaseTask:
    """A Gymnasium v5 MuJoCo task: its Gymnasium id and defaults (checked against Gymnasium in the tests)."""

    gym_id: str
    timestep: float  # model.opt.timestep, seconds
    frame_skip: int  # default substeps per control step
    max_episode_steps: int


BASE_TASKS: dict[str, BaseTask] = {
    "HalfCheetah": BaseTask("HalfCheetah-v5", 0.01, 5, 1000),
    "Hopper": BaseTask("Hopper-v5", 0.002, 4, 1000),
    "Walker2d": BaseTask("Walker2d-v5", 0.002, 4, 1000),
    "Ant": BaseTask("Ant-v5", 0.01, 5, 1000),
    "Swimmer": BaseTask("Swimmer-v5", 0.01, 4, 1000),
    "InvertedPendulum": BaseTask("InvertedPendulum-v5", 0.02, 2, 1000),
    "InvertedDoublePendulum": BaseTask("InvertedDoublePendulum-v5", 0.01, 5, 1000),
    "Reacher": BaseTask("Reacher-v5", 0.01, 2, 50),
}


class CatalogueError(ValueError):
    """A catalogue entry is invalid; the message names the file and the field."""


# ------------------------------------------------------------------------------------------- wrapper specs
@dataclass(frozen=True)
class MaskSpec:
    """Keep a subset of the observation: a ``kind`` (see :mod:`lnn_control.sim.masks`) or ``indices``."""

    kind: str | None = None
    indices: tuple[int, ...] | None = None
    type: str = field(default="mask", init=False)


@dataclass(frozen=True)
class NoiseSpec:
    """Additive Gaussian observation noise with standard deviation ``std`` (float or one per element)."""

    std: float | tuple[float, ...]
    type: str = field(default="noise", init=False)


@dataclass(frozen=True)
class DelaySpec:
    """Observation delayed by ``steps`` control steps."""

    steps: int
    type: str = field(default="delay", init=False)


@dataclass(frozen=True)
class AppendDtSpec:
    """dt of the step appended as the last observation element."""

    type: str = field(default="append_dt", init=False)


WrapperSpec = MaskSpec | NoiseSpec | DelaySpec | AppendDtSpec
WRAPPER_TYPES: tuple[str, ...] = ("mask", "noise", "delay", "append_dt")


@dataclass(frozen=True)
class TaskSpec:
    """A validated catalogue entry.

    Attributes:
        id: the task id, e.g. ``"HalfCheetah-NoVel-Jitter-v0"`` (registered as ``"lnn/<id>"``).
        base: base task name, a key of :data:`BASE_TASKS`.
        description: free text.
        max_episode_steps: control steps per episode.
        nominal_dt: nominal control period in seconds (= timestep * timing.frame_skip).
        timing: the control-period distribution (physics side).
        wrappers: observation-side wrappers, in application order.
        env_kwargs: keyword arguments of the Gymnasium v5 constructor.
        path: the YAML file it came from.
    """

    id: str
    base: str
    description: str
    max_episode_steps: int
    nominal_dt: float
    timing: ControlTiming
    wrappers: tuple[WrapperSpec, ...] = ()
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def gym_id(self) -> str:
        """The namespaced Gymnasium id, ``"lnn/<id>"``."""
        return f"{NAMESPACE}/{self.id}"

    @property
    def base_task(self) -> BaseTask:
        return BASE_TASKS[self.base]


# ------------------------------------------------------------------------------------------- parsing
_TOP_KEYS_REQUIRED = ("id", "base", "description", "max_episode_steps", "nominal_dt")
_TOP_KEYS_OPTIONAL = ("timing", "wrappers", "env_kwargs")
_ID_RE = re.compile(r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*-v\d+$")
_DT_RTOL = 1e-9

_WRAPPER_KEYS: dict[str, tuple[set[str], set[str]]] = {  # type -> (required, optional) parameter keys
    "mask": (set(), {"kind", "indices"}),
    "noise": ({"std"}, set()),
    "delay": ({"steps"}, set()),
    "append_dt": (set(), set()),
}


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class _Reader:
    """Raises CatalogueError with the file and field in the message."""

    def __init__(self, path: Path):
        self.path = path

    def error(self, fld: str, msg: str) -> CatalogueError:
        return CatalogueError(f"{self.path}: field '{fld}': {msg}")

    def parse(self, raw: Any) -> TaskSpec:
        if not isinstance(raw, dict):
            raise CatalogueError(f"{self.path}: expected a mapping of fields at top level, got {raw!r}")
        unknown = sorted(set(raw) - set(_TOP_KEYS_REQUIRED) - set(_TOP_KEYS_OPTIONAL))
        if unknown:
            allowed = sorted((*_TOP_KEYS_REQUIRED, *_TOP_KEYS_OPTIONAL))
            raise self.error(unknown[0], f"unknown key(s) {unknown}; expected keys among {allowed}")
        for key in _TOP_KEYS_REQUIRED:
            if key not in raw:
                raise self.error(key, "missing (required)")

        task_id = raw["id"]
        if not isinstance(task_id, str) or not _ID_RE.match(task_id):
            raise self.error(
                "id", f"expected a name like 'HalfCheetah-NoVel-v0' (ending in -v<N>), got {task_id!r}"
            )
        if self.path.suffix in (".yaml", ".yml") and self.path.stem != task_id:
            raise self.error("id", f"id {task_id!r} must equal the file name {self.path.stem!r}")

        base = raw["base"]
        if base not in BASE_TASKS:
            raise self.error("base", f"unknown base task {base!r}; expected one of {list(BASE_TASKS)}")
        bt = BASE_TASKS[base]

        description = raw["description"]
        if not isinstance(description, str) or not description.strip():
            raise self.error("description", f"expected a non-empty string, got {description!r}")

        steps = raw["max_episode_steps"]
        if not _is_int(steps) or steps < 1:
            raise self.error("max_episode_steps", f"expected an int >= 1, got {steps!r}")

        timing = self._timing(raw.get("timing"), bt)

        nominal_dt = raw["nominal_dt"]
        if not _is_number(nominal_dt) or nominal_dt <= 0:
            raise self.error("nominal_dt", f"expected a period in seconds > 0, got {nominal_dt!r}")
        expected_dt = bt.timestep * timing.frame_skip
        if not math.isclose(nominal_dt, expected_dt, rel_tol=_DT_RTOL):
            raise self.error(
                "nominal_dt",
                f"{nominal_dt!r} s does not match timestep {bt.timestep} s x frame_skip {timing.frame_skip} "
                f"= {expected_dt!r} s",
            )

        wrappers_raw = raw.get("wrappers") or []
        if not isinstance(wrappers_raw, list):
            raise self.error("wrappers", f"expected a list of wrapper mappings, got {wrappers_raw!r}")
        wrappers = tuple(self._wrapper(i, w) for i, w in enumerate(wrappers_raw))

        env_kwargs = raw.get("env_kwargs") or {}
        if not isinstance(env_kwargs, dict) or not all(isinstance(k, str) for k in env_kwargs):
            raise self.error("env_kwargs", f"expected a mapping of constructor arguments, got {env_kwargs!r}")
        if "frame_skip" in env_kwargs:
            raise self.error("env_kwargs.frame_skip", "set the control period in timing.frame_skip instead")

        return TaskSpec(
            id=task_id,
            base=base,
            description=description.strip(),
            max_episode_steps=steps,
            nominal_dt=float(nominal_dt),
            timing=timing,
            wrappers=wrappers,
            env_kwargs=dict(env_kwargs),
            path=self.path,
        )

    def _timing(self, raw: Any, bt: BaseTask) -> ControlTiming:
        if raw is None:
            return ControlTiming(bt.frame_skip)
        if not isinstance(raw, dict):
            raise self.error("timing", f"expected a mapping, got {raw!r}")
        allowed = {"frame_skip", "jitter", "choices", "probs", "drop_prob", "max_consecutive_drops"}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise self.error(
                f"timing.{unknown[0]}", f"unknown key(s) {unknown}; expected among {sorted(allowed)}"
            )
        kw = dict(raw)
        kw.setdefault("frame_skip", bt.frame_skip)
        for key in ("jitter", "choices", "probs"):
            if kw.get(key) is not None:
                if not isinstance(kw[key], list):
                    raise self.error(f"timing.{key}", f"expected a list, got {kw[key]!r}")
                kw[key] = tuple(kw[key])
        try:
            return ControlTiming(**kw)
        except (ValueError, TypeError) as exc:
            msg = str(exc)
            # ControlTiming's messages start with the offending field's name.
            fld = next((k for k in sorted(allowed, key=len, reverse=True) if msg.startswith(k)), "")
            raise self.error(f"timing.{fld}" if fld else "timing", msg) from exc

    def _wrapper(self, i: int, raw: Any) -> WrapperSpec:
        where = f"wrappers[{i}]"
        if not isinstance(raw, dict) or "type" not in raw:
            raise self.error(where, f"expected a mapping with a 'type' key, got {raw!r}")
        wtype = raw["type"]
        if wtype not in _WRAPPER_KEYS:
            raise self.error(
                f"{where}.type", f"unknown wrapper {wtype!r}; expected one of {list(WRAPPER_TYPES)}"
            )
        required, optional = _WRAPPER_KEYS[wtype]
        params = {k: v for k, v in raw.items() if k != "type"}
        unknown = sorted(set(params) - required - optional)
        if unknown:
            raise self.error(
                f"{where}.{unknown[0]}",
                f"unknown key(s) {unknown} for wrapper {wtype!r}; "
                f"expected among {sorted(required | optional)}",
            )
        for key in sorted(required - set(params)):
            raise self.error(f"{where}.{key}", f"missing (required by wrapper {wtype!r})")

        if wtype == "mask":
            kind, indices = params.get("kind"), params.get("indices")
            if (kind is None) == (indices is None):
                raise self.error(where, "a mask needs exactly one of 'kind' or 'indices'")
            if kind is not None:
                if kind not in MASK_KINDS:
                    raise self.error(
                        f"{where}.kind", f"unknown mask kind {kind!r}; expected one of {list(MASK_KINDS)}"
                    )
                return MaskSpec(kind=kind)
            if (
                not isinstance(indices, list)
                or not indices
                or not all(_is_int(j) and j >= 0 for j in indices)
                or len(set(indices)) != len(indices)
            ):
                raise self.error(
                    f"{where}.indices", f"expected a non-empty list of distinct ints >= 0, got {indices!r}"
                )
            return MaskSpec(indices=tuple(indices))
        if wtype == "noise":
            std = params["std"]
            if isinstance(std, list):
                if not std or not all(_is_number(s) and s >= 0 for s in std):
                    raise self.error(f"{where}.std", f"expected finite standard deviations >= 0, got {std!r}")
                return NoiseSpec(std=tuple(float(s) for s in std))
            if not _is_number(std) or std < 0:
                raise self.error(f"{where}.std", f"expected a finite standard deviation >= 0, got {std!r}")
            return NoiseSpec(std=float(std))
        if wtype == "delay":
            steps = params["steps"]
            if not _is_int(steps) or steps < 1:
                raise self.error(f"{where}.steps", f"expected an int >= 1 (control steps), got {steps!r}")
            return DelaySpec(steps=steps)
        return AppendDtSpec()


def load_task_file(path: str | Path) -> TaskSpec:
    """Parse and validate one catalogue YAML file; raises :class:`CatalogueError` naming file and field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read task file ({exc})") from exc
    try:
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{path}: invalid YAML ({exc})") from exc
    return _Reader(path).parse(raw)


def catalogue_dir() -> Path:
    """The folder of task YAML files: ``lnn_control/catalogue/envs`` (the repository's ``envs/``)."""
    return Path(__file__).resolve().parent.parent / "catalogue" / "envs"


def load_catalogue(directory: str | Path | None = None) -> dict[str, TaskSpec]:
    """All validated tasks of a catalogue folder (default :func:`catalogue_dir`), by id, sorted by file name.

    Raises :class:`CatalogueError` at the first invalid file (and for duplicate ids). Parsed files are cached
    by path and modification time.
    """
    directory = (catalogue_dir() if directory is None else Path(directory)).resolve()
    if not directory.is_dir():
        raise CatalogueError(f"task catalogue folder {directory} does not exist")
    out: dict[str, TaskSpec] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        spec = _load_cached(path)
        if spec.id in out:
            raise CatalogueError(
                f"{path}: field 'id': duplicate id {spec.id!r} (also in {out[spec.id].path})"
            )
        out[spec.id] = spec
    return out


def get_task(name_or_path: str | Path | TaskSpec) -> TaskSpec:
    """The :class:`TaskSpec` of a catalogue id (``"HalfCheetah-NoVel-v0"`` or ``"lnn/HalfCheetah-NoVel-v0"``)
    or of a YAML file path (``.yaml``/``.yml``, inside the catalogue or not). A TaskSpec is returned as is.

    A catalogue id is looked up as ``<catalogue_dir>/<id>.yaml`` (ids equal file names), so one bad file
    elsewhere in the catalogue does not stop the others from loading.
    """
    if isinstance(name_or_path, TaskSpec):
        return name_or_path
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")):
        return _load_cached(Path(text).resolve())
    name = text.removeprefix(f"{NAMESPACE}/")
    directory = catalogue_dir()
    path = directory / f"{name}.yaml"
    if "/" in name or not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise CatalogueError(f"unknown task {text!r}; the catalogue ({directory}) has {known}")
    return _load_cached(path.resolve())


def _load_cached(path: Path) -> TaskSpec:
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise CatalogueError(f"{path}: cannot read task file ({exc})") from exc
    return _load_file_at(path, mtime)


@functools.lru_cache(maxsize=256)
def _load_file_at(path: Path, mtime_ns: int) -> TaskSpec:
    return load_task_file(path)
