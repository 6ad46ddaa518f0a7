"""Benchmark: liquid cells against ncps and torch.nn.LSTM/GRU, all rows measured in the same run.

Prints one table: forward+backward time of a (B=64, T=128, in=17) sequence and single-step (B=1) inference
latency (our cells through ``step``), medians over repeats, with ratios to nn.LSTM-64 and to the ncps
counterpart. torch runs on one thread.
Usage: ``python scripts/bench_cells.py [--repeats N] [--quick] [--no-ncps] [--strict]``.

A guard line follows the table: a sparse wiring's fwd+bwd time over the dense cell's, for the compiled LTC
kernel, whose cost should follow the synapse count (AutoNCP(64, 8) has ~15% of the dense synapses and measured
0.14-0.20x). Above ``SPARSE_LIMIT`` it is flagged (``--strict``: exit status 1), so that a lost sparse path (a
dispatch to the dense loop, a slow instruction in the sparse loop) cannot slip by unnoticed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from lnn_control.nn import LTC, AutoNCP, CfC, cfc_native, ltc_native

BATCH, STEPS, INPUTS, UNITS = 64, 128, 17, 64
SPARSE_LIMIT = 0.5  # flag a sparse/dense fwd+bwd ratio above this (see the module docstring)


class TorchRNN(nn.Module):
    """nn.LSTM / nn.GRU with the (x, dt) call of the liquid modules (dt ignored)."""

    def __init__(self, kind: type[nn.RNNBase]) -> None:
        super().__init__()
        self.rnn = kind(INPUTS, UNITS, batch_first=True)

    def forward(self, x: torch.Tensor, dt: torch.Tensor | None = None, h=None):
        return self.rnn(x, h)


class NcpsModel(nn.Module):
    """ncps.torch CfC / LTC. ncps squeezes each step's timespans to (B,), which only broadcasts correctly for
    one sample (at B > 1 it fails, or silently mixes samples when B equals the layer width), so batched
    rows run ncps with its default timespan instead: the same work, minus the per-sample dt."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, dt: torch.Tensor | None = None, h=None):
        return self.model(x, h, timespans=dt if x.shape[0] == 1 else None)


def train_step(model: nn.Module) -> Callable[[], None]:
    x = torch.randn(BATCH, STEPS, INPUTS)
    dt = torch.rand(BATCH, STEPS) * 0.1 + 0.05

    def step() -> None:
        model.zero_grad(set_to_none=True)
        y, _ = model(x, dt=dt)
        y.square().mean().backward()

    return step


def inference_step(model: nn.Module) -> Callable[[], None]:
    """One control step at B = 1 under no_grad: our cells through ``step`` (the path of ``predict``, the
    rollouts and the export), the others through their forward of a length-1 sequence."""
    x = torch.randn(1, 1, INPUTS)
    dt = torch.full((1, 1), 0.05)
    with torch.no_grad():
        _, h = model(x, dt=dt)
    if isinstance(model, Ours):
        x_t = x[:, 0]

        def one_step() -> None:
            nonlocal h
            with torch.no_grad():
                _, h = model.one_step(x_t, h, dt)

        return one_step

    def step() -> None:
        nonlocal h
        with torch.no_grad():
            _, h = model(x, dt=dt, h=h)

    return step


