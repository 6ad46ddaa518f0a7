"""ncps migration: ``from_ncps`` gives the same outputs as the ncps module it converts."""

from __future__ import annotations

import ncps.torch as ncps_torch  # a dev dependency, installed by `make test`
import ncps.wirings as ncps_wirings
import pytest
import torch

from lnn_control.nn import LTC, CfC, from_ncps

IN = 5
CASES = {
    "cfc": lambda: ncps_torch.CfC(IN, 16),
    "cfc_no_gate_silu_2_layers": lambda: ncps_torch.CfC(
        IN, 16, mode="no_gate", backbone_layers=2, backbone_units=24, activation="silu"
    ),
    "cfc_pure_proj": lambda: ncps_torch.CfC(IN, 16, mode="pure", proj_size=3),
    "cfc_ncp": lambda: ncps_torch.CfC(IN, ncps_wirings.AutoNCP(20, 4)),
    "cfc_fully_connected_wiring": lambda: ncps_torch.CfC(IN, ncps_wirings.FullyConnected(10)),
    "ltc": lambda: ncps_torch.LTC(IN, 16),
    "ltc_ncp": lambda: ncps_torch.LTC(IN, ncps_wirings.AutoNCP(20, 4)),
    "ltc_random": lambda: ncps_torch.LTC(IN, ncps_wirings.Random(12, 3, sparsity_level=0.5)),
    "ltc_explicit_constraints": lambda: ncps_torch.LTC(IN, 12, implicit_param_constraints=False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_conversion_gives_identical_outputs_per_sample(name):
    torch.manual_seed(0)
    reference = CASES[name]().eval()
    ours = from_ncps(reference)
    assert isinstance(ours, CfC if name.startswith("cfc") else LTC)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 11, IN, generator=g)
    dt = torch.rand(3, 11, generator=g) * 2.0 + 0.05  # irregular, per sample and step
    with torch.no_grad():
        y_ours, h_ours = ours(x, dt=dt)
        for b in range(3):
            # ncps handles per-step timespans correctly only for one sample at a time.
            y_ref, h_ref = reference(x[b : b + 1], timespans=dt[b : b + 1])
            torch.testing.assert_close(y_ours[b], y_ref[0], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(h_ours[0, b], h_ref[0], rtol=1e-5, atol=1e-5)


def test_conversion_rejects_what_it_cannot_represent():
    with pytest.raises(ValueError, match="mixed_memory"):
        from_ncps(ncps_torch.CfC(IN, 8, mixed_memory=True))
    with pytest.raises(TypeError, match=r"ncps\.torch CfC or LTC"):
        from_ncps(torch.nn.LSTM(IN, 8))
