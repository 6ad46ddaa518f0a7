"""Features behind a pip extra fail with one clear ImportError naming the extra when its package is missing.

A missing package is simulated by ``sys.modules[name] = None`` (then ``import name`` raises
ModuleNotFoundError, as it does where the package is not installed). The CLI side (exit code 2, one line on
stderr) is in test_cli_commands.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.extras import EXTRAS, MissingExtraError, install_hint, require


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _assert_names_extra(err: MissingExtraError, extra: str, module: str) -> None:
    message = str(err)
    assert isinstance(err, ImportError)
    assert "\n" not in message
    assert f"pip install 'lnn-control[{extra}]'" in message
    assert repr(module) in message
    assert (err.extra, err.module, err.name) == (extra, module, module)


def test_require_returns_an_installed_module() -> None:
    import json

    assert require("json", extra="export", feature="JSON") is json


def test_require_names_the_extra_of_a_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "onnx")
    with pytest.raises(MissingExtraError) as info:
        require("onnx", extra="export", feature="ONNX export")
    _assert_names_extra(info.value, "export", "onnx")
    assert str(info.value).startswith("ONNX export needs the Python package 'onnx', which is not installed")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_require_of_a_submodule_names_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "imageio")
    monkeypatch.delitem(sys.modules, "imageio.v2", raising=False)
    with pytest.raises(MissingExtraError) as info:
        require("imageio.v2", extra="video", feature="MP4 video")
    _assert_names_extra(info.value, "video", "imageio")


def test_require_reports_an_installed_package_that_fails_to_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package that is there but whose own import fails (a broken install) is not called 'not installed'."""
    (tmp_path / "lnn_broken_pkg.py").write_text("import lnn_no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError) as info:
        require("lnn_broken_pkg", extra="cluster", feature="Ray sweeps")
    message = str(info.value)
    assert "installed but fails to import" in message
    assert "lnn_no_such_dependency_xyz" in message
    assert install_hint("cluster") in message


def test_require_rejects_an_unknown_extra() -> None:
    with pytest.raises(ValueError, match=r"extra must be one of .*'gpu'.*got 'gpus'"):
        require("json", extra="gpus", feature="x")
    assert "gpu" in EXTRAS  # the GPU backend's extra is accepted before it lands


@pytest.fixture(scope="module")
def model():
    from lnn_control.sb3 import LiquidPPO

    env = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    return LiquidPPO(
        "LiquidPolicy", env, n_steps=16, seq_len=8, batch_size=16, seed=0,
        policy_kwargs={"cell": "cfc", "units": 4, "net_arch": {"pi": [4], "vf": [4]}},
    )  # fmt: skip


@pytest.mark.parametrize("formats", [("onnx",), ("torchscript", "onnx", "c")])
def test_onnx_export_without_the_extra_fails_before_writing(
    model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, formats: tuple[str, ...]
) -> None:
    from lnn_control.export import export_policy

    _hide(monkeypatch, "onnx")
    out = tmp_path / "export"
    with pytest.raises(MissingExtraError) as info:
        export_policy(model, out, formats=formats)
    _assert_names_extra(info.value, "export", "onnx")
    assert not out.exists()  # checked up front: no half-written export


def test_onnx_writer_itself_names_the_extra(model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lnn_control.export import build_actor
    from lnn_control.export.formats import write_onnx

    actor, meta = build_actor(model)
    _hide(monkeypatch, "onnx")
    with pytest.raises(MissingExtraError) as info:
        write_onnx(actor, meta, tmp_path / "p.onnx")
    _assert_names_extra(info.value, "export", "onnx")


def test_controller_without_onnxruntime_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lnn_control.export import Controller
    from lnn_control.export.sidecar import write_sidecar

    artefact = tmp_path / "policy.onnx"
    artefact.write_bytes(b"not read: onnxruntime is missing")
    meta = {"obs_dim": 3, "act_dim": 1, "state_dim": 4, "dt": {"nominal": 0.05}}
    write_sidecar(artefact, "onnx", meta)
    _hide(monkeypatch, "onnxruntime")
    with pytest.raises(MissingExtraError) as info:
        Controller(artefact)
    _assert_names_extra(info.value, "export", "onnxruntime")


@pytest.mark.parametrize("hidden", ["imageio", "imageio_ffmpeg"])
def test_mp4_without_the_video_extra_names_it(monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    from lnn_control.runs.video import check_video_path

    _hide(monkeypatch, hidden)
    with pytest.raises(MissingExtraError) as info:
        check_video_path("policy.mp4")
    _assert_names_extra(info.value, "video", hidden)
    assert check_video_path("policy.gif").name == "policy.gif"  # GIFs need no extra


def test_ray_sweep_without_the_cluster_extra_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lnn_control.runs.config import RunSpec
    from lnn_control.runs.sweep import run_sweep

    _hide(monkeypatch, "ray")
    base = RunSpec(env="InvertedPendulum-v0", agent="liquid-ppo-cfc", timesteps=64)
    with pytest.raises(MissingExtraError) as info:
        run_sweep(base, [0], {}, tmp_path / "sweep", backend="ray")
    _assert_names_extra(info.value, "cluster", "ray")
    assert not (tmp_path / "sweep").exists()
