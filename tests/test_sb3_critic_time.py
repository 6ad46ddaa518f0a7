"""The critic arrangement (gradient flow into the core), the cores' time unit, and the dt predict needs."""

import io
import json
import zipfile

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.sb3 import LiquidPPO
from lnn_control.sb3.diagnostic_envs import CueHoldEnv, IrregularClockEnv


def _model(env_fn=CueHoldEnv, **policy_kwargs) -> LiquidPPO:
    return LiquidPPO(
        "LiquidPolicy", DummyVecEnv([env_fn, env_fn]), n_steps=16, seq_len=8, batch_size=16, seed=0,
        policy_kwargs=dict(units=8, **policy_kwargs),
    )  # fmt: skip


def _core_grads_of_value_loss(model: LiquidPPO) -> dict[str, th.Tensor]:
    """Gradient of the value head's output alone w.r.t. the actor core's parameters, on a rollout chunk."""
    model.learn(16)  # one rollout in the buffer
    batch = next(iter(model.rollout_buffer.get(16)))
    policy = model.policy
    policy.zero_grad(set_to_none=True)
    values, _, _ = policy.evaluate_actions(
        batch.observations, batch.actions, batch.states, batch.episode_starts, batch.dts
    )
    ((values.flatten() - batch.returns) ** 2).mean().backward()
    return {
        name: (th.zeros_like(p) if p.grad is None else p.grad)
        for name, p in policy.recurrent_actor.named_parameters()
        if p.requires_grad
    }


@pytest.mark.parametrize("cell", ["cfc", "ltc", "lstm"])
def test_detached_critic_gives_the_core_no_value_gradient(cell: str) -> None:
    grads = _core_grads_of_value_loss(_model(cell=cell, critic="detached"))
    assert grads and all(float(g.abs().max()) == 0.0 for g in grads.values())


@pytest.mark.parametrize("critic", ["shared"])
def test_shared_critic_trains_the_core_with_the_value_loss(critic: str) -> None:
    """Control for the test above: the same measurement sees the gradient where it does flow."""
    grads = _core_grads_of_value_loss(_model(cell="cfc", critic=critic))
    assert max(float(g.abs().max()) for g in grads.values()) > 0.0


def test_separate_critic_has_its_own_core_and_state() -> None:
    model = _model(critic="separate")
    policy = model.policy
    assert policy.recurrent_critic is not None
    assert policy.state_shape[1] == 2 * policy.actor_state_size
    grads = _core_grads_of_value_loss(model)
    assert all(float(g.abs().max()) == 0.0 for g in grads.values())
    assert any(
        p.grad is not None and float(p.grad.abs().max()) > 0 for p in policy.recurrent_critic.parameters()
    )


def test_detached_and_shared_compute_the_same_forward() -> None:
    """Detaching changes gradients only: values, log-probs and states are those of the shared core."""
    detached, shared = _model(critic="detached"), _model(critic="shared")
    shared.policy.load_state_dict(detached.policy.state_dict())
    obs = th.randn(6, 2)
    state = detached.policy.initial_state(6)
    starts, dts = th.zeros(6, dtype=th.bool), th.full((6,), 0.02)
    with th.no_grad():
        a = detached.policy(obs, state, starts, dts, deterministic=True)
        b = shared.policy(obs, state, starts, dts, deterministic=True)
    for x, y in zip(a, b, strict=True):
        assert th.equal(x, y)


def test_shared_recurrence_is_deprecated_and_mapped() -> None:
    with pytest.warns(FutureWarning, match="critic='shared'"):
        assert _model(shared_recurrence=True).policy.critic == "shared"
    with pytest.warns(FutureWarning, match="critic='separate'"):
        assert _model(shared_recurrence=False).policy.critic == "separate"
    assert _model().policy.critic == "detached"


# ------------------------------------------------------------------------------------------- time unit
def test_time_unit_is_the_training_envs_nominal_period() -> None:
    model = _model(env_fn=lambda: CueHoldEnv(dt=0.02))
    assert float(model.policy.time_unit) == pytest.approx(0.02)
    model.set_env(DummyVecEnv([lambda: CueHoldEnv(dt=0.5)] * 2))  # a later env does not move it
    assert float(model.policy.time_unit) == pytest.approx(0.02)
    assert float(model.policy.default_dt) == pytest.approx(0.5)


