"""The learning suite's pieces: period-scaled tasks, the nominal-dt ablation, several sweeps in one pool and
the suite report (timing evaluation of finished runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.runs.config import RunSpec
from lnn_control.runs.errors import RunError
from lnn_control.runs.suite import collect_records, write_report
from lnn_control.runs.sweep import SweepPlan, run_sweeps
from lnn_control.runs.timing_eval import mean_substeps, period_scaled_task
from lnn_control.sb3 import LiquidPPO
from lnn_control.sb3.agent_evaluation import evaluate_agent
from lnn_control.sb3.diagnostic_envs import IrregularClockEnv
from lnn_control.sim.catalogue import get_task


@pytest.mark.parametrize(
    ("task_id", "factor"),
    [
        ("Hopper-v0", 0.5),  # 4 substeps -> 2
        ("Hopper-v0", 2.0),
        ("HalfCheetah-v0", 0.5),  # 5 substeps -> 2.5 in the mean: draws between 2 and 3
        ("Hopper-NoVel-Jitter-v0", 0.5),
        ("HalfCheetah-NoVel-Jitter-v0", 2.0),
    ],
)
def test_period_scaled_task_reaches_the_factor_in_the_mean(task_id: str, factor: float) -> None:
    task = get_task(task_id)
    scaled, reached = period_scaled_task(task, factor)
    assert reached == pytest.approx(factor, rel=0.03)
    assert mean_substeps(scaled.timing) == pytest.approx(mean_substeps(task.timing) * reached)
    assert scaled.max_episode_steps == round(task.max_episode_steps / reached)  # same simulated time
    timestep = task.nominal_dt / task.timing.frame_skip
    assert scaled.nominal_dt == pytest.approx(timestep * scaled.timing.frame_skip)
    assert scaled.wrappers == task.wrappers  # same observation layout


def test_period_scaled_task_refuses_what_it_cannot_scale() -> None:
    with pytest.raises(RunError, match="positive number"):
        period_scaled_task(get_task("Hopper-v0"), 0.0)
    with pytest.raises(RunError, match="plain and jittered timing only"):
        period_scaled_task(get_task("HalfCheetah-Drop-v0"), 0.5)


def test_scaled_task_steps_at_the_scaled_period() -> None:
    from lnn_control.sim import make_vec_env

    scaled, _ = period_scaled_task(get_task("HalfCheetah-v0"), 0.5)
    env = make_vec_env(scaled, 4, seed=0)
    env.reset()
    dts = []
    for _ in range(200):
        _, _, _, infos = env.step(np.zeros((4, 6), dtype=np.float32))
        dts += [info["dt"] for info in infos]
    assert set(np.round(dts, 6)) == {0.02, 0.03}  # 2 or 3 substeps of 0.01 s
    assert np.mean(dts) == pytest.approx(0.025, rel=0.05)


def test_nominal_dt_ablation_feeds_the_nominal_period() -> None:
    seen: list[np.ndarray] = []
    env = DummyVecEnv([IrregularClockEnv, IrregularClockEnv])
    model = LiquidPPO("LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, seed=0)
    forward = model.policy.forward

    def recording_forward(obs, state, episode_starts, dt, deterministic=False):
        seen.append(dt.numpy().copy())
        return forward(obs, state, episode_starts, dt, deterministic=deterministic)

    model.policy.forward = recording_forward  # type: ignore[method-assign]
    evaluate_agent(model, env, n_eval_episodes=2, use_reported_dt=False)
    assert all(np.allclose(dt, 0.01) for dt in seen)
    seen.clear()
    evaluate_agent(model, env, n_eval_episodes=2)
    assert len({float(v) for dt in seen for v in np.ravel(dt)}) > 2  # the real, irregular dts


TASK = "InvertedPendulum-NoVel-Jitter-v0"
OVERRIDES = {
    "hyperparameters.n_steps": 32,
    "hyperparameters.batch_size": 32,
    "hyperparameters.seq_len": 16,
    "hyperparameters.n_epochs": 1,
    "policy_kwargs.units": 8,
    "policy_kwargs.cell_kwargs.backbone_units": 16,
}


@pytest.mark.slow
def test_run_sweeps_pools_several_folders_and_the_report_evaluates_timing(tmp_path) -> None:
    base = RunSpec(
        env=TASK, agent="liquid-ppo-cfc", timesteps=64, n_envs=2, eval_episodes=2, overrides=OVERRIDES
    )
    plans = [
        SweepPlan(base, [0, 1], {}, tmp_path / "cfc"),
        SweepPlan(
            base.with_(agent="ppo-mlp", overrides={"hyperparameters.n_steps": 32}),
            [0, 1],
            {},
            tmp_path / "mlp",
        ),
    ]
    order: list[str] = []
    results = run_sweeps(plans, workers=1, seed_major=True, log=order.append)
    assert [r.out for r in results] == [tmp_path / "cfc", tmp_path / "mlp"]
    assert all(o["status"] == "finished" for r in results for o in r.outcomes)
    finished = [line.split(":")[0] for line in order if "finished at" in line]
    assert [name.rsplit("/", 1)[-1] for name in finished] == [
        "seed0",
        "seed0",
        "seed1",
        "seed1",
    ]  # seed-major
    records = collect_records(plans)
    assert len(records) == 4
    liquid = [r for r in records if r["agent"] == "liquid-ppo-cfc"]
    assert all(set(r["timing"]["factors"]) == {"0.5", "1", "2"} for r in records)
    assert all(r["timing"]["nominal_dt_return"] is not None for r in liquid)  # jittered task, liquid policy
    assert all(r["timing"]["nominal_dt_return"] is None for r in records if r["agent"] == "ppo-mlp")
    cached = json.loads((tmp_path / "cfc" / "seed0" / "timing_eval.json").read_text())
    assert cached == liquid[0]["timing"]  # computed once, kept with the run
    write_report(records, tmp_path / "report", timesteps=64, seeds=[0, 1])
    table = (tmp_path / "report" / "bench_mujoco.md").read_text()
    assert f"| {TASK} | liquid-ppo-cfc | 2 |" in table and f"| {TASK} | ppo-mlp | 2 |" in table
    assert (tmp_path / "report" / "bench_mujoco.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("cell", ["cfc", "ltc", "lstm"])
def test_action_sensitivity_sees_the_clock_of_liquid_cells_only(cell: str) -> None:
    from lnn_control.sb3.diagnostics import action_sensitivity

    env = DummyVecEnv([IrregularClockEnv])
    model = LiquidPPO(
        "LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, seed=0, policy_kwargs=dict(cell=cell)
    )
    result = action_sensitivity(model, env, steps=60)
    assert result["mean_abs_action"] > 0 and result["input_noise"] > 0
    if cell == "lstm":  # no notion of time: exactly the same actions at any dt
        assert result["dt_half"] == 0.0 and result["dt_double"] == 0.0
    else:
        scale = result[
            "mean_abs_action"
        ]  # tiny at init (SB3's action_net gain 0.01): compare relative changes
        assert result["dt_half"] > 1e-3 * scale and result["dt_double"] > 1e-3 * scale


def test_action_sensitivity_of_a_liquid_sac_policy() -> None:
    from lnn_control.sb3 import LiquidSAC
    from lnn_control.sb3.diagnostics import action_sensitivity

    env = DummyVecEnv([IrregularClockEnv])
    model = LiquidSAC("LiquidPolicy", env, seed=0, policy_kwargs=dict(units=8))
    result = action_sensitivity(model, env, steps=40)
    assert result["mean_abs_action"] > 0 and result["dt_double"] > 0 and result["input_noise"] > 0
