"""Actor steps from what users train: a LiquidPPO / LiquidSAC model (SB3) or a bare ``lnn_control.nn``
network.

Each builder returns the :class:`~lnn_control.export.step.ActorStep` and its
:class:`~lnn_control.export.meta.ActorMeta`; the formats (:mod:`lnn_control.export.api`) write both.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import nn

from lnn_control.checks import positive_number
from lnn_control.nn.ltc import LTCCell

from .meta import ActorMeta, cell_description, describe_actor
from .step import ActorStep

__all__ = ["actor_from_model", "actor_from_module"]


def actor_from_model(
    model: Any,
    vec_normalize: Any = None,
    *,
    nominal_dt: float | None = None,
    max_dt: float | None = None,
    obs_names: list[str] | None = None,
) -> tuple[ActorStep, ActorMeta]:
    """The deterministic actor of a ``LiquidPPO`` or ``LiquidSAC`` (or their policy) and its metadata.

    Args:
        model: ``LiquidPPO``/``LiquidActorCriticPolicy`` or ``LiquidSAC``/``LiquidSACPolicy`` with a Box
            observation and Box action space.
        vec_normalize: a ``VecNormalize`` (its obs statistics are baked in when it normalises observations),
            or None (then the model's own env is used if it is a ``VecNormalize``).
        nominal_dt: the control period (s); default the policy's ``default_dt`` (set from the training env).
        max_dt: LTC with ``max_step`` only: the longest dt the export is exact for; default 10 x nominal dt.
        obs_names: names of the (flattened) observation entries; default ``obs[i]``.
    """
    from gymnasium import spaces
    from stable_baselines3.common.preprocessing import is_image_space
    from stable_baselines3.common.torch_layers import FlattenExtractor

    from lnn_control.sb3.policies import LiquidActorCriticPolicy
    from lnn_control.sb3.sac_policies import LiquidSACPolicy

    policy = getattr(model, "policy", model)
    if isinstance(policy, LiquidSACPolicy):
        extractor, core, head = policy.export_parts()  # tanh(head(core(x))), rescaled: squash_output
    elif isinstance(policy, LiquidActorCriticPolicy):
        extractor, core = policy.pi_features_extractor, policy.recurrent_actor
        head = [policy.mlp_extractor.policy_net, policy.action_net]
    else:
        raise TypeError(
            "expected a LiquidPPO model or a LiquidSAC model (or their LiquidActorCriticPolicy / "
            f"LiquidSACPolicy), got {type(model).__name__}"
        )
    if vec_normalize is None and hasattr(model, "get_vec_normalize_env"):
        vec_normalize = model.get_vec_normalize_env()
    obs_space, act_space = policy.observation_space, policy.action_space
    if not isinstance(obs_space, spaces.Box) or is_image_space(obs_space, check_channels=False):
        raise ValueError(
            f"export supports flat (non-image) Box observation spaces, got {obs_space}; "
            "Dict and image observations are not exportable yet"
        )
    if not isinstance(act_space, spaces.Box):
        raise ValueError(f"export supports Box action spaces (continuous control), got {act_space}")
    obs_shape = tuple(int(s) for s in obs_space.shape)
    obs_dim = int(np.prod(obs_shape))
    extractor_module = None if isinstance(extractor, FlattenExtractor) else extractor

    mean = std = None
    clip_obs = math.inf
    normalization = None
    if vec_normalize is not None and getattr(vec_normalize, "norm_obs", False):
        rms = vec_normalize.obs_rms
        if isinstance(rms, dict):
            raise ValueError("VecNormalize of Dict observations is not exportable")
        mean = np.asarray(rms.mean, dtype=np.float64).reshape(-1)
        std = np.sqrt(np.asarray(rms.var, dtype=np.float64).reshape(-1) + vec_normalize.epsilon)
        if mean.size != obs_dim:
            raise ValueError(f"VecNormalize obs statistics have {mean.size} entries, the policy {obs_dim}")
        clip_obs = float(vec_normalize.clip_obs)
        normalization = {
            "kind": "VecNormalize",
            "epsilon": float(vec_normalize.epsilon),
            "clip_obs": clip_obs,
            "note": "applied inside the artefact: feed raw observations",
        }
    squash = bool(policy.squash_output)
    postprocess = "tanh_rescale" if squash else "clip"
    if nominal_dt is None:
        nominal_dt = float(policy.default_dt)
    nominal_dt = positive_number("nominal_dt", nominal_dt, unit=" of seconds")
    max_dt = _default_max_dt(core, nominal_dt, max_dt)
    actor = ActorStep(
        core,
        head,
        obs_shape,
        extractor=extractor_module,
        obs_mean=mean,
        obs_std=std,
        clip_obs=clip_obs,
        action_low=act_space.low,
        action_high=act_space.high,
        postprocess=postprocess,
        max_dt=max_dt,
        time_unit=_policy_time_unit(policy),
    )
    meta = describe_actor(
        actor, nominal_dt, obs_names, act_space.low, act_space.high, postprocess, normalization
    )
    return actor, meta


def actor_from_module(
    core: nn.Module,
    readout: nn.Module | None = None,
    *,
    nominal_dt: float,
    max_dt: float | None = None,
    obs_names: list[str] | None = None,
    action_low: np.ndarray | None = None,
    action_high: np.ndarray | None = None,
) -> tuple[ActorStep, ActorMeta]:
    """A bare ``lnn_control.nn`` CfC/LTC (or TorchRNN) with an optional readout (e.g. after ``nn.fit``).

    The step is ``readout(core(x))`` (the core's ``proj`` included), clipped to the bounds when given.
    """
    if nominal_dt is None:
        raise ValueError("nominal_dt (s) is required to export a bare network: the control period")
    nominal_dt = positive_number("nominal_dt", nominal_dt, unit=" of seconds")
    cell_description(core)  # raises for unsupported cores
    obs_dim = int(getattr(core, "input_size", 0) or core.rnn.input_size)
    head = [] if readout is None else [readout]
    bounded = action_low is not None or action_high is not None
    max_dt = _default_max_dt(core, nominal_dt, max_dt)
    actor = ActorStep(
        core,
        head,
        (obs_dim,),
        action_low=action_low,
        action_high=action_high,
        postprocess="clip" if bounded else "none",
        max_dt=max_dt,
    )
    low = actor.action_low.numpy()
    high = actor.action_high.numpy()
    meta = describe_actor(actor, nominal_dt, obs_names, low, high, actor.postprocess, None)
    return actor, meta


def _policy_time_unit(policy: Any) -> float:
    """The policy's time unit (s); a policy whose unit was never resolved (no env yet) has none to export."""
    unit = float(policy.time_unit)
    if not math.isfinite(unit):
        raise ValueError(
            "the policy's time_unit is not set (it comes from the training env's nominal period when "
            "LiquidPPO is built with an env); build or load the model with its env, or pass time_unit"
        )
    return unit


def _default_max_dt(core: nn.Module, nominal_dt: float, max_dt: float | None) -> float | None:
    has_max_step = any(isinstance(c, LTCCell) and c.max_step is not None for c in getattr(core, "cells", []))
    if not has_max_step:
        return None
    return 10.0 * nominal_dt if max_dt is None else positive_number("max_dt", max_dt, unit=" of seconds")
