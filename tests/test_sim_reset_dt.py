"""``info["dt"]`` after a reset is the nominal control period on every path: ``gymnasium.make("lnn/...")``
(fixed-rate and irregular timing), the batched VecEnv's ``reset_infos`` and SB3's DummyVecEnv over the
registered envs, at the first reset and at auto-resets. A user loop that reads ``info["dt"]`` after
``reset()`` must not fail, and must integrate the first observation over the nominal period."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import lnn_control  # noqa: F401  (registers the catalogue)
from lnn_control.sim import wrappers
from lnn_control.sim.catalogue import load_catalogue
from lnn_control.sim.make import make_vec_env

CATALOGUE = load_catalogue()


def _gym_reset_dt_problems(task_ids: list[str]) -> list[str]:
    """Tasks whose registered env lacks the nominal ``info["dt"]`` after a reset (seeded and unseeded)."""
    problems = []
    for task_id in task_ids:
        spec = CATALOGUE[task_id]
        env = gym.make(spec.gym_id)
        try:
            for seed in (0, None):
                _, info = env.reset(seed=seed)
                if info.get("dt") != pytest.approx(spec.nominal_dt, rel=1e-12):
                    problems.append(f"{task_id}: reset(seed={seed}) info dt {info.get('dt')!r}")
        finally:
            env.close()
    return problems


def test_registered_envs_report_the_nominal_dt_at_reset() -> None:
    assert _gym_reset_dt_problems(sorted(CATALOGUE)) == []


def test_reset_dt_check_fails_without_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: wrappers that pass the inner reset info through (the bug) make the check complain, for a
    fixed-rate entry (ReportDt) and a jittered one (ControlTimingWrapper)."""

    def plain_reset(self, *, seed=None, options=None):
        return self.env.reset(seed=seed, options=options)

    monkeypatch.setattr(wrappers.ReportDt, "reset", plain_reset)
    monkeypatch.setattr(wrappers.ControlTimingWrapper, "reset", plain_reset)
    problems = _gym_reset_dt_problems(["Hopper-v0", "Hopper-Jitter-v0"])
    assert len(problems) == 4 and "Hopper-Jitter-v0" in problems[-1]


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("task_id", ["InvertedPendulum-Jitter-v0", "Hopper-NoVel-v0", "HalfCheetah-Drop-v0"])
def test_vec_env_reset_infos_carry_the_nominal_dt_at_every_reset(task_id: str, batched: bool) -> None:
    spec = CATALOGUE[task_id]
    venv = make_vec_env(task_id, 3, batched=batched, seed=0)
    reset_infos = venv.unwrapped.reset_infos  # VecMonitor keeps its own (empty) list, as SB3's wrappers do
    venv.reset()
    assert [info["dt"] for info in reset_infos] == pytest.approx([spec.nominal_dt] * 3, rel=1e-12)
    rng = np.random.default_rng(0)
    auto_resets = 0
    for _ in range(60):
        # Drop the key before each step, so that a dt found after a done was written by that auto-reset.
        for info in reset_infos:
            info.pop("dt", None)
        actions = rng.uniform(-1, 1, (3, *venv.action_space.shape)).astype(np.float32)
        _, _, dones, infos = venv.step(actions)
        assert all("dt" in info for info in infos)
        for i in np.flatnonzero(dones):
            assert reset_infos[i]["dt"] == pytest.approx(spec.nominal_dt, rel=1e-12), (task_id, i)
            auto_resets += 1
    if not task_id.startswith("HalfCheetah"):  # HalfCheetah never terminates (1000-step limit)
        assert auto_resets >= 3  # the auto-reset path ran
    venv.close()
