"""The liquid network contract of DESIGN.md: shapes, dt, resets, layers, continuous time, sparsity."""

from __future__ import annotations

import pytest
import torch

from lnn_control.nn import LTC, NCP, AutoNCP, CfC, CfCCell, LTCCell, Random, ltc_native

IN = 5


def make_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {
        "cfc": CfC(IN, 12, backbone_units=16),
        "cfc_no_gate": CfC(
            IN, 12, mode="no_gate", backbone_units=16, backbone_layers=2, backbone_activation="silu"
        ),
        "cfc_pure": CfC(IN, 12, mode="pure", backbone_layers=0),
        "cfc_ncp": CfC(IN, AutoNCP(14, 3, seed=1)),
        "ltc": LTC(IN, 10),
        "ltc_euler": LTC(IN, 10, solver="euler", unfolds=3),
        "ltc_rk4": LTC(IN, 10, solver="rk4", unfolds=2),
        "ltc_ncp": LTC(IN, AutoNCP(14, 3, seed=1)),
        "ltc_random_dense": LTC(IN, Random(10, 4, sparsity_level=0.3, seed=2)),
        "ltc_max_step": LTC(IN, 10, max_step=0.05, unfolds=2),
    }


MODELS = list(make_models())


@pytest.fixture(params=MODELS)
def model(request) -> torch.nn.Module:
    return make_models()[request.param]


def inputs(batch: int = 4, steps: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, IN, generator=g)
    dt = torch.rand(batch, steps, generator=g) * 0.2 + 0.01
    return x, dt


def test_shapes_follow_torch_rnn_conventions(model):
    x, dt = inputs()
    y, h_n = model(x, dt=dt)
    assert y.shape == (4, 7, model.output_size)
    assert h_n.shape == (1, 4, model.state_size)
    y1, h1 = model(x[0], dt=dt[0])  # unbatched (T, in)
    torch.testing.assert_close(y1, y[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h1, h_n[:, 0], rtol=1e-5, atol=1e-6)


def test_sequence_equals_stepping_the_cell(model):
    x, dt = inputs()
    y, h_n = model(x, dt=dt)
    cell = model.cells[0]
    h = torch.zeros(4, model.state_size)
    steps = []
    for t in range(x.shape[1]):
        out, h = cell(x[:, t], h, dt[:, t : t + 1])
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, 1), y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h, h_n[0], rtol=1e-5, atol=1e-6)


