"""The warnings of Gymnasium's and SB3's env checkers that are known and harmless for the catalogue envs.

Gymnasium's passive checker reports real problems (an observation outside its space, a NaN reward, a dtype
mismatch) as ``UserWarning``s, so tests that run checkers turn every other ``UserWarning`` into an error and
ignore only these messages, by text.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

HARMLESS = (
    # check_env is given the registered env (with its wrappers) on purpose: the wrappers are what we check.
    r".*is different from the unwrapped version",
    # MuJoCo tasks have the actuator ranges of their models (e.g. Hopper's [-1, 1] but Reacher's or Ant's).
    r".*recommend (you to use|using) a symmetric and normalized",
    # MuJoCo observation spaces are unbounded by design.
    r".*A Box observation space (maximum|minimum) value is -?infinity",
)

MARK_ARGS = ("error::UserWarning", *(f"ignore:{message}:UserWarning" for message in HARMLESS))


@contextlib.contextmanager
def strict_checker_warnings() -> Iterator[None]:
    """Every ``UserWarning`` raises, except the known harmless checker messages above."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for message in HARMLESS:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield
