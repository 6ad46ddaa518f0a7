"""The torch.export artefacts (ExportedProgram .pt2, AOTInductor package) reproduce the PyTorch policy.

The same guarantee as the TorchScript, ONNX and C exports (see test_export_parity.py, whose cases and
reference rollouts these tests reuse): 1000 steps of raw observations through the baked-in VecNormalize,
irregular dt, an episode reset halfway, actions and states equal to ``LiquidPPO.predict`` within 1e-5. The
AOTInductor package is also run from C++ (libtorch's ``AOTIModelPackageLoader``, no Python), as the
TorchScript one is in test_export_libtorch.py. AOTInductor compiles C++ (20-70 s a model on 2 shared
cores): those tests are slow-marked.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from test_export_parity import CASES, STEPS, TOL, _check, make_model, reference, reset_step, rollout_inputs

from lnn_control.export import ArtifactError, export_policy, load_sidecar

AOTI_CASES = ["cfc-default", "ltc-max_step", "ncp-ltc"]
# Every case runs in `make test`; the quick subset covers each cell kind, wirings, max_step, two layers with
# a projection, and the squashed output.
QUICK_CASES = {
    "cfc-default",
    "ltc-max_step",
    "ncp-ltc",
    "lstm",
    "cfc-2layer-proj-own-critic",
    "cfc-gsde-squash",
}
PT2_CASES = [c if c in QUICK_CASES else pytest.param(c, marks=pytest.mark.slow) for c in sorted(CASES)]


@functools.cache
def exported(case: str, root: str, formats: tuple[str, ...] = ("pt2",)) -> dict[str, Path]:
    model, env = make_model(case)
    options = {"max_dt": 0.1} if case == "ltc-max_step" else {}
    return export_policy(model, Path(root) / case, formats=formats, vec_normalize=env, **options)


@pytest.fixture(scope="module")
def export_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("pt2"))


def _rollout(step, width: int) -> tuple[np.ndarray, np.ndarray]:
    """1000 steps of ``step(obs, h, dt) -> (action, h)`` at batch 1 with the reset halfway."""
    obs, dts = rollout_inputs()
    h = torch.zeros(1, width)
    actions, states = [], []
    with torch.no_grad():
        for t in range(STEPS):
            if t == reset_step():
                h = torch.zeros(1, width)
            action, h = step(torch.from_numpy(obs[t]), h, torch.from_numpy(dts[t]).reshape(1, 1))
            actions.append(action[0].numpy())
            states.append(h[0].numpy())
    return np.stack(actions), np.stack(states)


@pytest.mark.parametrize("case", PT2_CASES)
def test_pt2_parity(case: str, export_root: str) -> None:
    path = exported(case, export_root)["pt2"]
    record, artefact = load_sidecar(path, "pt2")  # the sidecar verifies (SHA-256) and describes it
    step = torch.export.load(str(artefact)).module()
    _check(case, *_rollout(step, record["state_dim"]))


@pytest.mark.parametrize("case", ["cfc-default", "ltc-max_step", "ncp-ltc", "lstm"])
def test_pt2_dynamic_batch(case: str, export_root: str) -> None:
    """Traced with batch 2, the program runs batch 5 like predict on 5 envs (and batch 1 above)."""
    model, env = make_model(case)
    step = torch.export.load(str(exported(case, export_root)["pt2"])).module()
    obs, dts = rollout_inputs(steps=40, batch=5, seed=3)
    state = None
    h = None
    for t in range(40):
        expected, state = model.predict(env.normalize_obs(obs[t]), state, deterministic=True, dt=dts[t])
        flat = np.transpose(state, (1, 0, 2)).reshape(5, -1)
        if h is None:
            h = torch.zeros(5, flat.shape[1])
        with torch.no_grad():
            action, h = step(torch.from_numpy(obs[t]), h, torch.from_numpy(dts[t][:, None]))
        np.testing.assert_allclose(action.numpy(), expected, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(h.numpy(), flat, rtol=TOL, atol=TOL)


def test_pt2_sidecar_and_embedded_metadata(export_root: str) -> None:
    paths = exported("ncp-ltc", export_root)
    record, artefact = load_sidecar(paths["pt2_sidecar"], "pt2")
    assert artefact == paths["pt2"]
    assert record["artifact_format"] == "pt2" and record["dt"]["units"] == "seconds"
    assert record["signature"]["inputs"]["h"] == ["B", record["state_dim"]]
    assert record["pt2"]["inputs"] == ["obs", "h", "dt"] and "torch.export.load" in record["pt2"]["load"]
    extra = {"lnn_control_meta.json": ""}
    torch.export.load(str(artefact), extra_files=extra)
    embedded = json.loads(extra["lnn_control_meta.json"])
    assert {k: v for k, v in record.items() if k in embedded} == embedded
    # A changed byte is rejected before anything runs.
    data = bytearray(artefact.read_bytes())
    data[len(data) // 2] ^= 1
    tampered = Path(export_root) / "tampered"
    tampered.mkdir(exist_ok=True)
    (tampered / artefact.name).write_bytes(bytes(data))
    shutil.copy(paths["pt2_sidecar"], tampered / paths["pt2_sidecar"].name)
    with pytest.raises(ArtifactError, match="does not match its sidecar"):
        load_sidecar(tampered / artefact.name, "pt2")


def test_pt2_export_inside_no_grad_matches(export_root: str) -> None:
    """Callers often export inside ``torch.no_grad()``; the program is the same step (batch 1, 200 steps)."""
    model, env = make_model("ncp-cfc")
    with torch.no_grad():
        path = export_policy(model, Path(export_root) / "no-grad", formats=("pt2",), vec_normalize=env)["pt2"]
    step = torch.export.load(str(path)).module()
    actions, states = _rollout(step, reference("ncp-cfc")[1].shape[1])
    np.testing.assert_allclose(actions, reference("ncp-cfc")[0], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(states, reference("ncp-cfc")[1], rtol=TOL, atol=TOL)


# ------------------------------------------------------------------------------------------- AOTInductor
def _aoti(case: str, root: str) -> dict[str, Path]:
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.fail("the AOTInductor tests need a C++ compiler (g++), like the libtorch test")
    return exported(case, root, ("aoti",))


@pytest.mark.slow
@pytest.mark.parametrize("case", AOTI_CASES)
def test_aoti_parity_in_python(case: str, export_root: str) -> None:
    paths = _aoti(case, export_root)
    record, artefact = load_sidecar(paths["aoti"], "aoti")
    runner = torch._inductor.aoti_load_package(str(artefact))
    _check(case, *_rollout(lambda o, h, d: runner(o, h, d), record["state_dim"]))
    with zipfile.ZipFile(artefact) as archive:  # a pt2 archive holding the compiled library
        assert any(name.endswith(".so") for name in archive.namelist())


HARNESS = r"""
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>
#include <cstdio>
#include <fstream>
#include <vector>

