"""``export_policy`` and the per-format entry points (the Python API under ``lnn-control export``)."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from lnn_control.extras import require

from .convert import actor_from_model, actor_from_module
from .formats import ONNX_OPSET, write_c, write_onnx, write_torchscript
from .meta import ActorMeta
from .pt2 import AOTI_SUFFIX, PT2_SUFFIX, check_aoti_toolchain, check_torch_export, write_aoti, write_pt2
from .step import ActorStep

__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "build_actor",
    "check_formats",
    "export_c",
    "export_onnx",
    "export_policy",
    "export_pt2",
    "export_torchscript",
]

FORMATS = ("torchscript", "onnx", "c", "pt2", "aoti")
# What export_policy and ``lnn-control export`` write by default (aoti compiles C++ for 20-70 s: ask for it).
DEFAULT_FORMATS = ("torchscript", "onnx", "c")


def _load_vec_normalize(vec_normalize: Any) -> Any:
    """A VecNormalize, loaded from a path (``VecNormalize.save`` pickle) when given one.

    SB3 stores VecNormalize as a pickle, so only pass files you trust; run directories of the
    ``lnn-control`` command keep the statistics as arrays inside the checkpoint and need no pickle.
    """
    if vec_normalize is None or not isinstance(vec_normalize, (str, Path)):
        return vec_normalize
    from stable_baselines3.common.vec_env import VecNormalize

    path = Path(vec_normalize)
    if not path.is_file():
        raise FileNotFoundError(f"vec_normalize file {path} does not exist")
    with open(path, "rb") as f:
        loaded = pickle.load(f)  # what VecNormalize.load does (without re-attaching an env)
    if not isinstance(loaded, VecNormalize):
        raise ValueError(f"{path} does not hold a VecNormalize (got {type(loaded).__name__})")
    return loaded


def _load_model(model_or_path: Any) -> Any:
    if not isinstance(model_or_path, (str, Path)):
        return model_or_path
    from lnn_control.sb3 import LiquidPPO, LiquidSAC

    path = Path(model_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist (expected a LiquidPPO .zip)")
    algorithm = LiquidSAC if _saved_policy_module(path) == "lnn_control.sb3.sac_policies" else LiquidPPO
    return algorithm.load(path, device="cpu")


def _saved_policy_module(path: Path) -> str | None:
    """The module of the policy class recorded in an SB3 model zip (to pick LiquidPPO or LiquidSAC)."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            entry = json.loads(archive.read("data")).get("policy_class", {})
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # let the loader report what is wrong with the file
    return entry.get("__module__") if isinstance(entry, dict) else None


def build_actor(
    model_or_path: Any,
    vec_normalize: Any = None,
    *,
    readout: nn.Module | None = None,
    nominal_dt: float | None = None,
    max_dt: float | None = None,
    obs_names: Sequence[str] | None = None,
    action_low: np.ndarray | None = None,
    action_high: np.ndarray | None = None,
) -> tuple[ActorStep, ActorMeta]:
    """The deterministic actor step and its metadata, from any accepted model.

    Args:
        model_or_path: a ``LiquidPPO`` (or its policy), a path to a saved ``LiquidPPO`` .zip, or a bare
            ``lnn_control.nn`` ``CfC``/``LTC`` (or ``TorchRNN``) used with ``readout``.
        vec_normalize: None, a ``VecNormalize`` or a path to one saved with ``VecNormalize.save``.
        readout: bare networks only: module applied to the network output (e.g. the ``nn.Linear`` trained
            with ``lnn_control.nn.fit``); None for the network output itself.
        nominal_dt: control period (s). Required for bare networks; for a LiquidPPO the default is the
            policy's ``default_dt`` (the training env's period).
        max_dt: LTC with ``max_step`` only: the largest dt (s) the export is exact for (default 10 x nominal).
        obs_names: names of the observation entries (default ``obs[i]``).
        action_low, action_high: bare networks only: clip bounds of the output.
    """
    names = None if obs_names is None else list(obs_names)
    model = _load_model(model_or_path)
    from lnn_control.nn.rnn import LiquidRNN

    if isinstance(model, LiquidRNN) or getattr(model, "kind", None) in ("lstm", "gru"):
        if vec_normalize is not None:
            raise ValueError("vec_normalize applies to LiquidPPO models, not to a bare network")
        return actor_from_module(
            model,
            readout,
            nominal_dt=nominal_dt,  # type: ignore[arg-type]
            max_dt=max_dt,
            obs_names=names,
            action_low=action_low,
            action_high=action_high,
        )
    if readout is not None or action_low is not None or action_high is not None:
        raise ValueError("readout/action_low/action_high apply to bare networks; a policy has its own")
    return actor_from_model(
        model, _load_vec_normalize(vec_normalize), nominal_dt=nominal_dt, max_dt=max_dt, obs_names=names
    )


