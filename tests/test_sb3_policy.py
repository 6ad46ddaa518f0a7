"""The liquid actor-critic policy: predict vs sequence evaluation, resets, save/load, argument errors."""

import copy

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.nn.wiring import AutoNCP
from lnn_control.sb3 import LiquidActorCriticPolicy, LiquidPPO, TorchRNN
from lnn_control.sb3.diagnostic_envs import IrregularClockEnv


class _WideClockEnv(IrregularClockEnv):
    """IrregularClockEnv with a wide action box, so that predict's clipping never bites."""

    def __init__(self) -> None:
        super().__init__()
        self.action_space = spaces.Box(-100.0, 100.0, shape=(2,), dtype=np.float32)


def _model(cell: str = "cfc", **policy_kwargs) -> LiquidPPO:
    env = DummyVecEnv([_WideClockEnv])
    return LiquidPPO(
        "LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, seed=0,
        policy_kwargs=dict(cell=cell, units=8, **policy_kwargs),
    )  # fmt: skip


def _sequence(steps: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((steps, 4)).astype(np.float32)
    dts = rng.uniform(0.005, 0.05, steps).astype(np.float32)
    starts = np.zeros(steps, dtype=bool)
    starts[0] = True
    starts[steps // 2 + 1] = True  # a new episode in the middle
    return obs, dts, starts


@pytest.mark.parametrize(
    ("cell", "kwargs"),
    [
        ("cfc", {}),
        ("ltc", {}),
        ("lstm", {}),
        ("gru", {}),
        ("cfc", {"critic": "separate"}),
        ("cfc", {"critic": "shared"}),
    ],
)
def test_predict_with_carried_state_equals_sequence_evaluation(cell: str, kwargs: dict) -> None:
    model = _model(cell, **kwargs)
    obs, dts, starts = _sequence()
    state = None
    stepwise = []
    for t in range(len(obs)):
        action, state = model.predict(
            obs[t], state=state, episode_start=starts[t : t + 1], deterministic=True, dt=dts[t]
        )
        assert action.shape == (2,)
        stepwise.append(action)
    policy = model.policy
    actor_state = th.zeros(1, 1, policy.actor_state_size)
    with th.no_grad():
        dist, final = policy.get_distribution(
            th.as_tensor(obs), actor_state, th.as_tensor(starts[None]), th.as_tensor(dts[None])
        )
    np.testing.assert_allclose(np.stack(stepwise), dist.mode().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state, final.numpy(), rtol=1e-5, atol=1e-6)
    assert state.shape == (1, 1, policy.actor_state_size)


def test_predict_batch_of_envs_and_default_dt() -> None:
    model = _model("ltc")
    assert float(model.policy.default_dt) == pytest.approx(0.01)  # the env's nominal dt
    obs, _, _ = _sequence(steps=3)
    actions, state = model.predict(obs, deterministic=True)
    assert actions.shape == (3, 2) and state.shape == (1, 3, model.policy.actor_state_size)
    same, _ = model.predict(obs, deterministic=True, dt=0.01)
    other, _ = model.predict(obs, state=state, deterministic=True, dt=np.array([0.01, 0.02, 0.5]))
    np.testing.assert_allclose(actions, same, rtol=1e-6)
    assert not np.allclose(actions, other)
    with pytest.raises(ValueError, match=r"state must have shape .*\(1, 3, 8\), got \(1, 2, 8\)"):
        model.predict(obs, state=np.zeros((1, 2, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="dt must be finite and >= 0, got -1"):
        model.predict(obs, dt=-1.0)


@pytest.mark.parametrize("cell", ["cfc", "lstm"])
def test_state_resets_at_episode_starts(cell: str) -> None:
    model = _model(cell)
    obs, dts, _ = _sequence(steps=5)
    state = None
    for t in range(5):  # build up a non-zero state
        _, state = model.predict(obs[t], state=state, episode_start=np.array([t == 0]), dt=dts[t])
    assert np.abs(state).max() > 1e-3
    fresh, fresh_state = model.predict(obs[0], state=None, episode_start=np.array([True]), deterministic=True)
    reset, reset_state = model.predict(
        obs[0], state=state, episode_start=np.array([True]), deterministic=True
    )
    carried, _ = model.predict(obs[0], state=state, episode_start=np.array([False]), deterministic=True)
    np.testing.assert_array_equal(fresh, reset)
    np.testing.assert_array_equal(fresh_state, reset_state)
    assert not np.allclose(fresh, carried)


@pytest.mark.parametrize(
    "policy_kwargs",
    [
        dict(cell="cfc", units=12, wiring="ncp", wiring_kwargs=dict(output_size=4, seed=5)),
        dict(cell="ltc", units=8, critic="separate"),
        dict(cell="lstm", units=8),
    ],
)
def test_save_load_round_trip_gives_identical_predictions(tmp_path, policy_kwargs: dict) -> None:
    env = DummyVecEnv([_WideClockEnv])
    model = LiquidPPO(
        "LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, seed=0, policy_kwargs=policy_kwargs
    )
    model.learn(32)  # trained weights, not the init
    obs, dts, starts = _sequence()
    model.save(tmp_path / "agent.zip")
    loaded = LiquidPPO.load(tmp_path / "agent.zip")  # on the CPU by default, as the constructor
    assert loaded.device.type == "cpu"
    assert loaded.policy_kwargs == model.policy_kwargs
    assert float(loaded.policy.default_dt) == pytest.approx(0.01)
    for candidate in (model, loaded):
        state, actions = None, []
        for t in range(len(obs)):
            action, state = candidate.predict(obs[t], state, starts[t : t + 1], deterministic=True, dt=dts[t])
            actions.append(action)
        candidate._actions = np.stack(actions)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(model._actions, loaded._actions)  # type: ignore[attr-defined]
    # Loading with an env continues training.
    again = LiquidPPO.load(tmp_path / "agent.zip", env=DummyVecEnv([_WideClockEnv]))
    again.learn(16)


def test_wiring_object_is_used_and_copied() -> None:
    wiring = AutoNCP(16, 4, seed=3)
    env = DummyVecEnv([_WideClockEnv])
    model = LiquidPPO(
        "LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, policy_kwargs=dict(units=16, wiring=wiring)
    )
    assert model.policy.recurrent_actor.output_size == 4
    assert not wiring.is_built()  # the user's object is not mutated
    assert model.policy.mlp_extractor.policy_net[0].in_features == 4


def test_reservoir_mode_trains_only_the_readout() -> None:
    model = _model("cfc", freeze_recurrent=True)
    core = {n: p.detach().clone() for n, p in model.policy.recurrent_actor.named_parameters()}
    heads = {n: p.detach().clone() for n, p in model.policy.action_net.named_parameters()}
    model.learn(32)
    for name, param in model.policy.recurrent_actor.named_parameters():
        if not param.requires_grad:
            assert th.equal(param, core[name]), name
    assert any(not p.requires_grad for p in model.policy.recurrent_actor.parameters())
    assert any(not th.equal(p, heads[n]) for n, p in model.policy.action_net.named_parameters())


def _policy(**kwargs) -> LiquidActorCriticPolicy:
    obs_space = spaces.Box(-1, 1, (4,))
    act_space = spaces.Box(-1, 1, (2,))
    return LiquidActorCriticPolicy(obs_space, act_space, lambda _: 1e-3, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(cell="transformer"),
            r"Unknown cell 'transformer'; expected one of \('cfc', 'ltc', 'lstm', 'gru'\)",
        ),
        (dict(units=0), "units must be a positive integer, got 0"),
        (dict(units=-3), "units must be a positive integer, got -3"),
        (dict(units="64"), "units must be a positive integer, got '64'"),
        (dict(hidden=5), r"Unknown policy_kwargs key\(s\) \['hidden'\]; expected some of .*'units'"),
        (
            dict(cell_kwargs=dict(unfold=3), cell="ltc"),
            r"Unknown cell_kwargs for cell='ltc' key\(s\) \['unfold'\]",
        ),
        (dict(cell="lstm", cell_kwargs=dict(mode="pure")), r"cell='lstm' key\(s\) \['mode'\].*'num_layers'"),
        (
            dict(cell="gru", wiring="ncp", wiring_kwargs=dict(output_size=4)),
            "only supported by the liquid cells",
        ),
        (dict(wiring="tree"), r"Unknown wiring 'tree'; expected None, a Wiring object or one of"),
        (dict(wiring_kwargs=dict(output_size=3)), "given without a wiring"),
        (dict(wiring="autoncp"), r"needs wiring_kwargs \['output_size'\]"),
        (
            dict(
                units=32,
                wiring="ncp",
                wiring_kwargs=dict(
                    inter_neurons=24,
                    command_neurons=16,
                    motor_neurons=8,
                    sensory_fanout=4,
                    inter_fanout=4,
                    recurrent_command_synapses=4,
                    motor_fanin=4,
                ),
            ),
            "has 48 neurons but units=32",
        ),
        (dict(units=32, wiring=AutoNCP(16, 4)), "has 16 neurons but units=32"),
        (dict(wiring=object()), "wiring must be None, one of"),
        (dict(wiring="ncp", wiring_kwargs=dict(output_size=4, fanout=2)), r"key\(s\) \['fanout'\]"),
        (dict(critic="shared", share_features_extractor=False), "critic='shared' needs"),
        (dict(critic="both"), "critic must be one of"),
        (dict(critic="shared", shared_recurrence=False), "contradicts"),
        (dict(time_unit=0.0), "time_unit must be a positive"),
    ],
)
def test_wrong_policy_kwargs_raise_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _policy(**kwargs)


def test_wrong_sizes_raise_clear_errors() -> None:
    env = DummyVecEnv([_WideClockEnv])
    with pytest.raises(ValueError, match=r"n_steps \(100\) must be a multiple of seq_len \(32\)"):
        LiquidPPO("LiquidPolicy", env, n_steps=100, batch_size=64)
    with pytest.raises(ValueError, match=r"batch_size \(50\) must be a multiple of seq_len \(16\)"):
        LiquidPPO("LiquidPolicy", env, n_steps=64, seq_len=16, batch_size=50)
    with pytest.raises(ValueError, match=r"batch_size \(128\) exceeds the rollout"):
        LiquidPPO("LiquidPolicy", env, n_steps=64, seq_len=16, batch_size=128)
    with pytest.raises(ValueError, match="seq_len must be a positive integer, got 0"):
        LiquidPPO("LiquidPolicy", env, n_steps=64, seq_len=0, batch_size=64)
    with pytest.raises(ValueError, match=r"Unknown cell 'cfx'"):
        LiquidPPO("LiquidPolicy", env, n_steps=64, seq_len=16, batch_size=64, policy_kwargs=dict(cell="cfx"))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_torch_rnn_resets_match_a_step_by_step_reference(kind: str) -> None:
    th.manual_seed(0)
    rnn = TorchRNN(kind, 3, 5, num_layers=2)
    x = th.randn(4, 9, 3)
    resets = th.zeros(4, 9, dtype=th.bool)
    resets[0, 3] = resets[2, 3] = resets[1, 6] = resets[3, 0] = True
    h0 = th.randn(2, 4, rnn.state_size)
    y, h_n = rnn(x, h0=h0, dt=th.rand(4, 9), resets=resets)
    h, reference = h0, []
    for t in range(9):
        h = h * (~resets[:, t]).float().view(1, 4, 1)
        out, h = rnn(x[:, t : t + 1], h0=h)
        reference.append(out)
    th.testing.assert_close(y, th.cat(reference, dim=1))
    th.testing.assert_close(h_n, h)
    assert y.shape == (4, 9, 5) and h_n.shape == (2, 4, 10 if kind == "lstm" else 5)


def test_predict_rejects_non_finite_observations_and_keeps_the_state():
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.vec_env import DummyVecEnv

    from lnn_control.sb3 import LiquidPPO

    env = DummyVecEnv([lambda: gym.make("Pendulum-v1")] * 2)
    model = LiquidPPO("LiquidPolicy", env, n_steps=32, batch_size=32, seq_len=8, policy_kwargs={"units": 8})
    obs = env.reset()
    _, state = model.predict(obs)
    bad = obs.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"observation must be finite, got nan at index \(1, 2\)"):
        model.predict(bad, state=state)
    _, again = model.predict(obs, state=state)  # the caller's state is untouched and still usable
    assert np.all(np.isfinite(again))


def test_a_non_finite_action_distribution_is_a_clear_error_in_rollouts_predict_and_training() -> None:
    """torch's argument validation is off for the Gaussian (speed); the policy's own check names the bad
    entry instead, wherever the distribution is built."""
    model = _model()
    policy = model.policy
    obs = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    state, starts, dts = policy.initial_state(2), th.zeros(2, dtype=th.bool), th.full((2,), 0.01)
    with th.no_grad():
        policy.action_net.bias.fill_(float("nan"))
    mean_error = r"distribution's mean must be finite, got nan at index \(0, 0\) \(sample, action dim\)"
    with pytest.raises(ValueError, match=mean_error):
        model._carry.act(obs[:1])  # the rollout step (one env)
    with pytest.raises(ValueError, match=mean_error):
        model.predict(obs, dt=0.01)
    with pytest.raises(ValueError, match=mean_error):  # a training minibatch
        policy.evaluate_actions(th.as_tensor(obs), th.zeros(2, 1), state, starts.view(2, 1), dts.view(2, 1))
    fresh = _model()
    with th.no_grad():
        fresh.policy.log_std.fill_(-200.0)  # exp underflows: std 0
    with pytest.raises(ValueError, match=r"std must be finite and > 0, got 0.0 at action dim 0"):
        fresh.policy(th.as_tensor(obs), state, starts, dts)
    with th.no_grad():
        fresh.policy.log_std.fill_(float("inf"))
    with pytest.raises(ValueError, match=r"std must be finite and > 0, got inf at action dim 0"):
        fresh.predict(obs, dt=0.01)


def test_the_gaussian_without_validation_gives_sb3s_values() -> None:
    """Same operations as SB3's DiagGaussianDistribution: identical actions, log-probs and entropies."""
    from stable_baselines3.common.policies import ActorCriticPolicy

    policy = _model().policy
    latent = th.randn(5, policy.mlp_extractor.latent_dim_pi, generator=th.Generator().manual_seed(0))
    ours = policy._get_action_dist_from_latent(latent)  # (the policy reuses one distribution object)
    ours_normal = ours.distribution
    actions = th.randn(5, policy.action_space.shape[0], generator=th.Generator().manual_seed(1))
    ours_values = (ours.log_prob(actions), ours.entropy(), ours.mode())
    sb3 = ActorCriticPolicy._get_action_dist_from_latent(policy, latent)
    assert sb3.distribution._validate_args and not ours_normal._validate_args
    assert th.equal(ours_normal.mean, sb3.distribution.mean)
    assert th.equal(ours_normal.stddev, sb3.distribution.stddev)
    for mine, theirs in zip(ours_values, (sb3.log_prob(actions), sb3.entropy(), sb3.mode()), strict=True):
        assert th.equal(mine, theirs)


def test_save_is_atomic_and_keeps_the_previous_file_on_failure(tmp_path, monkeypatch):
    import os

    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    from lnn_control.sb3 import LiquidPPO

    env = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    model = LiquidPPO("LiquidPolicy", env, n_steps=32, batch_size=32, seq_len=8, policy_kwargs={"units": 8})
    model.save(tmp_path / "model")  # SB3 convention: .zip is added
    target = tmp_path / "model.zip"
    before = target.read_bytes()
    assert LiquidPPO.load(target).policy.state_dict().keys() == model.policy.state_dict().keys()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        model.save(target)
    assert target.read_bytes() == before  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.zip"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("optimizer_kwargs", "expected"),
    [
        (None, {"eps": 1e-5, "fused": True}),  # SB3's Adam default, plus the fused update
        ({"eps": 1e-3}, {"eps": 1e-3, "fused": True}),  # given kwargs are kept (no eps added, as SB3)
        ({"foreach": False}, {"foreach": False}),  # an explicit choice wins
        ({"foreach": True}, {"foreach": True}),
        ({"fused": False}, {"fused": False}),
    ],
)
def test_optimizer_defaults_to_the_fused_update(optimizer_kwargs, expected) -> None:
    model = _model(optimizer_kwargs=optimizer_kwargs)
    assert model.policy.optimizer_kwargs == expected
    group = model.policy.optimizer.param_groups[0]
    for key, value in expected.items():
        assert group[key] == value


