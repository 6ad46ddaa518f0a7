"""The one error type of the run-directory layer: a problem the user can fix (bad argument, missing or corrupt
run directory), reported by the CLI as one line on stderr with exit code 2."""

from __future__ import annotations

__all__ = ["RunError"]


class RunError(ValueError):
    """A user-facing problem with a run: the message names the bad value and what was expected."""
