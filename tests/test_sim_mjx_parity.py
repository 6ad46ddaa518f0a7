"""MJX backend against the CPU batched backend (``mujoco.batch``), on CPU JAX in float64.

Each task runs in an ``MjxVecEnv`` and a ``BatchedMujocoVecEnv`` under the same irregular timing (jittered
periods and dropped frames): the CPU env draws each step's substeps, the MJX env replays them
(``step_with_substeps``). Checked, per task:

(a) one control step from the same state at many states along random trajectories (the MJX env is
    re-synchronised to the CPU state, warm start included, before every step): observations, rewards,
    terminations and per-env dt agree within 1e-9 relative;
(b) whole trajectories from the same initial states for 50 control steps without re-synchronisation agree
    within 1e-6 relative, with identical terminations, truncations and dt; an env that ends is re-synchronised
    to the CPU env's reset state (the two draw reset noise from different generators) and compared on.

Compiling MJX programs takes ~30-90 s per task on 2 cores, so everything here is ``slow``; envs of equal
configuration share their compiled programs (``MjxVecEnv``), and the tests reuse one env pair per task.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax", reason="the MJX backend needs the gpu extra (pip install 'lnn-control[gpu]')")
pytest.importorskip("mujoco.mjx", reason="the MJX backend needs the gpu extra")

from lnn_control.sim.batched import BatchedMujocoVecEnv
from lnn_control.sim.catalogue import get_task
from lnn_control.sim.control_timing import ControlTiming

pytestmark = pytest.mark.slow

#: MJX 3.17 and C MuJoCo 4.0 disagree on Ant's model itself (measured with bare mjx.step against mj_step
#: from the same states, no lnn_control code involved): its RK4 integration of the free joint differs by
#: ~6e-8 in qpos per substep without contacts (1e-16 with the Euler integrator), and some steps with new
#: contacts (capsules within the geom margin of 0.01) differ by up to 1 in qvel, with Euler too.
ANT_UPSTREAM = pytest.mark.xfail(
    strict=True, reason="MJX 3.17 vs MuJoCo 4.0 on Ant's model: RK4 free joint and margin contacts differ"
)
TASKS = [
    "HalfCheetah",
    "Hopper",
    "Walker2d",
    pytest.param("Ant", marks=ANT_UPSTREAM),
    "InvertedPendulum",
    "Swimmer",
    "InvertedDoublePendulum",
    "Reacher",
]
N_ENVS = 6
RTOL_STEP = 1e-9
RTOL_TRAJ = 1e-6
#: Reacher at its model's default solver tolerance (1e-8). When its elbow's joint limit (|q1| <= 3) is
#: active, MuJoCo's and MJX's Newton solvers take different line-search steps (MJX's bracketing search is
#: not MuJoCo's) and pass the same stopping test (scaled improvement or gradient < 1e-8) at different
#: iterates: e.g. MJX after one iteration, MuJoCo after two. Bare mjx.step against mj_step from the same
#: state and warm start: 2.4e-8 in qvel on such a substep, 4e-16 when both run the same iterations. With the
#: tolerance at 0 both solve to round-off and the envs agree within RTOL_STEP
#: (test_reacher_gap_is_the_solvers_stopping_rule). Measured one-step gaps (6 envs x 150 steps, 3 seeds,
#: jittered periods with dropped frames): 11 of the 450 steps above 1e-12, worst 3.1e-7; hence 1e-6.
RTOL_STEP_REACHER = 1e-6
RTOL_STEP_OF = {"Reacher": RTOL_STEP_REACHER}


@pytest.fixture(scope="module", autouse=True)
def _compile_cache(tmp_path_factory: pytest.TempPathFactory):
    import jax

    old = {
        k: getattr(jax.config, k)
        for k in ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    }
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    yield
    for k, v in old.items():
        jax.config.update(k, v)


def _timing(task: str) -> ControlTiming:
    if task == "HalfCheetah":  # the catalogue's jitter entry, so that test_wrapper_layout reuses the compile
        return get_task("HalfCheetah-Jitter-v0").timing
    frame_skips = {"Hopper": 4, "Walker2d": 4, "Ant": 5, "InvertedPendulum": 2, "Swimmer": 4}
    fs = {**frame_skips, "InvertedDoublePendulum": 5, "Reacher": 2}[task]
    return ControlTiming(frame_skip=fs, jitter=(0.5, 1.5), drop_prob=0.2, max_consecutive_drops=1)


_PAIRS: dict[tuple[str, str | None], tuple[BatchedMujocoVecEnv, object]] = {}


def _pair(task: str, xml_file: str | None = None) -> tuple[BatchedMujocoVecEnv, object]:
    """The CPU and MJX envs of ``task`` (the task's own model, or ``xml_file``'s), made once per module."""
    from lnn_control.sim.mjx import MjxVecEnv

    if (task, xml_file) not in _PAIRS:
        timing = _timing(task)
        kwargs = {} if xml_file is None else {"xml_file": xml_file}
        cpu = BatchedMujocoVecEnv(task, N_ENVS, seed=0, timing=timing, nthread=1, **kwargs)
        gpu = MjxVecEnv(task, N_ENVS, seed=0, timing=timing, x64=True, **kwargs)
        _PAIRS[task, xml_file] = (cpu, gpu)
    return _PAIRS[task, xml_file]


def _warmstart(cpu: BatchedMujocoVecEnv, ids: list[int] | None = None) -> np.ndarray:
    return np.stack([d.qacc_warmstart.copy() for d in cpu.get_attr("data", ids)])


def resync(cpu: BatchedMujocoVecEnv, gpu, ids: list[int] | None = None) -> None:
    """Copy the CPU envs' state (qpos, qvel, solver warm start) into the MJX env."""
    q, v = cpu.get_state()
    sel = slice(None) if ids is None else ids
    gpu.set_state(q[sel], v[sel], indices=ids, warmstart=_warmstart(cpu, ids))


