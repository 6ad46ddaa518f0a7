"""``lnn-control`` end to end with tiny budgets: train -> run directory, resume, eval (JSON, another task,
GIF), compare, export, and clear one-line errors with exit code 2."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from lnn_control.cli import main
from lnn_control.runs.checkpoint import read_extras
from lnn_control.runs.evalcsv import read_rows

TASK = "InvertedPendulum-NoVel-Jitter-v0"
# 2 envs x 32 steps per rollout, one epoch of two 32-step minibatches (chunks of 16), an 8-unit CfC.
TINY_SETS = [
    "hyperparameters.n_steps=32",
    "hyperparameters.batch_size=32",
    "hyperparameters.seq_len=16",
    "hyperparameters.n_epochs=1",
    "policy_kwargs.units=8",
    "policy_kwargs.cell_kwargs.backbone_units=16",
]
TINY = ["--env", TASK, "--agent", "liquid-ppo-cfc", "--n-envs", "2", "--eval-episodes", "2", "--no-progress"]
for _item in TINY_SETS:
    TINY += ["--set", _item]


def _train(out: Path, *extra: str, timesteps: int = 256, eval_freq: int = 128) -> None:
    code = main(
        [
            "train",
            *TINY,
            "--timesteps",
            str(timesteps),
            "--eval-freq",
            str(eval_freq),
            "--out",
            str(out),
            *extra,
        ]
    )
    assert code == 0


def _adam_steps(path: Path) -> int:
    """Adam's step count stored in a checkpoint's optimizer state (counts policy updates)."""
    import torch

    with zipfile.ZipFile(path) as archive:
        state = torch.load(io.BytesIO(archive.read("policy.optimizer.pth")), weights_only=True)
    return int(next(iter(state["state"].values()))["step"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny runs: seeds 0 and 1 of one configuration, and seed 0 with 4 units."""
    root = tmp_path_factory.mktemp("runs")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        _train(root / "a0", "--seed", "0")
        _train(root / "a1", "--seed", "1")
        _train(root / "b0", "--seed", "0", "--set", "policy_kwargs.units=4")
    finally:
        os.chdir(cwd)
    return root


