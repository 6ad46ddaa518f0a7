"""lnn-control: liquid neural networks (LTC, CfC, NCP wirings) as recurrent policies for Stable-Baselines3."""

__version__ = "0.1.0"

from lnn_control.sim import registration as _registration  # noqa: F401  (registers lnn/<task> ids)
