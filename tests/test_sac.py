"""LiquidSAC: sequence replay (chunks, stored states, boundaries), training values against a step-by-step
reference, predict vs sequence evaluation, save/load, export parity, argument errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from lnn_control.sb3 import LiquidSAC, SequenceReplayBuffer
from lnn_control.sb3.diagnostic_envs import CueHoldEnv, IrregularClockEnv


def _clock_env(n_envs: int = 2, seed: int = 0):  # type: ignore[no-untyped-def]
    """Irregular dt, terminated episodes of 3-12 steps, and time-limit truncations at 6 steps."""
    return make_vec_env(
        lambda: gym.wrappers.TimeLimit(IrregularClockEnv(nominal_dt=0.02), max_episode_steps=6),
        n_envs=n_envs,
        seed=seed,
    )


def _model(env, critic: str = "separate", cell: str = "cfc", wiring=None, **kwargs):  # type: ignore[no-untyped-def]
    units = 8
    policy_kwargs = dict(units=units, net_arch=[16], critic=critic, cell=cell)
    if wiring == "ncp":  # a 12-neuron AutoNCP with 3 motor neurons
        policy_kwargs.update(units=12, wiring="ncp", wiring_kwargs={"output_size": 3, "seed": 0})
    args = dict(
        learning_starts=10_000,
        batch_size=24,
        chunk_len=10,
        burn_in=4,
        buffer_size=400,
        seed=0,
        policy_kwargs=policy_kwargs,
    )
    args.update(kwargs)
    return LiquidSAC("LiquidPolicy", env, **args)


# ---------------------------------------------------------------------------------------------- the buffer
def _filled_buffer(steps: int, buffer_size: int = 40, n_envs: int = 3) -> SequenceReplayBuffer:
    """obs = [env, global step]; state = (env, step) coded; episode starts every 7 steps (env-shifted),
    ends flagged the step before, every other end a time-limit truncation."""
    obs_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    act_space = spaces.Box(-1, 1, (1,), np.float32)
    buf = SequenceReplayBuffer(
        buffer_size * n_envs, obs_space, act_space, n_envs=n_envs, state_shape=(1, 2), chunk_len=6, burn_in=2
    )
    for t in range(steps):
        obs = np.array([[e, t] for e in range(n_envs)], dtype=np.float32)
        starts = np.array([(t + e) % 7 == 0 for e in range(n_envs)])
        dones = np.array([(t + 1 + e) % 7 == 0 for e in range(n_envs)])
        infos = [{"TimeLimit.truncated": bool(d and ((t + e) // 7) % 2 == 0)} for e, d in enumerate(dones)]
        next_obs = obs.copy()
        next_obs[:, 1] += 1
        next_obs[dones, 1] = -t  # terminal observations are distinguishable
        state = np.array([[[e, t] for e in range(n_envs)]], dtype=np.float32)
        dts = np.full(n_envs, 0.01 * (t % 5 + 1), dtype=np.float32)
        buf.stage(state=state, dts=dts, next_dts=dts + 1, episode_starts=starts)
        buf.add(obs, next_obs, np.zeros((n_envs, 1)), np.full(n_envs, t), dones, infos)
    return buf


@pytest.mark.parametrize("steps", [25, 97])  # not full, full and wrapped around
def test_chunks_are_consecutive_steps_of_one_env_from_their_stored_state(steps: int) -> None:
    buf = _filled_buffer(steps)
    np.random.seed(0)
    data = buf.sample_chunks(64)
    obs = data.observations.numpy()
    n, k = data.actions.shape[:2]
    assert obs.shape == (n, k + 1, 2) and data.dts.shape == (n, k + 1)
    oldest = max(0, steps - buf.buffer_size)
    for i in range(n):
        env, first = obs[i, 0]
        t = first + np.arange(k)
        assert (obs[i, :k, 0] == env).all() and (obs[i, :k, 1] == t).all()  # one env, consecutive steps
        assert first >= oldest and t[-1] <= steps - 1  # never across the write position
        np.testing.assert_array_equal(data.states[:, i].numpy(), [[env, first]])  # stored state at the start
        np.testing.assert_array_equal(data.episode_starts[i, :k].numpy(), (t + env) % 7 == 0)
        assert not data.episode_starts[i, k]
        ends = (t + 1 + env) % 7 == 0
        np.testing.assert_array_equal(data.dones[i].numpy(), ends)
        np.testing.assert_allclose(data.rewards[i].numpy(), t)
        np.testing.assert_allclose(data.dts[i, :k].numpy(), 0.01 * (t % 5 + 1), rtol=1e-6)
        # the appended observation is the last step's next observation, with that step's duration
        assert obs[i, k, 1] == (-t[-1] if ends[-1] else t[-1] + 1)
        np.testing.assert_allclose(data.dts[i, k].numpy(), 0.01 * (t[-1] % 5 + 1) + 1, rtol=1e-6)
    # time-limit ends inside a chunk: their terminal observation and the state stored after them
    idx = data.trunc_index.numpy()
    assert idx.size > 0
    for j, flat in enumerate(idx):
        i, s = divmod(int(flat), k)
        env, t = obs[i, s]
        assert s < k - 1 and data.dones[i, s] and data.timeouts[i, s]
        assert data.trunc_observations[j, 1] == -t
        np.testing.assert_array_equal(data.trunc_states[:, j].numpy(), [[env, t + 1]])


def test_buffer_bad_arguments_are_clear_errors() -> None:
    box = spaces.Box(-1, 1, (2,), np.float32)
    with pytest.raises(ValueError, match=r"chunk_len \(50\) is longer than the buffer holds per env"):
        SequenceReplayBuffer(80, box, box, n_envs=2, state_shape=(1, 4), chunk_len=50, burn_in=2)
    with pytest.raises(ValueError, match=r"burn_in \(8\) must be < chunk_len \(8\)"):
        SequenceReplayBuffer(80, box, box, state_shape=(1, 4), chunk_len=8, burn_in=8)
    buf = SequenceReplayBuffer(80, box, box, state_shape=(1, 4), chunk_len=8, burn_in=2)
    with pytest.raises(ValueError, match="dts must be finite and >= 0"):
        buf.stage(state=np.zeros((1, 1, 4)), dts=[np.nan], next_dts=[0.1], episode_starts=[True])
    with pytest.raises(ValueError, match="fewer than chunk_len"):
        buf.sample_chunks(2)
    with pytest.raises(ValueError, match="supports Box observations, not Dict"):
        SequenceReplayBuffer(80, spaces.Dict({"x": box}), box, state_shape=(1, 4), chunk_len=8, burn_in=2)
    with pytest.raises(MemoryError, match="replay buffer needs"):
        SequenceReplayBuffer(10**13, box, box, state_shape=(1, 4), chunk_len=8, burn_in=2)


def test_algorithm_bad_arguments_are_clear_errors() -> None:
    env = _clock_env()
    with pytest.raises(ValueError, match=r"burn_in \(10\) must be < chunk_len \(10\)"):
        _model(env, burn_in=10)
    with pytest.raises(ValueError, match=r"chunk_len \(300\) is longer than the buffer holds per env"):
        _model(env, chunk_len=300, batch_size=296)
    with pytest.raises(ValueError, match=r"batch_size .* multiple of chunk_len - burn_in"):
        _model(env, batch_size=25)
    model = _model(env)
    with pytest.raises(ValueError, match="dt must be finite"):
        model.predict(np.zeros((2, 4), np.float32), dt=np.inf)
    nan_clock = make_vec_env(lambda: IrregularClockEnv(nominal_dt=float("nan")), n_envs=1)
    with pytest.raises(ValueError, match=r"dt must be finite and >= 0, got nan from env.get_attr\('dt'\)"):
        _model(nan_clock)

    class NanDt(gym.Wrapper):
        def step(self, action):  # type: ignore[no-untyped-def]
            obs, reward, terminated, truncated, info = self.env.step(action)
            return obs, reward, terminated, truncated, {**info, "dt": float("nan")}

    model = _model(make_vec_env(lambda: NanDt(IrregularClockEnv()), n_envs=1))
    with pytest.raises(ValueError, match=r"dt must be finite and >= 0, got nan in infos\[0\]\['dt'\]"):
        model.learn(5)


# ---------------------------------------------------------------------------- training = step-by-step replay
def _reference(model: LiquidSAC, data, out: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Current Q values, log-probs of the training actions, and TD targets, by stepping one chunk at a time
    and one step at a time (states zeroed by hand at episode starts)."""
    policy = model.policy
    k, b = model.chunk_len, model.burn_in
    n = data.actions.shape[0]
    trunc = {int(f): j for j, f in enumerate(data.trunc_index)}
    ent_coef = th.exp(model.log_ent_coef.detach())
    qs, log_probs, targets = [], [], []
    row = 0
    for i in range(n):
        online = data.states[:, i : i + 1].clone()
        target = online.clone()

        def step(state, critic, o, dt):  # type: ignore[no-untyped-def]
            a_state, c_states = policy.split_state(state)
            no = th.zeros(1, dtype=th.bool)
            latent, a_new = policy.actor_latent(o[None], a_state, no, dt.reshape(1))
            c_lat, c_new = policy.critic_latents(critic, o[None], c_states, no, dt.reshape(1), latent)
            return latent, c_lat, th.cat([a_new, *c_new], dim=-1)

        for t in range(k):
            if data.episode_starts[i, t]:
                online, target = th.zeros_like(online), th.zeros_like(target)
            o, dt = data.observations[i, t], data.dts[i, t]
            latent, c_lat, online_next = step(online, policy.critic, o, dt)
            _, _, target = step(target, policy.critic_target, o, dt)
            online = online_next
            if t < b:
                continue
            qs.append(th.cat(model.critic.q_values(c_lat, data.actions[i, t][None]), dim=1))
            log_probs.append(policy.actor.distribution(latent).log_prob(out["actions_pi"][row][None]))
            # next observation: in the sequence, appended, or (time-limit end inside the chunk) the terminal
            # observation from the stored state after the step
            flat = i * k + t
            if flat in trunc:
                j = trunc[flat]
                o2, dt2, s_on = data.trunc_observations[j], data.trunc_dts[j], data.trunc_states[:, j : j + 1]
                s_tg = s_on
            else:
                o2, dt2, s_on, s_tg = data.observations[i, t + 1], data.dts[i, t + 1], online, target
            terminated = data.dones[i, t] * (1 - data.timeouts[i, t])
            if terminated:
                next_q = th.zeros(1, 1)  # no bootstrap
            else:
                latent2, _, _ = step(s_on, policy.critic, o2, dt2)
                _, c_states = policy.split_state(s_tg)
                no = th.zeros(1, dtype=th.bool)
                c2, _ = policy.critic_latents(
                    policy.critic_target, o2[None], c_states, no, dt2.reshape(1), latent2
                )
                q2 = th.cat(model.critic_target.q_values(c2, out["next_actions"][row][None]), dim=1)
                next_q = q2.min(dim=1, keepdim=True)[0] - ent_coef * out["next_log_prob"][row]
            targets.append(data.rewards[i, t] + (1 - terminated) * model.gamma * next_q.reshape(1))
            row += 1
    return th.cat(qs).numpy(), th.cat(log_probs).numpy(), th.cat(targets).numpy()