def interleaved_medians(fns: dict[str, Callable[[], None]], repeats: int, inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, measured round-robin so that load changes hit all alike."""
    for fn in fns.values():  # warm-up
        fn()
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(values) for name, values in samples.items()}


class Ours(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x, dt=None, h=None):
        return self.model(x, h0=h, dt=dt)

    def one_step(self, x, h, dt):
        return self.model.step(x, h, dt)


class OursTorchLoop(Ours):
    """Our cell on its torch loop (the fallback where the compiled kernels cannot run)."""

    def forward(self, x, dt=None, h=None):
        with ltc_native.disabled(), cfc_native.disabled():
            return self.model(x, h0=h, dt=dt)

    def one_step(self, x, h, dt):
        with ltc_native.disabled(), cfc_native.disabled():
            return self.model.step(x, h, dt)


def machine() -> str:
    """CPU model and core count, for the table's header."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def synapse_count(model: nn.Module) -> int:
    """Recurrent plus sensory synapses of an LTC (the work per substep of the compiled kernel)."""
    cell = model.model.cells[0]
    return int(cell.mask.count_nonzero() + cell.sensory_mask.count_nonzero())


def sparse_guard(results: dict[str, tuple[float, float]], models: dict[str, nn.Module]) -> bool:
    """Print the sparse/dense fwd+bwd ratios; return whether the compiled LTC's ratio is flagged."""
    flagged = False
    pairs = [
        ("LTC AutoNCP(64,8)", "LTC-64 (6 unfolds)", True),
        ("LTC AutoNCP(64,8), torch loop", "LTC-64, torch loop", False),
    ]
    for sparse, dense, guarded in pairs:
        ratio = results[sparse][0] / results[dense][0]
        synapses = synapse_count(models[sparse]) / synapse_count(models[dense])
        line = f"sparse/dense: {sparse} / {dense} = {ratio:.2f}x fwd+bwd ({synapses:.2f}x the synapses)"
        if guarded and not ltc_native.available():
            line += ": not checked, the compiled kernel is not available"
        elif guarded:
            bad = ratio > SPARSE_LIMIT
            flagged |= bad
            verdict = "FLAGGED: the sparse kernel path is lost or slow" if bad else "ok"
            line += f"; limit {SPARSE_LIMIT:.2f}x: {verdict}"
        print(line)
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    parser.add_argument("--no-ncps", action="store_true", help="skip the ncps rows")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when the sparse/dense guard is flagged"
    )
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    torch.set_num_threads(1)
    torch.manual_seed(0)

    rows: list[tuple[str, nn.Module, str | None]] = [
        ("nn.LSTM-64", TorchRNN(nn.LSTM), None),
        ("nn.GRU-64", TorchRNN(nn.GRU), None),
    ]
    if not args.no_ncps:
        import ncps.torch as ncps_torch
        from ncps.wirings import AutoNCP as NcpsAutoNCP

        rows += [
            ("ncps CfC-64", NcpsModel(ncps_torch.CfC(INPUTS, UNITS)), None),
            ("ncps LTC-64", NcpsModel(ncps_torch.LTC(INPUTS, UNITS)), None),
            ("ncps CfC AutoNCP(64,8)", NcpsModel(ncps_torch.CfC(INPUTS, NcpsAutoNCP(UNITS, 8))), None),
            ("ncps LTC AutoNCP(64,8)", NcpsModel(ncps_torch.LTC(INPUTS, NcpsAutoNCP(UNITS, 8))), None),
        ]
    rows += [
        ("CfC-64", Ours(CfC(INPUTS, UNITS)), "ncps CfC-64"),
        ("LTC-64 (6 unfolds)", Ours(LTC(INPUTS, UNITS)), "ncps LTC-64"),
        ("CfC AutoNCP(64,8)", Ours(CfC(INPUTS, AutoNCP(UNITS, 8, seed=0))), "ncps CfC AutoNCP(64,8)"),
        ("LTC AutoNCP(64,8)", Ours(LTC(INPUTS, AutoNCP(UNITS, 8, seed=0))), "ncps LTC AutoNCP(64,8)"),
        ("CfC-64, torch loop", OursTorchLoop(CfC(INPUTS, UNITS)), "ncps CfC-64"),
        ("CfC AutoNCP(64,8), torch loop", OursTorchLoop(CfC(INPUTS, AutoNCP(UNITS, 8, seed=0))), None),
        ("LTC-64, torch loop", OursTorchLoop(LTC(INPUTS, UNITS)), "ncps LTC-64"),
        ("LTC AutoNCP(64,8), torch loop", OursTorchLoop(LTC(INPUTS, AutoNCP(UNITS, 8, seed=0))), None),
    ]
    train = interleaved_medians({name: train_step(model) for name, model, _ in rows}, repeats)
    latency = interleaved_medians({name: inference_step(model) for name, model, _ in rows}, repeats * 10, 20)
    results = {name: (train[name], latency[name]) for name, _, _ in rows}
    lstm_train = results["nn.LSTM-64"][0]
    print()
    print(
        f"Machine: {machine()}, torch {torch.__version__}, 1 thread, "
        f"median of {repeats} (fwd+bwd) / {repeats * 10} x 20 (latency) runs, interleaved"
    )
    print(f"fwd+bwd: B={BATCH}, T={STEPS}, in={INPUTS}; latency: B=1, one step")
    kernel = "yes" if ltc_native.available() else "NOT AVAILABLE (our LTC rows run the torch loop)"
    print(f"compiled LTC kernel: {kernel}")
    kernel = "yes" if cfc_native.available() else "NOT AVAILABLE (our CfC rows run the torch loop)"
    print(f"compiled CfC kernel: {kernel}")
    print()
    print("| model | fwd+bwd (ms) | x nn.LSTM-64 | x ncps | single-step latency (us) | latency x ncps |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, _, counterpart in rows:
        train, latency = results[name]
        train_vs, latency_vs = "", ""
        if counterpart in results:
            train_vs = f"{train / results[counterpart][0]:.2f}x"
            latency_vs = f"{latency / results[counterpart][1]:.2f}x"
        print(
            f"| {name} | {train * 1e3:.1f} | {train / lstm_train:.1f}x | {train_vs} | {latency * 1e6:.0f} "
            f"| {latency_vs} |"
        )
    print()
    if sparse_guard(results, {name: model for name, model, _ in rows}) and args.strict:
        sys.exit(1)


if __name__ == "__main__":
    main()