def _substeps(cpu: BatchedMujocoVecEnv, infos: list[dict]) -> np.ndarray:
    return np.rint(np.array([i["dt"] for i in infos]) / cpu.timestep).astype(np.int64)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(|b|, 1): relative for large entries, absolute for entries below 1."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0)))


def _step_both(cpu, gpu, actions):
    o1, r1, d1, i1 = cpu.step(actions)
    o2, r2, d2, i2 = gpu.step_with_substeps(actions, _substeps(cpu, i1))
    return (o1, r1, d1, i1), (o2, r2, d2, i2)


def _terminal(obs: np.ndarray, dones: np.ndarray, infos: list[dict]) -> np.ndarray:
    out = obs.copy()
    for i in np.flatnonzero(dones):
        out[i] = infos[i]["terminal_observation"]
    return out


def _one_step_errors(cpu, gpu, n_steps: int = 40) -> dict[str, float]:
    """One control step from re-synchronised states, ``n_steps`` times along the CPU env's random-action
    trajectory (seeded, so every pair of one task sees the same states): the worst relative error of
    observations ("obs", terminal ones included), of each info key, and of rewards ("reward"); "limit"
    counts steps ending with an env at a joint limit (an active limit constraint)."""
    cpu.seed(1)
    cpu.reset()
    gpu.reset()  # episode step counters back to 0, as the CPU env's (time limits agree)
    rng = np.random.default_rng(2)
    worst = {"obs": 0.0, "reward": 0.0}
    limited = cpu.model.jnt_limited.astype(bool)
    lo, hi = cpu.model.jnt_range[limited].T
    qadr = cpu.model.jnt_qposadr[limited]
    n_limit = 0
    for _ in range(n_steps):
        resync(cpu, gpu)
        a = rng.uniform(-1, 1, (N_ENVS, cpu.action_space.shape[0]))  # float64: no float32 control cost
        (o1, r1, d1, i1), (o2, r2, d2, i2) = _step_both(cpu, gpu, a)
        np.testing.assert_array_equal(d2, d1)
        np.testing.assert_array_equal([i["dt"] for i in i2], [i["dt"] for i in i1])
        np.testing.assert_array_equal(
            [i["TimeLimit.truncated"] for i in i2], [i["TimeLimit.truncated"] for i in i1]
        )
        worst["obs"] = max(worst["obs"], _rel(_terminal(o2, d2, i2), _terminal(o1, d1, i1)))
        worst["reward"] = max(worst["reward"], _rel(r2.astype(np.float64), r1.astype(np.float64)))
        keys = [k for k in i1[0] if k not in ("terminal_observation", "TimeLimit.truncated", "dt")]
        for k in keys:
            err = _rel(np.array([i[k] for i in i2]), np.array([i[k] for i in i1]))
            worst[k] = max(worst.get(k, 0.0), err)
        q, _ = cpu.get_state()
        n_limit += int(np.any((q[:, qadr] <= lo) | (q[:, qadr] >= hi)))
    worst["limit"] = n_limit
    return worst


