"""The compiled LTC kernel: the same function and gradients as the torch loop, and the fallbacks around it."""

from __future__ import annotations

import platform
import warnings

import pytest
import torch

from lnn_control.nn import LTC, AutoNCP, Random, ltc_native

IN, UNITS, STEPS = 5, 12, 7
BATCH = 19  # sparse sets run 16 samples per vector (ltc_native.LANES): one full group and one padded

CONFIGS = {
    "dense": lambda: LTC(IN, UNITS),
    "autoncp": lambda: LTC(IN, AutoNCP(UNITS, 3, seed=1)),
    "random_sparse": lambda: LTC(IN, Random(UNITS, sparsity_level=0.6, seed=2)),
    "max_step": lambda: LTC(IN, UNITS, max_step=0.03, unfolds=2),
    "two_layers": lambda: LTC(IN, AutoNCP(UNITS, 3, seed=4), num_layers=2, proj_size=2),
}


def make(name: str, dtype: torch.dtype) -> LTC:
    torch.manual_seed(0)
    return CONFIGS[name]().to(dtype)


def batch_inputs(model: LTC, dtype: torch.dtype, seed: int = 0):
    """x, dt with a zero and a long interval, resets, h0 (all random)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, STEPS, IN, generator=g, dtype=dtype)
    dt = torch.rand(BATCH, STEPS, generator=g, dtype=dtype) * 0.2
    dt[0, 2], dt[1, 4] = 0.0, 0.5
    resets = torch.rand(BATCH, STEPS, generator=g) < 0.2
    h0 = torch.randn(model.num_layers, BATCH, UNITS, generator=g, dtype=dtype)
    return x, dt, resets, h0


def outputs_and_gradients(model: LTC, x, dt, resets, h0, native: bool):
    """y, h_n and the gradients of a loss over both w.r.t. x, h0 and every parameter."""
    model.zero_grad(set_to_none=True)
    x, h0 = x.clone().requires_grad_(True), h0.clone().requires_grad_(True)
    with torch.enable_grad() if native else ltc_native.disabled():
        y, h_n = model(x, h0=h0, dt=dt, resets=resets)
        (y.sin().sum() + h_n.cos().sum()).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return {"y": y.detach(), "h_n": h_n.detach(), "x": x.grad, "h0": h0.grad, **grads}


def test_the_kernel_builds_on_this_machine():
    """CI machines have a C compiler: the fast path must be the one under test, not the fallback."""
    assert ltc_native.available()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_kernel_equals_the_torch_loop_in_float64(name):
    """Outputs and every gradient agree to rounding, so the hand-written backward is the true gradient."""
    model = make(name, torch.float64)
    args = batch_inputs(model, torch.float64)
    native = outputs_and_gradients(model, *args, native=True)
    reference = outputs_and_gradients(model, *args, native=False)
    assert set(native) == set(reference)
    for key, expected in reference.items():
        assert expected is not None, key
        torch.testing.assert_close(native[key], expected, rtol=1e-10, atol=1e-12, msg=key)


@pytest.mark.parametrize("name", ["dense", "autoncp"])
def test_kernel_equals_the_torch_loop_in_float32(name):
    model = make(name, torch.float32)
    args = batch_inputs(model, torch.float32, seed=1)
    native = outputs_and_gradients(model, *args, native=True)
    reference = outputs_and_gradients(model, *args, native=False)
    for key, expected in reference.items():
        scale = expected.abs().max().item()
        torch.testing.assert_close(native[key], expected, rtol=1e-4, atol=1e-5 * max(scale, 1.0), msg=key)


def test_kernel_passes_gradcheck():
    torch.manual_seed(0)
    model = LTC(3, AutoNCP(6, 2, seed=3), unfolds=2).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 6, dtype=torch.float64, requires_grad=True)
    dt = torch.rand(2, 4, dtype=torch.float64) * 0.3
    assert torch.autograd.gradcheck(lambda x, h0: model(x, h0=h0, dt=dt)[0], (x, h0))


@pytest.mark.parametrize("name", ["dense", "autoncp"])
def test_batch_slices_on_several_threads_equal_one_thread(name):
    """float64, so that the per-slice sums of parameter gradients differ from one sum by rounding only."""
    model = make(name, torch.float64)
    args = batch_inputs(model, torch.float64)
    one = outputs_and_gradients(model, *args, native=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(3)  # 19 samples: slices of 16 and 3 (slices start at multiples of LANES = 16)
    try:
        several = outputs_and_gradients(model, *args, native=True)
    finally:
        torch.set_num_threads(previous)
    for key, expected in one.items():
        torch.testing.assert_close(several[key], expected, rtol=1e-12, atol=1e-13, msg=key)


def test_zero_dt_leaves_the_state_exactly_unchanged():
    model = make("dense", torch.float32)
    h0 = torch.randn(1, BATCH, UNITS)
    with torch.no_grad():
        _, h_n = model(torch.randn(BATCH, STEPS, IN), h0=h0, dt=torch.zeros(BATCH, STEPS))
    assert torch.equal(h_n, h0)


def test_inference_cache_serves_both_paths():
    """The cached derived weights differ between kernel and torch loop; switching must not mix them."""
    model = make("autoncp", torch.float32)
    x, dt, _, h0 = batch_inputs(model, torch.float32)
    with torch.no_grad():
        native = model(x, h0=h0, dt=dt)[0]
        with ltc_native.disabled():
            reference = model(x, h0=h0, dt=dt)[0]
        again = model(x, h0=h0, dt=dt)[0]
    torch.testing.assert_close(native, reference, rtol=1e-5, atol=1e-6)
    assert torch.equal(again, native)


def test_dt_that_requires_grad_runs_the_torch_loop_and_gets_a_gradient():
    model = make("dense", torch.float64)
    x, dt, _, h0 = batch_inputs(model, torch.float64)
    dt = dt.clone().requires_grad_(True)
    y, _ = model(x, h0=h0, dt=dt)
    y.sum().backward()
    assert dt.grad is not None and dt.grad.abs().sum() > 0


@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_other_solvers_run_the_torch_loop(solver, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the kernel only implements the semi-implicit solver")

    monkeypatch.setattr(ltc_native, "ltc_recurrence", fail)
    model = LTC(IN, UNITS, solver=solver, unfolds=2)
    y, _ = model(torch.randn(2, 3, IN), dt=0.1)
    assert torch.isfinite(y).all()


def test_tracing_runs_the_torch_loop():
    """torch.jit.trace (and ONNX export) cannot see into the kernel, so they must record the torch loop."""
    model = make("dense", torch.float32).eval().requires_grad_(False)  # as lnn_control.export traces it
    x, dt = torch.randn(1, 3, IN), torch.full((1, 3), 0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # input checks are constant in a trace
        traced = torch.jit.trace(lambda x, dt: model(x, dt=dt)[0], (x, dt), check_trace=False)
    graph = str(traced.graph)
    assert "sigmoid" in graph  # the loop's synapse activations are in the recorded graph
    with torch.no_grad():
        torch.testing.assert_close(traced(x, dt), model(x, dt=dt)[0], rtol=1e-5, atol=1e-6)


def test_the_kernel_is_built_once_into_the_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(ltc_native._KERNEL, "library", None)
    monkeypatch.setattr(ltc_native._KERNEL, "load_failed", False)
    monkeypatch.setenv("LNN_CONTROL_CACHE", str(tmp_path))
    assert ltc_native.available()
    built = list(tmp_path.iterdir())
    assert len(built) == 1 and built[0].name.startswith("ltc_kernel-")  # no temporary left behind
    stamp = built[0].stat().st_mtime_ns
    monkeypatch.setattr(ltc_native._KERNEL, "library", None)
    assert ltc_native.available()
    assert built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt


class _RecordingLibrary:
    """Wraps the loaded kernel library and records the entry points that are called."""

    def __init__(self, library) -> None:
        self.library = library
        self.called: list[str] = []

    def __getattr__(self, name: str):
        function = getattr(self.library, name)

        def call(*args):
            self.called.append(name)
            return function(*args)

        return call


@pytest.mark.parametrize(
    ("name", "expected"), [("dense", "rows"), ("autoncp", "lanes"), ("random_sparse", "lanes")]
)
def test_a_sparse_wiring_reaches_the_lanes_kernel_and_a_dense_one_the_rows(name, expected, monkeypatch):
    """The lanes kernel is the one whose cost follows the synapse count; a sparse wiring on the rows loop (or
    a dense one on lanes) would compute the same values at the wrong cost, which only this check sees."""
    assert ltc_native.available()
    recorder = _RecordingLibrary(ltc_native._KERNEL.library)
    monkeypatch.setattr(ltc_native._KERNEL, "library", recorder)
    model = make(name, torch.float32)
    x, dt, resets, h0 = batch_inputs(model, torch.float32)
    y, _ = model(x, h0=h0, dt=dt, resets=resets)
    y.sum().backward()
    assert recorder.called == [f"ltc_{expected}_forward_f32", f"ltc_{expected}_backward_f32"]


def _kernel_arguments(cell, dtype):
    """Inputs of ltc_native.ltc_recurrence for ``cell`` (B=BATCH, T=STEPS), with a reset and a zero step;
    the same values on every call, the weights freshly derived from the parameters."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(BATCH, STEPS, IN, generator=g, dtype=dtype, requires_grad=True)
    v0 = torch.randn(BATCH, UNITS, generator=g, dtype=dtype, requires_grad=True)
    h = torch.rand(BATCH, STEPS, cell.unfolds, generator=g, dtype=dtype) * 0.05
    h[2, 3] = 0.0
    keep = (torch.rand(BATCH, STEPS, generator=g) > 0.2).to(dtype)
    weights = cell._loop_weights(native=True)
    neuron = (weights["cm"], weights["leak_current"], weights["conductance"])
    return x, v0, neuron, weights["synapses"], weights["sensory_synapses"], h, keep


