"""The LTC solvers against an independent integration of the LTC ODE.

The reference is written here from the equations (module docstring of ``lnn_control.nn.ltc``), in float64
numpy, with the input held over each step and classical RK4 at 1024 substeps per step:

    cm dv/dt = gleak (vleak - v) + sum_j w_ji s(v_j) (erev_ji - v) + sum_i ws_i s(x_i) (serev_i - v).

Each solver (``semi_implicit``, ``euler``, ``rk4``) must converge to it as ``unfolds`` grows, at its own order
(first, first, fourth; the semi-implicit one in the compiled kernel and in the torch loop), over
several steps of irregular, per-sample dt, and the three must agree with each other at many unfolds.
A control puts a time-scaling bug into the solver step and the kernel and shows the checks fail.
"""

from __future__ import annotations

import contextlib
import itertools

import numpy as np
import pytest
import torch

from lnn_control.nn import LTCCell, ltc_native
from lnn_control.nn.wiring import Random

IN, UNITS, BATCH, STEPS = 3, 6, 4, 3


def _cell(solver: str, unfolds: int, seed: int = 0) -> LTCCell:
    torch.manual_seed(seed)
    wiring = Random(UNITS, 2, sparsity_level=0.3, seed=seed + 1)  # a sparse graph: masks matter
    return LTCCell(IN, wiring, solver=solver, unfolds=unfolds).double()


def _params(cell: LTCCell) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = {
            name: getattr(cell, name).double().numpy().copy()
            for name in ("vleak", "sigma", "mu", "erev", "sensory_sigma", "sensory_mu", "sensory_erev")
        }
        for name in ("gleak", "cm", "w", "sensory_w"):  # constrained positive by softplus
            out[name] = torch.nn.functional.softplus(getattr(cell, name)).double().numpy()
        out["w"] = out["w"] * cell.mask.double().numpy()
        out["sensory_w"] = out["sensory_w"] * cell.sensory_mask.double().numpy()
        for name in ("input_w", "input_b", "output_w", "output_b"):
            out[name] = getattr(cell, name).double().numpy().copy()
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _rate(v: np.ndarray, x: np.ndarray, p: dict[str, np.ndarray]) -> np.ndarray:
    """dv/dt: v (B, H), x (B, in) already mapped by input_w / input_b."""
    s = p["w"] * _sigmoid(p["sigma"] * (v[:, :, None] - p["mu"]))  # (B, pre j, post i)
    ss = p["sensory_w"] * _sigmoid(p["sensory_sigma"] * (x[:, :, None] - p["sensory_mu"]))  # (B, in, post)
    synaptic = (s * (p["erev"] - v[:, None, :])).sum(1) + (ss * (p["sensory_erev"] - v[:, None, :])).sum(1)
    return (p["gleak"] * (p["vleak"] - v) + synaptic) / p["cm"]


def _reference(p: dict[str, np.ndarray], x: np.ndarray, dt: np.ndarray, substeps: int = 1024) -> np.ndarray:
    """States (B, T, H) from v = 0: classical RK4 with ``substeps`` per step, input held over the step."""
    v = np.zeros((x.shape[0], UNITS))
    states = []
    for t in range(x.shape[1]):
        u = x[:, t] * p["input_w"] + p["input_b"]
        h = (dt[:, t] / substeps)[:, None]
        for _ in range(substeps):
            k1 = _rate(v, u, p)
            k2 = _rate(v + 0.5 * h * k1, u, p)
            k3 = _rate(v + 0.5 * h * k2, u, p)
            k4 = _rate(v + h * k3, u, p)
            v = v + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        states.append(v)
    return np.stack(states, axis=1)


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(BATCH, STEPS, IN, generator=g, dtype=torch.float64)
    dt = 0.05 + 0.6 * torch.rand(BATCH, STEPS, generator=g, dtype=torch.float64)  # irregular, per sample
    return x, dt