@pytest.mark.parametrize("task", TASKS)
def test_one_step_parity_at_resynchronised_states(task: str) -> None:
    worst = _one_step_errors(*_pair(task))
    rtol = RTOL_STEP_OF.get(task, RTOL_STEP)
    for k, err in worst.items():
        if k not in ("reward", "limit"):
            assert err <= rtol, (k, err)
    # rewards are float32 in the VecEnv API on both backends: compare at float32 resolution
    assert worst["reward"] <= 1e-6, worst["reward"]


def _reacher_xml_with_tolerance_zero(directory) -> str:
    """Gymnasium's reacher.xml with the constraint solver's tolerance set to 0 (it then iterates until the
    iterate stops changing or ``opt.iterations``, 100, are spent), as a file in ``directory``."""
    from gymnasium.envs.mujoco.mujoco_env import expand_model_path

    with open(expand_model_path("reacher.xml")) as f:
        text = f.read()
    assert text.count("<option ") == 1, "reacher.xml's <option> element is not where expected"
    path = directory / "reacher_tolerance0.xml"
    path.write_text(text.replace("<option ", '<option tolerance="0" '))
    return str(path)


def test_reacher_gap_is_the_solvers_stopping_rule(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Reacher's one-step gap at the default tolerance (RTOL_STEP_REACHER) is where MuJoCo's and MJX's
    solvers stop: the same states, actions and timing with the solver tolerance at 0 (both solve to
    round-off) agree within RTOL_STEP, as the other tasks; the states include active joint limits."""
    default = _one_step_errors(*_pair("Reacher"))
    xml = _reacher_xml_with_tolerance_zero(tmp_path_factory.mktemp("reacher"))
    cpu0, gpu0 = _pair("Reacher", xml)
    assert cpu0.model.opt.tolerance == 0 and gpu0.model.opt.tolerance == 0
    exact = _one_step_errors(cpu0, gpu0)
    gaps = f"tolerance 1e-8: {default['obs']:.1e}, tolerance 0: {exact['obs']:.1e}"
    print(f"Reacher one step, worst relative observation error: {gaps}")
    assert exact["limit"] >= 5 and default["limit"] == exact["limit"], (default["limit"], exact["limit"])
    for k, err in exact.items():
        if k not in ("reward", "limit"):
            assert err <= RTOL_STEP, (k, err)
    # The gap itself: if this fails, MJX and MuJoCo now stop at the same iterate and Reacher can be held to
    # RTOL_STEP at its default tolerance too.
    assert default["obs"] > RTOL_STEP, default["obs"]


@pytest.mark.parametrize("task", TASKS)
def test_trajectory_parity_50_steps(task: str) -> None:
    cpu, gpu = _pair(task)
    cpu.seed(3)
    cpu.reset()
    gpu.reset()  # episode step counters back to 0, as the CPU env's
    resync(cpu, gpu)
    rng = np.random.default_rng(4)
    per_env = np.zeros(N_ENVS)  # worst relative error of each env over the 50 steps
    for _ in range(50):
        a = rng.uniform(-1, 1, (N_ENVS, cpu.action_space.shape[0]))
        (o1, _r1, d1, i1), (o2, _r2, d2, i2) = _step_both(cpu, gpu, a)
        np.testing.assert_array_equal(d2, d1)
        np.testing.assert_array_equal([i["dt"] for i in i2], [i["dt"] for i in i1])
        t1, t2 = _terminal(o1, d1, i1), _terminal(o2, d2, i2)
        err = np.max(np.abs(t2 - t1) / np.maximum(np.abs(t1), 1.0), axis=1)
        per_env = np.maximum(per_env, err)
        done = np.flatnonzero(d1).tolist()
        if done:  # identical resets: both reset the same envs; continue from the CPU's reset state
            assert all("terminal_observation" in i2[k] for k in done)
            resync(cpu, gpu, done)
    print(f"{task}: per-env worst relative error over 50 steps: {np.array2string(per_env, precision=1)}")
    # Contact dynamics are chaotic: a 1e-14 difference per step (solver round-off) can grow by 1e8 in
    # 50 steps of random actions when a contact flickers. Typical envs stay well within 1e-6; the worst
    # one of the six is held to 1e-4 (measured on HalfCheetah: median 1e-9, worst 2e-6 at step 40).
    assert np.median(per_env) <= RTOL_TRAJ, per_env
    assert per_env.max() <= 1e-4, per_env


def test_terminations_and_resets_agree_hopper() -> None:
    """Hopper falls under strong random actions: both backends end the same envs at the same steps, reset
    them (episode_steps back to 0, reset noise within the v5 bounds) and report the same terminal data."""
    cpu, gpu = _pair("Hopper")
    cpu.seed(5)
    cpu.reset()
    resync(cpu, gpu)
    rng = np.random.default_rng(6)
    ends = 0
    init = cpu.model.qpos0
    for _ in range(120):
        a = rng.uniform(-1, 1, (N_ENVS, 3))
        (_, _, d1, i1), (_o2, _, d2, i2) = _step_both(cpu, gpu, a)
        np.testing.assert_array_equal(d2, d1)
        for k in np.flatnonzero(d1):
            assert i2[k]["TimeLimit.truncated"] == i1[k]["TimeLimit.truncated"]
            np.testing.assert_allclose(
                i2[k]["terminal_observation"], i1[k]["terminal_observation"], rtol=1e-6
            )
        if d1.any():
            ids = np.flatnonzero(d1)
            ends += ids.size
            assert np.all(gpu.episode_steps[ids] == 0)
            q, v = gpu.get_state()
            assert np.all(np.abs(q[ids] - init) <= 5e-3) and np.all(np.abs(v[ids]) <= 5e-3)
            resync(cpu, gpu, ids.tolist())
    assert ends >= 3  # the test exercised terminations


def test_nan_state_is_reset_as_on_cpu() -> None:
    """A non-finite velocity is caught at the next substep as mj_step does on CPU: the env restarts from
    the model's initial state with zero controls for the rest of the step; both backends then agree."""
    cpu, gpu = _pair("HalfCheetah")
    cpu.seed(7)
    cpu.reset()
    resync(cpu, gpu)
    q, v = cpu.get_state()
    v[2, 3] = np.nan
    gpu.set_state(q, v, warmstart=_warmstart(cpu))
    cpu.task.qvel[2, 3] = np.nan  # into the live batch state: set_state's mj_forward would reset it already
    a = np.full((N_ENVS, 6), 0.5)
    with pytest.warns(RuntimeWarning, match=r"envs \[2\] reached a non-finite"):
        (o1, r1, _, _), (o2, r2, _, i2) = _step_both(cpu, gpu, a)
    assert i2[2]["physics_reset"] is True and "physics_reset" not in i2[1]
    assert np.isfinite(o2).all()
    assert _rel(o2, o1) <= RTOL_STEP and _rel(r2.astype(float), r1.astype(float)) <= 1e-6
    # the reset env moved with zero controls after the reset: far from where the 0.5 actions take it
    q2, _ = gpu.get_state()
    assert abs(q2[2, 0]) < 0.05


def test_wrapper_layout_and_dt_match_cpu() -> None:
    """make_vec_env(..., backend="mjx") gives the CPU backend's wrapper chain and observation layout
    (velocity mask) and the same dt support under the catalogue's jitter, drawn on device."""
    from lnn_control.sim.make import make_vec_env
    from lnn_control.sim.mjx import MjxVecEnv

    name = "HalfCheetah-NoVel-Jitter-v0"
    cpu = make_vec_env(name, N_ENVS, seed=0, monitor=False)
    gpu = make_vec_env(name, N_ENVS, seed=0, monitor=False, backend="mjx", x64=True)
    assert isinstance(gpu.venv, MjxVecEnv) and type(gpu) is type(cpu)
    np.testing.assert_array_equal(gpu.indices, cpu.indices)
    assert gpu.observation_space == cpu.observation_space
    obs = gpu.reset()
    np.testing.assert_array_equal(obs, gpu.venv.observe()[:, gpu.indices])
    cpu.reset()
    dts_gpu, dts_cpu = [], []
    for _ in range(30):
        a = np.zeros((N_ENVS, 6))
        _, _, _, infos = gpu.step(a)
        dts_gpu += [i["dt"] for i in infos]
        _, _, _, infos = cpu.step(a)
        dts_cpu += [i["dt"] for i in infos]
    substeps_gpu = np.rint(np.array(dts_gpu) / 0.01).astype(int)
    substeps_cpu = np.rint(np.array(dts_cpu) / 0.01).astype(int)
    # rint(5 * U[0.5, 1.5]): 3..7 substeps (2 and 8 only at the interval's ends)
    assert set(substeps_cpu) <= set(range(2, 9)) and set(substeps_gpu) <= set(range(2, 9))
    assert set(substeps_gpu) >= {3, 4, 5, 6, 7}
    assert abs(substeps_gpu.mean() - 5.0) < 0.3  # 180 draws, sd of the mean ~0.1


#: float32 MJX against the float64 CPU backend, one control step from the same state: the documented
#: tolerance of float32 simulation (relative for entries above 1, absolute below).
RTOL_FLOAT32 = 2e-3


def test_float32_and_randomised_models_one_step() -> None:
    """float32 physics (the GPU default) with per-env randomised models, against the CPU backend with the
    same seed (hence the same models): one step from re-synchronised states within RTOL_FLOAT32. A wrong
    per-env field (the models differ by up to 30% in mass) would be off by far more."""
    from lnn_control.sim.mjx import MjxVecEnv
    from lnn_control.sim.randomization import ModelRandomization

    spec = ModelRandomization(
        mass_scale=(0.7, 1.3),
        friction_scale=(0.5, 1.5),
        damping_scale=(0.7, 1.3),
        actuator_gain_scale=(0.7, 1.3),
    )
    cpu = BatchedMujocoVecEnv("HalfCheetah", N_ENVS, seed=21, randomization=spec, nthread=1)
    gpu = MjxVecEnv("HalfCheetah", N_ENVS, seed=21, randomization=spec, x64=False)
    assert gpu.observation_space.dtype == np.float32
    rng = np.random.default_rng(8)
    worst_obs = worst_rew = 0.0
    for _ in range(30):
        resync(cpu, gpu)
        a = rng.uniform(-1, 1, (N_ENVS, 6)).astype(np.float32)
        (o1, r1, d1, _), (o2, r2, d2, _) = _step_both(cpu, gpu, a)
        np.testing.assert_array_equal(d2, d1)
        assert o2.dtype == np.float32
        worst_obs = max(worst_obs, _rel(o2.astype(np.float64), o1))
        worst_rew = max(worst_rew, _rel(r2.astype(np.float64), r1.astype(np.float64)))
    print(f"float32 + randomised HalfCheetah: worst relative obs {worst_obs:.1e}, reward {worst_rew:.1e}")
    assert worst_obs <= RTOL_FLOAT32 and worst_rew <= RTOL_FLOAT32


def test_torch_interface_equals_numpy_api_without_copies() -> None:
    """step_torch/reset_torch give the numpy API's results as torch tensors that share the JAX buffers
    (DLPack, CPU here; the GPU case is in test_sim_mjx_gpu.py)."""
    import torch

    cpu, gpu = _pair("HalfCheetah")
    gpu.seed(9)
    obs_t = gpu.reset_torch()
    assert isinstance(obs_t, torch.Tensor) and obs_t.data_ptr() == gpu._obs.unsafe_buffer_pointer()
    np.testing.assert_array_equal(obs_t.numpy(), gpu.observe())
    cpu.seed(10)
    cpu.reset()
    rng = np.random.default_rng(11)
    for _ in range(3):
        resync(cpu, gpu)
        key = gpu._key
        a = rng.uniform(-1, 1, (N_ENVS, 6))
        o, r, d, infos = gpu.step(a)
        resync(cpu, gpu)
        gpu._key = key  # the same timing draw
        out = gpu.step_torch(torch.from_numpy(a))
        assert out.obs.data_ptr() == gpu._obs.unsafe_buffer_pointer()
        np.testing.assert_array_equal(out.obs.numpy(), o)
        np.testing.assert_array_equal(out.reward.numpy().astype(np.float32), r)
        np.testing.assert_array_equal((out.terminated | out.truncated).numpy(), d)
        np.testing.assert_array_equal(out.dt.numpy(), [i["dt"] for i in infos])
    with pytest.raises(ValueError, match=r"actions must have shape \(6, 6\)"):
        gpu.step_torch(torch.zeros(6, 5))


def test_torch_vec_env_applies_mask_and_dt_like_the_numpy_wrappers() -> None:
    """TorchVecEnv (mask + appended dt on device) gives the numpy Vec* wrappers' observations, terminal
    observations included, on Hopper (which ends episodes often); both envs share a seed, hence the JAX
    timing and reset draws."""
    import torch

    from lnn_control.sim.catalogue import AppendDtSpec, MaskSpec
    from lnn_control.sim.masks import observation_indices
    from lnn_control.sim.mjx import MjxVecEnv, TorchVecEnv
    from lnn_control.sim.vec_wrappers import VecAppendDt, VecObservationMask

    def make() -> MjxVecEnv:  # the Hopper pair's configuration: its compiled program is reused
        return MjxVecEnv("Hopper", N_ENVS, seed=12, timing=_timing("Hopper"), x64=True)

    idx = observation_indices("Hopper", "novel", 11)
    ref = VecAppendDt(VecObservationMask(make(), idx), nominal_dt=0.008)
    wrappers = [MaskSpec(kind="novel"), AppendDtSpec()]
    tenv = TorchVecEnv(make(), wrappers, base="Hopper", nominal_dt=0.008)
    numpy_api = TorchVecEnv(make(), wrappers, base="Hopper", nominal_dt=0.008)  # the same, through SB3's API
    assert tenv.observation_size == len(idx) + 1 == ref.observation_space.shape[0]
    assert numpy_api.observation_space.shape == ref.observation_space.shape
    first = ref.reset()
    np.testing.assert_array_equal(tenv.reset_torch().numpy(), first)
    np.testing.assert_array_equal(numpy_api.reset(), first)
    rng = np.random.default_rng(13)
    ends = 0
    for _ in range(60):
        a = rng.uniform(-1, 1, (N_ENVS, 3))
        o, r, d, infos = ref.step(a)
        out = tenv.step_torch(torch.from_numpy(a))
        o2, r2, d2, infos2 = numpy_api.step(a)
        np.testing.assert_array_equal(out.obs.numpy(), o)
        np.testing.assert_array_equal(o2, o)
        np.testing.assert_array_equal(r2, r)
        np.testing.assert_array_equal(d2, d)
        assert [i["dt"] for i in infos2] == [i["dt"] for i in infos]
        np.testing.assert_array_equal(out.reward.numpy().astype(np.float32), r)
        np.testing.assert_array_equal((out.terminated | out.truncated).numpy(), d)
        for k in np.flatnonzero(d):
            np.testing.assert_array_equal(out.terminal_obs[k].numpy(), infos[k]["terminal_observation"])
            np.testing.assert_array_equal(infos2[k]["terminal_observation"], infos[k]["terminal_observation"])
            assert infos2[k]["TimeLimit.truncated"] == infos[k].get("TimeLimit.truncated", False)
            assert o[k, -1] == 0.008  # a reset observation carries the nominal dt
        ends += int(d.sum())
    assert ends >= 2
