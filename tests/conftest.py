"""Suite-wide fixtures: one torch thread (reproducible, comparable timings) and a temp working directory
(MuJoCo writes MUJOCO_LOG.TXT into the working directory)."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _run_in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield
