"""The public one-step path of the networks (``step``, bounded LTC substeps, inference copies).

Export, one-step control and ``predict`` run ``core.step``; these tests pin it to the sequence path.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lnn_control.nn import LTC, AutoNCP, CfC, LTCCell, inference_copy
from lnn_control.sb3.recurrence import TorchRNN

IN = 5


def cores() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "cfc": CfC(IN, 12, backbone_units=16),
        "cfc_two_layers_proj": CfC(IN, 8, backbone_units=16, num_layers=2, proj_size=3),
        "cfc_ncp": CfC(IN, AutoNCP(14, 3, seed=1)),
        "ltc": LTC(IN, 10),
        "ltc_ncp_two_layers": LTC(IN, AutoNCP(12, 3, seed=2), num_layers=2),
        "ltc_max_step": LTC(IN, 10, max_step=0.05, unfolds=2),
        "lstm": TorchRNN("lstm", IN, 6, num_layers=2),
        "gru": TorchRNN("gru", IN, 6),
    }


@pytest.mark.parametrize("name", list(cores()))
@pytest.mark.parametrize("grad", [False, True])
def test_step_equals_a_sequence_of_one(name: str, grad: bool) -> None:
    core = cores()[name]
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, IN, generator=g)
    h = torch.randn(core.num_layers, 4, core.state_size, generator=g) * 0.5
    dt = torch.rand(4, 1, generator=g) * 0.3 + 0.01  # per sample
    with torch.set_grad_enabled(grad):
        y_seq, h_seq = core(x.unsqueeze(1), h0=h, dt=dt)
        y, h_new = core.step(x, h, dt)
    assert y.shape == (4, core.output_size) and h_new.shape == h.shape
    torch.testing.assert_close(y, y_seq[:, 0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(h_new, h_seq, rtol=1e-6, atol=1e-6)
    if grad:  # the step is differentiable like the sequence path
        y.sum().backward()
        assert all(p.grad is not None for p in core.parameters() if p.requires_grad)


def test_step_of_a_zeroed_state_starts_an_episode() -> None:
    core = cores()["cfc"]
    x, dt = torch.randn(3, IN), torch.full((3, 1), 0.1)
    h = torch.randn(1, 3, core.state_size)
    resets = torch.tensor([[True], [False], [True]])
    y_seq, h_seq = core(x.unsqueeze(1), h0=h, dt=dt, resets=resets)
    keep = (~resets).float().reshape(1, 3, 1)
    y, h_new = core.step(x, h * keep, dt)
    torch.testing.assert_close(y, y_seq[:, 0])
    torch.testing.assert_close(h_new, h_seq)


def _ltc_pair(max_substeps: int | None) -> tuple[LTC, LTC]:
    torch.manual_seed(3)
    unbounded = LTC(IN, 9, max_step=0.1, unfolds=2)
    bounded = LTC(IN, 9, max_step=0.1, unfolds=2, max_substeps=max_substeps)
    bounded.load_state_dict(unbounded.state_dict())
    return unbounded, bounded


def test_bounded_substeps_are_exact_up_to_the_bound_and_fixed_beyond() -> None:
    unbounded, bounded = _ltc_pair(max_substeps=5)
    x, h = torch.randn(4, IN), torch.randn(1, 4, 9)
    within = torch.tensor([[0.05], [0.2], [0.31], [0.5]])  # 2, 2, 4 and 5 substeps: all <= 5
    torch.testing.assert_close(bounded.step(x, h, within), unbounded.step(x, h, within))
    # beyond 5 * max_step the loop stays at 5 substeps of dt / 5: an LTC of 5 fixed unfolds
    beyond = torch.tensor([[0.9], [1.3], [0.7], [2.0]])
    fixed = LTC(IN, 9, unfolds=5)
    fixed.load_state_dict(unbounded.state_dict())
    torch.testing.assert_close(bounded.step(x, h, beyond), fixed.step(x, h, beyond))
    assert not torch.allclose(bounded.step(x, h, beyond)[1], unbounded.step(x, h, beyond)[1])


def test_bound_substeps_covers_max_dt() -> None:
    _, ltc = _ltc_pair(max_substeps=None)
    assert ltc.bound_substeps(0.45) == 5  # ceil(0.45 / 0.1)
    assert all(c.max_substeps == 5 for c in ltc.cells)
    assert ltc.bound_substeps(0.1) == 2  # never fewer than unfolds
    assert LTC(IN, 4).bound_substeps(1.0) is None  # no max_step: the count is fixed already
    assert CfC(IN, 4).bound_substeps(1.0) is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(max_substeps=4), "needs max_step|has max_step=None"),
        (dict(max_step=0.1, unfolds=3, max_substeps=2), r"max_substeps must be >= unfolds \(3\), got 2"),
        (dict(max_step=0.1, max_substeps=2.5), "max_substeps must be a positive integer, got 2.5"),
    ],
)
def test_bad_max_substeps_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LTCCell(IN, 4, **kwargs)


def test_bound_substeps_refuses_a_bad_max_dt() -> None:
    with pytest.raises(ValueError, match="max_dt must be a positive number, got nan"):
        LTC(IN, 4, max_step=0.1).bound_substeps(float("nan"))


def test_inference_copy_holds_tensors_only_and_computes_the_same() -> None:
    core = LTC(IN, AutoNCP(12, 3, seed=4))
    original_keys = set(core.state_dict())
    clone = inference_copy(core)
    state = clone.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert not any(key.endswith("_extra_state") for key in state)
    assert {k for k in original_keys if not k.endswith("_extra_state")} == set(state)
    assert any(k.endswith("_extra_state") for k in core.state_dict())  # the original keeps its wiring
    assert not clone.training and not any(p.requires_grad for p in clone.parameters())
    assert isinstance(clone.cells[0], LTCCell)
    x, h, dt = torch.randn(2, IN), torch.zeros(1, 2, 12), torch.full((2, 1), 0.2)
    with torch.no_grad():
        torch.testing.assert_close(clone.step(x, h, dt), core.step(x, h, dt))


def test_switching_the_synapse_form_recomputes_cached_inference_weights() -> None:
    """Derived weights are cached under no_grad; the sparse and dense forms must not share them."""
    core = LTC(IN, AutoNCP(16, 3, seed=5))
    cell = core.cells[0]
    assert cell.sparse
    x, h, dt = torch.randn(3, IN), torch.randn(1, 3, 16), torch.full((3, 1), 0.5)
    from lnn_control.nn import ltc_native

    with torch.no_grad(), ltc_native.disabled():
        sparse = core.step(x, h, dt)
        cell.sparse = False
        dense = core.step(x, h, dt)
        copied = copy.deepcopy(core)  # a copy computes afresh (the cache stays with its module)
        again = copied.step(x, h, dt)
    torch.testing.assert_close(dense, sparse, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again, dense)
