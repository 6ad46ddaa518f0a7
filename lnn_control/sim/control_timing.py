"""Irregular control timing: how many physics substeps pass between two control steps.

A controller on hardware does not run on a perfect clock. :class:`ControlTiming` describes the control period
of a task as a random number of MuJoCo substeps (``model.opt.timestep`` each) per control step:

* ``frame_skip`` is the nominal period (the task's usual ``frame_skip``).
* ``jitter=(lo, hi)``: the period of a step is ``round(frame_skip * U[lo, hi])`` substeps, at least 1.
* ``choices`` / ``probs``: the period is drawn from an explicit list of substep counts (uniform if ``probs``
  is None). ``jitter`` and ``choices`` are mutually exclusive; with neither, the period is ``frame_skip``.
* ``drop_prob``: after the (possibly jittered) period, the observation is dropped with this probability: the
  action is held for another *nominal* period (``frame_skip`` substeps) and the policy sees the summed time.
  Drops repeat independently, at most ``max_consecutive_drops`` times per control step.

The same object drives both the single-env :class:`lnn_control.sim.wrappers.ControlTimingWrapper` and the
batched :class:`lnn_control.sim.batched.BatchedMujocoVecEnv`; both report
``info["dt"] = substeps * timestep``.

Sampling is vectorised over environments: ``sample_substeps(rng, n)`` draws the substeps of one control step
for ``n`` environments at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lnn_control.checks import nonnegative_number, positive_int, positive_range

__all__ = ["ControlTiming"]

_PROB_TOL = 1e-6


@dataclass(frozen=True)
class ControlTiming:
    """Distribution of the control period, in physics substeps.

    Args:
        frame_skip: nominal substeps per control step (>= 1).
        jitter: ``(lo, hi)`` with ``0 < lo <= hi``; period = ``max(1, round(frame_skip * U[lo, hi]))``.
        choices: explicit substep counts (each >= 1) to draw the period from.
        probs: probabilities of ``choices`` (same length, each >= 0, summing to 1 within 1e-6);
            None means uniform over ``choices``.
        drop_prob: probability in ``[0, 1)`` that an observation is dropped (the action is held for another
            nominal period); drops repeat with the same probability.
        max_consecutive_drops: cap on the number of drops in one control step (>= 1).
    """

    frame_skip: int
    jitter: tuple[float, float] | None = None
    choices: tuple[int, ...] | None = None
    probs: tuple[float, ...] | None = None
    drop_prob: float = 0.0
    max_consecutive_drops: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame_skip", positive_int("frame_skip", self.frame_skip))

        if self.jitter is not None and self.choices is not None:
            raise ValueError("jitter and choices are mutually exclusive; give at most one of them")

        if self.jitter is not None:
            lo, hi = positive_range("jitter", self.jitter, meaning=" (a control period cannot be zero)")
            object.__setattr__(self, "jitter", (lo, hi))

        if self.probs is not None and self.choices is None:
            raise ValueError("probs given without choices; probs are the probabilities of choices")

        if self.choices is not None:
            choices = tuple(self.choices)
            if len(choices) == 0:
                raise ValueError("choices must not be empty")
            choices = tuple(positive_int(f"choices[{i}]", c) for i, c in enumerate(choices))
            object.__setattr__(self, "choices", choices)
            if self.probs is not None:
                probs = tuple(float(p) for p in self.probs)
                if len(probs) != len(choices):
                    raise ValueError(
                        f"probs must have the same length as choices, got {len(probs)} probs "
                        f"for {len(choices)} choices"
                    )
                for i, p in enumerate(probs):
                    nonnegative_number(f"probs[{i}]", p)
                if abs(sum(probs) - 1.0) > _PROB_TOL:
                    raise ValueError(f"probs must sum to 1 (within {_PROB_TOL}), got sum={sum(probs)!r}")
                object.__setattr__(self, "probs", probs)

        dp = self.drop_prob
        if isinstance(dp, bool) or not isinstance(dp, (int, float, np.floating)) or not (0.0 <= dp < 1.0):
            raise ValueError(f"drop_prob must be a probability in [0, 1), got {dp!r}")
        object.__setattr__(self, "drop_prob", float(dp))

        object.__setattr__(
            self, "max_consecutive_drops", positive_int("max_consecutive_drops", self.max_consecutive_drops)
        )

    # ------------------------------------------------------------------ properties
    @property
    def nominal_substeps(self) -> int:
        """The nominal control period in substeps (= ``frame_skip``)."""
        return self.frame_skip

    @property
    def is_regular(self) -> bool:
        """True when every control step lasts exactly ``frame_skip`` substeps."""
        return self.jitter is None and self.choices is None and self.drop_prob == 0.0

    @property
    def mean_substeps(self) -> float:
        """Expected substeps per control step (including drops): the analytic mean of :meth:`sample_substeps`.

        For jitter the rounding is accounted for exactly (integrating the uniform over each rounding cell).
        """
        if self.choices is not None:
            probs = self.probs if self.probs is not None else (1.0 / len(self.choices),) * len(self.choices)
            base = float(np.dot(self.choices, probs))
        elif self.jitter is not None:
            base = _mean_rounded_uniform(self.frame_skip * self.jitter[0], self.frame_skip * self.jitter[1])
        else:
            base = float(self.frame_skip)
        # Drops: number of drops D with P(D >= j) = p**j for j <= cap.
        p, cap = self.drop_prob, self.max_consecutive_drops
        mean_drops = sum(p**j for j in range(1, cap + 1))
        return base + self.frame_skip * mean_drops

    # ------------------------------------------------------------------ sampling
    def sample_periods(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw the control period and the number of dropped observations of one step for ``n`` envs.

        Returns:
            ``(base, drops)``, both int64 of shape ``(n,)``: ``base`` is the (jittered / chosen) period in
            substeps (>= 1), ``drops`` the number of extra nominal periods the action is held for
            (0..``max_consecutive_drops``). The total is ``base + drops * frame_skip``.
        """
        n = int(n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if self.choices is not None:
            choices = np.asarray(self.choices, dtype=np.int64)
            probs = None if self.probs is None else np.asarray(self.probs, dtype=np.float64)
            if probs is not None:
                probs = probs / probs.sum()  # remove the <= 1e-6 slack numpy would reject
            base = rng.choice(choices, size=n, p=probs).astype(np.int64)
        elif self.jitter is not None:
            lo, hi = self.jitter
            base = np.rint(self.frame_skip * rng.uniform(lo, hi, size=n)).astype(np.int64)
            np.maximum(base, 1, out=base)
        else:
            base = np.full(n, self.frame_skip, dtype=np.int64)

        if self.drop_prob > 0.0:
            # Consecutive drops: count leading successes of Bernoulli(drop_prob) trials, capped.
            trials = rng.random((n, self.max_consecutive_drops)) < self.drop_prob
            drops = np.cumprod(trials, axis=1).sum(axis=1).astype(np.int64)
        else:
            drops = np.zeros(n, dtype=np.int64)
        return base, drops

    def sample_substeps(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Physics substeps of one control step for ``n`` envs, drops included: int64, shape ``(n,)``."""
        base, drops = self.sample_periods(rng, n)
        return base + drops * self.frame_skip

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ControlTiming:
        """Build from a mapping with the field names (as in a catalogue YAML ``timing:`` section).

        Unknown keys raise ``ValueError`` naming them; lists are converted to tuples.
        """
        allowed = {"frame_skip", "jitter", "choices", "probs", "drop_prob", "max_consecutive_drops"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"unknown timing key(s) {unknown}; expected a subset of {sorted(allowed)}")
        if "frame_skip" not in d:
            raise ValueError("timing needs frame_skip (the nominal substeps per control step)")
        kw = dict(d)
        for key in ("jitter", "choices", "probs"):
            if kw.get(key) is not None:
                if not isinstance(kw[key], (list, tuple)):
                    raise ValueError(f"timing {key} must be a list, got {kw[key]!r}")
                kw[key] = tuple(kw[key])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (tuples as lists), the inverse of :meth:`from_dict`."""
        out: dict[str, Any] = {"frame_skip": self.frame_skip}
        if self.jitter is not None:
            out["jitter"] = list(self.jitter)
        if self.choices is not None:
            out["choices"] = list(self.choices)
        if self.probs is not None:
            out["probs"] = list(self.probs)
        if self.drop_prob:
            out["drop_prob"] = self.drop_prob
            out["max_consecutive_drops"] = self.max_consecutive_drops
        return out


def _mean_rounded_uniform(a: float, b: float) -> float:
    """E[max(1, rint(U))] for U ~ Uniform[a, b] (``a <= b``), rounding half to even as ``np.rint`` does.

    Ties have probability zero, so each integer k covers ``[k - 0.5, k + 0.5]``.
    """
    if b - a <= 0:
        return float(max(1, round(a)))
    total = 0.0
    for k in range(math.floor(a + 0.5), math.floor(b + 0.5) + 1):
        lo, hi = max(a, k - 0.5), min(b, k + 0.5)
        if hi > lo:
            total += max(1, k) * (hi - lo)
    return total / (b - a)
