"""Artefact files: atomic writes, SHA-256 hashes and the JSON sidecar (torch-free: numpy is not even needed).

Every exported artefact ``<prefix>.<ext>`` gets a sidecar ``<prefix>.<ext>.json`` that describes it (shapes,
dt units and nominal dt, observation layout, action bounds, cell, lnn-control version) and records the
SHA-256 of the artefact's bytes (and of companion files, e.g. the C header). Loading checks the hashes, so a
truncated, edited or swapped artefact is rejected before it drives a robot.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lnn_control.atomic import atomic_write_bytes

__all__ = [
    "SIDECAR_FORMAT",
    "SIDECAR_VERSION",
    "ArtifactError",
    "atomic_write_bytes",
    "load_sidecar",
    "sha256_file",
    "sidecar_path",
    "write_sidecar",
]

SIDECAR_FORMAT = "lnn-control-actor"
SIDECAR_VERSION = 1


class ArtifactError(ValueError):
    """An exported artefact or its sidecar is missing, corrupt, or does not match its description."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(artifact: str | Path) -> Path:
    """``<artefact>.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def write_sidecar(
    artifact: str | Path,
    artifact_format: str,
    meta: dict[str, Any],
    companions: list[Path] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the sidecar of ``artifact`` (after the artefact itself is complete) and return its path."""
    artifact = Path(artifact)
    record: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "artifact": artifact.name,
        "artifact_format": artifact_format,
        "sha256": sha256_file(artifact),
        "companions": {Path(p).name: sha256_file(p) for p in companions or []},
        **meta,
    }
    if extra:
        record[artifact_format] = extra
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    return atomic_write_bytes(sidecar_path(artifact), text.encode())


def load_sidecar(path: str | Path, artifact_format: str | None = None) -> tuple[dict[str, Any], Path]:
    """Read and verify a sidecar; ``path`` is the artefact or its ``.json`` sidecar.

    Returns the sidecar record and the artefact path. Raises ``ArtifactError`` naming the file and the
    problem for a missing file, unreadable JSON, a foreign format, a different artefact format than expected,
    or a hash mismatch of the artefact or a companion file.
    """
    path = Path(path)
    side = path if path.suffix == ".json" else sidecar_path(path)
    if not side.is_file():
        raise ArtifactError(f"no sidecar {side} (expected next to the artefact, written by the exporter)")
    try:
        record = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactError(f"sidecar {side} is not valid JSON: {err}") from err
    if not isinstance(record, dict) or record.get("format") != SIDECAR_FORMAT:
        raise ArtifactError(f"{side} is not an lnn-control sidecar (format {record.get('format')!r})")
    if record.get("format_version") != SIDECAR_VERSION:
        raise ArtifactError(
            f"{side} has format_version {record.get('format_version')!r}, "
            f"this runtime reads {SIDECAR_VERSION}"
        )
    if artifact_format is not None and record.get("artifact_format") != artifact_format:
        raise ArtifactError(
            f"{side} describes a {record.get('artifact_format')!r} artefact, expected {artifact_format!r}"
        )
    files = {str(record.get("artifact", "")): record.get("sha256"), **record.get("companions", {})}
    for name in files:
        if not name or Path(name).name != name or name in (".", ".."):
            raise ArtifactError(f"sidecar {side} names the file {name!r}; expected a file name next to it")
    artifact = side.with_name(str(record["artifact"]))
    for name, expected in files.items():
        file = side.with_name(name)
        if not file.is_file():
            raise ArtifactError(f"artefact {file} named by {side} does not exist")
        actual = sha256_file(file)
        if actual != expected:
            raise ArtifactError(
                f"artefact {file} does not match its sidecar {side}: SHA-256 {actual[:16]}..., expected "
                f"{str(expected)[:16]}... (file corrupt, truncated or replaced)"
            )
    return record, artifact
