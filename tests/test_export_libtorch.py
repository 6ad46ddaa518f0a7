"""The TorchScript export loads and runs in C++ libtorch (the libtorch that ships inside the torch wheel)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.export import export_policy
from lnn_control.sb3 import LiquidPPO

HARNESS = r"""
#include <torch/script.h>
#include <cstdio>
#include <fstream>
#include <vector>

// usage: harness MODEL.pt INPUTS.txt N_OBS N_STATE STEPS
// INPUTS.txt holds, per step, N_OBS observation values then dt; prints each step's action and final state.
int main(int argc, char** argv) {
  torch::jit::script::Module model = torch::jit::load(argv[1]);
  std::ifstream in(argv[2]);
  const int64_t n_obs = std::stol(argv[3]), n_state = std::stol(argv[4]), steps = std::stol(argv[5]);
  torch::Tensor h = torch::zeros({1, n_state});
  for (int64_t t = 0; t < steps; ++t) {
    std::vector<float> values(n_obs);
    float dt = 0.f;
    for (auto& v : values) in >> v;
    in >> dt;
    torch::Tensor obs = torch::from_blob(values.data(), {1, n_obs}).clone();
    auto out = model.forward({obs, h, torch::full({1, 1}, dt)}).toTuple();
    torch::Tensor action = out->elements()[0].toTensor();
    h = out->elements()[1].toTensor();
    for (int64_t i = 0; i < action.size(1); ++i) std::printf("%.9g ", action[0][i].item<float>());
    std::printf("\n");
  }
  for (int64_t i = 0; i < n_state; ++i) std::printf("%.9g ", h[0][i].item<float>());
  std::printf("\n");
  return 0;
}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C++ harness, compiled once for the module (it reads any model, so every cell shares it)."""
    root = tmp_path_factory.mktemp("harness")
    torch_dir = Path(torch.__file__).parent
    binary = root / "harness"
    (root / "harness.cpp").write_text(HARNESS)
    subprocess.run(
        [
            "g++", "-std=c++20", "-O1", "-w", str(root / "harness.cpp"), "-o", str(binary),
            f"-I{torch_dir / 'include'}", f"-I{torch_dir / 'include/torch/csrc/api/include'}",
            f"-L{torch_dir / 'lib'}", "-ltorch", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{torch_dir / 'lib'}",
        ],
        check=True,
    )  # fmt: skip
    return binary


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["cfc", "ltc"])
def test_torchscript_export_runs_in_cpp_libtorch(tmp_path: Path, cell: str, harness: Path) -> None:
    env = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    model = LiquidPPO(
        "LiquidPolicy", env, n_steps=32, seq_len=8, batch_size=32, seed=0,
        policy_kwargs={"cell": cell, "units": 8, "net_arch": {"pi": [8], "vf": [8]}},
    )  # fmt: skip
    paths = export_policy(model, tmp_path, formats=("torchscript",), nominal_dt=0.05)

    rng = np.random.default_rng(0)
    steps, n_obs = 50, 3
    observations = rng.normal(size=(steps, n_obs)).astype(np.float32)
    dts = rng.uniform(0.025, 0.075, size=steps).astype(np.float32)
    (tmp_path / "inputs.txt").write_text(
        "\n".join(" ".join(f"{v:.9g}" for v in [*o, d]) for o, d in zip(observations, dts, strict=True))
    )
    scripted = torch.jit.load(str(paths["torchscript"]))
    state_dim = int(scripted.initial_state(1).shape[1])
    command = [str(harness), str(paths["torchscript"]), str(tmp_path / "inputs.txt")]
    command += [str(n_obs), str(state_dim), str(steps)]
    printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split("\n")
    cpp_actions = np.array([[float(v) for v in line.split()] for line in printed[:steps]])
    cpp_state = np.array([float(v) for v in printed[steps].split()])

    # The same steps through the policy itself (deterministic), carrying its state.
    state = None
    for t in range(steps):
        action, state = model.predict(observations[t][None], state=state, deterministic=True, dt=dts[t])
        np.testing.assert_allclose(cpp_actions[t], action[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cpp_state, np.asarray(state).reshape(-1), rtol=1e-5, atol=1e-5)