@pytest.mark.parametrize(
    ("critic", "cell", "wiring"),
    [
        ("separate", "cfc", None),
        ("detached", "ltc", None),
        ("separate", "lstm", None),
        ("separate", "ltc", "ncp"),
    ],
)
def test_training_values_equal_step_by_step_replay(critic: str, cell: str, wiring: str | None) -> None:
    th.manual_seed(0)
    model = _model(_clock_env(), critic=critic, cell=cell, wiring=wiring)
    model.learn(300)  # fills the buffer (no training: learning_starts not reached)
    for p in model.critic_target.parameters():  # a target that differs from the online critic
        p.data.add_(0.05 * th.randn_like(p))
    buf = model.replay_buffer
    np.random.seed(3)
    data = buf.sample_chunks(12)
    assert data.episode_starts[:, 1:-1].any() and data.trunc_index.numel() > 0  # resets and truncations
    with th.no_grad():
        out = model._losses(data)
        q_ref, lp_ref, target_ref = _reference(model, data, out)
    q = th.cat(out["current_q"], dim=1).numpy()
    np.testing.assert_allclose(q, q_ref, atol=2e-5)
    np.testing.assert_allclose(out["log_prob"].numpy().ravel(), lp_ref.ravel(), atol=2e-4)
    np.testing.assert_allclose(out["target_q"].numpy().ravel(), target_ref.ravel(), atol=2e-5)


