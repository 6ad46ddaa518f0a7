"""Normalisation of a run's environments: evaluation VecEnvs with frozen normalisation, and VecNormalize
statistics as plain arrays (stored in checkpoints as ``.npz``, read without pickle).

SB3's ``VecNormalize`` and :class:`~lnn_control.sim.torch_normalize.TorchVecNormalize` (the same on the
device of an env that steps on torch tensors) are interchangeable here: the statistics of either freeze onto,
save from and load into either, the kind chosen by the env wrapped (torch-stepping or numpy).

The environments themselves come from :func:`lnn_control.sim.make_vec_env` (``check_nan=True``: a NaN or inf
from the simulator stops training with a clear error instead of poisoning the policy)."""

from __future__ import annotations

import copy
import io
from typing import Any

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from lnn_control.runs.errors import RunError
from lnn_control.sim.torch_normalize import TorchVecNormalize
from lnn_control.sim.torch_vec_env import supports_torch_steps

__all__ = [
    "frozen_normalization",
    "normalization_from_npz",
    "normalization_to_npz",
    "sync_normalization",
]


Normalizer = VecNormalize | TorchVecNormalize


def _on_device_if_torch(norm: VecNormalize) -> Normalizer:
    """``norm`` as a TorchVecNormalize when the env it wraps steps on torch tensors (kept on its device)."""
    return TorchVecNormalize.from_sb3(norm) if supports_torch_steps(norm.venv) else norm


# ------------------------------------------------------------------------------------------ VecNormalize
def frozen_normalization(train_env: VecEnv | None, venv: VecEnv) -> VecEnv:
    """``venv`` wrapped like ``train_env`` normalises observations, with its statistics frozen
    (``training=False``, raw rewards): a TorchVecNormalize when ``venv`` steps on torch tensors, else a
    VecNormalize. Returns ``venv`` itself when ``train_env`` does not normalise."""
    if isinstance(train_env, TorchVecNormalize):
        train_env = train_env.to_sb3()  # a host copy of its settings and statistics
    if not isinstance(train_env, VecNormalize):
        return venv
    frozen = VecNormalize(
        venv,
        training=False,
        norm_obs=train_env.norm_obs,
        norm_reward=False,
        clip_obs=train_env.clip_obs,
        clip_reward=train_env.clip_reward,
        gamma=train_env.gamma,
        epsilon=train_env.epsilon,
        norm_obs_keys=train_env.norm_obs_keys,
    )
    sync_normalization(train_env, frozen)
    return _on_device_if_torch(frozen)


def sync_normalization(train_env: VecEnv, eval_env: VecEnv) -> None:
    """Copy the observation statistics of ``train_env`` into ``eval_env`` (each a VecNormalize or a
    TorchVecNormalize; otherwise a no-op)."""
    kinds = (VecNormalize, TorchVecNormalize)
    if isinstance(train_env, kinds) and isinstance(eval_env, kinds) and train_env.norm_obs:
        eval_env.obs_rms = copy.deepcopy(train_env.obs_rms)


def _rms_arrays(prefix: str, rms: RunningMeanStd) -> dict[str, np.ndarray]:
    return {f"{prefix}.mean": rms.mean, f"{prefix}.var": rms.var, f"{prefix}.count": np.asarray(rms.count)}


def _rms_from(arrays: Any, prefix: str) -> RunningMeanStd:
    mean = np.asarray(arrays[f"{prefix}.mean"], dtype=np.float64)
    rms = RunningMeanStd(shape=mean.shape)
    rms.mean = mean
    rms.var = np.asarray(arrays[f"{prefix}.var"], dtype=np.float64)
    rms.count = float(arrays[f"{prefix}.count"])
    return rms


def normalization_to_npz(env: Normalizer) -> bytes:
    """The statistics and settings of a VecNormalize (or TorchVecNormalize) as ``.npz`` bytes (no pickle)."""
    arrays: dict[str, np.ndarray] = {
        "norm_obs": np.asarray(env.norm_obs),
        "norm_reward": np.asarray(env.norm_reward),
        "clip_obs": np.asarray(env.clip_obs, dtype=np.float64),
        "clip_reward": np.asarray(env.clip_reward, dtype=np.float64),
        "gamma": np.asarray(env.gamma, dtype=np.float64),
        "epsilon": np.asarray(env.epsilon, dtype=np.float64),
    }
    if env.norm_obs_keys is not None:
        arrays["norm_obs_keys"] = np.asarray(list(env.norm_obs_keys), dtype=str)
    if env.norm_obs:
        if isinstance(env.obs_rms, dict):
            for key, rms in env.obs_rms.items():
                arrays.update(_rms_arrays(f"obs/{key}", rms))
        else:
            arrays.update(_rms_arrays("obs", env.obs_rms))
    arrays.update(_rms_arrays("ret", env.ret_rms))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def normalization_from_npz(data: bytes, venv: VecEnv, *, training: bool, where: str) -> Normalizer:
    """A VecNormalize over ``venv`` with the statistics of :func:`normalization_to_npz` bytes (a
    TorchVecNormalize, on its device, when ``venv`` steps on torch tensors).

    ``training=False`` freezes the statistics and leaves rewards raw (evaluation).
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            keys = [str(k) for k in arrays["norm_obs_keys"]] if "norm_obs_keys" in arrays.files else None
            norm_obs = bool(arrays["norm_obs"])
            env = VecNormalize(
                venv,
                training=training,
                norm_obs=norm_obs,
                norm_reward=bool(arrays["norm_reward"]) and training,
                clip_obs=float(arrays["clip_obs"]),
                clip_reward=float(arrays["clip_reward"]),
                gamma=float(arrays["gamma"]),
                epsilon=float(arrays["epsilon"]),
                norm_obs_keys=keys,
            )
            if norm_obs:
                if isinstance(env.obs_rms, dict):
                    env.obs_rms = {key: _rms_from(arrays, f"obs/{key}") for key in env.obs_rms}
                else:
                    env.obs_rms = _rms_from(arrays, "obs")
            env.ret_rms = _rms_from(arrays, "ret")
    except (OSError, ValueError, KeyError) as exc:
        raise RunError(f"{where}: unreadable VecNormalize statistics ({exc})") from exc
    _check_shapes(env, where)
    return _on_device_if_torch(env)


def _check_shapes(env: VecNormalize, where: str) -> None:
    if not env.norm_obs:
        return
    pairs = (
        [(k, r, env.observation_space[k]) for k, r in env.obs_rms.items()]
        if isinstance(env.obs_rms, dict)
        else [("obs", env.obs_rms, env.observation_space)]
    )
    for name, rms, space in pairs:
        if tuple(rms.mean.shape) != tuple(space.shape):
            raise RunError(
                f"{where}: VecNormalize statistics of {name} have shape {tuple(rms.mean.shape)}, "
                f"but the env's observations have shape {tuple(space.shape)}"
            )