def test_the_two_layouts_agree_on_a_complete_synapse_set():
    """A dense cell run on the lanes kernel (which takes any edge list) gives the rows kernel's values and
    gradients: two independent loops over the same function."""
    cell = make("dense", torch.float64).cells[0]
    results = {}
    for name in ltc_native.LAYOUTS:
        cell.zero_grad(set_to_none=True)
        args = _kernel_arguments(cell, torch.float64)
        x, v0 = args[:2]
        out = ltc_native.ltc_recurrence(*args, layout_name=name)
        out.sin().sum().backward()
        results[name] = [out.detach(), x.grad, v0.grad] + [
            p.grad for p in cell.parameters() if p.grad is not None
        ]
    assert len(results["rows"]) == len(results["lanes"]) > 3
    for rows, lanes in zip(results["rows"], results["lanes"], strict=True):
        torch.testing.assert_close(lanes, rows, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="complete synapse sets only"):
        sparse = make("autoncp", torch.float64).cells[0]
        ltc_native.ltc_recurrence(*_kernel_arguments(sparse, torch.float64), layout_name="rows")


@pytest.mark.parametrize("name", ["dense", "autoncp"])
def test_the_kernel_flushes_denormals_and_restores_the_callers_mode(name):
    """Denormal values cost a microcode assist per operation on x86 (that made the sparse forward 9x slower
    than its backward): inside the kernel they are flushed to zero, and the caller's floating-point mode is
    restored afterwards. A state of 1e-40 (denormal in float32) kept through a zero-length step comes out as
    0 from the kernel; torch, in the same thread after the call, still computes denormals."""
    model = make(name, torch.float32)
    h0 = torch.full((1, BATCH, UNITS), 1e-40)
    assert h0[0, 0, 0] != 0
    resets = torch.zeros(BATCH, STEPS, dtype=torch.bool)  # keep = 1: the kernel multiplies the state by it
    with torch.no_grad():
        _, h_n = model(torch.randn(BATCH, STEPS, IN), h0=h0, dt=torch.zeros(BATCH, STEPS), resets=resets)
        with ltc_native.disabled():
            _, h_torch = model(
                torch.randn(BATCH, STEPS, IN), h0=h0, dt=torch.zeros(BATCH, STEPS), resets=resets
            )
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        assert torch.equal(h_n, torch.zeros_like(h_n))
    assert (h_torch != 0).all()  # the torch loop keeps denormals
    assert (torch.tensor([1e-38]) * 0.01).item() != 0  # the caller's mode: denormals not flushed


def _kernel_sigmoid(z: torch.Tensor) -> torch.Tensor:
    """The float kernels' sigmoid (lnn_sigmoidf in csrc/kernel_common.h) of a float32 tensor."""
    z = z.contiguous()
    out = torch.empty_like(z)
    assert ltc_native._KERNEL.load().ltc_sigmoid_f32(z.numel(), z.data_ptr(), out.data_ptr()) == 0
    return out


def test_the_kernels_float_sigmoid_is_as_accurate_as_torchs():
    """The kernel's own exp (a polynomial) may not cost accuracy: on a dense grid over the whole range where
    the result is a normal float, its relative error against float64 stays under 3 u (u = 2^-24; exact
    rounding is 1 u, torch's float32 sigmoid measured 2.45 u, the kernel 2.59 u: the error is mostly in
    1 / (1 + e^-z) itself, whose 1 + e^-z rounds once more). It saturates to 1 and to 0 (at most 1e-38) and
    gives NaN for NaN."""
    z = torch.cat([torch.linspace(-104, 104, 2_000_001), torch.linspace(-1, 1, 200_001)])
    exact = torch.sigmoid(z.double())
    normal = exact > torch.finfo(torch.float32).tiny
    relative = ((_kernel_sigmoid(z).double() - exact).abs() / exact)[normal]
    assert relative.max().item() < 3 * 2**-24, f"max relative error {relative.max().item() / 2**-24:.2f} u"
    inf = float("inf")
    ends = _kernel_sigmoid(torch.tensor([inf, 1e30, 90.0, -90.0, -1e30, -inf, float("nan")]))
    assert ends[:3].tolist() == [1.0, 1.0, 1.0]
    assert ((ends[3:6] >= 0) & (ends[3:6] <= 1e-38)).all(), ends
    assert ends[6].isnan()
