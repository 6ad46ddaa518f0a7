"""The batched VecEnv's own reset noise against Gymnasium v5's, for every catalogue base task.

The parity tests copy Gymnasium's state into the batched env, so they never see its reset noise. Here both
sample many resets on their own (N = 1200 each, fixed seeds) and every observation element and numeric reset
info entry is compared as a distribution: mean (within 5 standard errors), standard deviation (within 5
standard errors of the ratio), a two-sample Kolmogorov-Smirnov statistic, excess kurtosis (uniform -1.2
against normal 0: the noise type) and, for bounded (uniform-like) elements, the ends of the support.
Elements constant in both must be equal.
A control swaps a task's uniform noise for a normal one of the same variance, widens it by 10 % or shifts
it, and shows the comparison fails.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from lnn_control.sim.batched import BatchedMujocoVecEnv
from lnn_control.sim.catalogue import BASE_TASKS
from lnn_control.sim.tasks.base import MujocoTask

N, BATCH = 1200, 300


def _gymnasium_resets(task: str) -> np.ndarray:
    """(N, D): Gymnasium v5 reset observations followed by the numeric reset info values."""
    env = gym.make(BASE_TASKS[task].gym_id).unwrapped
    rows = []
    for seed in range(N):
        obs, info = env.reset(seed=seed)
        rows.append(np.concatenate([obs, [float(info[k]) for k in sorted(info)]]))
    env.close()
    return np.asarray(rows, dtype=np.float64)


def _batched_resets(task: str) -> np.ndarray:
    venv = BatchedMujocoVecEnv(task, BATCH, seed=0)
    rows = []
    for seed in range(N // BATCH):
        venv.seed(seed)
        obs = venv.reset()
        keys = sorted(k for k in venv.reset_infos[0] if k != "dt")
        infos = np.array([[float(info[k]) for k in keys] for info in venv.reset_infos])
        rows.append(np.concatenate([obs, infos.reshape(BATCH, -1)], axis=1))
    venv.close()
    return np.concatenate(rows).astype(np.float64)


def _excess_kurtosis(x: np.ndarray) -> np.ndarray:
    centred = x - x.mean(0)
    var, m4 = (centred**2).mean(0), (centred**4).mean(0)
    return np.divide(m4, var**2, out=np.full_like(var, 3.0), where=var > 0) - 3.0


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b| of two 1-D samples."""
    grid = np.concatenate([a, b])
    fa = np.searchsorted(np.sort(a), grid, side="right") / a.size
    fb = np.searchsorted(np.sort(b), grid, side="right") / b.size
    return float(np.abs(fa - fb).max())


def distribution_problems(ref: np.ndarray, ours: np.ndarray) -> list[str]:
    """Elements of two (N, D) samples whose distributions differ; empty when they agree."""
    if ref.shape[1] != ours.shape[1]:
        return [f"{ref.shape[1]} elements in Gymnasium's resets, {ours.shape[1]} in the batched env's"]
    problems = []
    n = ref.shape[0]
    std_r, std_o = ref.std(0), ours.std(0)
    kurt_r, kurt_o = _excess_kurtosis(ref), _excess_kurtosis(ours)
    ks_limit = 2.5 * np.sqrt(2.0 / n)  # two-sample KS at about alpha = 1e-5
    for j in range(ref.shape[1]):
        scale = max(std_r[j], std_o[j])
        if scale < 1e-12 * max(1.0, abs(ref[0, j])):  # constant in both: the same value
            if not np.isclose(ref[0, j], ours[0, j], rtol=1e-9, atol=1e-12):
                problems.append(f"[{j}] constant {ours[0, j]!r}, Gymnasium {ref[0, j]!r}")
            continue
        if abs(ref[:, j].mean() - ours[:, j].mean()) > 5.0 * np.sqrt((std_r[j] ** 2 + std_o[j] ** 2) / n):
            problems.append(f"[{j}] mean {ours[:, j].mean():.4g}, Gymnasium {ref[:, j].mean():.4g}")
        ratio_se = np.sqrt((max(kurt_r[j], -1.9) + 2.0) / (2.0 * n))  # SE of a std ratio, two samples
        if abs(std_o[j] / std_r[j] - 1.0) > 5.0 * ratio_se:
            problems.append(f"[{j}] std {std_o[j]:.4g}, Gymnasium {std_r[j]:.4g}")
        if _ks(ref[:, j], ours[:, j]) > ks_limit:
            problems.append(f"[{j}] KS statistic {_ks(ref[:, j], ours[:, j]):.3f} > {ks_limit:.3f}")
        if abs(kurt_o[j] - kurt_r[j]) > 0.6:
            problems.append(f"[{j}] excess kurtosis {kurt_o[j]:.2f}, Gymnasium {kurt_r[j]:.2f}")
        if kurt_r[j] > -0.6:  # the extremes of a heavy- or normal-tailed sample are too noisy to compare
            continue
        span = ref[:, j].max() - ref[:, j].min()
        for name, ours_end, ref_end in (
            ("min", ours[:, j].min(), ref[:, j].min()),
            ("max", ours[:, j].max(), ref[:, j].max()),
        ):
            if abs(ours_end - ref_end) > 0.1 * span:
                problems.append(f"[{j}] {name} {ours_end:.4g}, Gymnasium {ref_end:.4g}")
    return problems


@pytest.fixture(scope="module")
def gymnasium_samples() -> dict[str, np.ndarray]:
    return {}


def _reference(task: str, cache: dict[str, np.ndarray]) -> np.ndarray:
    if task not in cache:
        cache[task] = _gymnasium_resets(task)
    return cache[task]


@pytest.mark.parametrize("task", sorted(BASE_TASKS))
def test_reset_distribution_matches_gymnasium(task: str, gymnasium_samples) -> None:
    ref = _reference(task, gymnasium_samples)
    assert distribution_problems(ref, _batched_resets(task)) == []
    assert (ref.std(0) > 0).sum() >= 2  # the resets are random: there is something to compare


@pytest.mark.parametrize(
    "noise",
    [
        # same variance as U(-s, s), another type
        lambda rng, s, k, size: rng.standard_normal((k, size)) * s / np.sqrt(3.0),
        lambda rng, s, k, size: rng.uniform(-1.1 * s, 1.1 * s, (k, size)),  # 10 % wider
        lambda rng, s, k, size: rng.uniform(0.0, 2.0 * s, (k, size)) - 0.8 * s,  # shifted
    ],
    ids=["normal-for-uniform", "scale-1.1", "shifted"],
)
def test_reset_check_fails_on_wrong_noise(noise, gymnasium_samples, monkeypatch) -> None:
    """Control: Hopper's uniform reset noise replaced by a wrong one is caught."""
    monkeypatch.setattr(MujocoTask, "_uniform", lambda self, rng, s, k, size: noise(rng, s, k, size))
    problems = distribution_problems(_reference("Hopper", gymnasium_samples), _batched_resets("Hopper"))
    assert len(problems) >= 3, problems
