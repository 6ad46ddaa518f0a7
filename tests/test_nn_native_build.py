"""The compiled kernels' build machinery (``lnn_control.nn.native_build``), for the LTC and the CfC kernel."""

from __future__ import annotations

import pytest
import torch

from lnn_control.nn import LTC, CfC, cfc_native, ltc_native, native_build

KERNELS = {
    "LTC": (ltc_native, lambda: LTC(5, 8)),
    "CfC": (cfc_native, lambda: CfC(5, 8, backbone_units=16)),
}


@pytest.mark.parametrize("name", list(KERNELS))
@pytest.mark.parametrize("compiler", ["failing", "missing"])
def test_without_a_working_compiler_the_torch_loop_runs_after_a_warning(
    name, compiler, monkeypatch, tmp_path
):
    module, make = KERNELS[name]
    monkeypatch.setattr(module._KERNEL, "library", None)
    monkeypatch.setattr(module._KERNEL, "load_failed", False)
    monkeypatch.setenv("LNN_CONTROL_CACHE", str(tmp_path / "cache"))
    if compiler == "failing":
        monkeypatch.setenv("CC", "false")  # exists and always fails
    else:
        monkeypatch.setattr(native_build, "find_compiler", lambda: None)
    torch.manual_seed(0)
    model = make()
    x, dt, h0 = torch.randn(3, 4, 5), torch.rand(3, 4) * 0.2, torch.randn(1, 3, model.state_size)
    with pytest.warns(UserWarning, match=f"compiled {name} kernel unavailable"):
        y, _ = model(x, h0=h0, dt=dt)
    with module.disabled():
        reference, _ = model(x, h0=h0, dt=dt)
    assert torch.equal(y, reference)
    assert not module.available()
    assert module.usable(x) is False


@pytest.mark.parametrize("name", list(KERNELS))
def test_disabled_switches_the_kernel_off_inside_the_block_only(name: str) -> None:
    module, _ = KERNELS[name]
    x = torch.randn(2, 3)
    assert module.usable(x)
    with module.disabled():
        assert not module.usable(x) and not module.available()
    assert module.usable(x)
    assert not module.usable(x.double().to(torch.float16))  # only float32 / float64


def test_batch_slices_cover_the_batch_at_lane_boundaries(monkeypatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    for batch in (1, 7, 8, 9, 50):
        parts = native_build.batch_slices(batch)
        covered = [i for part in parts for i in range(part.start, part.stop)]
        assert covered == list(range(batch))
        assert all(part.start % native_build.LANES == 0 for part in parts)
        assert len(parts) == min(3, -(-batch // native_build.LANES))