def test_train_writes_a_complete_run_directory(runs, capsys):
    run = runs / "a0"
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "status.json",
        "eval.csv",
        "learning_curve.png",
        "checkpoints",
        "tb",
    }
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["env"]["id"] == TASK and config["env"]["entry"]["timing"]["jitter"] == [0.5, 1.5]
    assert config["agent"]["name"] == "liquid-ppo-cfc"
    assert config["agent"]["entry"]["policy_kwargs"]["units"] == 8
    assert config["overrides"]["hyperparameters.n_steps"] == 32
    assert config["seed"] == 0 and config["total_timesteps"] == 256 and config["n_envs"] == 2
    assert {"torch", "stable-baselines3", "mujoco", "lnn-control", "python"} <= set(config["versions"])

    rows = read_rows(run / "eval.csv")
    assert [r.timesteps for r in rows] == [0, 128, 256]
    assert all(r.episodes == 2 and r.min <= r.mean <= r.max for r in rows)
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished" and status["timesteps"] == 256
    assert status["best"]["mean"] == max(r.mean for r in rows)

    last, best = read_extras(run / "checkpoints/last.zip"), read_extras(run / "checkpoints/best.zip")
    assert last.info["timesteps"] == 256 and last.normalization is not None and last.rng is not None
    assert best.info["timesteps"] == status["best"]["timesteps"]
    with np.load(io.BytesIO(last.normalization), allow_pickle=False) as stats:
        assert (
            stats["obs.mean"].shape == (2,) and float(stats["obs.count"]) > 256
        )  # VecNormalize saw the steps
    assert list((run / "tb").glob("train_1/events.out.tfevents.*"))
    assert (run / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    # 4 rollouts x 2 minibatches x 1 epoch
    assert _adam_steps(run / "checkpoints/last.zip") == 8


def test_resume_continues_steps_optimizer_and_curve(runs, tmp_path, capsys):
    run = tmp_path / "a0"
    shutil.copytree(runs / "a0", run)
    assert main(["train", "--resume", str(run), "--timesteps", "512"]) == 0
    rows = read_rows(run / "eval.csv")
    assert [r.timesteps for r in rows] == [0, 128, 256, 384, 512]
    assert read_extras(run / "checkpoints/last.zip").info["timesteps"] == 512
    assert _adam_steps(run / "checkpoints/last.zip") == 16  # Adam's state carried on, not restarted
    assert yaml.safe_load((run / "config.yaml").read_text())["total_timesteps"] == 512
    assert len(list((run / "tb").glob("train_*"))) == 1  # TensorBoard continues the same run
    out = capsys.readouterr().out
    assert "resuming" in out and "at 256 of 512 steps" in out
    # a finished run is not trained again
    assert main(["train", "--resume", str(run)]) == 0
    assert "already trained 512 of 512" in capsys.readouterr().out


def test_eval_prints_json_and_evaluates_under_another_timing(runs, tmp_path, capsys):
    assert main(["eval", str(runs / "a0"), "--episodes", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["episodes"] == 3 and len(report["returns"]) == 3
    assert report["mean"] == pytest.approx(np.mean(report["returns"]))
    assert report["std"] == pytest.approx(np.std(report["returns"]))
    assert (report["min"], report["max"]) == (min(report["returns"]), max(report["returns"]))
    assert report["env"] == report["trained_env"] == TASK and report["checkpoint"] == "best"
    # same observations (positions only), fixed control period
    assert (
        main(
            [
                "eval",
                str(runs / "a0"),
                "--episodes",
                "2",
                "--env",
                "InvertedPendulum-NoVel-v0",
                "--checkpoint",
                "last",
                "--stochastic",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "InvertedPendulum-NoVel-v0" in text and "stochastic" in text
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["env"] == "InvertedPendulum-NoVel-v0" and saved["deterministic"] is False


def test_eval_records_a_gif_offscreen(runs, tmp_path):
    gif = tmp_path / "pendulum.gif"
    env = {**os.environ, "MUJOCO_GL": "egl"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_control.cli",
            "eval",
            str(runs / "a0"),
            "--episodes",
            "1",
            "--video",
            str(gif),
            "--video-steps",
            "12",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames == 12 and image.size[0] > 0
        image.seek(5)
        frame = np.asarray(image.convert("RGB"))
    assert frame.std() > 0  # not a blank frame
    assert f"video    {gif}" in proc.stdout


def test_compare_writes_plot_and_table_grouping_seeds(runs, tmp_path, capsys):
    png, md = tmp_path / "c.png", tmp_path / "c.md"
    assert (
        main(
            [
                "compare",
                str(runs / "a0"),
                str(runs / "a1"),
                str(runs / "b0"),
                "--out",
                str(png),
                "--markdown",
                str(md),
            ]
        )
        == 0
    )
    table = md.read_text()
    assert table in capsys.readouterr().out
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(lines) == 3  # header + two groups
    finals = [read_rows(runs / r / "eval.csv")[-1].mean for r in ("a0", "a1")]
    assert lines[1].startswith("| units=8 | 2 | 0, 1 | 256 |")
    assert f"{np.mean(finals):.1f} ± {np.std(finals):.1f}" in lines[1]
    assert lines[2].startswith("| units=4 | 1 | 0 | 256 |")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_export_writes_the_controller(runs, tmp_path, capsys):
    out = tmp_path / "ctrl"
    assert main(["export", str(runs / "a0"), "--format", "onnx", "--format", "c", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {
        "policy.onnx",
        "policy.onnx.json",
        "policy.c",
        "policy.h",
        "policy.c.json",
    }
    assert str(out / "policy.onnx") in capsys.readouterr().out
    sidecar = json.loads((out / "policy.onnx.json").read_text())
    stats = _saved_stats(runs / "a0/checkpoints/best.zip")  # export's default checkpoint
    assert (sidecar["obs_dim"], sidecar["act_dim"]) == (2, 1)
    assert sidecar["dt"]["nominal"] == pytest.approx(0.04)  # InvertedPendulum: 2 x 0.02 s
    assert sidecar["observation"]["normalization"]["kind"] == "VecNormalize"
    assert sidecar["observation"]["normalization"]["clip_obs"] == float(stats["clip_obs"])
    assert _export_mismatch(runs / "a0", out, stats) == 0.0


# ------------------------------------------------------------------- normalisation where it is used
def _saved_stats(checkpoint: Path) -> dict[str, np.ndarray]:
    """The VecNormalize arrays stored in a checkpoint (read here, independently of the loader)."""
    data = read_extras(checkpoint).normalization
    assert data is not None
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return {key: arrays[key] for key in arrays.files}


def _normalise(raw: np.ndarray, stats: dict[str, np.ndarray]) -> np.ndarray:
    """VecNormalize's observation transform, written out: clip((x - mean) / sqrt(var + eps), +-clip)."""
    scaled = (raw - stats["obs.mean"]) / np.sqrt(stats["obs.var"] + float(stats["epsilon"]))
    clip = float(stats["clip_obs"])
    return np.clip(scaled, -clip, clip).astype(np.float32)


def _export_mismatch(run: Path, export_dir: Path, stats: dict[str, np.ndarray]) -> float:
    """Largest action difference between the exported controller fed raw observations and the checkpoint's
    policy (loaded bare, without any env) fed observations normalised with the saved statistics."""
    from lnn_control.export import Controller
    from lnn_control.sb3 import LiquidPPO

    model = LiquidPPO.load(run / "checkpoints/best.zip")
    ctrl = Controller(export_dir / "policy.onnx")
    rng = np.random.default_rng(0)
    raw = (rng.normal(0.0, 0.3, (40, 2)) + np.array([0.1, -0.2])).astype(np.float32)
    normalised = _normalise(raw, stats)
    assert np.abs(normalised - raw).max() > 0.5  # the statistics matter for these inputs
    dts = (0.04 * rng.uniform(0.5, 1.5, 40)).astype(np.float32)
    state, worst = None, 0.0
    for t in range(40):
        expected, state = model.predict(
            normalised[t][None], state, episode_start=np.array([t == 0]), deterministic=True, dt=dts[t]
        )
        worst = max(worst, float(np.abs(ctrl.step(raw[t], dt=dts[t]) - expected[0]).max()) - 1e-5)
    return max(worst, 0.0)


def test_export_check_fails_when_the_statistics_are_lost(runs, tmp_path, monkeypatch):
    """Control: a loader that drops the checkpoint's VecNormalize (the bug) exports an actor that does not
    normalise, and the check above catches it."""
    from lnn_control.runs.checkpoint import CheckpointExtras

    monkeypatch.setattr(CheckpointExtras, "wrap", lambda self, venv, *, training: venv)
    out = tmp_path / "ctrl"
    assert main(["export", str(runs / "a0"), "--format", "onnx", "--out", str(out)]) == 0
    assert _export_mismatch(runs / "a0", out, _saved_stats(runs / "a0/checkpoints/best.zip")) > 1e-3


class _StopBeforeLearning(Exception):
    pass


def _state_at_resume(run: Path, monkeypatch) -> dict:
    """Resume ``run`` and capture, where learning would start, the model's normaliser and the global RNGs."""
    from lnn_control.runs import training
    from lnn_control.runs.rng import capture_rng

    seen: dict = {}

    def spy(model, run_dir, resolved, eval_env, *args, **kwargs):
        norm = model.get_vec_normalize_env()
        seen.update(norm=None if norm is None else copy.deepcopy(norm), rng=capture_rng())
        model.get_env().close()
        eval_env.close()
        raise _StopBeforeLearning

    monkeypatch.setattr(training, "_learn", spy)
    with pytest.raises(_StopBeforeLearning):
        training.resume(run, timesteps=512, quiet=True, handle_signals=False)
    return seen


def _resume_problems(seen: dict, checkpoint: Path) -> list[str]:
    stats, rng = _saved_stats(checkpoint), read_extras(checkpoint).rng
    norm, problems = seen["norm"], []
    if norm is None:
        return ["no VecNormalize"]
    for prefix, rms in (("obs", norm.obs_rms), ("ret", norm.ret_rms)):
        for field in ("mean", "var", "count"):
            if not np.array_equal(np.asarray(getattr(rms, field)), stats[f"{prefix}.{field}"]):
                problems.append(f"{prefix}.{field}")
    if not (norm.training and norm.norm_reward == bool(stats["norm_reward"])):
        problems.append("training flags")
    for key in ("python", "numpy", "torch"):
        if seen["rng"][key] != rng[key]:
            problems.append(f"rng {key}")
    return problems


def test_resume_restores_the_normaliser_and_the_rng_states(runs, tmp_path, monkeypatch):
    run = tmp_path / "a0"
    shutil.copytree(runs / "a0", run)
    assert _resume_problems(_state_at_resume(run, monkeypatch), run / "checkpoints/last.zip") == []


def test_resume_check_fails_without_the_saved_state(runs, tmp_path, monkeypatch):
    """Control: fresh statistics (not the saved ones) and RNG states left as they were are both caught."""
    from stable_baselines3.common.vec_env import VecNormalize

    from lnn_control.runs import training
    from lnn_control.runs.checkpoint import CheckpointExtras

    run = tmp_path / "a0"
    shutil.copytree(runs / "a0", run)
    monkeypatch.setattr(CheckpointExtras, "wrap", lambda self, venv, *, training: VecNormalize(venv))
    monkeypatch.setattr(training, "restore_rng", lambda state: None)
    problems = _resume_problems(_state_at_resume(run, monkeypatch), run / "checkpoints/last.zip")
    # (Python's own generator is not drawn from in training: loading re-seeds it to the saved state anyway.)
    assert {"obs.mean", "obs.var", "obs.count", "rng numpy", "rng torch"} <= set(problems)


def _evaluation_problems(run: Path, monkeypatch) -> list[str]:
    """``lnn-control eval``: the observations that reach the policy are the raw env observations normalised
    with the checkpoint's saved statistics, and the statistics are the same after the episodes."""
    from stable_baselines3.common.vec_env import VecEnvWrapper

    from lnn_control.runs import playback
    from lnn_control.sb3.carry import RecurrentCarry

    raw: list[np.ndarray] = []
    fed: list[np.ndarray] = []
    norms: list = []

    class RawObs(VecEnvWrapper):
        def reset(self):
            obs = self.venv.reset()
            raw.append(obs.copy())
            return obs

        def step_wait(self):
            obs, rewards, dones, infos = self.venv.step_wait()
            raw.append(obs.copy())
            return obs, rewards, dones, infos

    make_vec_env, act, load_model = playback.make_vec_env, RecurrentCarry.act, playback.load_model
    monkeypatch.setattr(playback, "make_vec_env", lambda *a, **k: RawObs(make_vec_env(*a, **k)))

    def loading_spy(*args, **kwargs):
        model = load_model(*args, **kwargs)
        norms.append(model.get_vec_normalize_env())
        return model

    def spy(self, observation, **kwargs):  # what the policy is fed, through the evaluation's carry
        fed.append(np.array(observation, copy=True))
        return act(self, observation, **kwargs)

    monkeypatch.setattr(playback, "load_model", loading_spy)
    monkeypatch.setattr(RecurrentCarry, "act", spy)
    assert main(["eval", str(run), "--episodes", "2", "--json"]) == 0
    stats, problems = _saved_stats(run / "checkpoints/best.zip"), []
    assert len(fed) > 10 and len(raw) == len(fed) + 1  # one observation after the last action
    worst = max(float(np.abs(f - _normalise(r, stats)).max()) for f, r in zip(fed, raw, strict=False))
    if worst > 1e-5:
        problems.append(f"policy input differs from the saved-statistics normalisation by {worst:.3g}")
    rms = norms[-1].obs_rms
    if not (np.array_equal(rms.mean, stats["obs.mean"]) and np.array_equal(rms.var, stats["obs.var"])):
        problems.append("statistics changed during evaluation")
    return problems


def test_evaluation_uses_the_frozen_saved_statistics(runs, monkeypatch, capsys):
    assert _evaluation_problems(runs / "a0", monkeypatch) == []


def test_evaluation_check_fails_on_updating_statistics(runs, monkeypatch, capsys):
    """Control: a normaliser left in training mode drifts during the episodes, and the check says so."""
    from lnn_control.runs.checkpoint import CheckpointExtras

    wrap = CheckpointExtras.wrap
    monkeypatch.setattr(
        CheckpointExtras, "wrap", lambda self, venv, *, training: wrap(self, venv, training=True)
    )
    assert "statistics changed during evaluation" in _evaluation_problems(runs / "a0", monkeypatch)


# ----------------------------------------------------------------------------------------- errors
def _one_line_error(capsys, argv: list[str], match: str) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and match in lines[0], lines[0]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["train", "--env", "Nope-v0", "--agent", "liquid-ppo-cfc"], "unknown task 'Nope-v0'"),
        (["train", "--env", TASK, "--agent", "nope"], "no agent 'nope'"),
        (
            ["train", "--env", TASK, "--agent", "liquid-ppo-cfc", "--set", "hyperparameters.lr_typo=1"],
            "unknown hyperparameter(s) ['lr_typo']",
        ),
        (["train", "--env", TASK, "--agent", "liquid-ppo-cfc", "--set", "units"], "--set expects key=value"),
        (["train", "--env", TASK, "--agent", "liquid-ppo-cfc", "--set", "units=3"], "unknown key 'units'"),
        (["train", "--env", TASK, "--agent", "liquid-ppo-cfc", "--timesteps", "-5"], "--timesteps"),
        (["train", "--env", TASK], "train needs --agent"),
        (["eval", "no/such/run"], "run directory 'no/such/run' does not exist"),
        (["train", "--resume", "no/such/run"], "does not exist"),
        (["compare", "no/such/run"], "does not exist"),
        (["export", "no/such/run"], "does not exist"),
    ],
)
def test_bad_arguments_are_one_line_with_exit_code_2(capsys, argv, match):
    _one_line_error(capsys, argv, match)


def test_run_level_errors_are_one_line(runs, tmp_path, capsys):
    _one_line_error(capsys, ["eval", str(runs / "a0"), "--env", "InvertedPendulum-v0"], "observation space")
    _one_line_error(capsys, ["eval", str(runs / "a0"), "--video", "clip.avi"], "must end in .gif or .mp4")
    _one_line_error(
        capsys, ["train", "--resume", str(runs / "a0"), "--seed", "3"], "--seed cannot be combined"
    )
    _one_line_error(capsys, ["train", *TINY, "--out", str(runs / "a0")], "already exists")
    _one_line_error(capsys, ["eval", str(tmp_path)], "not a run directory")


def test_missing_extras_are_one_line_with_exit_code_2(runs, tmp_path, capsys, monkeypatch):
    """Without the export / video / cluster extra (simulated): one line naming the extra, exit code 2, and
    nothing written; formats that need no extra still export."""
    from lnn_control.extras import MissingExtraError

    for name in ("onnx", "imageio_ffmpeg", "ray"):
        monkeypatch.setitem(sys.modules, name, None)
    out = tmp_path / "ctrl"
    export = ["export", str(runs / "a0"), "--out", str(out)]
    _one_line_error(capsys, [*export, "--format", "onnx"], "needs the Python package 'onnx', which is not")
    _one_line_error(capsys, export, "pip install 'lnn-control[export]'")  # the default formats include ONNX
    assert not out.exists()
    video = tmp_path / "clip.mp4"
    _one_line_error(
        capsys, ["eval", str(runs / "a0"), "--video", str(video)], "pip install 'lnn-control[video]'"
    )
    assert not video.exists()
    sweep = [
        "sweep",
        "--env",
        TASK,
        "--agent",
        "liquid-ppo-cfc",
        "--backend",
        "ray",
        "--out",
        str(tmp_path / "s"),
    ]
    _one_line_error(capsys, sweep, "pip install 'lnn-control[cluster]'")
    with pytest.raises(MissingExtraError):
        main(["--debug", *export, "--format", "onnx"])
    assert main([*export, "--format", "c"]) == 0
    assert (out / "policy.c").is_file()


def test_export_pt2_writes_a_loadable_program(runs, tmp_path, capsys):
    import torch

    out = tmp_path / "ctrl"
    assert main(["export", str(runs / "a0"), "--format", "pt2", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"policy.pt2", "policy.pt2.json"}
    sidecar = json.loads((out / "policy.pt2.json").read_text())
    step = torch.export.load(str(out / "policy.pt2")).module()
    obs = torch.zeros(3, sidecar["obs_dim"])
    action, h = step(obs, torch.zeros(3, sidecar["state_dim"]), torch.full((3, 1), 0.04))
    assert action.shape == (3, sidecar["act_dim"]) and h.shape == (3, sidecar["state_dim"])


def test_corrupt_checkpoints_are_reported_not_loaded(runs, tmp_path, capsys):
    run = tmp_path / "a0"
    shutil.copytree(runs / "a0", run)
    data = (run / "checkpoints/last.zip").read_bytes()
    (run / "checkpoints/last.zip").write_bytes(data[: len(data) // 2])  # truncated
    (run / "checkpoints/best.zip").write_bytes(b"not a zip at all")
    _one_line_error(capsys, ["eval", str(run)], "best.zip is unreadable (corrupt")
    _one_line_error(capsys, ["eval", str(run), "--checkpoint", "last"], "last.zip is unreadable (corrupt")
    _one_line_error(capsys, ["train", "--resume", str(run)], "last.zip is unreadable (corrupt")
    (run / "checkpoints/best.zip").unlink()
    _one_line_error(capsys, ["eval", str(run)], "best.zip does not exist")


def test_debug_shows_the_traceback():
    from lnn_control.runs.errors import RunError

    with pytest.raises(RunError, match="does not exist"):
        main(["--debug", "eval", "no/such/run"])


def test_every_command_has_help_with_examples(capsys):
    for command in ("train", "eval", "compare", "sweep", "export"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"lnn-control {command}" in text


def test_an_unbatched_run_takes_the_sweeps_physics_threads_argument(tmp_path, monkeypatch):
    """Sweeps pass nthread=1 to every run; a run on Gymnasium envs (batched: false) has no physics threads
    to set and must build its envs all the same."""
    from lnn_control.runs import training
    from lnn_control.runs.config import RunSpec

    built: list = []

    def spy(model, run_dir, resolved, eval_env, *args, **kwargs):
        built.append(type(model.get_env().unwrapped).__name__)
        model.get_env().close()
        eval_env.close()
        raise _StopBeforeLearning

    monkeypatch.setattr(training, "_learn", spy)
    spec = RunSpec(env="InvertedPendulum-v0", agent="ppo-mlp", timesteps=256, n_envs=2, batched=False)
    with pytest.raises(_StopBeforeLearning):
        training.train(spec, tmp_path / "run", quiet=True, handle_signals=False, nthread=1)
    assert built == ["DummyVecEnv"]
