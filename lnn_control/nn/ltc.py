"""Liquid time-constant (LTC) cell (Hasani et al., 2021, https://ojs.aaai.org/index.php/AAAI/article/view/16936).

Each neuron i is a leaky membrane with conductance-based synapses:

    cm_i dv_i/dt = gleak_i (vleak_i - v_i) + sum_j w_ji s_ji(v_j) (erev_ji - v_i) + sensory terms,
    s_ji(v) = sigmoid(sigma_ji (v - mu_ji)),

integrated over the elapsed time ``dt`` of each step with ``unfolds`` substeps of ``dt / unfolds``:

- ``semi_implicit`` (the LTC paper's fused solver):
  ``v <- (cm v + h (gleak vleak + N(v))) / (cm + h (gleak + D(v)))`` where N and D are the synaptic
  numerator and denominator; stable for any h >= 0, and h = 0 leaves v unchanged.
- ``euler``: explicit Euler on the ODE above; ``rk4``: classical Runge-Kutta.

``max_step`` (in the units of dt) subdivides long intervals: a step of dt takes
``max(unfolds, ceil(dt / max_step))`` substeps, each sample its own number, so a long or irregular dt stays as
stable as a short one and every sample's result is independent of its batch-mates. That count depends on the
data; ``max_substeps`` (or :meth:`LTCCell.bound_substeps`) fixes the loop length at K for tracing and export:
each sample runs its own count, clamped to K, then zero-length substeps (exact: a zero-length substep leaves
the state unchanged), so the result is unchanged for every dt <= K * max_step.

Positivity of cm, gleak, w and sensory_w is by softplus of unconstrained parameters: nothing to clip after an
optimiser step. Masked synapses (a wiring) have no effect and receive zero gradient; for sparse wirings the
recurrent sum runs over the existing synapses only, so cost scales with synapse count.

On CPU the semi-implicit solver runs a compiled kernel (``ltc_native``: one fused pass per substep forward and
backward, over the existing synapses only). The torch loop below computes the same function and runs
everything else: the other solvers, GPU tensors, a dt that requires grad, tracing and export, and machines
without a C compiler. Its sparse form gathers and scatters over an edge list (index_select / index_add).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from lnn_control.checks import positive_int, positive_number

from . import ltc_native
from .cell import LiquidCell
from .inputs import join_steps, split_steps
from .weight_cache import cached_when_inference
from .wiring import FullyConnected, Wiring

__all__ = ["LTC_SOLVERS", "LTCCell"]

LTC_SOLVERS = ("semi_implicit", "euler", "rk4")

# Initial value ranges (uniform), as in the LTC reference implementation.
_INIT_RANGES = {
    "gleak": (0.001, 1.0),
    "vleak": (-0.2, 0.2),
    "cm": (0.4, 0.6),
    "w": (0.001, 1.0),
    "sigma": (3.0, 8.0),
    "mu": (0.3, 0.8),
    "sensory_w": (0.001, 1.0),
    "sensory_sigma": (3.0, 8.0),
    "sensory_mu": (0.3, 0.8),
}
_POSITIVE = ("gleak", "cm", "w", "sensory_w")
_SPARSE_DENSITY = 0.5  # below this fraction of existing synapses, sum over an edge list


def inverse_softplus(y: Tensor) -> Tensor:
    """The x with softplus(x) = y, for y > 0."""
    return y + torch.log(-torch.expm1(-y))


class LTCCell(LiquidCell):
    """An LTC cell: ``cell(x (B, in), h (B, H), dt (B, 1) | float) -> (y (B, out), h' (B, H))``.

    Args:
        input_size: input features.
        units: neurons H, or a ``Wiring`` (then ``wiring`` must be None).
        wiring: synapse graph (default ``FullyConnected(units)``); the output is its motor neurons, i.e. state
            entries ``0 .. wiring.output_dim - 1`` after the affine output mapping.
        solver: ``"semi_implicit"``, ``"euler"`` or ``"rk4"``.
        unfolds: substeps per step (at least; see ``max_step``).
        max_step: longest substep in the units of dt, or None for exactly ``unfolds`` substeps.
        max_substeps: with ``max_step``, a fixed substep count K >= unfolds (see the module docstring): the
            loop no longer depends on the data; a dt longer than ``K * max_step`` takes K substeps of dt / K.
            None: as many as the longest dt in the batch needs.
        epsilon: added to the semi-implicit denominator (times the substep), as in the reference.
        freeze_recurrent: reservoir mode, only the output mapping (the readout) trains.
        sparse: the torch loop sums synapses over an edge list (True), a dense matrix (False), or chooses by
            density (None). The compiled kernel always visits only the existing synapses.
        init_fan_in: recurrent weights start at ncps's ``U(0.001, 1)`` times ``min(1, init_fan_in / n)`` for a
            neuron with ``n`` incoming recurrent synapses, so that no neuron starts with more than about
            ``init_fan_in`` synapses' worth of recurrent conductance (default 8). Without it a dense layer's
            recurrent conductance grows with its size and drowns the sensory input: a dense 64-unit LTC
            policy did not learn a cue-hold memory task in 20k steps (0/1 seeds) and did with it (2/2); sparse
            wirings (NCP) with fewer synapses per neuron are unchanged. None: ncps's unscaled ranges.
    """

    def __init__(
        self,
        input_size: int,
        units: int | Wiring,
        *,
        wiring: Wiring | None = None,
        solver: str = "semi_implicit",
        unfolds: int = 6,
        max_step: float | None = None,
        max_substeps: int | None = None,
        epsilon: float = 1e-8,
        freeze_recurrent: bool = False,
        sparse: bool | None = None,
        init_fan_in: float | None = 8.0,
    ) -> None:
        super().__init__()
        if isinstance(units, Wiring):
            if wiring is not None:
                raise ValueError("pass the wiring either as units or as wiring=, not both")
            units, wiring = units.units, units
        input_size = positive_int("input_size", input_size)
        units = positive_int("units", units)
        if solver not in LTC_SOLVERS:
            raise ValueError(f"solver must be one of {LTC_SOLVERS}, got {solver!r}")
        unfolds = positive_int("unfolds", unfolds)
        max_step = positive_number("max_step", max_step, allow_none=True)
        init_fan_in = positive_number("init_fan_in", init_fan_in, allow_none=True)
        wiring = FullyConnected(units) if wiring is None else wiring
        if wiring.units != units:
            raise ValueError(f"units ({units}) must equal wiring.units ({wiring.units})")
        if not wiring.is_built():
            wiring = wiring.copy().build(input_size)
        elif wiring.input_dim != input_size:
            raise ValueError(f"wiring is built for input_dim={wiring.input_dim}, but input_size={input_size}")
        self.input_size = input_size
        self.wiring = wiring
        self.state_size = units
        self.output_size = wiring.output_dim
        self.solver = solver
        self.unfolds = unfolds
        self.max_step = None if max_step is None else float(max_step)
        self.max_substeps: int | None = None
        if max_substeps is not None:
            self.set_max_substeps(max_substeps)
        self.epsilon = float(epsilon)
        self.freeze_recurrent = bool(freeze_recurrent)
        self._sparse_choice = sparse

        def init(name: str, shape: tuple[int, ...]) -> nn.Parameter:
            low, high = _INIT_RANGES[name]
            value = torch.rand(shape) * (high - low) + low
            return nn.Parameter(inverse_softplus(value) if name in _POSITIVE else value)

        n_in = input_size
        self.gleak = init("gleak", (units,))
        self.vleak = init("vleak", (units,))
        self.cm = init("cm", (units,))
        self.w = init("w", (units, units))
        if init_fan_in is not None:
            fan_in = torch.as_tensor(np.abs(wiring.adjacency), dtype=torch.float32).sum(0).clamp(min=1.0)
            scale = torch.clamp(init_fan_in / fan_in, max=1.0)  # per post-synaptic neuron (column)
            if bool((scale < 1.0).any()):  # columns at full scale keep their values bit for bit
                with torch.no_grad():
                    scaled = inverse_softplus(nn.functional.softplus(self.w) * scale)
                    self.w.copy_(torch.where(scale < 1.0, scaled, self.w))
        self.sigma = init("sigma", (units, units))
        self.mu = init("mu", (units, units))
        self.erev = nn.Parameter(torch.as_tensor(wiring.erev_init()))
        self.sensory_w = init("sensory_w", (n_in, units))
        self.sensory_sigma = init("sensory_sigma", (n_in, units))
        self.sensory_mu = init("sensory_mu", (n_in, units))
        self.sensory_erev = nn.Parameter(torch.as_tensor(wiring.sensory_erev_init()))
        self.input_w = nn.Parameter(torch.ones(n_in))
        self.input_b = nn.Parameter(torch.zeros(n_in))
        self.output_w = nn.Parameter(torch.ones(self.output_size))
        self.output_b = nn.Parameter(torch.zeros(self.output_size))
        self.register_buffer("mask", torch.as_tensor(np.abs(wiring.adjacency), dtype=torch.float32))
        self.register_buffer(
            "sensory_mask", torch.as_tensor(np.abs(wiring.sensory_adjacency), dtype=torch.float32)
        )
        self._index_synapses()
        if self.freeze_recurrent:
            for name, p in self.named_parameters():
                p.requires_grad_(name in ("output_w", "output_b"))

    def _index_synapses(self) -> None:
        """Edge lists of the synapses: recurrent (pre, post) for the torch loop, and for the compiled kernel
        the recurrent and sensory synapses in CSR order by postsynaptic neuron (``[sensory_]csr_rowptr``,
        ``[sensory_]csr_pre`` / ``[sensory_]csr_post``)."""
        pre, post = self.mask.nonzero(as_tuple=True)
        self.register_buffer("pre_index", pre, persistent=False)
        self.register_buffer("post_index", post, persistent=False)
        for prefix, mask in (("", self.mask), ("sensory_", self.sensory_mask)):
            post_sorted, pre_sorted = mask.t().nonzero(as_tuple=True)  # sorted by post, then pre
            rowptr = torch.zeros(self.state_size + 1, dtype=torch.int64, device=mask.device)
            rowptr[1:] = torch.bincount(post_sorted, minlength=self.state_size).cumsum(0)
            self.register_buffer(prefix + "csr_rowptr", rowptr, persistent=False)
            self.register_buffer(prefix + "csr_pre", pre_sorted, persistent=False)
            self.register_buffer(prefix + "csr_post", post_sorted, persistent=False)
        density = pre.numel() / float(self.state_size**2)
        self.sparse = density < _SPARSE_DENSITY if self._sparse_choice is None else bool(self._sparse_choice)

    # --------------------------------------------------------------------------------------- parameters
    def positive(self, name: str) -> Tensor:
        """The positive (softplus) value of cm, gleak, w or sensory_w."""
        return softplus(getattr(self, name))

    def load_ncps_values(self, values: dict[str, Tensor]) -> None:
        """Set parameters from their constrained values (cm, gleak, w, sensory_w > 0), e.g. from ncps."""
        with torch.no_grad():
            for name, value in values.items():
                value = torch.as_tensor(value, dtype=torch.float32)
                if name in _POSITIVE:
                    value = inverse_softplus(value.clamp_min(1e-12))
                getattr(self, name).copy_(value)

    # ------------------------------------------------------------------------------------------------ api
    def forward_sequence(
        self, x: Tensor, v: Tensor, dt: Tensor, keep: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """x (B, T, in), v (B, H), dt (B, T), keep (B, T) (0: reset before step) -> (y (B, T, out), v_T).

        The torch loop runs neuron-major, state (H, B): gathering a synapse's presynaptic potentials and
        summing its postsynaptic currents then move whole rows of B values.
        """
        native = self._native_applies(x, v, dt)
        weights = cached_when_inference(
            self, lambda: self._loop_weights(native), variant=(native, self.sparse)
        )
        if native:
            return self._forward_native(x, v, dt, keep, weights)
        num_s, den_s = self._sensory_terms(x, weights["sensory_w"])  # (B, T, H) each, all steps at once
        cm = weights["cm"]
        # Per-step terms (see split_steps: never index [:, t] in a differentiable loop).
        drives = split_steps((weights["leak_current"] + num_s).permute(1, 2, 0), 0)  # T x (H, B)
        conductances = split_steps((weights["conductance"] + den_s).permute(1, 2, 0), 0)  # T x (H, B)
        keeps = [None] * x.shape[1] if keep is None else split_steps(keep.t().unsqueeze(1), 0)  # T x (1, B)
        substeps, h_sub = self._substeps(dt)
        if h_sub.dim() == 2:  # one substep length per sample and step: T x (1, B)
            substep_lengths = [[h_t] * substeps for h_t in split_steps(h_sub.t().unsqueeze(1), 0)]
        else:  # max_step: (B, T, K), zero past each sample's own substep count
            substep_lengths = [split_steps(h_t.t().unsqueeze(1), 0) for h_t in split_steps(h_sub, 1)]
        v = v.t()
        outputs = []
        for drive, conductance, keep_t, lengths in zip(
            drives, conductances, keeps, substep_lengths, strict=True
        ):
            if keep_t is not None:
                v = v * keep_t
            for h in lengths:
                v = self._solver_step(v, h, cm, drive, conductance, weights)
            outputs.append(v)
        states = join_steps(outputs, 0).permute(2, 0, 1)  # (B, T, H)
        y = torch.addcmul(self.output_b, states[..., : self.output_size], self.output_w)
        return y, v.t()

    def _native_applies(self, x: Tensor, v: Tensor, dt: Tensor) -> bool:
        """Whether this call runs the compiled kernel (see the module docstring for when it does not)."""
        if self.solver != "semi_implicit" or dt.requires_grad:
            return False
        return ltc_native.usable(x, v, dt, self.sigma)

    def _forward_native(
        self, x: Tensor, v: Tensor, dt: Tensor, keep: Tensor | None, weights: dict[str, Any]
    ) -> tuple[Tensor, Tensor]:
        """The semi-implicit loop in the compiled kernel; arguments and result as ``forward_sequence``."""
        substeps, h = self._substeps(dt)
        if h.dim() == 2:  # the same substep length throughout each step
            h = h.unsqueeze(-1).expand(-1, -1, substeps)
        x = torch.addcmul(self.input_b, x, self.input_w)
        neuron = (weights["cm"], weights["leak_current"], weights["conductance"])
        states = ltc_native.ltc_recurrence(
            x, v, neuron, weights["synapses"], weights["sensory_synapses"], h, keep
        )  # (B, T, H)
        y = torch.addcmul(self.output_b, states[..., : self.output_size], self.output_w)
        return y, states[:, -1]

    def _loop_weights(self, native: bool = False) -> dict[str, Any]:
        """Weights derived from the parameters once per sequence (positive, masked, rearranged), for the
        compiled kernel (``native``) or for the torch loop."""
        gleak = self.positive("gleak")
        cm = self.positive("cm")
        derived: dict[str, Any] = {
            "cm": cm if native else cm.unsqueeze(-1),  # (H,) or (H, 1)
            "leak_current": gleak * self.vleak,  # (H,)
            "conductance": gleak + self.epsilon,  # (H,): the reference adds epsilon to the denominator
        }
        if native:  # per existing synapse, in CSR order by postsynaptic neuron (so no mask)
            derived["synapses"] = self._csr_synapses("")
            derived["sensory_synapses"] = self._csr_synapses("sensory_")
            return derived
        derived["sensory_w"] = self.positive("sensory_w") * self.sensory_mask  # (in, H)
        w = self.positive("w") * self.mask
        if self.sparse:
            pre, post = self.pre_index, self.post_index
            sigma = self.sigma[pre, post]
            derived["sigma"] = sigma.unsqueeze(-1)  # (S, 1)
            derived["neg_sigma_mu"] = (-sigma * self.mu[pre, post]).unsqueeze(-1)  # (S, 1)
            w_s = w[pre, post].unsqueeze(-1)  # (S, 1)
            derived["synapse_weights"] = (w_s * self.erev[pre, post].unsqueeze(-1), w_s)
        else:
            # Batch-major (B, H_pre, H_post) products: two plain reductions beat one over a doubled tensor.
            derived["sigma"] = self.sigma
            derived["neg_sigma_mu"] = -self.sigma * self.mu
            derived["synapse_weights"] = (w * self.erev, w)
        return derived

    def _csr_synapses(self, prefix: str) -> ltc_native.Synapses:
        """The kernel's view of the recurrent (prefix "") or sensory ("sensory_") synapses."""
        rowptr, pre, post = (getattr(self, f"{prefix}csr_{name}") for name in ("rowptr", "pre", "post"))
        sigma = getattr(self, prefix + "sigma")[pre, post]
        w = self.positive(prefix + "w")[pre, post]
        neg_sigma_mu = -sigma * getattr(self, prefix + "mu")[pre, post]
        return ltc_native.Synapses(
            rowptr, pre, sigma, neg_sigma_mu, w * getattr(self, prefix + "erev")[pre, post], w
        )

    def set_max_substeps(self, max_substeps: int | None) -> None:
        """Fix the substep loop at ``max_substeps`` (>= unfolds; needs ``max_step``), or None to follow dt."""
        if max_substeps is not None:
            if self.max_step is None:
                raise ValueError(
                    f"max_substeps={max_substeps!r} bounds the substeps that max_step adds; this cell has "
                    "max_step=None and always takes unfolds substeps"
                )
            max_substeps = positive_int("max_substeps", max_substeps)
            if max_substeps < self.unfolds:
                raise ValueError(f"max_substeps must be >= unfolds ({self.unfolds}), got {max_substeps}")
        self.max_substeps = max_substeps

    def bound_substeps(self, max_dt: float) -> int | None:
        """Fix the substep loop so that every dt <= ``max_dt`` (units of dt) is integrated exactly as without
        a bound; returns the bound K (None for a cell without ``max_step``, whose count is always fixed)."""
        if self.max_step is None:
            return None
        max_dt = positive_number("max_dt", max_dt)
        bound = max(self.unfolds, math.ceil(max_dt / self.max_step - 1e-9))
        self.set_max_substeps(bound)
        return bound

    def _substeps(self, dt: Tensor) -> tuple[int, Tensor]:
        """Number of solver iterations and the substep per sample: (B, T) or, with max_step, (B, T, K)."""
        if self.max_step is None:
            return self.unfolds, dt / self.unfolds
        counts = torch.ceil(dt / self.max_step).clamp_min(self.unfolds)  # (B, T)
        if self.max_substeps is not None:  # a fixed loop length: no data-dependent count (tracing, export)
            counts = counts.clamp_max(self.max_substeps)
            total = self.max_substeps
        else:
            total = int(counts.max().item()) if counts.numel() else self.unfolds
        if total == self.unfolds:
            return total, dt / self.unfolds
        k = torch.arange(total, device=dt.device, dtype=dt.dtype)
        h = (dt / counts).unsqueeze(-1) * (k < counts.unsqueeze(-1)).to(dt.dtype)  # zero past its own count
        return total, h

    def _sensory_terms(self, x: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, in), weight (in, H) positive and masked -> sensory numerator and denominator (B, T, H)."""
        x = torch.addcmul(self.input_b, x, self.input_w)
        act = (
            torch.sigmoid(self.sensory_sigma * (x.unsqueeze(-1) - self.sensory_mu)) * weight
        )  # (B, T, in, H)
        return (act * self.sensory_erev).sum(-2), act.sum(-2)

    def _synaptic(self, v: Tensor, weights: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """v (H, B) -> recurrent numerator sum_i w s erev and denominator sum_i w s, each (H, B)."""
        w_erev, w = weights["synapse_weights"]
        if self.sparse:  # over the S existing synapses; w_erev, w: (S, 1)
            presynaptic = v.index_select(0, self.pre_index)  # (S, B)
            act = torch.sigmoid(torch.addcmul(weights["neg_sigma_mu"], presynaptic, weights["sigma"]))
            currents = torch.stack([act * w_erev, act * w], dim=1)  # (S, 2, B)
            summed = currents.new_zeros(self.state_size, 2, v.shape[1])
            return summed.index_add(0, self.post_index, currents).unbind(1)  # each neuron's incoming synapses
        # dense: act (B, H_pre, H_post); two plain reductions beat one over a doubled tensor
        act = torch.sigmoid(torch.addcmul(weights["neg_sigma_mu"], v.t().unsqueeze(-1), weights["sigma"]))
        return (act * w_erev).sum(1).t(), (act * w).sum(1).t()

    def _solver_step(
        self, v: Tensor, h: Tensor, cm: Tensor, drive: Tensor, conductance: Tensor, weights: dict[str, Any]
    ) -> Tensor:
        """One substep of length h (1, B) from v (H, B); drive and conductance (H, B), cm (H, 1)."""
        if self.solver == "semi_implicit":
            num, den = self._synaptic(v, weights)
            return torch.addcmul(cm * v, h, drive + num) / torch.addcmul(cm, h, conductance + den)

        def rate(u: Tensor) -> Tensor:
            num, den = self._synaptic(u, weights)
            return (drive + num - (conductance + den) * u) / cm

        k1 = rate(v)
        if self.solver == "euler":
            return torch.addcmul(v, h, k1)
        k2 = rate(torch.addcmul(v, 0.5 * h, k1))
        k3 = rate(torch.addcmul(v, 0.5 * h, k2))
        k4 = rate(torch.addcmul(v, h, k3))
        return torch.addcmul(v, h / 6.0, k1 + 2.0 * (k2 + k3) + k4)

    # ---------------------------------------------------------------------------------------- checkpoints
    def get_extra_state(self) -> dict[str, Any]:
        return {"wiring": self.wiring.get_config()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Adopt the checkpoint's wiring; its masks are already loaded from the state dict."""
        self.wiring = Wiring.from_config(state["wiring"])
        if self.wiring.units != self.state_size or self.wiring.output_dim != self.output_size:
            raise ValueError(
                f"checkpoint wiring has {self.wiring.units} units / {self.wiring.output_dim} outputs, "
                f"the model {self.state_size} / {self.output_size}"
            )
        self._index_synapses()

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.state_size}, solver={self.solver!r}, unfolds={self.unfolds}, "
            f"max_step={self.max_step}, max_substeps={self.max_substeps}, wiring={self.wiring!r}, "
            f"sparse={self.sparse}"
        )
