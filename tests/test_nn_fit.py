"""Tests of ``lnn_control.nn.fit``: learning, early stopping and weight restoring, checkpoints, errors,
gradient clipping, dt plumbing, non-finite losses and interruption."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from lnn_control.nn import AutoNCP, CfC
from lnn_control.nn.fit import FitResult, NonFiniteLossError, fit


class StepLinear(nn.Module):
    """y_t = W x_t + b at every step, with the (x, dt=None) call of the liquid modules (dt ignored)."""

    def __init__(self, n_in: int = 1, n_out: int = 1, zero: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        if zero:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor, dt: Tensor | None = None) -> tuple[Tensor, None]:
        return self.linear(x), None


class DtRecorder(nn.Module):
    """Records every call's keyword arguments; output = x @ w (so that there is something to train)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, 1))
        self.calls: list[dict[str, object]] = []

    def forward(self, x: Tensor, **kwargs: object) -> Tensor:
        self.calls.append({k: (v.clone() if isinstance(v, Tensor) else v) for k, v in kwargs.items()})
        return x @ self.w


class SequenceList(Dataset):
    """A map-style Dataset over a list of items."""

    def __init__(self, items: list[tuple]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple:
        return self.items[i]


def linear_data(n: int, steps: int, gain: float, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, steps, 1, generator=g)
    return x, gain * x


def params_of(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if isinstance(v, Tensor)}


def assert_same_params(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def recorder() -> tuple[list[dict[str, Tensor]], object]:
    """A callback that records the parameters after every epoch."""
    history: list[dict[str, Tensor]] = []

    def callback(epoch: int, model: nn.Module, logs: dict[str, float]) -> None:
        assert epoch == len(history)
        history.append(params_of(model))

    return history, callback


# ------------------------------------------------------------------------------------------------ learning
def test_fit_reduces_loss_of_a_cfc_on_a_learnable_sequence_task() -> None:
    """Target: a leaky running sum of the input, which needs memory. The loss must fall by > 5x."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 16, 1, generator=g)
    y = torch.zeros_like(x)
    acc = torch.zeros(96, 1)
    for t in range(16):
        acc = 0.7 * acc + x[:, t]
        y[:, t] = acc
    model = CfC(1, 8, backbone_units=16, proj_size=1)
    with torch.no_grad():
        initial = nn.functional.mse_loss(model(x)[0], y).item()
    result = fit(model, (x, y), epochs=40, batch_size=16, lr=1e-2, progress=False, seed=0)
    with torch.no_grad():
        final = nn.functional.mse_loss(model(x)[0], y).item()
    assert final < initial / 5, (initial, final)
    assert result.train_loss[-1] < result.train_loss[0] / 3
    assert result.monitor == "train_loss" and result.val_loss == []
    assert result.best_val_loss == min(result.train_loss)
    assert not model.training


def test_seed_makes_fit_reproducible_and_split_uses_val_fraction() -> None:
    x, y = linear_data(40, 5, 2.0, seed=0)
    runs = []
    for _ in range(2):
        model = StepLinear(zero=True)
        runs.append(
            (fit(model, (x, y), val_fraction=0.25, epochs=3, batch_size=8, seed=7, progress=False), model)
        )
    (r1, m1), (r2, m2) = runs
    assert r1.train_loss == r2.train_loss and r1.val_loss == r2.val_loss
    assert len(r1.val_loss) == 3 and r1.monitor == "val_loss"
    assert_same_params(params_of(m1), params_of(m2))
    other = fit(
        StepLinear(zero=True), (x, y), val_fraction=0.25, epochs=3, batch_size=8, seed=8, progress=False
    )
    assert other.train_loss != r1.train_loss


# ------------------------------------------------------------------------------ early stopping and restore
def overshoot_setup() -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Train towards gain 2 from 0; validation wants gain 1, so its loss falls, then rises."""
    return linear_data(32, 4, 2.0, seed=0), linear_data(16, 4, 1.0, seed=1)


def test_early_stopping_triggers_and_restores_the_best_epoch(tmp_path: Path) -> None:
    train, val = overshoot_setup()
    model = StepLinear(zero=True)
    history, callback = recorder()
    ckpt = tmp_path / "sub" / "best.pt"
    patience = 3
    result = fit(
        model,
        train,
        val_dataset=val,
        epochs=200,
        batch_size=8,
        lr=0.05,
        early_stopping_patience=patience,
        checkpoint_path=ckpt,
        callback=callback,
        progress=False,
        seed=0,
    )
    assert isinstance(result, FitResult)
    assert result.stopped_early
    assert 0 < result.best_epoch < result.epochs_run - 1
    assert result.epochs_run == result.best_epoch + patience + 1 < 200
    assert result.best_val_loss == min(result.val_loss) == result.val_loss[result.best_epoch]
    assert all(v > result.best_val_loss for v in result.val_loss[result.best_epoch + 1 :])
    # The model holds the best epoch's weights, not the last epoch's.
    assert_same_params(params_of(model), history[result.best_epoch])
    assert not torch.equal(history[-1]["linear.weight"], history[result.best_epoch]["linear.weight"])
    # The checkpoint holds the same weights; no temp files are left behind.
    assert result.checkpoint_path == str(ckpt)
    assert_same_params(torch.load(ckpt, weights_only=True), history[result.best_epoch])
    assert sorted(p.name for p in ckpt.parent.iterdir()) == ["best.pt"]


def test_restore_best_false_keeps_the_last_weights() -> None:
    train, val = overshoot_setup()
    model = StepLinear(zero=True)
    history, callback = recorder()
    result = fit(
        model,
        train,
        val_dataset=val,
        epochs=200,
        batch_size=8,
        lr=0.05,
        early_stopping_patience=2,
        restore_best=False,
        callback=callback,
        progress=False,
    )
    assert result.best_epoch < result.epochs_run - 1
    assert_same_params(params_of(model), history[-1])


def test_checkpoint_round_trips_with_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = torch.randn(12, 6, 3)
    dt = torch.rand(12, 6) * 0.2 + 0.01
    y = torch.randn(12, 6, 2)
    model = CfC(3, AutoNCP(10, 2), backbone_units=8)
    path = tmp_path / "ncp.pt"
    fit(
        model,
        (x, y, dt),
        val_dataset=(x, y, dt),
        epochs=2,
        batch_size=4,
        checkpoint_path=path,
        progress=False,
    )
    state = torch.load(path, weights_only=True)
    fresh = CfC(3, AutoNCP(10, 2), backbone_units=8)
    fresh.load_state_dict(state)
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, dt=dt)[0], model(x, dt=dt)[0])
    assert all(v.device.type == "cpu" for v in state.values() if isinstance(v, Tensor))


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("data", "match"),
    [
        ((torch.randn(4, 3), torch.randn(4, 3, 1)), r"X must be \(N, T, in\), got shape \(4, 3\)"),
        (
            (torch.randn(4, 3, 1), torch.randn(5, 3, 1)),
            r"Y must be \(N, T, out\) = \(4, 3, out\).*\(5, 3, 1\)",
        ),
        ((torch.randn(4, 3, 1), torch.randn(4, 3, 1), torch.ones(4, 2)), r"DT must be .*got shape \(4, 2\)"),
        (
            (torch.randn(4, 3, 1), torch.randn(4, 3, 1), -torch.ones(4, 3)),
            r"DT must be finite and >= 0, got -1\.0 at index \(0, 0\)",
        ),
        ((torch.randn(4, 3, 1),), r"2 tensors \(X, Y\) or 3"),
        ((torch.zeros(0, 3, 1), torch.zeros(0, 3, 1)), r"dataset is empty"),
    ],
)
def test_bad_tensor_data_raise_clear_errors(data: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit(StepLinear(), data, epochs=1, progress=False)


def test_bad_dataset_items_and_empty_datasets_raise() -> None:
    with pytest.raises(ValueError, match=r"dataset is empty"):
        fit(StepLinear(), SequenceList([]), epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"val_dataset is empty"):
        fit(StepLinear(), linear_data(4, 3, 1.0, 0), val_dataset=SequenceList([]), epochs=1, progress=False)
    bad_x = SequenceList([(torch.randn(3), torch.randn(3, 1))])
    with pytest.raises(ValueError, match=r"dataset\[0\]: x must be \(T, in\), got shape \(3,\)"):
        fit(StepLinear(), bad_x, epochs=1, progress=False)
    bad_dt = SequenceList([(torch.randn(3, 1), torch.randn(3, 1), torch.ones(4))])
    with pytest.raises(ValueError, match=r"dt must be \(T,\) or \(T, 1\) with T=3.*\(4,\)"):
        fit(StepLinear(), bad_dt, epochs=1, progress=False)
    ragged = SequenceList([(torch.randn(3, 1), torch.randn(3, 1)), (torch.randn(5, 1), torch.randn(5, 1))])
    with pytest.raises(ValueError, match=r"equal shapes.*x shapes \[\(3, 1\), \(5, 1\)\]"):
        fit(StepLinear(), ragged, epochs=1, batch_size=2, progress=False)


def test_output_target_mismatch_and_bad_arguments_raise() -> None:
    x, y = linear_data(4, 3, 1.0, 0)
    with pytest.raises(
        ValueError, match=r"model output has shape \(4, 3, 2\).*target y has shape \(4, 3, 1\)"
    ):
        fit(StepLinear(1, 2), (x, y), epochs=1, batch_size=4, progress=False)
    with pytest.raises(ValueError, match=r"loss must be one of .*got 'bce'"):
        fit(StepLinear(), (x, y), loss="bce", progress=False)
    with pytest.raises(ValueError, match=r"val_fraction=0\.1 of 4 sequences leaves 4 for training and 0"):
        fit(StepLinear(), (x, y), val_fraction=0.1, progress=False)
    with pytest.raises(ValueError, match=r"either val_dataset or val_fraction"):
        fit(StepLinear(), (x, y), val_dataset=(x, y), val_fraction=0.5, progress=False)
    with pytest.raises(ValueError, match=r"epochs must be a positive integer, got 0"):
        fit(StepLinear(), (x, y), epochs=0, progress=False)


def test_model_without_trainable_parameters_raises() -> None:
    reservoir = CfC(1, 8, freeze_recurrent=True)  # no readout: nothing to train
    assert not any(p.requires_grad for p in reservoir.parameters())
    with pytest.raises(ValueError, match=r"CfC has no trainable parameters.*readout"):
        fit(reservoir, linear_data(4, 3, 1.0, 0), epochs=1, progress=False)
    with_readout = CfC(1, 8, freeze_recurrent=True, proj_size=1)
    fit(with_readout, linear_data(4, 3, 1.0, 0), epochs=1, progress=False)


# ------------------------------------------------------------------------------------------ optimisation
@pytest.mark.parametrize("clip", [0.5, 2.0])
def test_gradient_clipping_bounds_the_update(clip: float) -> None:
    """Plain SGD with lr=1 on a loss scaled by 1e6: one step moves the parameters by lr * min(|g|, clip)."""
    x, y = linear_data(16, 4, 3.0, seed=0)

    def huge(pred: Tensor, target: Tensor) -> Tensor:
        return 1e6 * nn.functional.mse_loss(pred, target)

    def sgd(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=1.0)

    steps = {}
    for grad_clip in (clip, None):
        model = StepLinear(zero=True)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        fit(
            model,
            (x, y),
            epochs=1,
            batch_size=16,
            loss=huge,
            optimizer=sgd,
            grad_clip=grad_clip,
            progress=False,
        )
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        steps[grad_clip] = (after - before).norm().item()
    assert steps[clip] == pytest.approx(clip, rel=1e-5)
    assert steps[None] > 1e5


def test_weight_decay_selects_adamw_and_scheduler_steps_per_epoch() -> None:
    x, y = linear_data(8, 3, 1.0, seed=0)
    lrs: list[float] = []
    seen: list[torch.optim.Optimizer] = []

    def schedule(opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
        seen.append(opt)
        return torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)

    fit(
        StepLinear(),
        (x, y),
        epochs=3,
        lr=0.1,
        weight_decay=0.01,
        scheduler=schedule,
        callback=lambda epoch, model, logs: lrs.append(logs["lr"]),
        progress=False,
    )
    assert type(seen[0]) is torch.optim.AdamW
    assert lrs == pytest.approx([0.1, 0.05, 0.025])


# ------------------------------------------------------------------------------------------------- dt
def test_dt_from_tensor_data_reaches_the_model_in_order() -> None:
    x, y = linear_data(6, 4, 1.0, seed=0)
    dt = torch.arange(24, dtype=torch.float32).reshape(6, 4) / 100
    model = DtRecorder()
    fit(
        model,
        (x, y, dt.unsqueeze(-1)),
        val_dataset=(x, y, dt),
        epochs=1,
        batch_size=6,
        shuffle=False,
        progress=False,
    )
    assert len(model.calls) == 2  # one training batch, one validation batch
    for call in model.calls:
        assert set(call) == {"dt"}
        torch.testing.assert_close(call["dt"], dt)


def test_dt_from_dataset_items_reaches_the_model_and_no_dt_means_no_argument() -> None:
    g = torch.Generator().manual_seed(0)
    items = [
        (torch.randn(5, 1, generator=g), torch.randn(5, 1, generator=g), torch.full((5, 1), 0.01 * i))
        for i in range(4)
    ]
    model = DtRecorder()
    fit(model, SequenceList(items), epochs=1, batch_size=4, shuffle=False, progress=False)
    torch.testing.assert_close(model.calls[0]["dt"], torch.stack([item[2][:, 0] for item in items]))
    plain = DtRecorder()
    fit(plain, SequenceList([item[:2] for item in items]), epochs=1, batch_size=4, progress=False)
    assert plain.calls == [{}]


def test_numpy_float64_data_is_cast_to_the_model_dtype() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3, 1))
    model = DtRecorder()
    fit(model, (x, 2 * x, np.full((8, 3), 0.1)), epochs=1, batch_size=8, progress=False)
    assert model.calls[0]["dt"].dtype == torch.float32


