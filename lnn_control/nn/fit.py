"""``fit``: a supervised training loop for sequence models with the call shape of ``CfC`` / ``LTC``.

    result = fit(model, (X, Y, DT), val_fraction=0.2, epochs=50, early_stopping_patience=5)

The model is called as ``model(x, dt=dt)`` when the data carry time steps and as ``model(x)`` otherwise, with
x (B, T, in) and dt (B, T) in seconds; it returns y (B, T, out) or a tuple whose first element is y (as
``CfC``, ``LTC`` and ``torch.nn.LSTM`` do). Any ``nn.Module`` with that call works, liquid or not.

Data: a ``torch.utils.data.Dataset`` whose items are ``(x, y)`` or ``(x, y, dt)`` with x (T, in), y (T, out)
and dt (T,) or (T, 1); or a tuple of tensors (or numpy arrays) ``(X, Y)`` / ``(X, Y, DT)`` with a leading
batch dimension: X (N, T, in), Y (N, T, out), DT (N, T) or (N, T, 1). Floating point data are cast to the
model's dtype batch by batch, and moved to its device (:mod:`lnn_control.nn.fit_data` checks and batches
them).

Training: Adam (AdamW when ``weight_decay > 0``) with gradient-norm clipping; per-epoch mean training and
validation loss; early stopping on the validation loss; the best weights restored at the end and optionally
written to a checkpoint file (atomically). Without validation data the training loss is monitored instead
(``FitResult.monitor`` says which). Epoch numbers are 0-based everywhere (``result.best_epoch`` indexes
``result.train_loss``).
"""

from __future__ import annotations

import copy
import io
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from lnn_control.atomic import atomic_write_bytes
from lnn_control.checks import positive_int, positive_number

from .fit_data import Batch, Placement, as_dataset, make_loader, split_dataset

__all__ = ["FitResult", "NonFiniteLossError", "fit"]

LossFn = Callable[[Tensor, Tensor], Tensor]

