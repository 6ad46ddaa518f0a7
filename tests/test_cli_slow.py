"""``lnn-control`` runs that take longer: SIGINT/SIGTERM during training (in a subprocess) followed by
resume, and sweeps on local worker processes and on a local Ray instance."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lnn_control.cli import main
from lnn_control.runs.checkpoint import read_extras
from lnn_control.runs.evalcsv import read_rows
from lnn_control.runs.playback import load_policy

TASK = "InvertedPendulum-NoVel-Jitter-v0"
SETS = [
    "hyperparameters.n_steps=32",
    "hyperparameters.batch_size=32",
    "hyperparameters.seq_len=16",
    "hyperparameters.n_epochs=1",
    "policy_kwargs.units=8",
    "policy_kwargs.cell_kwargs.backbone_units=16",
]
COMMON = ["--env", TASK, "--agent", "liquid-ppo-cfc", "--n-envs", "2", "--eval-episodes", "2"]
for _item in SETS:
    COMMON += ["--set", _item]
ROLLOUT = 64  # 2 envs x 32 steps


def _status(run: Path) -> dict:
    try:
        return json.loads((run / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _start_and_signal(argv: list[str], run: Path, sig: int, past: int) -> tuple[int, str]:
    """Start the CLI in a subprocess, wait until a checkpoint past ``past`` steps exists, send ``sig``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lnn_control.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while _status(run).get("timesteps", -1) <= past or _status(run).get("status") != "running":
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the signal: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint within 120 s")
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.slow
def test_signals_save_a_loadable_checkpoint_and_resume_continues(tmp_path):
    run = tmp_path / "run"
    train = ["train", *COMMON, "--timesteps", "1000000", "--eval-freq", str(ROLLOUT), "--out", str(run)]
    code, err = _start_and_signal(train, run, signal.SIGINT, past=ROLLOUT)
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert (
        "interrupted by SIGINT" in lines[0]
        and f"checkpoint saved to {run / 'checkpoints' / 'last.zip'}" in lines[0]
    )
    status = _status(run)
    steps = status["timesteps"]
    assert (
        status["status"] == "interrupted" and steps > ROLLOUT and steps % ROLLOUT == 0
    )  # at a policy update
    assert read_extras(run / "checkpoints/last.zip").info["timesteps"] == steps
    policy = load_policy(run, checkpoint="last")
    try:
        assert policy.model.num_timesteps == steps
    finally:
        policy.close()
    assert max(r.timesteps for r in read_rows(run / "eval.csv")) <= steps

    code, err = _start_and_signal(["train", "--resume", str(run)], run, signal.SIGTERM, past=steps)
    assert code == 143 and "interrupted by SIGTERM" in err
    later = _status(run)["timesteps"]
    assert later > steps and later % ROLLOUT == 0

    assert main(["train", "--resume", str(run), "--timesteps", str(later + 2 * ROLLOUT)]) == 0
    status = _status(run)
    assert status["status"] == "finished" and status["timesteps"] == later + 2 * ROLLOUT
    rows = read_rows(run / "eval.csv")
    assert [r.timesteps for r in rows] == sorted({r.timesteps for r in rows})  # one timeline, no repeats
    assert rows[-1].timesteps == later + 2 * ROLLOUT


@pytest.mark.slow
def test_local_sweep_runs_the_grid_in_parallel_and_compares(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = [
        "sweep",
        *COMMON,
        "--timesteps",
        str(ROLLOUT),
        "--seeds",
        "0",
        "--grid",
        "policy_kwargs.units=4,8",
        "--workers",
        "2",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    runs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert runs == ["units=4_seed0", "units=8_seed0"]
    for name, units in (("units=4_seed0", 4), ("units=8_seed0", 8)):
        config = yaml.safe_load((out / name / "config.yaml").read_text())
        assert config["agent"]["entry"]["policy_kwargs"]["units"] == units and config["seed"] == 0
        assert _status(out / name)["status"] == "finished"
    table = (out / "summary.md").read_text()
    assert "| units=4 | 1 | 0 | 64 |" in table and "| units=8 | 1 | 0 | 64 |" in table
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert yaml.safe_load((out / "sweep.yaml").read_text())["grid"] == {"policy_kwargs.units": [4, 8]}
    capsys.readouterr()
    assert main(argv) == 0  # the same sweep again: nothing to do
    assert capsys.readouterr().out.count("already finished") == 2
    other = [*argv[:-1], str(out)]
    other[other.index("policy_kwargs.units=4,8")] = "policy_kwargs.units=16"
    assert main(other) == 2  # another plan into the same folder is refused


@pytest.mark.slow
def test_ray_sweep_on_a_local_instance(tmp_path, capsys):
    import ray  # noqa: F401  (required: the 'cluster' extra)

    out = tmp_path / "ray"
    argv = [
        "sweep",
        *COMMON,
        "--timesteps",
        str(ROLLOUT),
        "--seeds",
        "0-1",
        "--workers",
        "2",
        "--backend",
        "ray",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["seed0", "seed1"]
    assert all(_status(out / s)["status"] == "finished" for s in ("seed0", "seed1"))
    assert "| liquid-ppo-cfc | 2 | 0, 1 | 64 |" in (out / "summary.md").read_text()
