"""The compiled CfC kernel: the same function and gradients as the torch loop, and where it runs."""

from __future__ import annotations

import copy
import gc
import io
import warnings

import pytest
import torch

from lnn_control.nn import NCP, AutoNCP, CfC, cfc_native

IN, UNITS, STEPS = 5, 12, 7
BATCH = 11  # 8 samples per vector: one full group and one padded

CONFIGS = {
    "default": lambda: CfC(IN, UNITS, backbone_units=16),
    "no_gate_tanh": lambda: CfC(IN, UNITS, mode="no_gate", backbone_units=16, backbone_activation="tanh"),
    "pure": lambda: CfC(IN, UNITS, mode="pure", backbone_units=16),
    "no_backbone": lambda: CfC(IN, UNITS, backbone_layers=0),
    "dropout": lambda: CfC(IN, UNITS, backbone_units=16, backbone_dropout=0.3),
    "autoncp": lambda: CfC(IN, AutoNCP(14, 3, seed=1)),
    "ncp_no_gate": lambda: CfC(IN, NCP(4, 3, 2, 3, 2, 2, 2, seed=2), mode="no_gate"),
    "autoncp_pure": lambda: CfC(IN, AutoNCP(14, 3, seed=1), mode="pure"),
    "two_layers": lambda: CfC(IN, UNITS, backbone_units=16, num_layers=2, proj_size=3),
}


def make(name: str, dtype: torch.dtype) -> CfC:
    torch.manual_seed(0)
    model = CONFIGS[name]().to(dtype).train()
    with torch.no_grad():  # pure mode starts at w_tau = 0, A = 1: move off the special values
        for cell in model.cells:
            for block in cell.blocks:
                if block.mode == "pure":
                    block.w_tau.uniform_(-0.5, 0.5)
                    block.A.uniform_(0.5, 1.5)
    return model