_BUILTIN_LOSSES: dict[str, LossFn] = {
    "mse": nn.functional.mse_loss,
    "l1": nn.functional.l1_loss,
    "mae": nn.functional.l1_loss,
    "huber": nn.functional.huber_loss,
    "smooth_l1": nn.functional.smooth_l1_loss,
}


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient norm) became NaN or infinite; the model holds the best weights seen."""


@dataclass
class FitResult:
    """What ``fit`` did, epoch by epoch (epochs are 0-based indices into the lists).

    - ``train_loss``: mean training loss of each epoch (averaged over the epoch's samples while training).
    - ``val_loss``: validation loss after each epoch (empty without validation data).
    - ``best_epoch``: the epoch with the lowest monitored loss (-1 if no epoch finished).
    - ``best_val_loss``: that lowest monitored loss: the validation loss, or the training loss when there is
      no validation data (see ``monitor``).
    - ``stopped_early``: whether early stopping ended training before ``epochs``.
    - ``monitor``: ``"val_loss"`` or ``"train_loss"``.
    - ``checkpoint_path``: where the best weights were written, if anywhere.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    best_val_loss: float = math.inf
    stopped_early: bool = False
    monitor: str = "val_loss"
    checkpoint_path: str | None = None

    @property
    def epochs_run(self) -> int:
        """Number of completed epochs."""
        return len(self.train_loss)


def fit(
    model: nn.Module,
    dataset: Dataset | Sequence[Tensor],
    *,
    val_dataset: Dataset | Sequence[Tensor] | None = None,
    val_fraction: float = 0.0,
    epochs: int = 100,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    loss: str | LossFn = "mse",
    early_stopping_patience: int | None = None,
    restore_best: bool = True,
    checkpoint_path: str | os.PathLike[str] | None = None,
    device: torch.device | str | None = None,
    seed: int | None = None,
    progress: bool = True,
    shuffle: bool = True,
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None,
    callback: Callable[[int, nn.Module, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train ``model`` to map input sequences to target sequences; return the per-epoch record.

    Args:
        model: called as ``model(x, dt=dt)`` (data with dt) or ``model(x)``; x (B, T, in), dt (B, T); returns
            y (B, T, out) or a tuple ``(y, ...)``. Trained in place, returned in eval mode.
        dataset: training data: a ``Dataset`` of ``(x, y)`` / ``(x, y, dt)`` items, x (T, in), y (T, out),
            dt (T,); or tensors ``(X, Y)`` / ``(X, Y, DT)`` with X (N, T, in), Y (N, T, out), DT (N, T).
        val_dataset: validation data in the same forms (exclusive with ``val_fraction``).
        val_fraction: fraction of ``dataset`` held out for validation, in [0, 1), split with ``seed``.
        epochs: maximum number of passes over the training data.
        batch_size: sequences per optimiser step (and per validation batch).
        lr, weight_decay: Adam learning rate; ``weight_decay > 0`` selects AdamW.
        grad_clip: maximum total gradient 2-norm per step; None or 0 disables clipping.
        loss: ``"mse"``, ``"l1"`` (``"mae"``), ``"huber"``, ``"smooth_l1"``, or
            ``loss(pred, target) -> scalar``, a mean over the batch (epoch losses weight batches by size).
        early_stopping_patience: stop after this many epochs without a new best monitored loss; None never.
        restore_best: load the best epoch's weights into ``model`` at the end (and on interruption).
        checkpoint_path: write the best ``state_dict`` here (CPU tensors, loadable with
            ``torch.load(path, weights_only=True)``) each time the monitored loss improves.
        device: where to train; default: where the model's parameters are.
        seed: seeds the train/validation split, the shuffling and torch's RNG inside ``fit`` (e.g. dropout);
            the global RNG state is left as it was.
        progress: show a tqdm bar over epochs with the losses.
        shuffle: reshuffle training sequences every epoch.
        scheduler: ``scheduler(optimizer) -> lr scheduler``, stepped once per epoch (``ReduceLROnPlateau``
            gets the monitored loss).
        optimizer: ``optimizer(params) -> torch.optim.Optimizer`` replacing Adam/AdamW (``lr`` and
            ``weight_decay`` are then up to the factory).
        callback: ``callback(epoch, model, logs)`` after every epoch, logs ``{"train_loss", "val_loss"?,
            "lr"}``.

    Raises:
        ValueError: empty data, bad shapes, a model with no trainable parameters, bad arguments.
        NonFiniteLossError: the loss or gradient norm became NaN/inf; the best weights (or, before any epoch
            finished, the initial ones) are restored first.
        KeyboardInterrupt: re-raised after restoring the best weights (when ``restore_best``).
    """
    _check_arguments(epochs, batch_size, lr, weight_decay, grad_clip, val_fraction, early_stopping_patience)
    if val_dataset is not None and val_fraction > 0:
        raise ValueError(f"give either val_dataset or val_fraction, not both (val_fraction={val_fraction})")
    loss_fn, builtin_loss = _resolve_loss(loss)
    train_set = as_dataset(dataset, "dataset")
    val_set = None if val_dataset is None else as_dataset(val_dataset, "val_dataset")
    if val_set is not None and len(val_set) == 0:
        raise ValueError("val_dataset is empty: expected at least one sequence")
    if val_fraction > 0:
        train_set, val_set = split_dataset(train_set, val_fraction, seed)

    if device is not None:
        model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            f"{type(model).__name__} has no trainable parameters (all have requires_grad=False); a reservoir "
            "model (freeze_recurrent=True) needs a trainable readout, e.g. proj_size=..."
        )
    run_device = torch.device(device) if device is not None else params[0].device
    float_dtype = params[0].dtype if params[0].is_floating_point() else torch.get_default_dtype()
    place = Placement(run_device, float_dtype)

    result = FitResult(
        monitor="val_loss" if val_set is not None else "train_loss",
        checkpoint_path=None if checkpoint_path is None else os.fspath(checkpoint_path),
    )
    initial_state = _snapshot(model)
    best_state: dict[str, Any] | None = None

    rng_devices = [run_device] if run_device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        shuffle_gen = None if seed is None else torch.Generator().manual_seed(seed + 1)
        train_loader = make_loader(train_set, batch_size, shuffle, shuffle_gen)
        val_loader = None if val_set is None else make_loader(val_set, batch_size, False, None)
        opt = _make_optimizer(params, lr, weight_decay, optimizer)
        sched = None if scheduler is None else scheduler(opt)
        bar = tqdm(range(epochs), desc="fit", unit="epoch", disable=not progress, dynamic_ncols=True)
        since_best = 0
        epoch = 0
        try:
            for epoch in bar:
                model.train()
                train_loss = _train_epoch(
                    model, train_loader, opt, loss_fn, builtin_loss, grad_clip, place, epoch
                )
                result.train_loss.append(train_loss)
                logs = {"train_loss": train_loss, "lr": float(opt.param_groups[0]["lr"])}
                monitored = train_loss
                if val_loader is not None:
                    model.eval()
                    val_loss = _evaluate(model, val_loader, loss_fn, builtin_loss, place, epoch)
                    result.val_loss.append(val_loss)
                    logs["val_loss"] = monitored = val_loss
                if monitored < result.best_val_loss:
                    result.best_val_loss, result.best_epoch, since_best = monitored, epoch, 0
                    best_state = _snapshot(model)
                    if checkpoint_path is not None:
                        _save_atomic(best_state, Path(checkpoint_path))
                else:
                    since_best += 1
                if sched is not None:
                    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        sched.step(monitored)
                    else:
                        sched.step()
                bar.set_postfix_str(_postfix(logs, result))
                if callback is not None:
                    callback(epoch, model, logs)
                if early_stopping_patience is not None and since_best >= early_stopping_patience:
                    result.stopped_early = epoch + 1 < epochs
                    break
        except NonFiniteLossError as err:
            _load(model, best_state if best_state is not None else initial_state)
            model.eval()
            bar.close()
            which = f"epoch {result.best_epoch}" if best_state is not None else "the start of fit"
            raise NonFiniteLossError(f"{err}; restored the weights from {which}") from None
        except KeyboardInterrupt:
            bar.close()
            if restore_best and best_state is not None:
                _load(model, best_state)
                tqdm.write(
                    f"fit interrupted at epoch {epoch}: restored the weights from epoch {result.best_epoch}"
                )
            model.eval()
            raise
        bar.close()
    if restore_best and best_state is not None:
        _load(model, best_state)
    model.eval()
    return result


# ------------------------------------------------------------------------------------------------ epochs
def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    opt: torch.optim.Optimizer,
    loss_fn: LossFn,
    builtin_loss: bool,
    grad_clip: float | None,
    place: Placement,
    epoch: int,
) -> float:
    """One pass over ``loader`` with an optimiser step per batch; the sample-weighted mean batch loss."""
    total, count = 0.0, 0
    for i, batch in enumerate(place.batches(loader)):
        value = _batch_loss(model, batch, loss_fn, builtin_loss)
        if not torch.isfinite(value):
            raise NonFiniteLossError(f"training loss is {value.item()} at epoch {epoch}, batch {i}")
        opt.zero_grad(set_to_none=True)
        value.backward()
        if grad_clip:
            params = [p for group in opt.param_groups for p in group["params"]]
            norm = nn.utils.clip_grad_norm_(params, grad_clip)
            if not torch.isfinite(norm):
                raise NonFiniteLossError(f"gradient norm is {norm.item()} at epoch {epoch}, batch {i}")
        opt.step()
        n = batch[0].shape[0]
        total += value.item() * n
        count += n
    return total / count


@torch.no_grad()
def _evaluate(
    model: nn.Module, loader: DataLoader, loss_fn: LossFn, builtin_loss: bool, place: Placement, epoch: int
) -> float:
    """Sample-weighted mean loss over ``loader`` without gradients."""
    total, count = 0.0, 0
    for batch in place.batches(loader):
        n = batch[0].shape[0]
        total += _batch_loss(model, batch, loss_fn, builtin_loss).item() * n
        count += n
    value = total / count
    if not math.isfinite(value):
        raise NonFiniteLossError(f"validation loss is {value} at epoch {epoch}")
    return value


def _batch_loss(model: nn.Module, batch: Batch, loss_fn: LossFn, builtin_loss: bool) -> Tensor:
    x, y, dt = batch
    out = model(x) if dt is None else model(x, dt=dt)
    pred = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(pred, Tensor):
        raise TypeError(f"the model must return a tensor or a tuple (y, ...), got {type(out).__name__}")
    if builtin_loss and pred.shape != y.shape:
        raise ValueError(
            f"model output has shape {tuple(pred.shape)} but the target y has shape {tuple(y.shape)}; "
            "expected equal shapes (B, T, out)"
        )
    value = loss_fn(pred, y)
    if value.dim() != 0:
        raise ValueError(f"the loss must be a scalar, got shape {tuple(value.shape)}")
    return value


# ------------------------------------------------------------------------------------- weights and files
def _snapshot(model: nn.Module) -> dict[str, Any]:
    """A detached copy of the state dict (tensors cloned, extra states deep-copied)."""
    return {
        k: v.detach().clone() if isinstance(v, Tensor) else copy.deepcopy(v)
        for k, v in model.state_dict().items()
    }


def _load(model: nn.Module, state: dict[str, Any]) -> None:
    model.load_state_dict(state)


def _save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` (tensors moved to CPU) to ``path`` atomically (:mod:`lnn_control.atomic`)."""
    cpu_state = {k: v.cpu() if isinstance(v, Tensor) else v for k, v in state.items()}
    buffer = io.BytesIO()
    torch.save(cpu_state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


# ------------------------------------------------------------------------------------------------- setup
def _make_optimizer(
    params: list[nn.Parameter],
    lr: float,
    weight_decay: float,
    factory: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None,
) -> torch.optim.Optimizer:
    if factory is not None:
        opt = factory(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer(params) must return a torch.optim.Optimizer, got {type(opt).__name__}"
            )
        return opt
    if weight_decay > 0:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr)


def _resolve_loss(loss: str | LossFn) -> tuple[LossFn, bool]:
    if isinstance(loss, str):
        if loss not in _BUILTIN_LOSSES:
            raise ValueError(f"loss must be one of {sorted(_BUILTIN_LOSSES)} or a callable, got {loss!r}")
        return _BUILTIN_LOSSES[loss], True
    if not callable(loss):
        raise TypeError(
            f"loss must be a string or a callable(pred, target) -> scalar, got {type(loss).__name__}"
        )
    return loss, False


def _check_arguments(
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    grad_clip: float | None,
    val_fraction: float,
    patience: int | None,
) -> None:
    positive_int("epochs", epochs)
    positive_int("batch_size", batch_size)
    positive_number("lr", lr)
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if grad_clip is not None and not grad_clip >= 0:
        raise ValueError(f"grad_clip must be >= 0 or None, got {grad_clip!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    positive_int("early_stopping_patience", patience, allow_none=True)


def _postfix(logs: dict[str, float], result: FitResult) -> str:
    text = f"train={logs['train_loss']:.4g}"
    if "val_loss" in logs:
        text += f" val={logs['val_loss']:.4g}"
    return text + f" best={result.best_val_loss:.4g}@{result.best_epoch}"