// usage: harness PACKAGE.aoti.pt2 INPUTS.txt N_OBS N_STATE STEPS
// INPUTS.txt holds, per step, a reset flag (1: zero the state first), N_OBS observation values and dt;
// prints each step's action and state.
int main(int argc, char** argv) {
  if (argc != 6) return 2;
  torch::inductor::AOTIModelPackageLoader loader(argv[1]);
  std::ifstream in(argv[2]);
  const int64_t n_obs = std::stol(argv[3]), n_state = std::stol(argv[4]), steps = std::stol(argv[5]);
  torch::Tensor h = torch::zeros({1, n_state});
  for (int64_t t = 0; t < steps; ++t) {
    int reset = 0;
    float dt = 0.f;
    std::vector<float> values(n_obs);
    in >> reset;
    for (auto& v : values) in >> v;
    in >> dt;
    if (!in) return 3;
    if (reset) h = torch::zeros({1, n_state});
    torch::Tensor obs = torch::from_blob(values.data(), {1, n_obs}).clone();
    std::vector<torch::Tensor> out = loader.run({obs, h, torch::full({1, 1}, dt)});
    h = out[1];
    for (int64_t i = 0; i < out[0].size(1); ++i) std::printf("%.9g ", out[0][0][i].item<float>());
    std::printf("|");
    for (int64_t i = 0; i < n_state; ++i) std::printf(" %.9g", h[0][i].item<float>());
    std::printf("\n");
  }
  return 0;
}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C++ harness, compiled and linked against the libtorch inside the torch wheel."""
    root = tmp_path_factory.mktemp("aoti-harness")
    torch_dir = Path(torch.__file__).parent
    (root / "harness.cpp").write_text(HARNESS)
    binary = root / "harness"
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
@pytest.mark.parametrize("case", ["cfc-default", "ncp-ltc"])
def test_aoti_package_runs_in_cpp(case: str, export_root: str, harness: Path, tmp_path: Path) -> None:
    paths = _aoti(case, export_root)
    record, artefact = load_sidecar(paths["aoti"], "aoti")
    obs, dts = rollout_inputs()
    rows = [
        " ".join([str(int(t == reset_step())), *(f"{v:.9g}" for v in obs[t, 0]), f"{dts[t, 0]:.9g}"])
        for t in range(STEPS)
    ]
    (tmp_path / "inputs.txt").write_text("\n".join(rows) + "\n")
    command = [str(harness), str(artefact), str(tmp_path / "inputs.txt")]
    command += [str(record["obs_dim"]), str(record["state_dim"]), str(STEPS)]
    printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()
    assert len(printed) == STEPS
    actions = np.array([[float(v) for v in line.split("|")[0].split()] for line in printed])
    states = np.array([[float(v) for v in line.split("|")[1].split()] for line in printed])
    _check(case, actions, states)


def test_format_lists_agree() -> None:
    """The run layer and the CLI repeat the exporter's format lists (to stay torch-free): they must agree."""
    from lnn_control.cli import build_parser
    from lnn_control.export import DEFAULT_FORMATS, FORMATS
    from lnn_control.runs.run_export import DEFAULT_EXPORT_FORMATS, EXPORT_FORMATS

    assert (EXPORT_FORMATS, DEFAULT_EXPORT_FORMATS) == (FORMATS, DEFAULT_FORMATS)
    export = build_parser()._subparsers._group_actions[0].choices["export"]
    (action,) = [a for a in export._actions if a.dest == "format"]
    assert tuple(action.choices) == FORMATS


def test_aoti_without_a_compiler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No C++ compiler (simulated): the aoti format fails up front with one line, nothing is written."""
    import torch._inductor.cpp_builder as cpp_builder

    from lnn_control.export import ToolchainError

    def no_compiler() -> str:
        raise RuntimeError("No working C compiler detected")

    monkeypatch.setattr(cpp_builder, "get_cpp_compiler", no_compiler)
    model, env = make_model("cfc-default")
    out = tmp_path / "export"
    with pytest.raises(ToolchainError, match=r"no C\+\+ compiler found .*install g\+\+ or set \$CXX") as info:
        export_policy(model, out, formats=("pt2", "aoti"), vec_normalize=env)
    assert "\n" not in str(info.value) and not out.exists()