# ---------------------------------------------------------------------------- non-finite loss, interrupts
class NanAfter:
    """MSE until `calls` batch losses have been computed, then NaN."""

    def __init__(self, calls: int) -> None:
        self.left = calls

    def __call__(self, pred: Tensor, target: Tensor) -> Tensor:
        self.left -= 1
        value = nn.functional.mse_loss(pred, target)
        return value if self.left >= 0 else value * math.nan


def test_nan_loss_raises_with_the_epoch_and_keeps_the_best_weights() -> None:
    train, val = overshoot_setup()
    model = StepLinear(zero=True)
    history, callback = recorder()
    # 4 training batches + 2 validation batches per epoch: NaN in the first batch of epoch 5.
    loss = NanAfter(5 * 6)
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at epoch 5, batch 0.*restored"):
        fit(
            model,
            train,
            val_dataset=val,
            epochs=50,
            batch_size=8,
            lr=0.02,
            loss=loss,
            callback=callback,
            progress=False,
        )
    assert len(history) == 5
    val_losses = [
        nn.functional.mse_loss(h["linear.weight"] * val[0] + h["linear.bias"], val[1]) for h in history
    ]
    best = int(torch.stack(val_losses).argmin())
    assert_same_params(params_of(model), history[best])
    assert not model.training


