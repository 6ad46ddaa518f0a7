"""lnn-control: liquid neural networks (LTC, CfC, NCP wirings) as recurrent policies for Stable-Baselines3."""

import importlib.util as _importlib_util

__version__ = "0.1.0"

# Register the task catalogue as lnn/<id> Gymnasium envs. A robot-side install that only runs an exported
# controller (numpy + onnxruntime, see lnn_control.export.Controller) may lack Gymnasium: then skip it.
if _importlib_util.find_spec("gymnasium") is not None:
    from lnn_control.sim import registration as _registration  # noqa: F401