def test_training_updates_every_part_and_logs() -> None:
    model = _model(_clock_env(), learning_starts=60, gradient_steps=2)
    before = {k: v.clone() for k, v in model.policy.state_dict().items() if isinstance(v, th.Tensor)}
    model.learn(200)
    after = model.policy.state_dict()
    changed = {k for k in before if not th.equal(before[k], after[k])}
    for part in (
        "actor.core",
        "actor.mu",
        "critic.cores.0",
        "critic.cores.1",
        "critic.q_networks.1",
        "critic_target.cores.0",
    ):
        assert any(k.startswith(part) for k in changed), part
    assert model._n_updates > 0
    assert model.log_ent_coef.item() != 0.0  # automatic entropy tuning moved
    assert bool(model.policy.irregular_timing)


@pytest.mark.parametrize("cell", ["cfc", "ltc"])
def test_target_critics_see_the_polyak_updates(cell: str) -> None:
    """The target critics run under no_grad, where the cells reuse derived weights until a parameter's
    version changes; SB3's polyak_update writes through ``.data``, which does not change it. The targets must
    still compute with their current parameters (not the initial ones)."""
    import copy

    model = _model(_clock_env(), cell=cell, learning_starts=60, gradient_steps=2)
    target = model.policy.critic_target
    core = target.cores[0]
    x, h, dt = th.randn(5, 4), core.initial_state(5), th.full((5, 1), 0.02)
    with th.no_grad():
        core.step(x, h, dt)  # the derived weights are now cached for the initial parameters
    model.learn(200)
    assert model._n_updates > 0
    with th.no_grad():
        seen, _ = core.step(x, h, dt)
        fresh, _ = copy.deepcopy(core).step(x, h, dt)  # a copy derives its weights afresh
    th.testing.assert_close(seen, fresh, rtol=0, atol=0)