def test_per_sample_dt_equals_running_each_sample_alone(model):
    x, dt = inputs(batch=5)
    dt[2] *= 4.0  # very different time scales within one batch (still stable for explicit Euler)
    y, h_n = model(x, dt=dt)
    for b in range(5):
        y_b, h_b = model(x[b : b + 1], dt=dt[b : b + 1])
        torch.testing.assert_close(y_b[0], y[b], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(h_b[:, 0], h_n[:, b], rtol=1e-5, atol=1e-6)


def test_dt_layouts_agree():
    model = make_models()["ltc"]
    x, dt = inputs()
    y, _ = model(x, dt=dt)
    torch.testing.assert_close(model(x, dt=dt.unsqueeze(-1))[0], y)
    y_const, _ = model(x, dt=0.1)
    torch.testing.assert_close(model(x, dt=torch.full((4, 7), 0.1))[0], y_const)
    torch.testing.assert_close(model(x, dt=torch.full((4,), 0.1))[0], y_const)
    model_tm = LTC(IN, 10, batch_first=False)
    model_tm.load_state_dict(model.state_dict())
    y_tm, _ = model_tm(x.transpose(0, 1), dt=dt.transpose(0, 1))
    torch.testing.assert_close(y_tm.transpose(0, 1), y)


def test_resets_equal_a_fresh_start(model):
    x, dt = inputs(steps=9)
    h0 = torch.randn(1, 4, model.state_size)
    resets = torch.zeros(4, 9, dtype=torch.bool)
    resets[1, 4] = True
    resets[3, 0] = True
    y, h_n = model(x, h0=h0, dt=dt, resets=resets)
    fresh, fresh_h = model(x[1:2, 4:], dt=dt[1:2, 4:])  # sample 1 from step 4 on, zero state
    torch.testing.assert_close(y[1, 4:], fresh[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_n[:, 1], fresh_h[:, 0], rtol=1e-5, atol=1e-6)
    fresh3, _ = model(x[3:4], dt=dt[3:4])  # sample 3 reset at step 0: h0 ignored
    torch.testing.assert_close(y[3], fresh3[0], rtol=1e-5, atol=1e-6)
    with_h0, _ = model(x[0:1], h0=h0[:, 0:1], dt=dt[0:1])  # sample 0 never reset: h0 used
    torch.testing.assert_close(y[0], with_h0[0], rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_trainable_parameter(model):
    x, dt = inputs()
    y, h_n = model(x, dt=dt)
    (y.square().mean() + h_n.square().mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def masked_pairs(model: torch.nn.Module) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, grad, mask) for every masked parameter."""
    pairs = []
    cell = model.cells[0]
    if isinstance(cell, LTCCell):
        for name in ("w", "sigma", "mu", "erev"):
            pairs.append((name, getattr(cell, name).grad, cell.mask))
        for name in ("sensory_w", "sensory_sigma", "sensory_mu", "sensory_erev"):
            pairs.append((name, getattr(cell, name).grad, cell.sensory_mask))
    else:
        for i, block in enumerate(cell.blocks):
            pairs.append((f"block{i}.heads", block.heads.weight.grad, block.mask))
    return pairs


@pytest.mark.parametrize("name", ["cfc_ncp", "ltc_ncp", "ltc_random_dense"])
def test_masked_synapses_have_no_effect_and_no_gradient(name):
    model = make_models()[name]
    x, dt = inputs()
    y, _ = model(x, dt=dt)
    y.square().mean().backward()
    for pname, grad, mask in masked_pairs(model):
        assert (mask == 0).any(), f"{pname}: the wiring should be sparse"
        assert torch.all(grad[mask == 0] == 0), f"gradient reaches masked synapses of {pname}"
        assert grad[mask != 0].abs().sum() > 0, pname
    # No effect: perturbing masked entries changes nothing.
    reference = model(x, dt=dt)[0]
    with torch.no_grad():
        for pname, _, mask in masked_pairs(model):
            param = _param(model, pname)
            param.add_((mask == 0).to(param.dtype) * 3.0)
    torch.testing.assert_close(model(x, dt=dt)[0], reference)


def _param(model: torch.nn.Module, name: str) -> torch.Tensor:
    cell = model.cells[0]
    if name.startswith("block"):
        return cell.blocks[int(name[5 : name.index(".")])].heads.weight
    return getattr(cell, name)


def test_masks_are_buffers_not_parameters():
    for name in ("cfc_ncp", "ltc_ncp"):
        model = make_models()[name]
        buffers = dict(model.named_buffers())
        params = dict(model.named_parameters())
        assert any(k.endswith("mask") for k in buffers), name
        assert not any(k.endswith("mask") for k in params), name


def test_sparse_and_dense_ltc_agree():
    """The torch loop's edge-list and masked-matrix forms (the compiled kernel has its own parity tests)."""
    sparse = LTC(IN, AutoNCP(16, 4, seed=5), sparse=True)
    dense = LTC(IN, AutoNCP(16, 4, seed=5), sparse=False)
    dense.load_state_dict(sparse.state_dict())
    x, dt = inputs()
    with ltc_native.disabled():
        ys, _ = sparse(x, dt=dt)
        yd, _ = dense(x, dt=dt)
    torch.testing.assert_close(ys, yd, rtol=1e-5, atol=1e-6)
    ys.sum().backward()
    yd.sum().backward()
    torch.testing.assert_close(sparse.cells[0].w.grad, dense.cells[0].w.grad, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------- continuous time
@pytest.mark.parametrize("solver", ["semi_implicit", "euler", "rk4"])
def test_ltc_zero_dt_leaves_state_unchanged(solver):
    model = LTC(IN, 10, solver=solver)
    x, _ = inputs()
    h0 = torch.randn(1, 4, 10)
    _, h_n = model(x, h0=h0, dt=0.0)
    torch.testing.assert_close(h_n, h0, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("solver", "tolerance"), [("semi_implicit", 2e-2), ("euler", 2e-2), ("rk4", 1e-5)])
def test_ltc_two_steps_of_dt_agree_with_one_step_of_2dt(solver, tolerance):
    torch.manual_seed(3)
    model = LTC(IN, 10, solver=solver, unfolds=8)
    x = torch.randn(4, 1, IN).expand(4, 2, IN).contiguous()  # the same input held over both steps
    h0 = torch.randn(1, 4, 10) * 0.5
    dt = 0.05
    _, two = model(x, h0=h0, dt=dt)
    # One step of 2 dt with twice the unfolds takes exactly the same substeps ...
    model.cells[0].unfolds = 16
    _, one_same = model(x[:, :1], h0=h0, dt=2 * dt)
    torch.testing.assert_close(one_same, two, rtol=1e-5, atol=1e-6)
    # ... and with the same unfolds it agrees up to the solver's discretisation error.
    model.cells[0].unfolds = 8
    _, one = model(x[:, :1], h0=h0, dt=2 * dt)
    assert (one - two).abs().max() < tolerance
    assert (one - h0).abs().max() > 10 * tolerance  # the state really moved


def test_ltc_max_step_subdivides_long_intervals():
    torch.manual_seed(4)
    model = LTC(IN, 10, solver="euler", unfolds=2, max_step=0.1)
    x, _ = inputs(batch=3, steps=3)
    dt = torch.tensor([[0.05, 1.0, 3.0], [0.15, 0.05, 0.3], [2.0, 2.0, 0.0]])
    y, h_n = model(x, dt=dt)
    assert torch.isfinite(y).all()
    # Each sample and step takes max(unfolds, ceil(dt / max_step)) substeps, regardless of its batch-mates.
    reference = LTC(IN, 10, solver="euler")
    reference.load_state_dict(model.state_dict())
    for b in range(3):
        h = torch.zeros(1, 10)
        for t in range(3):
            reference.cells[0].unfolds = max(2, int(torch.ceil(dt[b, t] / 0.1)))
            _, h = reference.cells[0](x[b : b + 1, t], h, dt[b, t].reshape(1, 1))
        torch.testing.assert_close(h, h_n[:, b], rtol=1e-5, atol=1e-6)
    # Without max_step, explicit Euler with 2 unfolds blows up on dt = 3.0; with it, the state stays bounded.
    unbounded = LTC(IN, 10, solver="euler", unfolds=2)
    unbounded.load_state_dict(model.state_dict())
    long_dt = torch.full((3, 3), 3.0)
    assert model(x, dt=long_dt)[1].abs().max() < 10
    assert not (unbounded(x, dt=long_dt)[1].abs().max() < 10)


def test_cfc_dt_is_a_gate_input():
    """The CfC output depends on dt (documented: a learned gate, not an integrator)."""
    model = make_models()["cfc"]
    x, _ = inputs()
    assert not torch.allclose(model(x, dt=0.1)[0], model(x, dt=1.0)[0])


# ------------------------------------------------------------------------------------------- architecture
def test_stacked_layers_feed_outputs_forward():
    torch.manual_seed(0)
    model = LTC(IN, 8, num_layers=2, proj_size=3)
    x, dt = inputs()
    y, h_n = model(x, dt=dt)
    assert y.shape == (4, 7, 3)
    assert h_n.shape == (2, 4, 8)
    first, h1 = model.cells[0].forward_sequence(x, torch.zeros(4, 8), dt, None)
    second, h2 = model.cells[1].forward_sequence(first, torch.zeros(4, 8), dt, None)
    torch.testing.assert_close(y, model.proj(second))
    torch.testing.assert_close(h_n, torch.stack([h1, h2]))


def test_cfc_pure_mode_initialisation_follows_the_paper():
    block = CfC(IN, 6, mode="pure").cells[0].blocks[0]
    assert torch.equal(block.A, torch.ones(6))
    assert torch.equal(block.w_tau, torch.zeros(6))


# The activations written out from their definitions (not the module's own, so a wrong one is caught).
TEXTBOOK_ACTIVATIONS = {
    "lecun_tanh": lambda z: 1.7159 * torch.tanh(0.666 * z),
    "tanh": lambda z: (torch.exp(z) - torch.exp(-z)) / (torch.exp(z) + torch.exp(-z)),
    "relu": lambda z: torch.where(z > 0, z, torch.zeros_like(z)),
    "gelu": lambda z: 0.5 * z * (1.0 + torch.erf(z / 2.0**0.5)),  # exact GELU (torch's default)
    "silu": lambda z: z / (1.0 + torch.exp(-z)),
    "leaky_relu": lambda z: torch.where(z > 0, z, 0.01 * z),  # torch's default slope
}


def _check_backbone_against_textbook(activation: str) -> None:
    torch.manual_seed(0)
    model = CfC(IN, 6, backbone_units=8, backbone_layers=2, backbone_activation=activation)
    block = model.cells[0].blocks[0]
    with torch.no_grad():  # weights large enough that the activations' tails and kinks are visited
        for layer in block.backbone:
            layer.weight.mul_(3.0)
    x, dt = inputs(batch=2, steps=3)
    y, _ = model(x, dt=dt)
    act = TEXTBOOK_ACTIVATIONS[activation]
    h = torch.zeros(2, 6)
    for t in range(3):  # the textbook CfC step, written out
        z = torch.cat([x[:, t], h], dim=1)
        for layer in block.backbone:
            z = act(torch.nn.functional.linear(z, layer.weight, layer.bias))
        ff1, ff2, t_a, t_b = block.heads(z).chunk(4, dim=1)
        gate = torch.sigmoid(t_a * dt[:, t : t + 1] + t_b)
        h = torch.tanh(ff1) * (1 - gate) + gate * torch.tanh(ff2)
        torch.testing.assert_close(y[:, t], h, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", sorted(TEXTBOOK_ACTIVATIONS))
def test_backbone_activations_match_a_plain_reference(activation):
    _check_backbone_against_textbook(activation)


@pytest.mark.parametrize(
    ("activation", "wrong"),
    [
        ("gelu", lambda: torch.nn.GELU(approximate="tanh")),
        ("leaky_relu", lambda: torch.nn.LeakyReLU(0.1)),
        ("lecun_tanh", torch.nn.Tanh),
        ("silu", torch.nn.Sigmoid),
    ],
)
def test_backbone_activation_check_catches_a_wrong_activation(activation, wrong, monkeypatch):
    """Control: the module built with a near-miss activation fails the textbook comparison."""
    from lnn_control.nn import cfc

    monkeypatch.setitem(cfc.ACTIVATIONS, activation, wrong)
    with pytest.raises(AssertionError):
        _check_backbone_against_textbook(activation)


def test_backbone_dropout_applies_in_training_only():
    torch.manual_seed(0)
    model = CfC(IN, 6, backbone_units=32, backbone_dropout=0.5)
    x, dt = inputs()
    model.train()
    assert not torch.allclose(model(x, dt=dt)[0], model(x, dt=dt)[0])
    model.eval()
    torch.testing.assert_close(model(x, dt=dt)[0], model(x, dt=dt)[0])


@pytest.mark.parametrize("cls", [CfC, LTC])
def test_freeze_recurrent_trains_only_the_readout(cls):
    torch.manual_seed(0)
    model = cls(IN, 8, proj_size=2, freeze_recurrent=True)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    expected = {"proj.weight", "proj.bias"}
    if cls is LTC:
        expected |= {"cells.0.output_w", "cells.0.output_b"}
    assert trainable == expected
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    x, dt = inputs()
    for _ in range(3):
        optimizer.zero_grad()
        model(x, dt=dt)[0].square().mean().backward()
        optimizer.step()
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), name


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("cls", [CfC, LTC])
def test_state_dict_round_trip_restores_the_wiring(cls, tmp_path):
    torch.manual_seed(0)
    original = cls(IN, NCP(6, 5, 3, 2, 2, 3, 2, seed=11))
    path = tmp_path / "model.pt"
    torch.save(original.state_dict(), path)
    torch.manual_seed(1)
    restored = cls(IN, NCP(6, 5, 3, 2, 2, 3, 2, seed=99))  # another wiring of the same sizes
    assert restored.wiring.get_config() != original.wiring.get_config()
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert restored.wiring.get_config() == original.wiring.get_config()
    x, dt = inputs()
    torch.testing.assert_close(restored(x, dt=dt)[0], original(x, dt=dt)[0])


# ------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"x": torch.randn(2, 3, IN + 1)}, "5 features"),
        ({"x": torch.randn(2, 3, 4, IN)}, "x must be"),
        ({"dt": -0.01}, "dt must be finite and >= 0"),
        ({"dt": float("nan")}, "dt must be finite and >= 0"),
        ({"dt": torch.full((2, 3), float("inf"))}, "dt must be finite and >= 0"),
        ({"dt": torch.ones(3, 2)}, "dt must be"),
        ({"resets": torch.zeros(2, 4, dtype=torch.bool)}, "resets must be"),
        ({"h0": torch.zeros(1, 3, 10)}, "h0 must be"),
        ({"h0": torch.zeros(2, 10)}, "h0 must be"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, message):
    model = LTC(IN, 10)
    call = {"x": torch.randn(2, 3, IN), **kwargs}
    with pytest.raises(ValueError, match=message):
        model(call.pop("x"), **call)


def test_negative_dt_error_names_batch_and_step():
    dt = torch.ones(4, 8) * 0.1
    dt[3, 7] = -0.01
    with pytest.raises(ValueError, match=r"got -0.01\d* at batch 3 step 7"):
        CfC(IN, 4)(torch.randn(4, 8, IN), dt=dt)


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: CfC(IN, 0), "units"),
        (lambda: CfC(IN, 4, mode="fast"), "mode"),
        (lambda: CfC(IN, 4, backbone_activation="swish"), "backbone_activation"),
        (lambda: CfC(IN, 4, backbone_dropout=1.5), "backbone_dropout"),
        (lambda: LTC(IN, 4, solver="dopri5"), "solver"),
        (lambda: LTC(IN, 4, max_step=-1.0), "max_step"),
        (lambda: LTC(IN, 4, unfolds=0), "unfolds"),
        (lambda: LTC(IN, 4, num_layers=0), "num_layers"),
        (lambda: LTCCell(IN, 5, wiring=Random(6)), "units"),
        (lambda: CfCCell(IN, AutoNCP(10, 3).build(IN + 1)), "input_dim"),
    ],
)
def test_bad_constructor_arguments_raise_clear_errors(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


@pytest.mark.parametrize("name", ["cfc", "ltc_ncp", "cfc_ncp"])
def test_inference_weight_cache_follows_parameter_updates(name):
    model = make_models()[name].eval()
    x, dt = inputs()
    with torch.no_grad():
        before = model(x, dt=dt)[0]
        torch.testing.assert_close(model(x, dt=dt)[0], before)  # served from the cache
        next(model.parameters()).add_(0.5)  # an in-place update, as an optimiser step makes
        after = model(x, dt=dt)[0]
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, model(x, dt=dt)[0].detach())  # with gradients: no cache


def test_ltc_recurrent_init_is_balanced_by_fan_in() -> None:
    """Each neuron starts with at most ~init_fan_in synapses' worth of recurrent weight (dense layers would
    otherwise drown their input); a wiring with fewer synapses per neuron keeps ncps's ranges exactly."""
    import torch.nn.functional as F

    from lnn_control.nn import LTC
    from lnn_control.nn.wiring import AutoNCP

    torch.manual_seed(0)
    dense = LTC(5, 64).cells[0]
    totals = F.softplus(dense.w.detach()).sum(0)  # (post,)
    assert float(totals.max()) < 8.0 * 0.5 * 1.5 and float(totals.mean()) == pytest.approx(4.0, rel=0.15)
    torch.manual_seed(0)
    unscaled = LTC(5, 64, init_fan_in=None).cells[0]
    assert float(F.softplus(unscaled.w.detach()).sum(0).mean()) == pytest.approx(32.0, rel=0.1)  # 64 x 0.5
    for name in ("gleak", "cm", "sensory_w", "mu", "sigma"):  # nothing else moves
        assert torch.equal(getattr(dense, name), getattr(unscaled, name)), name
    wiring = AutoNCP(16, 4, sparsity_level=0.5, seed=1)
    torch.manual_seed(1)
    sparse = LTC(5, wiring, init_fan_in=64.0).cells[0]
    torch.manual_seed(1)
    reference = LTC(5, AutoNCP(16, 4, sparsity_level=0.5, seed=1), init_fan_in=None).cells[0]
    assert torch.equal(sparse.w, reference.w)
    with pytest.raises(ValueError, match="init_fan_in must be a positive number or None"):
        LTC(5, 8, init_fan_in=0)
