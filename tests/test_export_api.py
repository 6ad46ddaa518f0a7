"""``export_policy``: sidecar contents, atomic writes, model/VecNormalize from paths, LTC max_step, errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

import lnn_control
from lnn_control.export import build_actor, export_policy
from lnn_control.sb3 import LiquidPPO
from lnn_control.sb3.diagnostic_envs import CueMemoryEnv


def _model(env=None, **policy_kwargs) -> LiquidPPO:
    env = env if env is not None else DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    policy_kwargs.setdefault("net_arch", dict(pi=[8], vf=[8]))
    policy_kwargs.setdefault("units", 6)
    return LiquidPPO(
        "LiquidPolicy", env, n_steps=32, seq_len=8, batch_size=32, seed=0, policy_kwargs=policy_kwargs
    )


def test_sidecars_describe_their_artefacts(tmp_path: Path) -> None:
    env = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), norm_reward=False, clip_obs=4.0)
    paths = export_policy(_model(env, cell="cfc"), tmp_path, obs_names=["cos", "sin", "omega"])
    assert set(paths) == {
        "torchscript",
        "torchscript_sidecar",
        "onnx",
        "onnx_sidecar",
        "c_source",
        "c_header",
        "c_sidecar",
    }
    for fmt, key in (("torchscript", "torchscript"), ("onnx", "onnx"), ("c", "c_source")):
        meta = json.loads(paths[f"{fmt}_sidecar"].read_text())
        artefact = paths[key]
        assert meta["artifact"] == artefact.name and meta["artifact_format"] == fmt
        assert meta["sha256"] == hashlib.sha256(artefact.read_bytes()).hexdigest()
        assert meta["lnn_control_version"] == lnn_control.__version__
        assert (meta["obs_dim"], meta["act_dim"], meta["state_dim"]) == (3, 1, 6)
        assert (meta["num_layers"], meta["state_size"], meta["cell"]) == (1, 6, "cfc")
        assert meta["dt"]["units"] == "seconds" and meta["dt"]["nominal"] == pytest.approx(0.05)
        assert meta["observation"]["names"] == ["cos", "sin", "omega"]
        assert meta["observation"]["normalization"]["clip_obs"] == 4.0
        assert meta["action"] == {"low": [-2.0], "high": [2.0], "postprocess": "clip"}
        assert meta["signature"]["inputs"]["h"] == ["B", 6]
    c_meta = json.loads(paths["c_sidecar"].read_text())
    assert c_meta["companions"] == {"policy.h": hashlib.sha256(paths["c_header"].read_bytes()).hexdigest()}
    assert json.loads(paths["onnx_sidecar"].read_text())["onnx"]["opset"] == 17
    graph = onnx.load(str(paths["onnx"]))
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 17)]
    assert {node.domain for node in graph.graph.node} == {""}  # standard operators only
    module = torch.jit.load(str(paths["torchscript"]))
    assert module.initial_state(4).shape == (4, 6) and not module.initial_state(4).any()
    assert module.state_dim == 6 and module.obs_dim == 3 and module.act_dim == 1


def test_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file is written to a temporary file in the same directory and moved with os.replace; a failing
    export leaves the previous artefacts intact and no temporary files behind."""
    model = _model(cell="gru")
    export_policy(model, tmp_path, formats=("onnx", "c"))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    moves: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        moves.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    export_policy(model, tmp_path, formats=("onnx", "c"))
    assert {dst.name for _, dst in moves} == set(before)
    assert all(src.parent == dst.parent == tmp_path and src.name.endswith(".tmp") for src, dst in moves)

    def failing(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing)
    with torch.no_grad():
        model.policy.action_net.bias.add_(1.0)  # a different model: different bytes would be written
    with pytest.raises(OSError, match="disk full"):
        export_policy(model, tmp_path, formats=("onnx", "c"))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_export_from_saved_files_after_training(tmp_path: Path) -> None:
    """Train briefly, save model and VecNormalize, export from the paths: the ONNX actor matches predict."""
    env = VecNormalize(DummyVecEnv([lambda: gym.make("Pendulum-v1")]), norm_reward=False)
    model = _model(env, cell="cfc", cell_kwargs=dict(backbone_units=8)).learn(64)
    model.save(tmp_path / "model.zip")
    env.save(str(tmp_path / "vecnormalize.pkl"))
    paths = export_policy(
        tmp_path / "model.zip",
        tmp_path / "out",
        formats=("onnx",),
        vec_normalize=tmp_path / "vecnormalize.pkl",
    )
    meta = json.loads(paths["onnx_sidecar"].read_text())
    assert meta["observation"]["normalization"]["kind"] == "VecNormalize"
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    h = np.zeros((1, meta["state_dim"]), dtype=np.float32)
    state = None
    for _ in range(30):
        obs = rng.standard_normal((1, 3)).astype(np.float32)
        expected, state = model.predict(env.normalize_obs(obs), state, deterministic=True, dt=0.05)
        action, h = session.run(None, {"obs": obs, "h": h, "dt": np.full((1, 1), 0.05, np.float32)})
        np.testing.assert_allclose(action, expected, rtol=1e-5, atol=1e-5)


