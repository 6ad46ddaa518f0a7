"""Offscreen videos of a policy: a VecEnv wrapper that records env 0's frames, and GIF/MP4 writers.

Rendering needs an OpenGL context without a display: :func:`ensure_offscreen_gl` sets ``MUJOCO_GL=egl``
when neither ``MUJOCO_GL`` nor ``DISPLAY`` is set; it must run before MuJoCo is imported (the CLI calls it
first). Use ``MUJOCO_GL=osmesa`` for software rendering where EGL is missing. GIFs are written with Pillow;
MP4 needs ``imageio`` with ``imageio-ffmpeg``.
"""

from __future__ import annotations

import importlib.util
import io
import os
import sys
from pathlib import Path

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs, VecEnvStepReturn

from lnn_control.atomic import atomic_write_bytes
from lnn_control.extras import require
from lnn_control.runs.errors import RunError

__all__ = ["VIDEO_FORMATS", "FrameRecorder", "check_video_path", "ensure_offscreen_gl", "write_video"]

VIDEO_FORMATS = (".gif", ".mp4")


def ensure_offscreen_gl() -> None:
    """``MUJOCO_GL=egl`` unless a GL backend or a display is configured (call before importing mujoco)."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        os.environ["MUJOCO_GL"] = "egl"
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def check_video_path(path: str | Path) -> Path:
    """The path, if its format is writable here.

    Raises:
        RunError: not a .gif or .mp4 path, or no Pillow for a GIF.
        MissingExtraError: an MP4 without the ``video`` extra (imageio, imageio-ffmpeg).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise RunError(f"video file must end in {' or '.join(VIDEO_FORMATS)}, got {str(path)!r}")
    if suffix == ".mp4":  # checked before any frame is rendered
        for module in ("imageio", "imageio_ffmpeg"):
            require(module, extra="video", feature="MP4 video (or write a .gif)")
    if suffix == ".gif" and importlib.util.find_spec("PIL") is None:
        raise RunError("writing GIF needs Pillow: pip install pillow")
    return path


class FrameRecorder(VecEnvWrapper):
    """Keeps env 0's rendered frame (H, W, 3) uint8 after every reset and step, up to ``max_frames``.

    Wrap the env that renders (``render_mode="rgb_array"``) below any VecNormalize.
    """

    def __init__(self, venv: VecEnv, max_frames: int) -> None:
        super().__init__(venv)
        self.max_frames = int(max_frames)
        self.frames: list[np.ndarray] = []

    def _grab(self) -> None:
        if len(self.frames) < self.max_frames:
            frame = self.venv.get_images()[0]
            if frame is None:
                raise RunError("the env returned no image; was it made with render_mode='rgb_array'?")
            self.frames.append(np.asarray(frame, dtype=np.uint8))

    def reset(self) -> VecEnvObs:
        obs = self.venv.reset()
        self._grab()
        return obs

    def step_wait(self) -> VecEnvStepReturn:
        result = self.venv.step_wait()
        self._grab()
        return result


def write_video(frames: list[np.ndarray], path: str | Path, fps: float) -> Path:
    """Write frames (each (H, W, 3) uint8) as a GIF (Pillow) or MP4 (imageio-ffmpeg), atomically."""
    path = check_video_path(path)
    if not frames:
        raise RunError("no frames were recorded")
    fps = max(1.0, float(fps))
    if path.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        buf = io.BytesIO()
        images[0].save(
            buf, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        )
        return atomic_write_bytes(path, buf.getvalue())
    imageio = require("imageio.v2", extra="video", feature="MP4 video (or write a .gif)")

    tmp = path.with_name(f".{path.name}.tmp.mp4")
    try:
        imageio.mimwrite(tmp, frames, fps=fps, macro_block_size=1)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
