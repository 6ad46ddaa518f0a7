"""Exporting a run's controller: the checkpoint's policy with its frozen VecNormalize statistics, handed to
:func:`lnn_control.export.export_policy` (TorchScript, ONNX, C, torch.export .pt2, AOTInductor; each with a
JSON sidecar)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lnn_control.runs.errors import RunError
from lnn_control.runs.playback import load_policy

__all__ = ["DEFAULT_EXPORT_FORMATS", "EXPORT_FORMATS", "export_run"]

# As lnn_control.export.FORMATS / DEFAULT_FORMATS (repeated: the CLI parser must not import torch).
EXPORT_FORMATS = ("torchscript", "onnx", "c", "pt2", "aoti")
DEFAULT_EXPORT_FORMATS = ("torchscript", "onnx", "c")


def export_run(
    run_dir: str | Path,
    formats: Sequence[str] = DEFAULT_EXPORT_FORMATS,
    *,
    out: str | Path | None = None,
    checkpoint: str = "best",
    prefix: str = "policy",
) -> dict[str, Path]:
    """Export the policy of ``run_dir``'s ``checkpoint`` into ``out`` (default ``<run>/export``).

    Returns:
        the written files by role (see :func:`lnn_control.export.export_policy`).
    Raises:
        RunError: bad run/checkpoint, unknown format, a policy the exporter does not support, or no C++
            compiler for "aoti".
        MissingExtraError: "onnx" without the ``export`` extra (before the checkpoint is loaded).
    """
    formats = [formats] if isinstance(formats, str) else list(formats)
    bad = [f for f in formats if f not in EXPORT_FORMATS]
    if bad or not formats:
        raise RunError(f"export formats must be among {list(EXPORT_FORMATS)}, got {formats}")
    from lnn_control.export import ToolchainError, check_formats, export_policy

    try:
        check_formats(formats)  # a missing extra or compiler fails before the checkpoint is loaded
    except ToolchainError as exc:
        raise RunError(str(exc)) from exc
    policy = load_policy(run_dir, checkpoint=checkpoint, n_envs=1)
    try:
        target = Path(out) if out is not None else Path(run_dir) / "export"
        return export_policy(
            policy.model,
            target,
            formats=formats,
            vec_normalize=policy.model.get_vec_normalize_env(),
            prefix=prefix,
        )
    except (TypeError, ValueError, ToolchainError) as exc:
        raise RunError(f"cannot export {policy.checkpoint}: {exc}") from exc
    finally:
        policy.close()
