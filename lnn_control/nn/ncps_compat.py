"""Migration from ncps: ``from_ncps(module)`` converts an ``ncps.torch`` CfC or LTC to ours.

The converted module gives the same outputs on the same inputs. Two ncps behaviours to know about:

- ncps takes ``timespans`` (B, T) but squeezes each step's column to (B,), which only broadcasts correctly for
  a single sample; ours applies each sample's own dt at any batch size. Parity therefore holds per sample.
- A wired ncps CfC masks only the ``ff1``/``ff2`` input synapses: neurons within a layer are fully connected
  and the time gates see every input. The converted wiring records exactly the synapses ncps computes with
  (each layer densely connected to itself) and keeps the time gates dense (``mask_time_gates=False``).

ncps itself is not a dependency: modules are recognised by their attributes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .ltc import LTCCell
from .rnn import LTC, CfC
from .wiring import Wiring

__all__ = ["from_ncps"]

_NCPS_ACTIVATIONS = {"LeCun": "lecun_tanh", "SiLU": "silu", "ReLU": "relu", "Tanh": "tanh", "GELU": "gelu"}


def from_ncps(module: nn.Module) -> CfC | LTC:
    """Convert an ``ncps.torch.CfC`` or ``ncps.torch.LTC`` (fully connected or wired) to ``CfC`` / ``LTC``.

    The result keeps ncps's ``batch_first`` and projection; it always returns the whole output sequence
    (for an ncps module built with ``return_sequences=False`` take ``y[:, -1]``).
    """
    kind = type(module).__name__
    cell = getattr(module, "rnn_cell", None)
    if kind not in ("CfC", "LTC") or cell is None:
        raise TypeError(
            f"from_ncps expects an ncps.torch CfC or LTC module, got {type(module).__module__}.{kind}"
        )
    if getattr(module, "use_mixed", False):
        raise ValueError(
            "ncps mixed_memory=True (an extra LSTM cell) has no counterpart here; cannot convert"
        )
    converted = _convert_cfc(module, cell) if kind == "CfC" else _convert_ltc(module, cell)
    return converted.eval() if not module.training else converted


def _wiring_from_ncps(ncps_wiring: object, dense_layers: bool = False) -> Wiring:
    """Our ``Wiring`` with the same matrices and layers as an (already built) ncps wiring."""
    adjacency = np.asarray(ncps_wiring.adjacency_matrix).astype(np.int8)
    layers = [list(map(int, ncps_wiring.get_neurons_of_layer(i))) for i in range(ncps_wiring.num_layers)]
    if dense_layers:
        for layer in layers:
            block = adjacency[np.ix_(layer, layer)]
            adjacency[np.ix_(layer, layer)] = np.where(block == 0, 1, block)
    return Wiring(
        int(ncps_wiring.units),
        int(ncps_wiring.output_dim),
        adjacency=adjacency,
        sensory_adjacency=np.asarray(ncps_wiring.sensory_adjacency_matrix).astype(np.int8),
        layers=layers,
    )


def _convert_cfc(module: nn.Module, cell: nn.Module) -> CfC:
    proj = module.fc if isinstance(module.fc, nn.Linear) else None
    proj_size = None if proj is None else proj.out_features
    if hasattr(cell, "_wiring"):  # WiredCfCCell
        ncps_layers = [getattr(cell, f"layer_{i}") for i in range(cell.num_layers)]
        wiring = _wiring_from_ncps(cell._wiring, dense_layers=True)
        ours = CfC(
            module.input_size,
            wiring,
            mode=ncps_layers[0].mode,
            proj_size=proj_size,
            batch_first=module.batch_first,
            mask_time_gates=False,
        )
        for ncps_layer, block in zip(ncps_layers, ours.cells[0].blocks, strict=True):
            _copy_cfc_heads(ncps_layer, block)
    else:
        linears = [m for m in (cell.backbone or []) if isinstance(m, nn.Linear)]
        activation = next(
            (type(m).__name__ for m in (cell.backbone or []) if not isinstance(m, nn.Linear)), "LeCun"
        )
        dropouts = [m.p for m in (cell.backbone or []) if isinstance(m, nn.Dropout)]
        ours = CfC(
            module.input_size,
            cell.hidden_size,
            mode=cell.mode,
            backbone_units=linears[0].out_features if linears else 128,
            backbone_layers=len(linears),
            backbone_activation=_NCPS_ACTIVATIONS.get(activation, "lecun_tanh"),
            backbone_dropout=dropouts[0] if dropouts else 0.0,
            proj_size=proj_size,
            batch_first=module.batch_first,
        )
        block = ours.cells[0].blocks[0]
        with torch.no_grad():
            for src, dst in zip(linears, block.backbone, strict=True):
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)
        _copy_cfc_heads(cell, block)
    if proj is not None:
        ours.proj.load_state_dict(proj.state_dict())
    return ours


def _copy_cfc_heads(ncps_cell: nn.Module, block: nn.Module) -> None:
    names = ("ff1",) if ncps_cell.mode == "pure" else ("ff1", "ff2", "time_a", "time_b")
    with torch.no_grad():
        block.heads.weight.copy_(torch.cat([getattr(ncps_cell, n).weight for n in names]))
        block.heads.bias.copy_(torch.cat([getattr(ncps_cell, n).bias for n in names]))
        if ncps_cell.mode == "pure":
            block.w_tau.copy_(ncps_cell.w_tau.reshape(-1))
            block.A.copy_(ncps_cell.A.reshape(-1))


def _convert_ltc(module: nn.Module, cell: nn.Module) -> LTC:
    wiring = _wiring_from_ncps(cell._wiring)
    ours = LTC(
        module.input_size,
        wiring,
        unfolds=int(cell._ode_unfolds),
        batch_first=module.batch_first,
    )
    target: LTCCell = ours.cells[0]
    target.epsilon = float(cell._epsilon)
    params = {
        name: p.detach()
        for name, p in cell._params.items()
        if name not in ("sparsity_mask", "sensory_sparsity_mask")
    }
    if cell._implicit_param_constraints:  # ncps applies softplus too: the raw values carry over
        raw = {name: params.pop(name) for name in ("gleak", "cm", "w", "sensory_w")}
        with torch.no_grad():
            for name, value in raw.items():
                getattr(target, name).copy_(value)
    target.load_ncps_values(params)  # values as ncps uses them (softplus inverted where needed)
    return ours