def _run(cell: LTCCell, x: torch.Tensor, dt: torch.Tensor, native: bool = True) -> np.ndarray:
    """States (B, T, H) stepping the cell one step at a time with each sample's own dt; ``native=False``
    runs the semi-implicit solver in the torch loop instead of the compiled kernel."""
    v = torch.zeros(BATCH, UNITS, dtype=torch.float64)
    states = []
    with torch.no_grad(), contextlib.nullcontext() if native else ltc_native.disabled():
        for t in range(STEPS):
            _, v = cell(x[:, t], v, dt[:, t : t + 1])
            states.append(v.numpy().copy())
    return np.stack(states, axis=1)


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    x, dt = _inputs()
    return _reference(_params(_cell("euler", 1)), x.numpy(), dt.numpy())


# solver form: (order, unfolds); "semi_implicit" runs the compiled kernel on CPU, "semi_implicit-loop" torch
ORDERS = {
    "semi_implicit": (1, [64, 128, 256]),
    "semi_implicit-loop": (1, [64, 128, 256]),
    "euler": (1, [64, 128, 256]),
    "rk4": (4, [8, 16, 32]),
}


def _errors(form: str, reference: np.ndarray) -> list[float]:
    x, dt = _inputs()
    solver, native = form.removesuffix("-loop"), not form.endswith("-loop")
    runs = [_run(_cell(solver, n), x, dt, native) for n in ORDERS[form][1]]
    return [float(np.abs(states - reference).max()) for states in runs]


@pytest.mark.parametrize("solver", sorted(ORDERS))
def test_solver_converges_to_the_ode_at_its_order(solver: str, reference: np.ndarray) -> None:
    order, _ = ORDERS[solver]
    errors = _errors(solver, reference)
    assert max(errors) < 0.1  # near the ODE's solution, the states are O(0.5)
    assert errors[-1] < (2e-3 if order == 1 else 2e-5), errors
    for coarse, fine in itertools.pairwise(errors):
        ratio = coarse / fine  # halving the substep divides the error by 2 ** order
        assert 2**order * 0.75 < ratio < 2**order * 1.3, (solver, errors)


def test_solvers_agree_with_each_other_at_many_unfolds() -> None:
    x, dt = _inputs()
    semi = _run(_cell("semi_implicit", 2048), x, dt)  # first order: about 2e-4 from the ODE here
    np.testing.assert_allclose(_run(_cell("semi_implicit", 2048), x, dt, native=False), semi, atol=1e-9)
    np.testing.assert_allclose(_run(_cell("euler", 2048), x, dt), semi, atol=4e-4)
    np.testing.assert_allclose(_run(_cell("rk4", 32), x, dt), semi, atol=4e-4)
    assert np.abs(semi).max() > 0.1  # the states moved: the comparison is not between zeros


def test_the_output_mapping_and_the_float32_cell(reference: np.ndarray) -> None:
    """The cell's output y = output_w * v[:out] + output_b, and the float32 cell (the compiled kernel on
    CPU for semi_implicit) matches the float64 reference to float32 solver precision."""
    x, dt = _inputs()
    cell = _cell("semi_implicit", 512)
    p = _params(cell)
    cell32 = cell.float()
    v = torch.zeros(BATCH, UNITS)
    with torch.no_grad():
        for t in range(STEPS):
            y, v = cell32(x[:, t].float(), v, dt[:, t : t + 1].float())
            expected_y = reference[:, t, : cell.output_size] * p["output_w"] + p["output_b"]
            np.testing.assert_allclose(y.numpy(), expected_y, atol=2e-3)
            np.testing.assert_allclose(v.numpy(), reference[:, t], atol=2e-3)


def test_checks_fail_with_a_time_scaling_bug(reference: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: substeps of 0.9 h instead of h (e.g. dt / (unfolds + 1)), in the torch loop's solver step and
    in the compiled kernel, converge to the wrong solution; the convergence check fails for every form."""
    loop_step, kernel = LTCCell._solver_step, ltc_native.ltc_recurrence

    def short_step(self, v, h, *args):
        return loop_step(self, v, 0.9 * h, *args)

    def short_kernel(x, v, neuron, synapses, sensory_synapses, h, keep):
        return kernel(x, v, neuron, synapses, sensory_synapses, 0.9 * h, keep)

    monkeypatch.setattr(LTCCell, "_solver_step", short_step)
    monkeypatch.setattr(ltc_native, "ltc_recurrence", short_kernel)
    for solver in ORDERS:
        with pytest.raises(AssertionError):
            test_solver_converges_to_the_ode_at_its_order(solver, reference)
