"""Exported actors (TorchScript, ONNX, C) reproduce the PyTorch policy's deterministic actions and states.

Every format x every cell type: 1000 steps with random raw observations (through the VecNormalize baked into
the artefact, clipping included), irregular dt in U[0.5, 1.5] x nominal and an episode reset halfway; actions
and states match ``LiquidPPO.predict(..., deterministic=True)`` to 1e-5. Exports trace with batch 2 and run
with batch 1 here, and with batch 5 in ``test_dynamic_batch``.

The fast suite runs the three formats for one case of each kind (CfC, LTC, NCP, LSTM: :data:`FAST_CASES`);
the other cases are marked slow (``make test`` runs them). Each case's export and reference rollout are
computed once and shared by its format tests.
"""

from __future__ import annotations

import ctypes
import functools
import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from lnn_control.export import export_policy
from lnn_control.sb3 import LiquidPPO

STEPS = 1000
TOL = 1e-5
NOMINAL_DT = 0.05  # Pendulum-v1
GCC = ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", "-shared", "-fPIC"]

CASES: dict[str, dict] = {
    "cfc-default": dict(cell="cfc", units=8, cell_kwargs=dict(backbone_units=16)),
    "cfc-no_gate": dict(
        cell="cfc", units=8, cell_kwargs=dict(mode="no_gate", backbone_units=16, backbone_layers=2)
    ),
    "cfc-pure": dict(
        cell="cfc", units=8, cell_kwargs=dict(mode="pure", backbone_units=16, backbone_activation="silu")
    ),
    "ltc-semi_implicit": dict(cell="ltc", units=8),
    "ltc-euler": dict(cell="ltc", units=8, cell_kwargs=dict(solver="euler")),
    "ltc-rk4": dict(cell="ltc", units=8, cell_kwargs=dict(solver="rk4", unfolds=6)),
    "ltc-max_step": dict(cell="ltc", units=8, cell_kwargs=dict(unfolds=2, max_step=0.2)),  # time units
    "ncp-cfc": dict(cell="cfc", units=12, wiring="ncp", wiring_kwargs=dict(output_size=2)),
    "ncp-ltc": dict(cell="ltc", units=12, wiring="ncp", wiring_kwargs=dict(output_size=2)),
    "lstm": dict(cell="lstm", units=8),
    "gru": dict(cell="gru", units=8, cell_kwargs=dict(num_layers=2)),
    "cfc-2layer-proj-own-critic": dict(
        cell="cfc",
        units=8,
        cell_kwargs=dict(num_layers=2, proj_size=4, backbone_units=16),
        critic="separate",
        activation_fn=torch.nn.ReLU,
    ),
    "cfc-gsde-squash": dict(cell="cfc", units=8, cell_kwargs=dict(backbone_units=16), squash_output=True),
}


FAST_CASES = ("cfc-default", "ltc-semi_implicit", "ncp-ltc", "lstm")
CASE_PARAMS = [pytest.param(c, marks=() if c in FAST_CASES else pytest.mark.slow) for c in sorted(CASES)]


def _vec_env() -> VecNormalize:
    """Pendulum in a VecNormalize whose observation statistics are far from (0, 1), clip_obs = 3."""
    env = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), norm_reward=False, clip_obs=3.0)
    rng = np.random.default_rng(1)
    env.obs_rms.mean = rng.normal(0.0, 0.5, 3)
    env.obs_rms.var = rng.uniform(0.2, 2.0, 3)
    return env


def make_model(case: str) -> tuple[LiquidPPO, VecNormalize]:
    """An untrained model whose parameters are perturbed so that every part matters (no tiny action_net)."""
    kwargs = dict(CASES[case])
    kwargs["net_arch"] = dict(pi=[16], vf=[16])
    use_sde = bool(kwargs.get("squash_output"))
    env = _vec_env()
    model = LiquidPPO(
        "LiquidPolicy",
        env,
        n_steps=16,
        seq_len=8,
        batch_size=16,
        seed=0,
        use_sde=use_sde,
        policy_kwargs=kwargs,
    )
    # CfC "pure" has no tanh bounding its state: larger perturbations make it chaotic (float32 rounding
    # differences then grow without bound in any implementation), so it gets a smaller one; so does
    # "no_gate", whose time gate at one time unit per step (the policy's time unit) amplifies them too.
    scale = {"cfc-pure": 0.1, "cfc-no_gate": 0.2}.get(case, 0.3)
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.policy.named_parameters():
            if "log_std" not in name:
                p.add_(scale * torch.randn(p.shape, generator=generator))
    return model, env


def rollout_inputs(steps: int = STEPS, batch: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw observations (steps, batch, 3) with outliers beyond clip_obs, dt (steps, batch) irregular."""
    rng = np.random.default_rng(seed)
    obs = (rng.standard_normal((steps, batch, 3)) * 2.0).astype(np.float32)
    dts = (NOMINAL_DT * rng.uniform(0.5, 1.5, (steps, batch))).astype(np.float32)
    return obs, dts


def reset_step(steps: int = STEPS) -> int:
    return steps // 2


@functools.cache
def reference(case: str) -> tuple[np.ndarray, np.ndarray]:
    """The PyTorch policy's deterministic actions (steps, 1) and flat states (steps, H_total)."""
    model, env = make_model(case)
    obs, dts = rollout_inputs()
    actions, states, state = [], [], None
    for t in range(STEPS):
        start = np.array([t == reset_step()])
        action, state = model.predict(
            env.normalize_obs(obs[t]), state, episode_start=start, deterministic=True, dt=dts[t]
        )
        actions.append(action[0])
        states.append(np.transpose(state, (1, 0, 2)).reshape(-1))
    return np.stack(actions), np.stack(states)


@functools.cache
def exported(case: str, root: str) -> dict[str, Path]:
    model, env = make_model(case)
    options = {"max_dt": 0.1} if case == "ltc-max_step" else {}
    return export_policy(model, Path(root) / case, vec_normalize=env, **options)


@pytest.fixture(scope="module")
def export_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("exports"))