def test_ltc_max_step_is_exact_up_to_max_dt(tmp_path: Path) -> None:
    """Per-sample substep counts under a fixed bound: exact for every dt <= max_dt, a batch mixing counts."""
    # max_step is in the cores' time units: the env's nominal period, 0.05 s, so 0.2 units = 0.01 s.
    model = _model(cell="ltc", cell_kwargs=dict(unfolds=2, max_step=0.2))
    with pytest.raises(ValueError, match="max_dt must be a positive number"):
        build_actor(model, max_dt=-1.0)
    _, meta = build_actor(model, max_dt=0.08)
    assert meta.cell_config["max_substeps"] == 8 and meta.max_dt == 0.08
    paths = export_policy(model, tmp_path, formats=("onnx",), max_dt=0.08)
    sidecar_dt = json.loads(paths["onnx_sidecar"].read_text())["dt"]
    assert sidecar_dt["max_exact"] == 0.08
    assert sidecar_dt["time_unit"] == pytest.approx(0.05)  # the training env's nominal period
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    dts = np.array([0.0, 0.004, 0.02, 0.0333, 0.08], dtype=np.float32)  # 2 .. 8 substeps, and dt = 0
    obs = np.random.default_rng(1).standard_normal((5, 3)).astype(np.float32)
    state = None
    h = np.zeros((5, meta.state_dim), dtype=np.float32)
    for _ in range(5):
        expected, state = model.predict(obs, state, deterministic=True, dt=dts)
        action, h = session.run(None, {"obs": obs, "h": h, "dt": dts[:, None]})
        np.testing.assert_allclose(action, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(h, state[0], rtol=1e-5, atol=1e-6)
    assert not h[0].any()  # dt = 0 leaves the LTC state where it started


def test_bad_arguments(tmp_path: Path) -> None:
    model = _model(cell="lstm")
    with pytest.raises(ValueError, match=r"formats must be a non-empty subset of .*got \['tflite'\]"):
        export_policy(model, tmp_path, formats=("tflite",))
    with pytest.raises(ValueError, match="prefix must be an identifier"):
        export_policy(model, tmp_path, prefix="my-policy")
    with pytest.raises(ValueError, match="obs_names must name 3 observation entries, got 2"):
        export_policy(model, tmp_path, obs_names=["a", "b"])
    with pytest.raises(ValueError, match="nominal_dt must be a positive number of seconds"):
        export_policy(model, tmp_path, nominal_dt=0.0)
    with pytest.raises(FileNotFoundError, match="model file"):
        export_policy(tmp_path / "missing.zip", tmp_path)
    with pytest.raises(TypeError, match="expected a LiquidPPO model"):
        export_policy(torch.nn.Linear(3, 1), tmp_path)
    discrete = _model(DummyVecEnv([CueMemoryEnv]), cell="cfc")
    assert isinstance(discrete.action_space, spaces.Discrete)
    with pytest.raises(ValueError, match="export supports Box action spaces"):
        export_policy(discrete, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written by failed exports