def test_nan_in_the_first_epoch_restores_the_initial_weights() -> None:
    model = StepLinear(zero=False)
    initial = params_of(model)
    with pytest.raises(NonFiniteLossError, match=r"epoch 0, batch 2.*from the start of fit"):
        fit(model, linear_data(16, 3, 1.0, 0), epochs=3, batch_size=4, loss=NanAfter(2), progress=False)
    assert_same_params(params_of(model), initial)


def test_keyboard_interrupt_restores_the_best_weights_and_reraises() -> None:
    train, val = overshoot_setup()
    model = StepLinear(zero=True)
    history, record = recorder()

    def interrupt(epoch: int, model: nn.Module, logs: dict[str, float]) -> None:
        record(epoch, model, logs)
        if epoch == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(
            model,
            train,
            val_dataset=val,
            epochs=50,
            batch_size=8,
            lr=0.05,
            callback=interrupt,
            progress=False,
        )
    val_losses = [
        nn.functional.mse_loss(h["linear.weight"] * val[0] + h["linear.bias"], val[1]) for h in history
    ]
    best = int(torch.stack(val_losses).argmin())
    assert best < 12  # the overshoot happened, so restoring changes the weights
    assert_same_params(params_of(model), history[best])


def test_progress_bar_shows_losses(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = linear_data(8, 3, 1.0, seed=0)
    fit(StepLinear(), (x, y), val_dataset=(x, y), epochs=2, progress=True)
    err = capsys.readouterr().err
    assert "train=" in err and "val=" in err and "2/2" in err
