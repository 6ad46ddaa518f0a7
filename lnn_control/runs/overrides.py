"""Command-line values: ``--set key.path=value`` overrides of an agent entry, ``--seeds 0-4`` and
``--grid key=v1,v2`` of a sweep.

Values are YAML scalars (``1e-3``, ``32``, ``true``, ``null``, ``lin_3e-4``) or YAML flow collections
(``[64, 64]``, ``{mode: no_gate}``). PyYAML reads ``1e-3`` as a string (YAML 1.1 wants ``1.0e-3``); numbers
written either way are accepted here.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from lnn_control.runs.errors import RunError

__all__ = [
    "AGENT_KEYS",
    "apply_overrides",
    "format_overrides",
    "parse_grid",
    "parse_seeds",
    "parse_set",
    "parse_value",
]

# Top-level keys of an agent entry that --set may change (lnn_control.sb3.agents.TOP_LEVEL_KEYS).
AGENT_KEYS: tuple[str, ...] = ("n_envs", "n_timesteps", "policy_kwargs", "hyperparameters", "description")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def parse_value(text: str) -> Any:
    """A command-line value as YAML (``"1e-3"`` -> 0.001, ``"[64, 64]"`` -> [64, 64], ``"null"`` -> None)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RunError(f"value {text!r} is not valid YAML ({str(exc).splitlines()[0]})") from exc
    if isinstance(value, str):
        for cast in (int, float):
            try:
                return cast(value)
            except ValueError:
                pass
    return value


def _split_key(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or not value.strip():
        raise RunError(f"{flag} expects key=value (e.g. hyperparameters.learning_rate=1e-3), got {item!r}")
    if not _KEY_RE.match(key):
        raise RunError(f"{flag} key {key!r} must be a dotted name like policy_kwargs.units, in {item!r}")
    return key, value.strip()


def parse_set(items: Iterable[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a.b": 1, "c": "x"}`` (in order; a key given twice keeps the last value)."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, value = _split_key(item, "--set")
        out[key] = parse_value(value)
    return out


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets/braces: ``"1,[2,3]"`` -> ``["1", "[2,3]"]``."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_grid(items: Iterable[str] | None) -> dict[str, list[Any]]:
    """``["hyperparameters.gamma=0.9,0.99"]`` -> ``{"hyperparameters.gamma": [0.9, 0.99]}``."""
    out: dict[str, list[Any]] = {}
    for item in items or ():
        key, values = _split_key(item, "--grid")
        parts = _split_top_level(values)
        if any(not p for p in parts):
            raise RunError(f"--grid {key}: empty value in {values!r}; expected key=v1,v2,...")
        if key in out:
            raise RunError(f"--grid {key} given twice; list all its values once: {key}=v1,v2,...")
        out[key] = [parse_value(p) for p in parts]
    return out


def parse_seeds(text: str) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,2,7"`` -> [0, 2, 7]; ``"0-2,5"`` -> [0, 1, 2, 5] (no repeats)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise RunError(f"--seeds expects seeds like 0-4 or 0,1,2 (integers >= 0), got {text!r}")
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise RunError(f"--seeds range {part!r} is empty (end < start)")
        seeds.extend(s for s in range(lo, hi + 1) if s not in seeds)
    return seeds


def apply_overrides(entry: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the agent entry ``entry`` with dotted-key ``overrides`` applied.

    The first key must be one of :data:`AGENT_KEYS`; intermediate mappings are created as needed (e.g.
    ``policy_kwargs.cell_kwargs.mode`` when the entry has no ``cell_kwargs``). Whether a second-level key is a
    real hyperparameter or policy argument is checked by the agent loader
    (:func:`lnn_control.sb3.agents.load_agent_config`), which the caller runs on the result.
    """
    out = copy.deepcopy(dict(entry))
    for key, value in overrides.items():
        path = key.split(".")
        if path[0] not in AGENT_KEYS:
            hint = ""
            if len(path) == 1:
                hint = f" (hyperparameters and policy arguments are set as hyperparameters.{key} or "
                hint += f"policy_kwargs.{key})"
            raise RunError(f"--set {key}: unknown key {path[0]!r}; expected one of {list(AGENT_KEYS)}{hint}")
        node: Any = out
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise RunError(f"--set {key}: {where} is {child!r}, not a mapping of keys")
            node = child
        node[path[-1]] = value
    return out


def format_overrides(overrides: Mapping[str, Any]) -> str:
    """``{"a.b": 1, "c": [1, 2]}`` -> ``"a.b=1 c=[1, 2]"`` (for labels and logs)."""
    return " ".join(
        f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
        for k, v in overrides.items()
    )