def batch_inputs(model: CfC, dtype: torch.dtype, seed: int = 0):
    """x, dt (with a zero), resets, h0 (all random)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, STEPS, IN, generator=g, dtype=dtype)
    dt = torch.rand(BATCH, STEPS, generator=g, dtype=dtype)
    dt[0, 2] = 0.0
    resets = torch.rand(BATCH, STEPS, generator=g) < 0.2
    h0 = torch.randn(model.num_layers, BATCH, model.cells[0].state_size, generator=g, dtype=dtype)
    return x, dt, resets, h0


def outputs_and_gradients(model: CfC, x, dt, resets, h0, native: bool):
    """y, h_n and the gradients of a loss over both w.r.t. x, h0 and every parameter (the same dropout
    masks in both paths: the same seed right before the call)."""
    model.zero_grad(set_to_none=True)
    x, h0 = x.clone().requires_grad_(True), h0.clone().requires_grad_(True)
    torch.manual_seed(3)
    with torch.enable_grad() if native else cfc_native.disabled():
        y, h_n = model(x, h0=h0, dt=dt, resets=resets)
        (y.sin().sum() + h_n.cos().sum()).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return {"y": y.detach(), "h_n": h_n.detach(), "x": x.grad, "h0": h0.grad, **grads}


def test_the_kernel_builds_on_this_machine():
    assert cfc_native.available()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_kernel_equals_the_torch_loop_in_float64(name):
    """Outputs and every gradient agree to rounding, so the hand-written backward is the true gradient."""
    model = make(name, torch.float64)
    args = batch_inputs(model, torch.float64)
    native = outputs_and_gradients(model, *args, native=True)
    reference = outputs_and_gradients(model, *args, native=False)
    assert set(native) == set(reference)
    for key, expected in reference.items():
        assert expected is not None and native[key] is not None, key
        torch.testing.assert_close(native[key], expected, rtol=1e-10, atol=1e-12, msg=key)


@pytest.mark.parametrize("batch", [1, 8, 20])
@pytest.mark.parametrize("name", ["default", "autoncp_pure"])
def test_kernel_equals_the_torch_loop_at_other_batch_sizes(name, batch):
    """The kernel runs 16 samples at a time where more than 8 remain, else 8: B = 11 (above) is one
    padded pair, 20 a pair then a padded group of 8, 8 one full group, 1 the single-step case."""
    model = make(name, torch.float64)
    x, dt, resets, h0 = batch_inputs(model, torch.float64)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(batch, STEPS, IN, generator=g, dtype=torch.float64)
    dt = torch.rand(batch, STEPS, generator=g, dtype=torch.float64)
    resets = torch.rand(batch, STEPS, generator=g) < 0.2
    h0 = torch.randn(1, batch, h0.shape[-1], generator=g, dtype=torch.float64)
    native = outputs_and_gradients(model, x, dt, resets, h0, native=True)
    reference = outputs_and_gradients(model, x, dt, resets, h0, native=False)
    for key, expected in reference.items():
        torch.testing.assert_close(native[key], expected, rtol=1e-10, atol=1e-12, msg=key)


@pytest.mark.parametrize("name", ["default", "autoncp", "pure"])
def test_kernel_equals_the_torch_loop_in_float32(name):
    model = make(name, torch.float32)
    args = batch_inputs(model, torch.float32, seed=1)
    native = outputs_and_gradients(model, *args, native=True)
    reference = outputs_and_gradients(model, *args, native=False)
    for key, expected in reference.items():
        scale = expected.abs().max().item()
        torch.testing.assert_close(native[key], expected, rtol=1e-4, atol=1e-5 * max(scale, 1.0), msg=key)


@pytest.mark.parametrize("name", ["default", "autoncp_pure"])
def test_kernel_passes_gradcheck(name):
    torch.manual_seed(0)
    model = make(name, torch.float64)
    x = torch.randn(2, 4, IN, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, model.cells[0].state_size, dtype=torch.float64, requires_grad=True)
    dt = torch.rand(2, 4, dtype=torch.float64)
    resets = torch.tensor([[False, False, True, False], [False, True, False, False]])
    params = [p for p in model.parameters()][:3]

    def run(x, h0, *_):
        y, h_n = model(x, h0=h0, dt=dt, resets=resets)
        return y, h_n

    assert torch.autograd.gradcheck(run, (x, h0, *params))


def test_dropout_draws_one_mask_per_step_and_none_in_eval():
    """In training the kernel and the torch loop apply the same masks (drawn before the loop); the masks
    change the result; in eval there is no dropout (and no random draw)."""
    model = make("dropout", torch.float32)
    x, dt, _, h0 = batch_inputs(model, torch.float32)
    with torch.no_grad():
        torch.manual_seed(5)
        first = model(x, h0=h0, dt=dt)[0]
        torch.manual_seed(5)
        with cfc_native.disabled():
            reference = model(x, h0=h0, dt=dt)[0]
        second = model(x, h0=h0, dt=dt)[0]
        model.eval()
        state = torch.get_rng_state()
        evaluated = model(x, h0=h0, dt=dt)[0]
        assert torch.equal(torch.get_rng_state(), state)
        with cfc_native.disabled():
            evaluated_reference = model(x, h0=h0, dt=dt)[0]
    torch.testing.assert_close(first, reference, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(first, second)
    torch.testing.assert_close(evaluated, evaluated_reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["default", "autoncp"])
def test_batch_slices_on_several_threads_equal_one_thread(name):
    model = make(name, torch.float64)
    args = batch_inputs(model, torch.float64)
    one = outputs_and_gradients(model, *args, native=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(3)  # 11 samples: slices of 8 and 3
    try:
        several = outputs_and_gradients(model, *args, native=True)
    finally:
        torch.set_num_threads(previous)
    for key, expected in one.items():
        torch.testing.assert_close(several[key], expected, rtol=1e-12, atol=1e-13, msg=key)


def _count_kernel_calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    original = cfc_native._run_forward

    def spy(*args):
        calls.append("forward")
        return original(*args)

    monkeypatch.setattr(cfc_native, "_run_forward", spy)
    return calls


@pytest.mark.parametrize("name", ["default", "no_backbone", "autoncp", "pure", "dropout"])
def test_covered_configurations_run_the_kernel_in_training_and_inference(name, monkeypatch):
    calls = _count_kernel_calls(monkeypatch)
    model = make(name, torch.float32)
    x, dt, resets, h0 = batch_inputs(model, torch.float32)
    model(x, h0=h0, dt=dt, resets=resets)[0].sum().backward()
    with torch.no_grad():
        model.eval()(x[:1, :1], dt=dt[:1, :1])  # single-step inference at B = 1
    assert calls == ["forward", "forward"]


@pytest.mark.parametrize(
    "make_model",
    [
        lambda: CfC(IN, UNITS, backbone_layers=2, backbone_units=8),
        lambda: CfC(IN, UNITS, backbone_activation="relu"),
    ],
)
def test_other_configurations_run_the_torch_loop(make_model, monkeypatch):
    calls = _count_kernel_calls(monkeypatch)
    y, _ = make_model()(torch.randn(2, 3, IN), dt=0.1)
    assert torch.isfinite(y).all() and calls == []


def test_dt_that_requires_grad_runs_the_torch_loop_and_gets_a_gradient(monkeypatch):
    calls = _count_kernel_calls(monkeypatch)
    model = make("default", torch.float64)
    x, dt, _, h0 = batch_inputs(model, torch.float64)
    dt = dt.clone().requires_grad_(True)
    model(x, h0=h0, dt=dt)[0].sum().backward()
    assert dt.grad is not None and dt.grad.abs().sum() > 0 and calls == []


def test_tracing_runs_the_torch_loop(monkeypatch):
    calls = _count_kernel_calls(monkeypatch)
    model = make("autoncp", torch.float32).eval().requires_grad_(False)
    x, dt = torch.randn(1, 3, IN), torch.full((1, 3), 0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(lambda x, dt: model(x, dt=dt)[0], (x, dt), check_trace=False)
    assert calls == []
    with torch.no_grad():
        torch.testing.assert_close(traced(x, dt), model(x, dt=dt)[0], rtol=1e-5, atol=1e-6)


def test_inference_reuses_the_prepared_weights_until_a_parameter_changes():
    model = make("autoncp", torch.float32).eval()
    x, dt, _, h0 = batch_inputs(model, torch.float32)
    with torch.no_grad():
        before = model(x, h0=h0, dt=dt)[0]
        assert torch.equal(model(x, h0=h0, dt=dt)[0], before)
        next(model.parameters()).add_(0.5)
        after = model(x, h0=h0, dt=dt)[0]
        with cfc_native.disabled():
            reference = model(x, h0=h0, dt=dt)[0]
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, reference, rtol=1e-5, atol=1e-6)


def test_a_model_with_cached_kernel_weights_copies_and_pickles():
    """Inference caches the kernel's pointer table on the module; deepcopy and pickle must rebuild it for
    the copy's own weights (and not point into the original, which may be gone)."""
    model = make("autoncp", torch.float32).eval()
    x, dt, _, h0 = batch_inputs(model, torch.float32)
    with torch.no_grad():
        expected = model(x, h0=h0, dt=dt)[0]
        copied = copy.deepcopy(model)
        buffer = io.BytesIO()
        torch.save(model, buffer)
        del model
        gc.collect()
        assert torch.equal(copied(x, h0=h0, dt=dt)[0], expected)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        assert torch.equal(loaded(x, h0=h0, dt=dt)[0], expected)
