"""The generated C: interface (header macros, return codes), warning-free builds, sparse edge lists."""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.export import export_c, export_policy
from lnn_control.nn import LTC, AutoNCP, CfC
from lnn_control.sb3 import LiquidPPO

GCC = ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"]
FLOATS = ctypes.POINTER(ctypes.c_float)


def _model(**policy_kwargs) -> LiquidPPO:
    env = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    policy_kwargs.setdefault("net_arch", dict(pi=[8], vf=[8]))
    return LiquidPPO(
        "LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, seed=0, policy_kwargs=policy_kwargs
    )


def _library(paths: dict[str, Path], prefix: str) -> ctypes.CDLL:
    library = paths["c_source"].with_suffix(".so")
    result = subprocess.run(
        [*GCC, "-shared", "-fPIC", str(paths["c_source"]), "-o", str(library), "-lm"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    lib = ctypes.CDLL(str(library))
    step = getattr(lib, f"{prefix}_step")
    step.restype = ctypes.c_int
    step.argtypes = [FLOATS, FLOATS, ctypes.c_float, FLOATS]
    return lib


def test_harness_program_uses_header_macros(tmp_path: Path) -> None:
    """A C program built against the header alone: the macros give the sizes, and the step runs."""
    paths = export_c(_model(cell="cfc", units=6, cell_kwargs=dict(backbone_units=8)), tmp_path, prefix="ctl")
    harness = tmp_path / "main.c"
    harness.write_text(
        "\n".join(
            [
                "#include <stdio.h>",
                '#include "ctl.h"',
                "int main(void)",
                "{",
                "    float obs[CTL_OBS_DIM] = {0.5f, -0.25f, 1.0f};",
                "    float state[CTL_STATE_DIM];",
                "    float action[CTL_ACT_DIM];",
                "    int rc = 0;",
                "    ctl_reset(state);",
                "    for (int t = 0; t < 10; ++t) rc |= ctl_step(obs, state, CTL_NOMINAL_DT, action);",
                '    printf("%d %d %d %d %.9g %.9g\\n", CTL_OBS_DIM, CTL_ACT_DIM, CTL_STATE_DIM, rc,',
                "           (double)CTL_NOMINAL_DT, (double)action[0]);",
                "    return 0;",
                "}",
                "",
            ]
        )
    )
    binary = tmp_path / "harness"
    build = subprocess.run(
        [*GCC, str(harness), str(paths["c_source"]), "-o", str(binary), "-lm"], capture_output=True, text=True
    )
    assert build.returncode == 0 and not build.stderr, build.stderr
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.split()
    meta = json.loads(paths["c_sidecar"].read_text())
    assert [int(v) for v in out[:3]] == [meta["obs_dim"], meta["act_dim"], meta["state_dim"]] == [3, 1, 6]
    assert int(out[3]) == 0
    assert float(out[4]) == pytest.approx(meta["dt"]["nominal"]) == pytest.approx(0.05)
    # the same 10 steps through predict
    model_action, state = None, None
    model = _model(cell="cfc", units=6, cell_kwargs=dict(backbone_units=8))
    for _ in range(10):
        model_action, state = model.predict(
            np.array([0.5, -0.25, 1.0], dtype=np.float32), state, deterministic=True, dt=0.05
        )
    assert float(out[5]) == pytest.approx(float(model_action[0]), rel=1e-5, abs=1e-6)


def test_invalid_inputs_return_error_codes_and_leave_state(tmp_path: Path) -> None:
    paths = export_c(_model(cell="ltc", units=5), tmp_path, prefix="p")
    lib = _library(paths, "p")
    state = np.zeros(5, dtype=np.float32)
    action = np.full(1, 7.0, dtype=np.float32)
    obs = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    assert (
        lib.p_step(
            obs.ctypes.data_as(FLOATS), state.ctypes.data_as(FLOATS), 0.05, action.ctypes.data_as(FLOATS)
        )
        == 0
    )
    before_state, before_action = state.copy(), action.copy()
    for bad_obs, dt, code in [
        (np.array([0.1, np.nan, 0.3], dtype=np.float32), 0.05, -1),
        (np.array([np.inf, 0.2, 0.3], dtype=np.float32), 0.05, -1),
        (obs, -0.01, -2),
        (obs, float("nan"), -2),
        (obs, float("inf"), -2),
    ]:
        rc = lib.p_step(
            bad_obs.ctypes.data_as(FLOATS), state.ctypes.data_as(FLOATS), dt, action.ctypes.data_as(FLOATS)
        )
        assert rc == code
        np.testing.assert_array_equal(state, before_state)
        np.testing.assert_array_equal(action, before_action)
    # dt = 0: an LTC's state does not move
    assert (
        lib.p_step(
            obs.ctypes.data_as(FLOATS), state.ctypes.data_as(FLOATS), 0.0, action.ctypes.data_as(FLOATS)
        )
        == 0
    )
    np.testing.assert_allclose(state, before_state, rtol=1e-6, atol=1e-7)


def _edge_loop_bounds(source: str) -> list[int]:
    return [int(n) for n in re.findall(r"for \(int e = 0; e < (\d+); \+\+e\)", source)]


def test_ncp_ltc_emits_only_existing_synapses(tmp_path: Path) -> None:
    wiring = AutoNCP(19, 4, seed=3)
    paths = export_c(_model(cell="ltc", units=19, wiring=wiring), tmp_path)
    source = paths["c_source"].read_text()
    built = _model(cell="ltc", units=19, wiring=wiring).policy.recurrent_actor.cells[0].wiring
    bounds = _edge_loop_bounds(source)
    assert sorted(bounds) == sorted([built.synapse_count, built.sensory_synapse_count])
    assert built.synapse_count < 19 * 19 / 4  # really sparse, and only those synapses exist in the C file
    weights = re.search(r"static const float policy_ltc0_wsyn\[(\d+)\]", source)
    assert weights is not None and int(weights.group(1)) == built.synapse_count


def test_ncp_cfc_blocks_are_edge_lists(tmp_path: Path) -> None:
    wiring = AutoNCP(19, 4, seed=3)
    model = _model(cell="cfc", units=19, wiring=wiring)
    paths = export_c(model, tmp_path)
    source = paths["c_source"].read_text()
    cell = model.policy.recurrent_actor.cells[0]
    masked = sum(int(np.count_nonzero(block.mask.numpy())) for block in cell.blocks)
    assert sum(_edge_loop_bounds(source)) == masked  # every head of every existing synapse, nothing else
    assert masked == 4 * (cell.wiring.synapse_count + cell.wiring.sensory_synapse_count)
    assert "policy_cfc0b0_in_wt" not in source  # no dense matrix for the wired blocks


@pytest.mark.parametrize(
    "core",
    [
        lambda: CfC(4, 6, backbone_units=8, proj_size=2),
        lambda: LTC(4, 6, solver="rk4", num_layers=2),
    ],
)
def test_bare_network_with_readout(tmp_path: Path, core) -> None:
    """A network as trained with lnn_control.nn.fit plus a readout: all formats match the module."""
    torch.manual_seed(0)
    net = core()
    readout = torch.nn.Sequential(torch.nn.Linear(net.output_size, 3), torch.nn.Tanh())
    with pytest.raises(ValueError, match="nominal_dt"):
        export_policy(net, tmp_path / "x", readout=readout)
    paths = export_policy(net, tmp_path, readout=readout, nominal_dt=0.02, obs_names=["a", "b", "c", "d"])
    meta = json.loads(paths["onnx_sidecar"].read_text())
    assert meta["observation"]["names"] == ["a", "b", "c", "d"]
    assert meta["action"] == {"low": [None] * 3, "high": [None] * 3, "postprocess": "none"}
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((1, 50, 4)).astype(np.float32))
    dt = torch.from_numpy(rng.uniform(0.01, 0.03, (1, 50)).astype(np.float32))
    with torch.no_grad():
        y, h_n = net(x, dt=dt)
        expected = readout(y)[0].numpy()
    lib = _library(paths, "policy")
    module = torch.jit.load(str(paths["torchscript"]))
    state = np.zeros(meta["state_dim"], dtype=np.float32)
    h = module.initial_state(1)
    action = np.zeros(3, dtype=np.float32)
    for t in range(50):
        obs = np.ascontiguousarray(x[0, t].numpy())
        lib.policy_step(
            obs.ctypes.data_as(FLOATS),
            state.ctypes.data_as(FLOATS),
            float(dt[0, t]),
            action.ctypes.data_as(FLOATS),
        )
        with torch.no_grad():
            ts_action, h = module(x[:, t], h, dt[:, t : t + 1])
        np.testing.assert_allclose(action, expected[t], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ts_action[0].numpy(), expected[t], rtol=1e-5, atol=1e-5)
    flat = h_n.transpose(0, 1).reshape(-1).numpy()
    np.testing.assert_allclose(state, flat, rtol=1e-5, atol=1e-5)
