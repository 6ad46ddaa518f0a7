"""Checkpoints: one self-contained, atomically written zip per checkpoint.

A checkpoint is Stable-Baselines3's model zip (policy and optimizer state, loadable with
``LiquidPPO.load(path)``; SB3 reads the tensors with ``torch.load(weights_only=True)``) with three entries
added under ``lnn_control/``, which SB3's loader ignores:

- ``lnn_control/checkpoint.json``: timesteps, training wall time, best evaluation so far, next evaluation;
- ``lnn_control/rng.json``: Python/NumPy/torch RNG states (:mod:`lnn_control.runs.rng`);
- ``lnn_control/vecnormalize.npz``: VecNormalize statistics, when the agent normalises (read without pickle).

The bytes are assembled in memory and written with :func:`lnn_control.atomic.atomic_write_bytes`, so
``last.zip`` is always either the previous or the new complete checkpoint, never a torn mixture.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from lnn_control.atomic import atomic_write_bytes
from lnn_control.runs.errors import RunError
from lnn_control.runs.normalization import normalization_from_npz, normalization_to_npz
from lnn_control.runs.rng import capture_rng

__all__ = [
    "CheckpointExtras",
    "algorithm_class",
    "check_spaces",
    "load_model",
    "read_extras",
    "save_checkpoint",
]

_INFO = "lnn_control/checkpoint.json"
_RNG = "lnn_control/rng.json"
_NORM = "lnn_control/vecnormalize.npz"


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    """The SB3 class of an agent's ``algorithm`` name (as in ``agents/*.yaml``)."""
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import PPO, SAC

    from lnn_control.sb3 import LiquidPPO, LiquidSAC

    classes: dict[str, type[BaseAlgorithm]] = {
        "PPO": PPO,
        "RecurrentPPO": RecurrentPPO,
        "LiquidPPO": LiquidPPO,
        "SAC": SAC,
        "LiquidSAC": LiquidSAC,
    }
    if name not in classes:
        raise RunError(
            f"unknown algorithm {name!r} in the run's agent entry; expected one of {sorted(classes)}"
        )
    return classes[name]


def save_checkpoint(path: str | Path, model: BaseAlgorithm, info: dict[str, Any]) -> Path:
    """Write ``model`` (with its VecNormalize statistics and the global RNG states) and ``info``."""
    buf = io.BytesIO()
    model.save(buf)
    norm = model.get_vec_normalize_env()
    with zipfile.ZipFile(buf, mode="a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_INFO, json.dumps(info, indent=2))
        archive.writestr(_RNG, json.dumps(capture_rng()))
        if norm is not None:
            archive.writestr(_NORM, normalization_to_npz(norm))
    return atomic_write_bytes(path, buf.getvalue())


@dataclass(frozen=True)
class CheckpointExtras:
    """What a checkpoint holds besides the SB3 model."""

    path: Path
    info: dict[str, Any]
    rng: dict[str, Any] | None
    normalization: bytes | None

    def wrap(self, venv: VecEnv, *, training: bool) -> VecEnv:
        """``venv`` with the checkpoint's VecNormalize (statistics frozen unless ``training``), or as is."""
        if self.normalization is None:
            return venv
        return normalization_from_npz(self.normalization, venv, training=training, where=str(self.path))


def _corrupt(path: Path, exc: BaseException) -> RunError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return RunError(f"checkpoint {path} is unreadable (corrupt or not an lnn-control checkpoint): {detail}")


def read_extras(path: str | Path) -> CheckpointExtras:
    """The lnn-control entries of a checkpoint; RunError for a missing, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"checkpoint {path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "data" not in names or _INFO not in names:
                raise ValueError(f"missing {'data' if 'data' not in names else _INFO}")
            info = json.loads(archive.read(_INFO))
            rng = json.loads(archive.read(_RNG)) if _RNG in names else None
            norm = archive.read(_NORM) if _NORM in names else None
    except (OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise _corrupt(path, exc) from exc
    if not isinstance(info, dict):
        raise _corrupt(path, ValueError(f"{_INFO} is not a mapping"))
    return CheckpointExtras(path=path, info=info, rng=rng, normalization=norm)


def load_model(path: str | Path, algorithm: str, env: VecEnv | None, device: str = "auto") -> BaseAlgorithm:
    """Load the SB3 model of a checkpoint onto ``env`` (whose spaces must match the model's).

    Raises:
        RunError: for a corrupt file, or an env whose observation/action space differs from the model's.
    """
    path = Path(path)
    cls = algorithm_class(algorithm)
    if env is not None:
        check_spaces(path, env)
    try:
        return cls.load(path, env=env, device=device)
    except Exception as exc:  # any failure to load a user-supplied file means it is unusable
        raise _corrupt(path, exc) from exc


def check_spaces(path: str | Path, env: VecEnv) -> None:
    """RunError unless ``env`` has the observation and action spaces of the checkpoint's policy."""
    path = Path(path)
    from stable_baselines3.common.save_util import json_to_data

    try:
        with zipfile.ZipFile(path) as archive:
            data = json_to_data(archive.read("data").decode())
    except Exception as exc:
        raise _corrupt(path, exc) from exc
    for name in ("observation_space", "action_space"):
        stored, given = data.get(name), getattr(env, name)
        if stored is None:
            raise _corrupt(path, ValueError(f"no {name}"))
        base = env.venv if isinstance(env, VecNormalize) else env
        if stored.shape != given.shape or type(stored) is not type(given):
            raise RunError(
                f"the policy of {path} was trained with {name.replace('_', ' ')} {stored}, but this task "
                f"has {getattr(base, name)}; evaluate it on a task with the same observations and actions"
            )