def test_predict_sees_the_updates_of_a_fused_optimizer() -> None:
    """A fused Adam writes parameters without bumping their versions; predict (no_grad, cached cell weights)
    must still act with the updated actor, as a fresh copy of it does."""
    import copy

    model = _model(
        _clock_env(), learning_starts=60, gradient_steps=2,
        policy_kwargs=dict(units=8, net_arch=[16], optimizer_kwargs=dict(fused=True)),
    )  # fmt: skip
    assert model.actor.optimizer.defaults["fused"]
    core = model.actor.core
    x, h, dt = th.randn(5, 4), core.initial_state(5), th.full((5, 1), 0.02)
    with th.no_grad():
        core.step(x, h, dt)  # derived weights cached for the initial parameters
    model.learn(200)
    with th.no_grad():
        seen, _ = core.step(x, h, dt)
        fresh, _ = copy.deepcopy(core).step(x, h, dt)
    th.testing.assert_close(seen, fresh, rtol=0, atol=0)


# ---------------------------------------------------------------------------------- predict and persistence
def test_predict_with_carried_state_equals_sequence_evaluation() -> None:
    model = _model(_clock_env())
    policy = model.policy
    rng = np.random.default_rng(0)
    steps = 9
    obs = rng.standard_normal((steps, 2, 4)).astype(np.float32)
    starts = np.zeros((steps, 2), dtype=bool)
    starts[0] = True
    starts[5, 1] = True
    dts = rng.uniform(0.005, 0.1, (steps, 2)).astype(np.float32)
    state = None
    actions = []
    for t in range(steps):
        a, state = model.predict(obs[t], state, starts[t], deterministic=True, dt=dts[t])
        actions.append(a)
    with th.no_grad():
        flat = th.as_tensor(obs.transpose(1, 0, 2).reshape(-1, 4))
        latent, h_n = policy.actor_latent(
            flat, th.zeros(1, 2, policy.actor_state_size), th.as_tensor(starts.T), th.as_tensor(dts.T)
        )
        seq = policy.unscale_action(policy.actor.deterministic(latent).numpy()).reshape(2, steps, -1)
    np.testing.assert_allclose(np.stack(actions, 1), seq, atol=1e-6)
    np.testing.assert_allclose(state, h_n.numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="trained on irregular control timing"):
        model.policy.irregular_timing.fill_(True)
        model.predict(obs[0], episode_start=starts[0])