def check_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    """The formats as a tuple, after checking that each is known and that its tools are installed.

    Called before any work, so that a missing extra fails at once rather than after the first artefacts.

    Raises:
        ValueError: an unknown format, or none.
        MissingExtraError: "onnx" without the ``export`` extra.
        ToolchainError: "pt2"/"aoti" without torch.export; "aoti" without AOTInductor or a C++ compiler.
    """
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {list(formats)}")
    if "onnx" in formats:
        require("onnx", extra="export", feature="ONNX export")
    if "pt2" in formats:
        check_torch_export()
    if "aoti" in formats:
        check_aoti_toolchain()
    return formats


def export_policy(
    model_or_path: Any,
    out_dir: str | Path,
    formats: Sequence[str] = DEFAULT_FORMATS,
    vec_normalize: Any = None,
    prefix: str = "policy",
    *,
    opset: int = ONNX_OPSET,
    **actor_options: Any,
) -> dict[str, Path]:
    """Export the deterministic actor in ``formats`` into ``out_dir``.

    Files (each with a JSON sidecar ``<file>.json`` holding shapes, dt, bounds, cell and SHA-256):
    ``<prefix>.pt`` (TorchScript), ``<prefix>.onnx``, ``<prefix>.c`` + ``<prefix>.h``, ``<prefix>.pt2``
    (torch.export ExportedProgram), ``<prefix>.aoti.pt2`` (AOTInductor package for C++ libtorch).

    Args:
        model_or_path, vec_normalize: see :func:`build_actor`.
        out_dir: directory (created if missing).
        formats: any of :data:`FORMATS`: ``"torchscript"``, ``"onnx"``, ``"c"``, ``"pt2"``, ``"aoti"``
            (default :data:`DEFAULT_FORMATS`, the first three).
        prefix: file stem, and the C symbol prefix (a C identifier).
        opset: ONNX opset (>= 17).
        actor_options: ``nominal_dt``, ``max_dt``, ``obs_names``, ``readout``, ``action_low/high`` of
            :func:`build_actor`.
    Returns:
        paths by role: ``torchscript``, ``torchscript_sidecar``, ``onnx``, ``onnx_sidecar``, ``c_source``,
        ``c_header``, ``c_sidecar``, ``pt2``, ``pt2_sidecar``, ``aoti``, ``aoti_sidecar`` (those of the
        requested formats).
    Raises:
        MissingExtraError: "onnx" without the ``export`` extra (checked before anything is written).
        ToolchainError: "aoti" without AOTInductor or a C++ compiler (likewise).
    """
    formats = check_formats(formats)
    if not str(prefix).isidentifier():
        raise ValueError(f"prefix must be an identifier (letters, digits, _), got {prefix!r}")
    actor, meta = build_actor(model_or_path, vec_normalize, **actor_options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if "torchscript" in formats:
        paths.update(write_torchscript(actor, meta, out_dir / f"{prefix}.pt"))
    if "onnx" in formats:
        paths.update(write_onnx(actor, meta, out_dir / f"{prefix}.onnx", opset=opset))
    if "c" in formats:
        paths.update(write_c(actor, meta, out_dir, prefix))
    if "pt2" in formats:
        paths.update(write_pt2(actor, meta, out_dir / f"{prefix}{PT2_SUFFIX}"))
    if "aoti" in formats:
        paths.update(write_aoti(actor, meta, out_dir / f"{prefix}{AOTI_SUFFIX}"))
    return paths


def export_pt2(
    model_or_path: Any,
    out_dir: str | Path,
    vec_normalize: Any = None,
    prefix: str = "policy",
    *,
    aoti: bool = False,
    **options: Any,
) -> dict[str, Path]:
    """``<prefix>.pt2`` (ExportedProgram), with ``aoti`` also ``<prefix>.aoti.pt2`` (see export_policy)."""
    formats = ("pt2", "aoti") if aoti else ("pt2",)
    return export_policy(model_or_path, out_dir, formats, vec_normalize, prefix, **options)


def export_torchscript(
    model_or_path: Any, out_dir: str | Path, vec_normalize: Any = None, prefix: str = "policy", **options: Any
) -> dict[str, Path]:
    """TorchScript only: ``<prefix>.pt`` and its sidecar (see :func:`export_policy`)."""
    return export_policy(model_or_path, out_dir, ("torchscript",), vec_normalize, prefix, **options)


def export_onnx(
    model_or_path: Any, out_dir: str | Path, vec_normalize: Any = None, prefix: str = "policy", **options: Any
) -> dict[str, Path]:
    """ONNX only: ``<prefix>.onnx`` and its sidecar (see :func:`export_policy`)."""
    return export_policy(model_or_path, out_dir, ("onnx",), vec_normalize, prefix, **options)


def export_c(
    model_or_path: Any, out_dir: str | Path, vec_normalize: Any = None, prefix: str = "policy", **options: Any
) -> dict[str, Path]:
    """C only: ``<prefix>.c``, ``<prefix>.h`` and the sidecar (see :func:`export_policy`)."""
    return export_policy(model_or_path, out_dir, ("c",), vec_normalize, prefix, **options)
