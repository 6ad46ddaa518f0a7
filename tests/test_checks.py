"""lnn_control.checks: what each check accepts, what it rejects, and the one message format."""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lnn_control import checks
from lnn_control.checks import (
    nonnegative_number,
    nonnegative_values,
    positive_int,
    positive_number,
    positive_range,
)

NAN, INF = float("nan"), float("inf")


# ----------------------------------------------------------------------------------------------- positive_int
@pytest.mark.parametrize("value", [1, 7, 10**12, np.int64(3), np.uint8(1)])
def test_positive_int_accepts_and_returns_a_plain_int(value) -> None:
    out = positive_int("n", value)
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [0, -1, True, False, 2.0, 2.5, "3", None, NAN, [1], np.float32(1)])
def test_positive_int_rejects_with_the_value_in_the_message(value) -> None:
    with pytest.raises(ValueError) as err:
        positive_int("units", value)
    assert str(err.value) == f"units must be a positive integer, got {value!r}"


def test_positive_int_options() -> None:
    assert positive_int("seed", 0, allow_zero=True) == 0
    assert positive_int("proj_size", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"^seed must be a non-negative integer, got -1$"):
        positive_int("seed", -1, allow_zero=True)
    with pytest.raises(ValueError, match=r"^proj_size must be a positive integer or None, got 0$"):
        positive_int("proj_size", 0, allow_none=True)
    with pytest.raises(ValueError, match=r"^n must be a positive integer, got None$"):
        positive_int("n", None)


def test_the_error_class_is_the_callers() -> None:
    class RunError(Exception):
        pass

    with pytest.raises(RunError, match=r"^timesteps must be a positive integer, got 0$"):
        positive_int("timesteps", 0, error=RunError)
    with pytest.raises(RunError, match=r"^factor must be a positive number, got -1$"):
        positive_number("factor", -1, error=RunError)
    with pytest.raises(RunError, match=r"^dt must be finite and >= 0, got -1$"):
        nonnegative_number("dt", -1, error=RunError)
    with pytest.raises(RunError, match=r"^dt must be finite and >= 0, got -1\.0 at index 0$"):
        nonnegative_values("dt", np.array([-1.0]), error=RunError)


# -------------------------------------------------------------------------------------------- positive_number
@pytest.mark.parametrize("value", [1, 0.02, 1e-300, 1e300, np.float32(0.5), np.int64(2)])
def test_positive_number_accepts_and_returns_a_float(value) -> None:
    out = positive_number("time_unit", value)
    assert out == pytest.approx(float(value)) and type(out) is float


@pytest.mark.parametrize("value", [0, 0.0, -0.5, NAN, INF, -INF, True, "0.02", None, torch.tensor(1.0)])
def test_positive_number_rejects_with_the_value_in_the_message(value) -> None:
    with pytest.raises(ValueError) as err:
        positive_number("time_unit", value, unit=" of seconds")
    assert str(err.value) == f"time_unit must be a positive number of seconds, got {value!r}"


def test_positive_number_allow_none() -> None:
    assert positive_number("max_step", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"^max_step must be a positive number or None, got nan$"):
        positive_number("max_step", NAN, allow_none=True)


# ----------------------------------------------------------------------------------------- nonnegative_number
@pytest.mark.parametrize("value", [0, 0.0, 0.02, 5, np.float64(0.1)])
def test_nonnegative_number_accepts_zero_and_positive(value) -> None:
    assert nonnegative_number("dt", value) == float(value)


@pytest.mark.parametrize("value", [-1e-9, NAN, INF, True, "0.1", None])
def test_nonnegative_number_rejects_with_the_value_and_where(value) -> None:
    with pytest.raises(ValueError) as err:
        nonnegative_number("dt", value, where="in infos[0]['dt']")
    assert str(err.value) == f"dt must be finite and >= 0, got {value!r} in infos[0]['dt']"


# ----------------------------------------------------------------------------------------- nonnegative_values
@pytest.mark.parametrize("make", [np.asarray, torch.as_tensor], ids=["numpy", "torch"])
def test_nonnegative_values_accepts_finite_nonnegative_and_empty(make) -> None:
    nonnegative_values("dt", make(np.array([[0.0, 0.02], [1.0, 3.5]], dtype=np.float32)))
    nonnegative_values("dt", make(np.zeros((0, 3), dtype=np.float32)))
    nonnegative_values("dt", make(np.array(0.5)))


@pytest.mark.parametrize("make", [np.asarray, torch.as_tensor], ids=["numpy", "torch"])
@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.1, -0.99, NAN], "got -0.99 at index 1"),  # the first bad entry, float32 shown at its own digits
        ([[0.1, 0.2], [0.3, NAN]], "got nan at index (1, 1)"),
        ([[INF, 0.0]], "got inf at index (0, 0)"),
        ([[0.1], [-INF]], "got -inf at index (1, 0)"),
    ],
)
def test_nonnegative_values_names_the_first_bad_entry(make, values, message) -> None:
    with pytest.raises(ValueError) as err:
        nonnegative_values(
            "dt", make(np.array(values, dtype=np.float32)), unit=" seconds", where="from env 0"
        )
    assert str(err.value) == f"dt must be finite and >= 0 seconds, {message} from env 0"


def test_nonnegative_values_names_axes_when_given() -> None:
    values = torch.ones(2, 3, 4)
    values[1, 0, 3] = -2.0
    with pytest.raises(ValueError, match=r"^dts must be finite and >= 0, got -2\.0 at env 1 chunk 0 step 3$"):
        nonnegative_values("dts", values, axes=("env", "chunk", "step"))


# ------------------------------------------------------------------------------------------------ the module
def test_positive_range_accepts_ordered_positive_pairs() -> None:
    assert positive_range("jitter", [0.5, 1.5]) == (0.5, 1.5)
    assert positive_range("scale", (np.float32(1.0), 1)) == (1.0, 1.0)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ((0.0, 1.0), "jitter lo must be > 0 (why), got lo=0.0"),
        ((-1.0, 1.0), "jitter lo must be > 0 (why), got lo=-1.0"),
        ((1.5, 0.5), "jitter must satisfy lo <= hi, got lo=1.5 > hi=0.5"),
        ((0.5, math.inf), "jitter bounds must be finite, got (0.5, inf)"),
        ((1.0,), "jitter must be a pair (lo, hi) of numbers, got (1.0,)"),
        (1.0, "jitter must be a pair (lo, hi) of numbers, got 1.0"),
        (("a", 1.0), "jitter must be a pair (lo, hi) of numbers, got ('a', 1.0)"),
    ],
)
def test_positive_range_rejects_with_the_value_in_the_message(value, message) -> None:
    with pytest.raises(ValueError) as info:
        positive_range("jitter", value, meaning=" (why)")
    assert str(info.value) == message


def test_checks_imports_only_the_standard_library() -> None:
    """So that every subpackage, ``nn`` and the torch-free export runtime included, may import it."""
    tree = ast.parse(Path(checks.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {name.split(".")[0] for name in imported} <= set(sys.stdlib_module_names) | {"__future__"}


# ----------------------------------------------------------------------------------------- at the call sites
def test_the_shared_message_reaches_users_of_the_networks() -> None:
    from lnn_control.nn import LTC, CfC

    with pytest.raises(ValueError, match=r"^units must be a positive integer, got 0$"):
        LTC(3, 0)
    with pytest.raises(ValueError, match=r"^input_size must be a positive integer, got True$"):
        CfC(True, 8)
    with pytest.raises(ValueError, match=r"^max_step must be a positive number or None, got inf$"):
        LTC(3, 8, max_step=math.inf)
    with pytest.raises(ValueError, match=r"^dt must be finite and >= 0, got nan at batch 1 step 2$"):
        dt = torch.ones(2, 4)
        dt[1, 2] = NAN
        LTC(3, 8)(torch.zeros(2, 4, 3), dt=dt)


def test_the_shared_message_reaches_users_of_liquid_ppo() -> None:
    from lnn_control.sb3 import LiquidPPO
    from lnn_control.sb3.diagnostic_envs import CueHoldEnv

    with pytest.raises(ValueError, match=r"^seq_len must be a positive integer, got 0$"):
        LiquidPPO("LiquidPolicy", CueHoldEnv(), n_steps=16, seq_len=0, batch_size=16)
    with pytest.raises(
        ValueError, match=r"^time_unit must be a positive number of seconds or None, got -1\.0$"
    ):
        LiquidPPO(
            "LiquidPolicy",
            CueHoldEnv(),
            n_steps=16,
            seq_len=8,
            batch_size=16,
            policy_kwargs={"time_unit": -1.0},
        )
