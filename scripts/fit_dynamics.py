"""Example: fit liquid networks to a pendulum observed at irregular times, with ``lnn_control.nn.fit``.

The task is state estimation from a partial, noisy, irregularly sampled observation. A damped pendulum driven
by a random piecewise-constant torque u is sampled at random intervals dt ~ U(dt_min, dt_max). At each sample
the model sees the noisy angle and the torque applied since the previous sample, and must output the true
angle and angular velocity. The velocity is never observed: the model has to infer it from how the angle
changes over time, so it needs to know how much time passed between samples.

Rows of the table (all trained with the same ``fit`` call, data and budget; test MSE on held-out sequences,
per target normalised by its variance, so 1.0 = predicting the mean):

- CfC / LTC given the true dt, CfC without dt (it then assumes a regular clock at the mean rate);
- an LSTM of about the CfC's size, given dt as an extra input feature, and without it.

The LTC is smaller than the others by default: its ODE solver makes it several times slower per step on CPU.

Time is measured in units of the mean sampling interval (so dt has mean 1 and "no dt" means dt = 1).
Every model's best weights (lowest validation loss) are written to ``--out`` as a ``state_dict``.

Usage: ``python scripts/fit_dynamics.py [--quick] [--epochs N] [--units N] [--models cfc,lstm,...]
[--device cuda] [--out DIR]`` (``--help`` lists all flags).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from lnn_control.nn import LTC, CfC
from lnn_control.nn.fit import fit

# Pendulum: theta'' = -w0^2 sin(theta) - damping * theta' + u.
OMEGA0_SQ = (2 * np.pi / 1.5) ** 2  # natural period 1.5 s
DAMPING = 0.3
TORQUE_STD = 2.0  # small enough that the pendulum swings, never over the top
NOISE_STD = 0.02  # rad, angle measurement noise
SUBSTEPS = 16  # RK4 substeps per sampling interval


@dataclass
class Data:
    """x (N, T, 2) = [noisy angle, torque], y (N, T, 2) = [angle, velocity] (normalised), dt (N, T)."""

    x: Tensor
    y: Tensor
    dt: Tensor


def simulate(
    n: int, steps: int, dt_range: tuple[float, float], rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Simulate ``n`` pendulum trajectories sampled at ``steps`` random times.

    Returns obs (n, steps, 2) = [noisy angle, torque], state (n, steps, 2) = [angle, velocity], dt (n, steps)
    in seconds (dt[:, 0] is the interval before the first sample, from a random initial state).
    """
    dt = rng.uniform(*dt_range, size=(n, steps))
    torque = np.zeros((n, steps))
    u = rng.normal(0.0, TORQUE_STD, size=n)
    theta = rng.uniform(-1.5, 1.5, size=n)
    omega = rng.normal(0.0, 1.0, size=n)
    states = np.zeros((n, steps, 2))

    def rate(th: np.ndarray, om: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return om, -OMEGA0_SQ * np.sin(th) - DAMPING * om + u

    for t in range(steps):
        redraw = rng.random(n) < 0.3  # the torque changes at about every third sample
        u = np.where(redraw, rng.normal(0.0, TORQUE_STD, size=n), u)
        h = dt[:, t] / SUBSTEPS
        for _ in range(SUBSTEPS):  # RK4, each trajectory with its own step h
            k1 = rate(theta, omega, u)
            k2 = rate(theta + 0.5 * h * k1[0], omega + 0.5 * h * k1[1], u)
            k3 = rate(theta + 0.5 * h * k2[0], omega + 0.5 * h * k2[1], u)
            k4 = rate(theta + h * k3[0], omega + h * k3[1], u)
            theta = theta + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
            omega = omega + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        torque[:, t] = u
        states[:, t] = np.stack([theta, omega], axis=-1)
    obs = np.stack([states[..., 0] + rng.normal(0.0, NOISE_STD, size=(n, steps)), torque], axis=-1)
    return obs, states, dt


def make_splits(
    sizes: dict[str, int], steps: int, dt_range: tuple[float, float], seed: int
) -> dict[str, Data]:
    """Simulate train/val/test sets; normalise inputs and targets with the training set's statistics and
    express dt in units of the mean sampling interval."""
    rng = np.random.default_rng(seed)
    raw = {name: simulate(n, steps, dt_range, rng) for name, n in sizes.items()}
    obs_mean, obs_std = raw["train"][0].mean((0, 1)), raw["train"][0].std((0, 1))
    state_mean, state_std = raw["train"][1].mean((0, 1)), raw["train"][1].std((0, 1))
    dt_unit = float(np.mean(dt_range))
    return {
        name: Data(
            x=torch.as_tensor((obs - obs_mean) / obs_std, dtype=torch.float32),
            y=torch.as_tensor((state - state_mean) / state_std, dtype=torch.float32),
            dt=torch.as_tensor(dt / dt_unit, dtype=torch.float32),
        )
        for name, (obs, state, dt) in raw.items()
    }


class LSTMBaseline(nn.Module):
    """nn.LSTM + linear readout with the liquid modules' call ``model(x, dt=None)``; with ``dt_input`` the
    time step is appended to the input features (the usual way to give an RNN irregular timing)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, dt_input: bool) -> None:
        super().__init__()
        self.dt_input = dt_input
        self.lstm = nn.LSTM(input_size + int(dt_input), hidden_size, batch_first=True)
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x: Tensor, dt: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        if self.dt_input:
            if dt is None:
                raise ValueError("this LSTM takes dt as an input feature: call it with dt (B, T)")
            x = torch.cat([x, dt.unsqueeze(-1)], dim=-1)
        out, state = self.lstm(x)
        return self.readout(out), state


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lstm_hidden_matching(target: int, input_size: int, output_size: int) -> int:
    """The hidden size that gives ``LSTMBaseline`` (with dt input) about ``target`` parameters."""

    def count(h: int) -> int:  # 4 gates x (input + recurrent weights + 2 biases), then the readout
        return 4 * h * (input_size + 1 + h + 2) + (h + 1) * output_size

    return min(range(1, 1025), key=lambda h: abs(count(h) - target))


@dataclass
class Spec:
    label: str
    time_input: str
    uses_dt: bool
    build: Callable[[], nn.Module]


MODEL_NAMES = ("cfc", "cfc-nodt", "ltc", "lstm", "lstm-nodt")


def model_specs(units: int, backbone: int, ltc_units: int, ltc_unfolds: int) -> dict[str, Spec]:
    """How to build each row's model: CfC and an LSTM of about its size, and a (smaller, slower) LTC."""
    n_in, n_out = 2, 2

    def cfc() -> nn.Module:
        return CfC(n_in, units, backbone_units=backbone, proj_size=n_out)

    hidden = lstm_hidden_matching(n_params(cfc()), n_in, n_out)
    return {
        "cfc": Spec("CfC", "true dt", True, cfc),
        "cfc-nodt": Spec("CfC", "none (dt=1)", False, cfc),
        "ltc": Spec(
            "LTC", "true dt", True, lambda: LTC(n_in, ltc_units, unfolds=ltc_unfolds, proj_size=n_out)
        ),
        "lstm": Spec("LSTM", "dt as input", True, lambda: LSTMBaseline(n_in, hidden, n_out, dt_input=True)),
        "lstm-nodt": Spec("LSTM", "none", False, lambda: LSTMBaseline(n_in, hidden, n_out, dt_input=False)),
    }


@torch.no_grad()
def evaluate_mse(model: nn.Module, data: Data, uses_dt: bool) -> Tensor:
    """Per-target MSE (2,) = [angle, velocity] on ``data`` (on CPU)."""
    model.eval()
    device = next(model.parameters()).device
    x, y, dt = (t.to(device) for t in (data.x, data.y, data.dt))
    out = model(x, dt=dt) if uses_dt else model(x)
    pred = out[0] if isinstance(out, tuple) else out
    return (pred - y).square().mean(dim=(0, 1)).cpu()


@dataclass
class Row:
    spec: Spec
    params: int
    mse: Tensor  # (2,) test MSE of [angle, velocity]
    epochs: int
    seconds: float


def print_table(rows: list[Row]) -> None:
    """A markdown table of the test results, one row per model."""
    columns = [("model", 5), ("time input", 12), ("params", 6), ("test MSE", 8), ("angle", 6)]
    columns += [("velocity", 8), ("epochs", 6), ("train s", 7)]
    widths = [width for _, width in columns]

    def line(cells: list[str]) -> str:  # text columns left-aligned, numbers right-aligned
        padded = [
            f"{c:<{w}}" if i < 2 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    print(line([name for name, _ in columns]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        cells = [r.spec.label, r.spec.time_input, f"{r.params}", f"{r.mse.mean():.4f}", f"{r.mse[0]:.4f}"]
        cells += [f"{r.mse[1]:.4f}", f"{r.epochs}", f"{r.seconds:.1f}"]
        print(line(cells))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--epochs", type=int, default=40, help="maximum epochs per model (default 40)")
    add("--patience", type=int, default=8, help="early-stopping patience in epochs (default 8)")
    add("--units", type=int, default=32, help="CfC units (default 32)")
    add("--backbone", type=int, default=64, help="CfC backbone units (default 64)")
    add("--ltc-units", type=int, default=16, help="LTC units (default 16; LTC is the slow one)")
    add("--ltc-unfolds", type=int, default=3, help="LTC solver substeps per step (default 3)")
    add("--train-size", type=int, default=256, help="training sequences (default 256)")
    add("--steps", type=int, default=32, help="samples per sequence (default 32)")
    add("--batch-size", type=int, default=32, help="sequences per step (default 32)")
    add("--lr", type=float, default=1e-2, help="Adam learning rate (default 1e-2)")
    add("--models", default=",".join(MODEL_NAMES), help=f"comma-separated rows from {','.join(MODEL_NAMES)}")
    add("--out", type=Path, default=Path("runs/fit_dynamics"), help="checkpoint directory")
    add("--seed", type=int, default=0, help="seed of data, initialisation and shuffling (default 0)")
    add("--threads", type=int, default=1, help="torch threads (default 1)")
    add("--device", default="cpu", help="torch device to train on, e.g. cuda (default cpu)")
    add("--quick", action="store_true", help="a few seconds: smaller data and models, 12 epochs")
    if "--quick" in sys.argv[1:]:  # smaller defaults; flags given explicitly still win
        parser.set_defaults(
            epochs=12, train_size=128, steps=24, units=16, backbone=32, ltc_units=8, ltc_unfolds=2
        )
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(MODEL_NAMES))
    if unknown:
        parser.error(f"unknown --models {unknown}; choose from {list(MODEL_NAMES)}")
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    dt_range = (0.02, 0.3)
    n = args.train_size
    sizes = {"train": n, "val": max(16, n // 4), "test": max(32, n // 2)}
    specs = model_specs(args.units, args.backbone, args.ltc_units, args.ltc_unfolds)

    print("Pendulum state estimation from a noisy angle sampled at irregular times")
    split = f"{sizes['train']} train / {sizes['val']} val / {sizes['test']} test"
    print(f"  data: {split} sequences of {args.steps} samples,")
    print(f"        dt ~ U{dt_range} s (time unit: the mean interval, {np.mean(dt_range):.2f} s)")
    print("  in:   [noisy angle, torque]   out: [angle, angular velocity] (the velocity is never observed)")
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.machine()
    print(f"  torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {args.device} ({where})")
    start = time.perf_counter()
    data = make_splits(sizes, args.steps, dt_range, args.seed)
    print(f"  simulated in {time.perf_counter() - start:.1f} s")
    print(f"\nTraining {len(args.models)} models for up to {args.epochs} epochs (patience {args.patience}):")
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])  # torch imports its compiler on first use: not timed

    rows = []
    for name in args.models:
        spec = specs[name]
        torch.manual_seed(args.seed)
        model = spec.build()
        time_input = (lambda d: (d.dt,)) if spec.uses_dt else (lambda d: ())
        train = (data["train"].x, data["train"].y, *time_input(data["train"]))
        val = (data["val"].x, data["val"].y, *time_input(data["val"]))
        ckpt = args.out / f"{name}.pt"
        start = time.perf_counter()
        result = fit(
            model,
            train,
            val_dataset=val,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            early_stopping_patience=args.patience,
            checkpoint_path=ckpt,
            seed=args.seed,
            device=args.device,
            progress=sys.stderr.isatty(),
        )
        seconds = time.perf_counter() - start
        rows.append(
            Row(
                spec,
                n_params(model),
                evaluate_mse(model, data["test"], spec.uses_dt),
                result.epochs_run,
                seconds,
            )
        )
        stop = ", stopped early" if result.stopped_early else ""
        print(
            f"  {name:<10} {n_params(model):>6} params  best val loss {result.best_val_loss:.4f} after epoch "
            f"{result.best_epoch + 1}/{result.epochs_run}{stop}  ({seconds:.1f} s)  -> {ckpt}"
        )

    print("\nTest MSE per target, normalised by its variance (1.0 = predicting the mean), best weights by")
    print("validation loss:\n")
    print_table(rows)
    by_name = dict(zip(args.models, rows, strict=True))
    if "cfc" in by_name and "cfc-nodt" in by_name:
        with_dt, without = by_name["cfc"].mse.mean().item(), by_name["cfc-nodt"].mse.mean().item()
        ratio = without / with_dt
        verdict = f"{ratio:.1f}x lower" if ratio > 1.1 else "no clear gain at this budget; train longer"
        print(f"\nPassing the true dt: CfC test MSE {without:.4f} -> {with_dt:.4f} ({verdict}).")
    print(f"Checkpoints (state_dicts; torch.load(path, weights_only=True)) are in {args.out}/")


if __name__ == "__main__":
    main()