def test_save_load_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = VecNormalize(_clock_env())
    model = _model(env, learning_starts=60)
    model.learn(150)
    model.save(tmp_path / "sac")
    model.save_replay_buffer(tmp_path / "buffer")
    loaded = LiquidSAC.load(tmp_path / "sac", env=env)
    loaded_state = loaded.policy.state_dict()
    for k, value in model.policy.state_dict().items():
        if isinstance(value, th.Tensor):
            assert th.equal(value, loaded_state[k]), k
    assert loaded.chunk_len == model.chunk_len and loaded.burn_in == model.burn_in
    assert loaded.log_ent_coef.item() == model.log_ent_coef.item()
    obs = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    a1, s1 = model.predict(obs, episode_start=np.ones(2, bool), deterministic=True, dt=0.02)
    a2, s2 = loaded.predict(obs, episode_start=np.ones(2, bool), deterministic=True, dt=0.02)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(s1, s2)
    assert loaded.replay_buffer.pos == 0 and not loaded.replay_buffer.full  # the buffer is saved apart
    loaded.load_replay_buffer(tmp_path / "buffer")
    np.testing.assert_array_equal(loaded.replay_buffer.states, model.replay_buffer.states)
    np.testing.assert_array_equal(loaded.replay_buffer.dts, model.replay_buffer.dts)
    loaded.learn(40, reset_num_timesteps=False)  # training continues from the loaded buffer
    model.policy.save(tmp_path / "policy.pth")  # the policy alone, as SB3's BasePolicy.save/load
    policy = type(model.policy).load(tmp_path / "policy.pth")
    np.testing.assert_array_equal(
        policy.predict(obs, deterministic=True, dt=0.02)[0],
        model.predict(obs, deterministic=True, dt=0.02)[0],
    )


def test_vecnormalize_observations_are_normalised_at_sampling() -> None:
    env = VecNormalize(_clock_env(), norm_reward=True)
    model = _model(env)
    model.learn(120)
    buf = model.replay_buffer
    data = buf.chunks_at(np.array([3]), np.array([1]), env=env)
    raw = buf.observations[3 : 3 + model.chunk_len, 1]
    np.testing.assert_allclose(data.observations[0, :-1].numpy(), env.normalize_obs(raw), atol=1e-6)
    np.testing.assert_allclose(
        data.rewards[0].numpy(), env.normalize_reward(buf.rewards[3 : 3 + model.chunk_len, 1]), atol=1e-6
    )


def test_exported_actor_matches_deterministic_predict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from lnn_control.export.api import build_actor
    from lnn_control.export.convert import actor_from_model

    env = VecNormalize(make_vec_env(lambda: CueHoldEnv(hold=5), n_envs=2, seed=0))
    model = _model(env, learning_starts=40, chunk_len=8, burn_in=2, batch_size=12)
    model.learn(120)
    actor, meta = actor_from_model(model)
    assert meta.action_postprocess == "tanh_rescale" and meta.time_unit == pytest.approx(0.02)
    model.save(tmp_path / "model.zip")  # the export API loads a saved LiquidSAC too (no env)
    from_file, _ = build_actor(tmp_path / "model.zip", env)
    rng = np.random.default_rng(0)
    raw = rng.uniform(-1, 1, (6, 2, 2)).astype(np.float32)
    dts = rng.uniform(0.01, 0.05, (6, 2)).astype(np.float32)
    state, h = None, th.zeros(2, meta.state_dim)
    for t in range(6):
        expected, state = model.predict(env.normalize_obs(raw[t]), state, deterministic=True, dt=dts[t])
        with th.no_grad():
            h_before = h
            got, h = actor(th.as_tensor(raw[t]), h, th.as_tensor(dts[t]).reshape(2, 1))
            again, _ = from_file(th.as_tensor(raw[t]), h_before, th.as_tensor(dts[t]).reshape(2, 1))
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
        np.testing.assert_array_equal(again.numpy(), got.numpy())