def test_cores_integrate_dt_in_time_units() -> None:
    """A policy with time unit u given dt = k * u acts as the same weights with time unit 1 given dt = k."""
    scaled = _model(cell="ltc", time_unit=0.02)
    plain = _model(cell="ltc", time_unit=1.0)
    plain.policy.load_state_dict({**scaled.policy.state_dict(), "time_unit": th.tensor(1.0)})
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (10, 2)).astype(np.float32)
    steps = rng.uniform(0.2, 3.0, 10)
    state_a = state_b = None
    for t in range(10):
        a, state_a = scaled.predict(obs[t], state_a, deterministic=True, dt=0.02 * steps[t])
        b, state_b = plain.predict(obs[t], state_b, deterministic=True, dt=steps[t])
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state_a, state_b, rtol=1e-5, atol=1e-6)
    # ...and the time unit matters: the same dt in seconds gives another state.
    _, other = plain.predict(obs[0], None, deterministic=True, dt=0.02 * steps[0])
    _, same = scaled.predict(obs[0], None, deterministic=True, dt=0.02 * steps[0])
    assert not np.allclose(other, same, atol=1e-4)


def test_time_unit_and_critic_survive_save_and_load(tmp_path) -> None:
    model = _model(env_fn=lambda: CueHoldEnv(dt=0.03), critic="separate")
    model.save(tmp_path / "m.zip")
    loaded = LiquidPPO.load(tmp_path / "m.zip")
    assert loaded.policy.critic == "separate"
    assert float(loaded.policy.time_unit) == pytest.approx(0.03)


def _as_old_checkpoint(path, out) -> None:
    """Rewrite a checkpoint as the previous release wrote it: ``shared_recurrence`` instead of ``critic`` and
    no ``time_unit``/``irregular_timing`` buffers (cores then integrated dt in seconds)."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            payload = src.read(item.filename)
            if item.filename == "data":
                data = json.loads(payload)
                kwargs = data["policy_kwargs"]
                kwargs.pop("critic", None)
                kwargs.pop("time_unit", None)
                kwargs["shared_recurrence"] = True
                data["policy_kwargs"] = kwargs
                payload = json.dumps(data).encode()
            elif item.filename == "policy.pth":
                weights = th.load(io.BytesIO(payload), weights_only=True)
                for key in ("time_unit", "irregular_timing"):
                    weights.pop(key)
                buffer = io.BytesIO()
                th.save(weights, buffer)
                payload = buffer.getvalue()
            dst.writestr(item, payload)


def test_old_checkpoints_load_with_their_behaviour(tmp_path) -> None:
    model = _model(env_fn=lambda: CueHoldEnv(dt=0.02), critic="shared", time_unit=1.0)
    model.save(tmp_path / "new.zip")
    _as_old_checkpoint(tmp_path / "new.zip", tmp_path / "old.zip")
    with pytest.warns(FutureWarning, match="shared_recurrence is deprecated"):
        old = LiquidPPO.load(tmp_path / "old.zip")
    assert old.policy.critic == "shared"
    assert float(old.policy.time_unit) == 1.0  # seconds, as it was trained
    obs = np.array([1.0, 1.0], dtype=np.float32)
    a, _ = model.predict(obs, deterministic=True, dt=0.02)
    b, _ = old.predict(obs, deterministic=True, dt=0.02)
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------- predict needs dt
def test_policy_trained_on_irregular_timing_refuses_predict_without_dt() -> None:
    model = _model(env_fn=IrregularClockEnv)
    assert not bool(model.policy.irregular_timing)
    model.learn(16)
    assert bool(model.policy.irregular_timing)
    obs = np.zeros((2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"pass dt=info\['dt'\]"):
        model.predict(obs)
    model.predict(obs, dt=np.array([0.01, 0.03]))  # with the real dt it acts
    with pytest.raises(ValueError, match="evaluate_policy passes no dt"):
        evaluate_policy(model, DummyVecEnv([lambda: Monitor(IrregularClockEnv())]), n_eval_episodes=1)


def test_regular_timing_keeps_predict_without_dt() -> None:
    model = _model()
    model.learn(16)
    assert not bool(model.policy.irregular_timing)
    mean, _ = evaluate_policy(model, DummyVecEnv([lambda: Monitor(CueHoldEnv())]), n_eval_episodes=2)
    assert np.isfinite(mean)
