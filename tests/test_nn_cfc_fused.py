"""The fused CfC training loop (hand-written BPTT) against the autograd loop it replaces."""

from __future__ import annotations

import copy

import pytest
import torch

from lnn_control.nn import CfC, cfc_native


@pytest.fixture(autouse=True)
def _torch_loops():
    """These tests are about the torch loops (the fallback where the compiled kernel does not run)."""
    with cfc_native.disabled():
        yield


def _resets(pattern: str) -> torch.Tensor | None:
    """(4, 9) resets: none at all, random ones, or only at the first and last step (the loops skip the
    reset multiplication at steps where no sample resets)."""
    if pattern == "none":
        return None
    if pattern == "first_and_last":
        resets = torch.zeros(4, 9, dtype=torch.bool)
        resets[1, 0] = resets[2, 8] = True
        return resets
    resets = torch.rand(4, 9) < 0.2
    resets[0, 3] = True
    return resets


@pytest.mark.parametrize("mode", ["default", "no_gate"])
@pytest.mark.parametrize("activation", ["lecun_tanh", "tanh"])
@pytest.mark.parametrize("pattern", ["random", "none", "first_and_last"])
def test_fused_loop_matches_autograd_values_and_gradients(mode, activation, pattern):
    torch.manual_seed(0)
    fused = CfC(5, 12, mode=mode, backbone_units=16, backbone_activation=activation, proj_size=3)
    reference = copy.deepcopy(fused)
    for cell in reference.cells:
        cell.use_fused_loop = False
    x = torch.randn(4, 9, 5)
    dt = torch.rand(4, 9)
    resets = _resets(pattern)
    results = []
    for model in (fused, reference):
        h0 = torch.randn(1, 4, 12, generator=torch.Generator().manual_seed(1)).requires_grad_()
        y, h_n = model(x, h0=h0, dt=dt, resets=resets)
        (y.square().sum() + h_n.sum()).backward()
        grads = {name: p.grad for name, p in model.named_parameters()}
        results.append((y.detach(), h_n.detach(), h0.grad, grads))
    (y_f, h_f, g0_f, grads_f), (y_r, h_r, g0_r, grads_r) = results
    torch.testing.assert_close(y_f, y_r, rtol=0, atol=0)  # the same forward operations
    torch.testing.assert_close(h_f, h_r, rtol=0, atol=0)
    torch.testing.assert_close(g0_f, g0_r, rtol=1e-5, atol=1e-6)
    for name in grads_r:
        torch.testing.assert_close(grads_f[name], grads_r[name], rtol=1e-5, atol=1e-5, msg=name)


def test_fused_loop_is_used_only_where_it_applies():
    calls = []
    original = torch.autograd.Function.apply.__func__

    def spy(cls, *args):
        calls.append(cls.__name__)
        return original(cls, *args)

    x, dt = torch.randn(2, 3, 5), torch.rand(2, 3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.autograd.Function, "apply", classmethod(spy))
        CfC(5, 8)(x, dt=dt)
        assert calls == ["FusedCfCSequence"]
        calls.clear()
        CfC(5, 8, mode="pure")(x, dt=dt)  # not covered: autograd loop
        CfC(5, 8, backbone_dropout=0.3).train()(x, dt=dt)
        with torch.no_grad():
            CfC(5, 8)(x, dt=dt)
        assert calls == []