def test_step_by_step_reference_catches_ignored_resets(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Control: with the sequence path ignoring in-chunk episode starts, the comparison above fails."""
    import lnn_control.sb3.sac_policies as sac_policies

    th.manual_seed(0)
    model = _model(_clock_env())
    model.learn(300)
    np.random.seed(3)
    data = model.replay_buffer.sample_chunks(12)
    real = sac_policies.run_core

    def no_resets(core, features, state, starts, dt, unit):  # type: ignore[no-untyped-def]
        return real(core, features, state, th.zeros_like(starts), dt, unit)

    with th.no_grad():
        monkeypatch.setattr(sac_policies, "run_core", no_resets)
        out = model._losses(data)
        monkeypatch.setattr(sac_policies, "run_core", real)
        q_ref, _, _ = _reference(model, data, out)
    assert np.abs(th.cat(out["current_q"], dim=1).numpy() - q_ref).max() > 1e-3


# ------------------------------------------------------------------------------ catalogue, CLI and export
@pytest.mark.parametrize(
    ("name", "cell"),
    [("liquid-sac-cfc", "cfc"), ("liquid-sac-ltc", "ltc"), ("sac-lstm", "lstm"), ("sac-mlp", None)],
)
def test_sac_agents_build_and_learn(name: str, cell: str | None) -> None:
    from stable_baselines3 import SAC

    from lnn_control.sb3.agents import build_agent, load_agent_config

    config = load_agent_config(name)
    assert config["hyperparameters"]["learning_starts"] == 10_000  # RL Zoo's MuJoCo SAC
    small = dict(buffer_size=2000, learning_starts=50, seed=0)
    if cell is None:
        model = build_agent(config, "InvertedPendulum-v5", batch_size=32, **small)
        assert type(model) is SAC
    else:
        model = build_agent(
            config, "InvertedPendulum-v5", batch_size=16, chunk_len=12, burn_in=4, **small,
            policy_kwargs={"units": 8, "net_arch": [16]},
        )  # fmt: skip
        assert type(model) is LiquidSAC and model.policy.cell == cell
        assert model.policy.critic_mode == "separate" and model.policy.time_unit.item() == pytest.approx(0.04)
    model.learn(80)
    assert model._n_updates > 0


def test_cli_trains_evaluates_and_exports_liquid_sac(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from lnn_control.cli import main

    sets = [
        "hyperparameters.learning_starts=64",
        "hyperparameters.buffer_size=4000",
        "hyperparameters.batch_size=16",
        "hyperparameters.chunk_len=12",
        "hyperparameters.burn_in=4",
        "policy_kwargs.units=8",
        "policy_kwargs.cell_kwargs.backbone_units=16",
        "policy_kwargs.net_arch=[32]",
    ]
    args = [
        "train",
        "--env",
        "InvertedPendulum-NoVel-Jitter-v0",
        "--agent",
        "liquid-sac-cfc",
        "--no-progress",
    ]
    for item in sets:
        args += ["--set", item]
    run = tmp_path / "run"
    args += ["--eval-episodes", "2", "--timesteps", "256", "--eval-freq", "128", "--out", str(run)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["returns"]) == 2
    out = tmp_path / "ctrl"
    assert main(["export", str(run), "--format", "onnx", "--format", "c", "--out", str(out)]) == 0
    sidecar = json.loads((out / "policy.onnx.json").read_text())
    assert sidecar["action"]["postprocess"] == "tanh_rescale" and sidecar["cell"] == "cfc"


def test_onnx_controller_of_liquid_sac_matches_deterministic_predict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The torch-free Controller (ONNX artefact) steps LiquidSAC's actor as ``predict`` does."""
    pytest.importorskip("onnxruntime")
    from lnn_control.export import Controller, export_policy

    env = VecNormalize(make_vec_env(lambda: CueHoldEnv(hold=5), n_envs=1, seed=0))
    model = _model(env, learning_starts=20, chunk_len=8, burn_in=2, batch_size=12)
    model.learn(60)
    export_policy(model, tmp_path, formats=("onnx",), vec_normalize=env)
    ctrl = Controller(tmp_path)
    ctrl.reset()
    rng = np.random.default_rng(1)
    state = None
    for t in range(6):
        raw = rng.uniform(-1, 1, (1, 2)).astype(np.float32)
        dt = float(rng.uniform(0.01, 0.05))
        expected, state = model.predict(env.normalize_obs(raw), state, [t == 0], deterministic=True, dt=dt)
        np.testing.assert_allclose(ctrl.step(raw[0], dt=dt), expected[0], atol=1e-5)
