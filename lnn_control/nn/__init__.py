"""Liquid neural networks in PyTorch: CfC and LTC cells and sequence modules, and NCP wirings.

Only torch (and numpy) is imported below this package: no Gymnasium, no Stable-Baselines3.
"""

from . import cfc_native, ltc_native
from .cfc import CfCCell
from .fit import FitResult, NonFiniteLossError, fit
from .inference import inference_copy
from .ltc import LTCCell
from .ncps_compat import from_ncps
from .rnn import LTC, CfC, LiquidRNN
from .wiring import NCP, AutoNCP, FullyConnected, Random, Wiring

__all__ = [
    "LTC",
    "NCP",
    "AutoNCP",
    "CfC",
    "CfCCell",
    "FitResult",
    "FullyConnected",
    "LTCCell",
    "LiquidRNN",
    "NonFiniteLossError",
    "Random",
    "Wiring",
    "cfc_native",
    "fit",
    "from_ncps",
    "inference_copy",
    "ltc_native",
]
