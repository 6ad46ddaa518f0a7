"""The torch-free ``Controller``: stepping, reset, measured dt, input errors, artefact verification."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import onnxruntime as ort
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from lnn_control.export import ArtifactError, Controller, export_policy
from lnn_control.sb3 import LiquidPPO

NOMINAL_DT = 0.05  # Pendulum-v1


@pytest.fixture(scope="module")
def artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX export of a small LTC policy (dt matters: a measured dt changes the action)."""
    env = DummyVecEnv([lambda: gym.make("Pendulum-v1")])
    model = LiquidPPO(
        "LiquidPolicy",
        env,
        n_steps=16,
        seq_len=8,
        batch_size=16,
        seed=0,
        policy_kwargs=dict(cell="ltc", units=6, net_arch=dict(pi=[8], vf=[8])),
    )
    with torch.no_grad():
        model.policy.action_net.weight.mul_(100.0)  # actions well away from 0, inside the bounds
    out = tmp_path_factory.mktemp("controller")
    return export_policy(model, out, formats=("onnx",))["onnx"]


def _session_steps(path: Path, obs: np.ndarray, dts: list[float]) -> tuple[list[np.ndarray], np.ndarray]:
    """Reference: the ONNX graph run directly with explicit state."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    width = session.get_inputs()[1].shape[1]
    h = np.zeros((1, width), dtype=np.float32)
    actions = []
    for o, dt in zip(obs, dts, strict=True):
        dt_array = np.array([[dt]], dtype=np.float32)
        action, h = session.run(None, {"obs": o[None].astype(np.float32), "h": h, "dt": dt_array})
        actions.append(action[0])
    return actions, h


class FakeClock:
    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def test_measured_dt_with_injected_clock(artefact: Path) -> None:
    clock = FakeClock()
    ctrl = Controller(artefact, clock=clock)
    assert (ctrl.obs_dim, ctrl.act_dim, ctrl.nominal_dt) == (3, 1, pytest.approx(NOMINAL_DT))
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((4, 3)).astype(np.float32)
    actions = []
    for o, advance in zip(obs, [0.0, 0.03, 0.08, 0.05], strict=True):
        clock.now += advance
        actions.append(ctrl.step(o))
    # first step after reset: nominal dt; then the clock's intervals
    expected, state = _session_steps(artefact, obs, [NOMINAL_DT, 0.03, 0.08, 0.05])
    np.testing.assert_allclose(np.stack(actions), np.stack(expected), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ctrl.state, state, rtol=1e-4, atol=1e-6)
    # the measured intervals matter: the nominal dt everywhere gives other actions
    nominal, _ = _session_steps(artefact, obs, [NOMINAL_DT] * 4)
    assert not np.allclose(np.stack(actions)[1:], np.stack(nominal)[1:], rtol=1e-4, atol=1e-6)


def test_measured_dt_with_monkeypatched_monotonic(artefact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(5.0)
    monkeypatch.setattr("time.monotonic", clock)
    ctrl = Controller(artefact)
    obs = np.full((2, 3), 0.3, dtype=np.float32)
    first = ctrl.step(obs[0])
    clock.now += 0.02
    second = ctrl.step(obs[1])
    expected, _ = _session_steps(artefact, obs, [NOMINAL_DT, 0.02])
    np.testing.assert_allclose([first, second], expected, rtol=1e-5, atol=1e-6)


def test_reset_explicit_dt_and_shapes(artefact: Path) -> None:
    ctrl = Controller(artefact)
    obs = np.array([0.1, -0.4, 0.7], dtype=np.float32)
    a1 = ctrl.step(obs, dt=0.05)
    assert a1.shape == (1,)
    a2 = ctrl.step(obs[None], dt=0.05)
    assert a2.shape == (1, 1)
    assert not np.allclose(ctrl.state, 0.0)
    ctrl.reset()
    np.testing.assert_array_equal(ctrl.state, np.zeros((1, ctrl.state_dim)))
    np.testing.assert_allclose(ctrl.step(obs, dt=0.05), a1, rtol=1e-6)  # same as from a fresh state


def test_batch_of_controllers(artefact: Path) -> None:
    ctrl = Controller(artefact, batch_size=3)
    obs = np.random.default_rng(2).standard_normal((3, 3)).astype(np.float32)
    actions = ctrl.step(obs, dt=np.array([0.04, 0.05, 0.06]))
    for i, dt in enumerate([0.04, 0.05, 0.06]):
        single = Controller(artefact).step(obs[i], dt=dt)
        np.testing.assert_allclose(actions[i], single, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"observation must have shape \(3, 3\), got \(3,\)"):
        ctrl.step(obs[0])


@pytest.mark.parametrize(
    ("obs", "message"),
    [
        (np.zeros(4), r"observation must have shape \(3,\) or \(1, 3\), got \(4,\)"),
        (np.zeros((2, 3)), r"observation must have shape \(3,\) or \(1, 3\), got \(2, 3\)"),
        (np.zeros((1, 1, 3)), r"got \(1, 1, 3\)"),
        (np.array([0.0, np.nan, 1.0]), r"observation must be finite.*\[\[0, 1\]\].*state unchanged"),
        (np.array([np.inf, 0.0, 1.0]), r"observation must be finite.*\[\[0, 0\]\]"),
    ],
)
def test_bad_observations_leave_state_untouched(artefact: Path, obs: np.ndarray, message: str) -> None:
    ctrl = Controller(artefact)
    ctrl.step(np.ones(3), dt=0.05)
    before = ctrl.state
    with pytest.raises(ValueError, match=message):
        ctrl.step(obs, dt=0.05)
    np.testing.assert_array_equal(ctrl.state, before)


@pytest.mark.parametrize("dt", [-0.01, float("nan"), float("inf")])
def test_bad_dt(artefact: Path, dt: float) -> None:
    ctrl = Controller(artefact)
    with pytest.raises(ValueError, match="dt must be finite and >= 0 seconds"):
        ctrl.step(np.zeros(3), dt=dt)
    np.testing.assert_array_equal(ctrl.state, np.zeros((1, ctrl.state_dim)))


def test_clock_going_backwards_is_an_error(artefact: Path) -> None:
    clock = FakeClock()
    ctrl = Controller(artefact, clock=clock)
    ctrl.step(np.zeros(3))
    clock.now -= 1.0
    with pytest.raises(ValueError, match=r"dt must be finite and >= 0 seconds, got -1\.0 at index 0"):
        ctrl.step(np.zeros(3))


# ------------------------------------------------------------------------------------- corrupt artefacts
def _copy(artefact: Path, dest: Path) -> Path:
    dest.mkdir()
    for src in (artefact, artefact.with_name(artefact.name + ".json")):
        (dest / src.name).write_bytes(src.read_bytes())
    return dest / artefact.name


def test_truncated_artefact_is_rejected(artefact: Path, tmp_path: Path) -> None:
    path = _copy(artefact, tmp_path / "a")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=r"does not match its sidecar.*SHA-256"):
        Controller(path)


def test_replaced_artefact_is_rejected(artefact: Path, tmp_path: Path) -> None:
    path = _copy(artefact, tmp_path / "a")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match its sidecar"):
        Controller(path.with_name(path.name + ".json"))  # by the sidecar path too


def test_sidecar_with_wrong_dims_is_rejected(artefact: Path, tmp_path: Path) -> None:
    path = _copy(artefact, tmp_path / "a")
    side = path.with_name(path.name + ".json")
    record = json.loads(side.read_text())
    record["obs_dim"] = 5
    side.write_text(json.dumps(record))
    with pytest.raises(
        ArtifactError, match=r"graph 'obs' has shape \['batch', 3\], the sidecar expects \(batch, 5\)"
    ):
        Controller(path)


def test_unloadable_artefact_with_matching_hash_is_rejected(artefact: Path, tmp_path: Path) -> None:
    path = _copy(artefact, tmp_path / "a")
    path.write_bytes(b"not an onnx model")
    side = path.with_name(path.name + ".json")
    record = json.loads(side.read_text())
    record["sha256"] = hashlib.sha256(b"not an onnx model").hexdigest()
    side.write_text(json.dumps(record))
    with pytest.raises(ArtifactError, match="onnxruntime cannot load"):
        Controller(path)


def test_missing_or_foreign_sidecar(artefact: Path, tmp_path: Path) -> None:
    path = _copy(artefact, tmp_path / "a")
    side = path.with_name(path.name + ".json")
    side.write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Controller(path)
    side.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ArtifactError, match="is not an lnn-control sidecar"):
        Controller(path)
    side.unlink()
    with pytest.raises(ArtifactError, match=r"no sidecar .*policy\.onnx\.json"):
        Controller(path)


def test_directory_and_wrong_format(artefact: Path, tmp_path: Path) -> None:
    ctrl = Controller(artefact.parent)  # the export directory
    assert ctrl.path == artefact
    with pytest.raises(ArtifactError, match=r"exactly one \.onnx"):
        Controller(tmp_path)


# -------------------------------------------------------------------------------------------- torch-free
def test_controller_runs_without_torch(artefact: Path) -> None:
    """In a fresh interpreter where ``import torch`` fails, the Controller loads and steps."""
    script = textwrap.dedent(
        f"""
        import sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None

        sys.meta_path.insert(0, BlockTorch())
        from lnn_control.export import Controller

        ctrl = Controller({str(artefact)!r})
        action = ctrl.step([0.1, 0.2, 0.3])
        ctrl.reset()
        again = ctrl.step([0.1, 0.2, 0.3])
        assert action.shape == (1,) and (action == again).all()
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print("ok", float(action[0]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


# ------------------------------------------------------------------------------------ controller branches
def _dt_length_error(artefact: Path) -> None:
    """Batch 3 given two dts: a clear error naming the shapes, and the state unchanged."""
    ctrl = Controller(artefact, batch_size=3)
    obs = np.random.default_rng(4).standard_normal((3, 3)).astype(np.float32)
    ctrl.step(obs, dt=0.05)
    before = ctrl.state
    for dts in ([0.04, 0.05], np.full((2, 1), 0.05), np.full(4, 0.05)):
        with pytest.raises(ValueError, match=r"dt must be a number or one per sample \(3,\), got shape"):
            ctrl.step(obs, dt=dts)
        np.testing.assert_array_equal(ctrl.state, before)
    # One dt per sample, as a (3,) or (3, 1) array or a list, and a single number are all accepted.
    for dts in ([0.04, 0.05, 0.06], np.array([[0.04], [0.05], [0.06]]), 0.05):
        assert ctrl.step(obs, dt=dts).shape == (3, 1)


def test_wrong_dt_length_at_batch_above_one(artefact: Path) -> None:
    _dt_length_error(artefact)


def test_dt_length_check_fails_on_a_lenient_controller(artefact: Path, monkeypatch) -> None:
    """Control: a controller that recycles dts to the batch size (np.resize) instead of refusing them."""

    def lenient(self, dt, now):
        values = np.resize(
            np.asarray(self.nominal_dt if dt is None else dt, dtype=np.float32), self.batch_size
        )
        return values.reshape(-1, 1)

    monkeypatch.setattr(Controller, "_dt", lenient)
    with pytest.raises(pytest.fail.Exception, match="DID NOT RAISE"):
        _dt_length_error(artefact)


@pytest.mark.parametrize("batch_size", [0, -2, True, 2.0, "2", None])
def test_invalid_batch_size(artefact: Path, batch_size) -> None:
    with pytest.raises(ValueError, match=rf"batch_size must be a positive integer, got {batch_size!r}"):
        Controller(artefact, batch_size=batch_size)


@pytest.mark.parametrize("nominal", [0, -0.05, "0.05", None, float("inf"), float("nan"), True])
def test_bad_nominal_dt_in_the_sidecar(artefact: Path, tmp_path: Path, nominal) -> None:
    path = _copy(artefact, tmp_path / "a")
    side = path.with_name(path.name + ".json")
    record = json.loads(side.read_text())
    record["dt"]["nominal"] = nominal
    side.write_text(json.dumps(record))  # the artefact's hash still matches: only the sidecar is wrong
    with pytest.raises(ArtifactError, match=r"dt\.nominal must be a positive number of seconds, got"):
        Controller(path)
    del record["dt"]
    side.write_text(json.dumps(record))
    with pytest.raises(ArtifactError, match=r"dt\.nominal must be a positive number of seconds, got None"):
        Controller(path)
