"""``lnn-control`` end to end with tiny budgets: train -> run directory, resume, eval (JSON, another task,
GIF), compare, export, and clear one-line errors with exit code 2."""

from __future__ import annotations

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
    sidecar = json.loads((out / "policy.onnx.json").read_text())
    assert json.dumps(sidecar)  # a JSON sidecar
    assert str(out / "policy.onnx") in capsys.readouterr().out


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