def compile_c(paths: dict[str, Path], prefix: str = "policy") -> ctypes.CDLL:
    """Compile the generated C warning-free into a shared library and bind ``<prefix>_step`` / ``_reset``."""
    source = paths["c_source"]
    library = source.with_suffix(".so")
    result = subprocess.run([*GCC, str(source), "-o", str(library), "-lm"], capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr, result.stderr
    lib = ctypes.CDLL(str(library))
    floats = ctypes.POINTER(ctypes.c_float)
    step = getattr(lib, f"{prefix}_step")
    step.restype = ctypes.c_int
    step.argtypes = [floats, floats, ctypes.c_float, floats]
    getattr(lib, f"{prefix}_reset").argtypes = [floats]
    return lib


def _check(case: str, actions: np.ndarray, states: np.ndarray) -> None:
    expected_actions, expected_states = reference(case)
    np.testing.assert_allclose(actions, expected_actions, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(states, expected_states, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_torchscript_parity(case: str, export_root: str) -> None:
    module = torch.jit.load(str(exported(case, export_root)["torchscript"]))
    obs, dts = rollout_inputs()
    h = module.initial_state(1)
    actions, states = [], []
    with torch.no_grad():
        for t in range(STEPS):
            if t == reset_step():
                h = module.initial_state(1)
            action, h = module(torch.from_numpy(obs[t]), h, torch.from_numpy(dts[t]).reshape(1, 1))
            actions.append(action[0].numpy())
            states.append(h[0].numpy())
    _check(case, np.stack(actions), np.stack(states))


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_onnx_parity(case: str, export_root: str) -> None:
    session = ort.InferenceSession(
        str(exported(case, export_root)["onnx"]), providers=["CPUExecutionProvider"]
    )
    obs, dts = rollout_inputs()
    width = reference(case)[1].shape[1]
    h = np.zeros((1, width), dtype=np.float32)
    actions, states = [], []
    for t in range(STEPS):
        if t == reset_step():
            h = np.zeros_like(h)
        action, h = session.run(None, {"obs": obs[t], "h": h, "dt": dts[t].reshape(1, 1)})
        actions.append(action[0])
        states.append(h[0])
    _check(case, np.stack(actions), np.stack(states))


@pytest.mark.parametrize("case", CASE_PARAMS)
def test_c_parity(case: str, export_root: str) -> None:
    paths = exported(case, export_root)
    lib = compile_c(paths)
    width = reference(case)[1].shape[1]
    obs, dts = rollout_inputs()
    floats = ctypes.POINTER(ctypes.c_float)
    state = np.full(width, np.nan, dtype=np.float32)
    action = np.zeros(1, dtype=np.float32)
    lib.policy_reset(state.ctypes.data_as(floats))
    assert (state == 0).all()
    actions, states = [], []
    for t in range(STEPS):
        if t == reset_step():
            lib.policy_reset(state.ctypes.data_as(floats))
        o = np.ascontiguousarray(obs[t, 0])
        rc = lib.policy_step(
            o.ctypes.data_as(floats),
            state.ctypes.data_as(floats),
            float(dts[t, 0]),
            action.ctypes.data_as(floats),
        )
        assert rc == 0
        actions.append(action.copy())
        states.append(state.copy())
    _check(case, np.stack(actions), np.stack(states))


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=() if c in FAST_CASES else pytest.mark.slow)
        for c in ("cfc-default", "ltc-max_step", "ncp-cfc", "ncp-ltc", "lstm")
    ],
)
def test_dynamic_batch(case: str, export_root: str) -> None:
    """Traced with batch 2, TorchScript and ONNX run batch 5 (and 1, above) like predict on 5 envs."""
    model, env = make_model(case)
    paths = exported(case, export_root)
    module = torch.jit.load(str(paths["torchscript"]))
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    obs, dts = rollout_inputs(steps=40, batch=5, seed=3)
    state = None
    h_ts = module.initial_state(5)
    h_onnx = h_ts.numpy()
    for t in range(40):
        expected, state = model.predict(env.normalize_obs(obs[t]), state, deterministic=True, dt=dts[t])
        with torch.no_grad():
            action_ts, h_ts = module(torch.from_numpy(obs[t]), h_ts, torch.from_numpy(dts[t][:, None]))
        action_onnx, h_onnx = session.run(None, {"obs": obs[t], "h": h_onnx, "dt": dts[t][:, None]})
        flat = np.transpose(state, (1, 0, 2)).reshape(5, -1)
        for action, h in ((action_ts.numpy(), h_ts.numpy()), (action_onnx, h_onnx)):
            np.testing.assert_allclose(action, expected, rtol=TOL, atol=TOL)
            np.testing.assert_allclose(h, flat, rtol=TOL, atol=TOL)