def test_optimizers_without_a_fused_update_default_to_the_multi_tensor_one() -> None:
    model = _model(optimizer_class=th.optim.RMSprop)
    assert model.policy.optimizer_kwargs == {"foreach": True}
    assert model.policy.optimizer.param_groups[0]["foreach"] is True


def _trained_parameters(optimizer_kwargs: dict | None) -> list[th.Tensor]:
    model = _model(optimizer_kwargs=optimizer_kwargs)
    model.learn(64)
    return [p.detach().clone() for p in model.policy.parameters()]


def test_multi_tensor_optimizer_trains_the_same_parameters_as_the_per_tensor_loop() -> None:
    """foreach is a speed choice only: the learned parameters are bit for bit the same."""
    per_tensor = _trained_parameters({"eps": 1e-5, "foreach": False})
    for multi, single in zip(_trained_parameters({"eps": 1e-5, "foreach": True}), per_tensor, strict=True):
        assert th.equal(multi, single)


def test_fused_optimizer_trains_the_per_tensor_loops_parameters_up_to_rounding() -> None:
    """The fused default rounds differently in the last bit: after 4 updates (40 Adam steps) the parameters
    agree with the per-tensor loop's to float32 rounding, far below what one step moves them."""
    initial = [p.detach().clone() for p in _model().policy.parameters()]
    per_tensor = _trained_parameters({"eps": 1e-5, "foreach": False})
    fused = _trained_parameters(None)
    for start, loop, default in zip(initial, per_tensor, fused, strict=True):
        assert not th.equal(start, loop)  # trained
        th.testing.assert_close(default, loop, rtol=1e-5, atol=1e-6)


def test_the_fused_update_is_seen_by_inference_after_the_step() -> None:
    """The fused kernel does not bump the parameters' version counters; the policy's step hook does, so the
    cell weights cached for inference (keyed by them) are derived again after an update."""
    model = _model()
    obs = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    before, _ = model.predict(obs, deterministic=True, dt=0.01)  # fills the inference weight cache
    optimizer = model.policy.optimizer
    optimizer.zero_grad()
    sum(p.sum() for p in model.policy.parameters()).backward()
    optimizer.step()
    after, _ = model.predict(obs, deterministic=True, dt=0.01)
    fresh = copy.deepcopy(model.policy)  # no cache entry: derives the weights from the parameters
    expected, _ = fresh.predict(obs, deterministic=True, dt=0.01)
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, expected)
