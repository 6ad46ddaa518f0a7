"""LiquidPPO's objective on a fixed batch, against an independent computation.

One rollout, then the policy is perturbed (so that probability ratios are away from 1 and both PPO clips are
active) and ``train()`` runs one epoch over the whole rollout as a single minibatch, with plain SGD. The test
recomputes, from the buffer and the policy's own ``evaluate_actions`` outputs:

- in float64 numpy: normalised advantages, ratios, the clipped surrogate, the (optionally clipped) value
  loss, the entropy loss, approx-KL and clip fraction, compared with what ``train()`` logs;
- in torch, with its own formulas: the gradient of ``pg + ent_coef * ent + vf_coef * vf``, clipped to
  ``max_grad_norm``, and the SGD step, compared with the parameters ``train()`` leaves;

for ``clip_range_vf`` None and set, and ``target_kl`` just above and just below the stopping threshold
(``approx_kl > 1.5 * target_kl``). Controls run ``train()`` with one part of the objective changed (a clip
dropped, a coefficient, no advantage normalisation, no gradient clipping) and show the check fails.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.sb3 import LiquidPPO
from lnn_control.sb3.diagnostic_envs import IrregularClockEnv

N_ENVS, N_STEPS, SEQ = 2, 32, 8
CLIP, ENT_COEF, VF_COEF, MAX_GRAD_NORM, LR = 0.1, 0.01, 0.7, 0.5, 0.05


def _model(
    clip_range_vf: float | None = None, target_kl: float | None = None, n_epochs: int = 1
) -> LiquidPPO:
    env = DummyVecEnv([lambda i=i: IrregularClockEnv(dt_offset=0.001 * i) for i in range(N_ENVS)])
    env.seed(0)
    model = LiquidPPO(
        "LiquidPolicy", env, n_steps=N_STEPS, seq_len=SEQ, batch_size=N_STEPS * N_ENVS, n_epochs=n_epochs,
        learning_rate=LR, clip_range=CLIP, clip_range_vf=clip_range_vf, target_kl=target_kl,
        ent_coef=ENT_COEF, vf_coef=VF_COEF, max_grad_norm=MAX_GRAD_NORM, seed=0,
        policy_kwargs=dict(units=8, optimizer_class=th.optim.SGD, optimizer_kwargs={}),
    )  # fmt: skip
    _, callback = model._setup_learn(N_STEPS * N_ENVS)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, N_STEPS)
    generator = th.Generator().manual_seed(5)
    with th.no_grad():  # move the policy away from the one that collected the rollout
        for p in model.policy.parameters():
            p.add_(0.15 * th.randn(p.shape, generator=generator))
    return model


def _forward(policy, batch) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    values, log_prob, entropy = policy.evaluate_actions(
        batch.observations, batch.actions, batch.states, batch.episode_starts, batch.dts
    )
    return values.flatten(), log_prob, entropy


def _reference_terms(model: LiquidPPO, clip_range_vf: float | None) -> dict[str, float]:
    """The logged loss terms of one epoch over the whole buffer, in float64 numpy."""
    batch = next(model.rollout_buffer.get(None))
    model.policy.set_training_mode(True)
    with th.no_grad():
        values, log_prob, entropy = (t.double().numpy() for t in _forward(model.policy, batch))
    old_log_prob = batch.old_log_prob.double().numpy()
    old_values = batch.old_values.double().numpy()
    returns = batch.returns.double().numpy()
    adv = batch.advantages.double().numpy()
    adv = (adv - adv.mean()) / (adv.std(ddof=1) + 1e-8)
    ratio = np.exp(log_prob - old_log_prob)
    pg = -np.mean(np.minimum(adv * ratio, adv * np.clip(ratio, 1 - CLIP, 1 + CLIP)))
    if clip_range_vf is not None:
        values = old_values + np.clip(values - old_values, -clip_range_vf, clip_range_vf)
    vf = np.mean((returns - values) ** 2)
    ent = -np.mean(entropy)
    return {
        "train/policy_gradient_loss": pg,
        "train/value_loss": vf,
        "train/entropy_loss": ent,
        "train/loss": pg + ENT_COEF * ent + VF_COEF * vf,
        "train/approx_kl": np.mean((ratio - 1) - np.log(ratio)),
        "train/clip_fraction": np.mean(np.abs(ratio - 1) > CLIP),
    }


def _reference_step(model: LiquidPPO, clip_range_vf: float | None) -> list[th.Tensor]:
    """Parameters after one SGD step on the PPO loss, computed on a copy of the policy."""
    policy = copy.deepcopy(model.policy)
    policy.set_training_mode(True)
    batch = next(model.rollout_buffer.get(None))
    values, log_prob, entropy = _forward(policy, batch)
    adv = batch.advantages
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ratio = (log_prob - batch.old_log_prob).exp()
    pg = -th.where(adv >= 0, th.minimum(ratio, th.full_like(ratio, 1 + CLIP)),
                   th.maximum(ratio, th.full_like(ratio, 1 - CLIP))).mul(adv).mean()  # fmt: skip
    if clip_range_vf is not None:
        low, high = batch.old_values - clip_range_vf, batch.old_values + clip_range_vf
        values = th.maximum(th.minimum(values, high), low)
    vf = ((batch.returns - values) ** 2).mean()
    loss = pg - ENT_COEF * entropy.mean() + VF_COEF * vf
    params = [p for p in policy.parameters() if p.requires_grad]
    grads = th.autograd.grad(loss, params, allow_unused=True)
    grads = [th.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]
    norm = th.sqrt(sum((g.double() ** 2).sum() for g in grads))
    scale = min(1.0, MAX_GRAD_NORM / (float(norm) + 1e-6))
    return [(p - LR * scale * g).detach() for p, g in zip(params, grads, strict=True)]


def _logged(model: LiquidPPO) -> dict[str, float]:
    return dict(model.logger.name_to_value)


def _mismatches(model: LiquidPPO, clip_range_vf: float | None) -> list[str]:
    """Run ``model.train()`` and list what differs from the reference (loss terms by name, "parameters")."""
    expected = _reference_terms(model, clip_range_vf)
    expected_params = _reference_step(model, clip_range_vf)
    model.train()
    logged = _logged(model)
    bad = [k for k, v in expected.items() if logged[k] != pytest.approx(v, rel=2e-4, abs=1e-6)]
    params = [p.detach() for p in model.policy.parameters() if p.requires_grad]
    if not all(th.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(params, expected_params, strict=True)):
        bad.append("parameters")
    return bad


@pytest.mark.parametrize("clip_range_vf", [None, 0.05])
def test_loss_terms_and_update_match_an_independent_computation(clip_range_vf: float | None) -> None:
    model = _model(clip_range_vf=clip_range_vf)
    expected = _reference_terms(model, clip_range_vf)
    assert _mismatches(model, clip_range_vf) == []
    # The batch exercises what is checked: some ratios clipped, not all.
    assert 0.05 < expected["train/clip_fraction"] < 0.95
    if clip_range_vf is not None:
        assert _logged(model)["train/clip_range_vf"] == clip_range_vf


@pytest.mark.parametrize(
    ("bug", "caught"),
    [
        ({"clip_range_vf": None}, {"train/value_loss", "parameters"}),  # value clip dropped
        ({"clip_range": lambda _: 10.0}, {"train/policy_gradient_loss", "parameters"}),  # no ratio clip
        ({"vf_coef": 0.5}, {"train/loss", "parameters"}),
        ({"ent_coef": 0.0}, {"train/loss", "parameters"}),
        ({"normalize_advantage": False}, {"train/policy_gradient_loss", "parameters"}),
        ({"max_grad_norm": 1e9}, {"parameters"}),
    ],
)
def test_the_check_fails_on_a_wrong_objective(bug: dict, caught: set[str]) -> None:
    """Control: train() with one part of the objective changed (the reference keeps the right one)."""
    model = _model(clip_range_vf=0.05)
    for name, value in bug.items():
        setattr(model, name, value)
    assert caught <= set(_mismatches(model, 0.05))


@pytest.mark.parametrize(("factor", "stops"), [(0.98, True), (1.02, False)])
def test_target_kl_stops_exactly_above_one_and_a_half_times_the_target(factor: float, stops: bool) -> None:
    """approx_kl > 1.5 * target_kl stops before the optimizer step; just below it, training goes on."""
    probe = _model()
    kl = _reference_terms(probe, None)["train/approx_kl"]
    assert kl > 1e-4
    target = factor * kl / 1.5
    model = _model(target_kl=target, n_epochs=2)
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.train()
    logged = _logged(model)
    changed = any(not th.equal(b, p) for b, p in zip(before, model.policy.parameters(), strict=True))
    assert changed is not stops
    assert logged["train/n_updates"] == (1 if stops else 2)
    if stops:  # the only minibatch seen is the first one: its KL is the reference
        assert logged["train/approx_kl"] == pytest.approx(kl, rel=2e-4)
    # Control: a threshold at 1.0 * target_kl (a plausible bug) would stop in both cases here.
    assert kl > target
