"""Inference copies of networks, in the form that tracers (TorchScript, ONNX, ``torch.export``) accept."""

from __future__ import annotations

import copy

from torch import nn

__all__ = ["inference_copy"]

# A cell class -> the same class without extra state (made once per class).
_TENSOR_STATE_CLASSES: dict[type, type] = {}


def inference_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` for inference and tracing: float32 on the CPU, eval mode, no gradients, and
    a state dict of tensors only.

    The liquid cells record their wiring in the state dict as *extra state* (a dict), so that a checkpoint
    rebuilds it; tracers copy the state dict and expect tensors there. In the copy, every module with extra
    state becomes an instance of a subclass without it; weights, buffers and behaviour are unchanged, and
    the original module is untouched. The copy is for tracing and running, not for saving: its classes
    are made at run time, so pickle (``torch.save`` of the module) refuses it; save the original's
    ``state_dict`` instead.
    """
    clone = copy.deepcopy(module).cpu().float().eval()
    clone.requires_grad_(False)  # an inference-only copy: tracers may then fold derived weights
    for sub in clone.modules():
        cls = type(sub)
        if getattr(cls, "get_extra_state", nn.Module.get_extra_state) is nn.Module.get_extra_state:
            continue
        if cls not in _TENSOR_STATE_CLASSES:
            _TENSOR_STATE_CLASSES[cls] = type(
                cls.__name__,
                (cls,),
                {
                    "get_extra_state": nn.Module.get_extra_state,
                    "set_extra_state": nn.Module.set_extra_state,
                    "__module__": cls.__module__,
                },
            )
        sub.__class__ = _TENSOR_STATE_CLASSES[cls]
    return clone
