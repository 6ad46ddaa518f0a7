"""Global random-number generator states (Python ``random``, NumPy's legacy global generator, torch CPU
and CUDA) as a JSON-serialisable dict, so that a resumed run draws the numbers the uninterrupted run would."""

from __future__ import annotations

import base64
import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng", "restore_rng"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def capture_rng() -> dict[str, Any]:
    """The current global RNG states (JSON types only)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": _b64(np.asarray(keys, dtype="<u4").tobytes()),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": _b64(torch.get_rng_state().numpy().tobytes()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the global RNG states from :func:`capture_rng`'s dict (CUDA states only when CUDA is there).

    Raises:
        ValueError: for a malformed state.
    """
    try:
        py = state["python"]
        random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss"]))
        npy = state["numpy"]
        keys = np.frombuffer(_unb64(npy["keys"]), dtype="<u4").astype(np.uint32)
        np.random.set_state(
            (str(npy["name"]), keys, int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"]))
        )
        torch_state = np.frombuffer(_unb64(state["torch"]), dtype=np.uint8).copy()
        torch.set_rng_state(torch.from_numpy(torch_state))
        if "cuda" in state and torch.cuda.is_available():
            cuda = [torch.from_numpy(np.frombuffer(_unb64(s), dtype=np.uint8).copy()) for s in state["cuda"]]
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"malformed RNG state ({type(exc).__name__}: {exc})") from exc
