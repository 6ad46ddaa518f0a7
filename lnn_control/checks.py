"""Argument checks shared by every layer: one definition, and one message, per invariant.

    positive_int("units", 0)                  -> ValueError("units must be a positive integer, got 0")
    positive_int("seed", -1, allow_zero=True) -> "seed must be a non-negative integer, got -1"
    positive_number("tau", nan, unit=" of seconds") -> "tau must be a positive number of seconds, got nan"
    nonnegative_number("dt", -1.0, where="in infos[0]['dt']") -> "dt must be finite and >= 0, got -1.0 in ..."
    nonnegative_values("dt", dts)             -> "dt must be finite and >= 0, got nan at index (1, 2)"
    positive_range("jitter", (0.0, 1.5))      -> "jitter lo must be > 0, got lo=0.0"

Each function raises ``error`` (``ValueError`` unless the caller passes its own class, e.g. ``RunError``) with
a message that names the argument, what was expected and the value received. Integers are ``int`` or numpy
integers (``numbers.Integral``), numbers are ``numbers.Real``; ``bool`` and strings are rejected by both.
This module imports only the standard library, so that every subpackage (``nn`` included) may use it; the
array check works on numpy arrays and torch tensors alike by duck typing.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal, overload

__all__ = ["nonnegative_number", "nonnegative_values", "positive_int", "positive_number", "positive_range"]


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@overload
def positive_int(
    name: str,
    value: Any,
    *,
    allow_none: Literal[False] = False,
    allow_zero: bool = False,
    error: type[Exception] = ValueError,
) -> int: ...
@overload
def positive_int(
    name: str, value: Any, *, allow_none: bool, allow_zero: bool = False, error: type[Exception] = ValueError
) -> int | None: ...
def positive_int(
    name: str,
    value: Any,
    *,
    allow_none: bool = False,
    allow_zero: bool = False,
    error: type[Exception] = ValueError,
) -> int | None:
    """``value`` as an ``int`` >= 1 (>= 0 with ``allow_zero``; None passes with ``allow_none``).

    Raises:
        error: "{name} must be a positive integer, got {value!r}" ("a non-negative integer" with
            ``allow_zero``, "... or None" with ``allow_none``) for bools, non-integers, values out of range.
    """
    if value is None and allow_none:
        return None
    if not _is_integer(value) or value < (0 if allow_zero else 1):
        expected = "a non-negative integer" if allow_zero else "a positive integer"
        raise error(f"{name} must be {expected}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


@overload
def positive_number(
    name: str,
    value: Any,
    *,
    allow_none: Literal[False] = False,
    unit: str = "",
    error: type[Exception] = ValueError,
) -> float: ...
@overload
def positive_number(
    name: str, value: Any, *, allow_none: bool, unit: str = "", error: type[Exception] = ValueError
) -> float | None: ...
def positive_number(
    name: str,
    value: Any,
    *,
    allow_none: bool = False,
    unit: str = "",
    error: type[Exception] = ValueError,
) -> float | None:
    """``value`` as a finite ``float`` > 0 (None passes with ``allow_none``).

    Args:
        unit: appended to "a positive number", e.g. ``" of seconds"``.

    Raises:
        error: "{name} must be a positive number{unit}, got {value!r}" ("... or None" with ``allow_none``) for
            bools, non-numbers, NaN, infinities, zero and negative values.
    """
    if value is None and allow_none:
        return None
    if not (_is_real(value) and 0 < value < math.inf):  # NaN fails the comparison
        raise error(
            f"{name} must be a positive number{unit}{' or None' if allow_none else ''}, got {value!r}"
        )
    return float(value)


def _nonnegative_message(name: str, value: Any, unit: str, where: str) -> str:
    return f"{name} must be finite and >= 0{unit}, got {value!r}{f' {where}' if where else ''}"


def nonnegative_number(
    name: str, value: Any, *, unit: str = "", where: str = "", error: type[Exception] = ValueError
) -> float:
    """``value`` as a finite ``float`` >= 0 (a time step may be zero).

    Args:
        unit: appended to ">= 0", e.g. ``" seconds"``; where: appended to the message, e.g. ``"in infos[0]"``.

    Raises:
        error: "{name} must be finite and >= 0{unit}, got {value!r} {where}" for bools, non-numbers, NaN,
            infinities and negative values.
    """
    if not (_is_real(value) and 0 <= value < math.inf):
        raise error(_nonnegative_message(name, value, unit, where))
    return float(value)


def nonnegative_values(
    name: str,
    values: Any,
    *,
    unit: str = "",
    where: str = "",
    axes: tuple[str, ...] | None = None,
    error: type[Exception] = ValueError,
) -> None:
    """Raise unless every entry of ``values`` (a numpy array or torch tensor, any shape) is finite and >= 0.

    The good case costs one ``min``, one ``max`` and (for a tensor on an accelerator) one transfer of a bool;
    only a failing check looks for the first bad entry, which the message names by its index (an int for 1-D
    input, else a tuple), e.g. "dt must be finite and >= 0, got nan at index (1, 2)", or, given ``axes`` (one
    name per dimension), e.g. ``("batch", "step")``: "... got nan at batch 1 step 2".
    """
    shape = tuple(values.shape)
    if math.prod(shape) == 0:
        return
    if bool((values.min() >= 0) & (values.max() < math.inf)):  # NaN anywhere makes min and max NaN: fails
        return
    flat = values.reshape(-1)
    first = ((flat >= 0) & (flat < math.inf)).tolist().index(False)
    index: list[int] = []
    for size in reversed(shape):
        first, i = divmod(first, size)
        index.append(i)
    index.reverse()
    position = index[0] if len(shape) == 1 else tuple(index)
    bad = float(f"{values[position].item():.7g}")  # float32's digits: -0.99, not -0.9900000095367432
    at = " ".join(f"{a} {i}" for a, i in zip(axes, index, strict=True)) if axes else f"index {position}"
    raise error(_nonnegative_message(name, bad, unit, f"at {at}{f' {where}' if where else ''}"))


def positive_range(
    name: str, value: Any, *, meaning: str = "", error: type[Exception] = ValueError
) -> tuple[float, float]:
    """``value`` as a pair ``(lo, hi)`` of finite numbers with ``0 < lo <= hi``.

    ``meaning`` says why lo must be positive (e.g. " (a multiplicative scale)"), appended to that message.
    """
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise error(f"{name} must be a pair (lo, hi) of numbers, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise error(f"{name} bounds must be finite, got {value!r}")
    if lo <= 0.0:
        raise error(f"{name} lo must be > 0{meaning}, got lo={lo}")
    if lo > hi:
        raise error(f"{name} must satisfy lo <= hi, got lo={lo} > hi={hi}")
    return lo, hi
