"""Reward normalization before the bandit sees a reward.

Modes:

- ``none``: the raw reward.
- ``quantile`` (LASeR's): clip to the [20th, 80th] percentiles of the last ``window`` raw
  rewards (including the one being normalized) and scale that range to [0, 1].
- ``minmax``: scale by the running (all-time) minimum and maximum to [0, 1].

While the reference range is degenerate (no history, or all rewards equal) ``quantile`` and
``minmax`` return 0.5: the midpoint carries no preference, so early rewards neither reward
nor punish an arm before the scale is known.

A normalizer is not locked by itself: the policies call it under their own lock.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from laser_serve.selector.context import as_reward

MODES = ("none", "quantile", "minmax")


class RewardNormalizer:
    """Maps raw rewards to the scale the bandit learns from; ``__call__`` records and maps."""

    def __init__(
        self, mode: str = "none", window: int = 1000, low_q: float = 0.2, high_q: float = 0.8
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown reward normalization {mode!r}; expected one of {MODES}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        if not (0.0 <= low_q < high_q <= 1.0):
            raise ValueError(f"need 0 <= low_q < high_q <= 1, got low_q={low_q}, high_q={high_q}")
        self.mode = mode
        self.window = window
        self.low_q = float(low_q)
        self.high_q = float(high_q)
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self._history: deque[float] = deque(maxlen=self.window)  # oldest evicted first
        self._min = math.inf
        self._max = -math.inf

    def __call__(self, reward: float) -> float:
        """Record ``reward`` in the history, then return it normalized."""
        self.record(reward)
        return self.normalize(reward)

    def peek(self, reward: float) -> float:
        """What ``__call__`` would return, without recording (so a caller can check the
        update it feeds before committing to it)."""
        r = as_reward(reward)
        if self.mode == "quantile":
            return _scale(r, *self._quantiles([*self._history, r][-self.window :]))
        if self.mode == "minmax":
            return _scale(r, min(self._min, r), max(self._max, r))
        return r

    def record(self, reward: float) -> None:
        r = as_reward(reward)
        self.count += 1
        if self.mode == "quantile":
            self._history.append(r)
        elif self.mode == "minmax":
            self._min = min(self._min, r)
            self._max = max(self._max, r)

    def normalize(self, reward: float) -> float:
        """Normalize without recording (for display or dry runs)."""
        r = as_reward(reward)
        if self.mode == "none":
            return r
        return _scale(r, *self.bounds())

    def bounds(self) -> tuple[float, float]:
        """The current reference range (lo, hi); (nan, nan) with no history or mode none."""
        if self.mode == "quantile" and self._history:
            return self._quantiles(self._history)
        if self.mode == "minmax" and self.count:
            return self._min, self._max
        return math.nan, math.nan

    def _quantiles(self, values: Any) -> tuple[float, float]:
        with np.errstate(over="ignore", invalid="ignore"):  # rewards near ±1.8e308: inf or nan
            lo, hi = np.quantile(np.fromiter(values, float), [self.low_q, self.high_q])
        return float(lo), float(hi)

    @property
    def history(self) -> tuple[float, ...]:
        """Raw rewards in the quantile window, oldest first (empty for other modes)."""
        return tuple(self._history)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serializable state (floats round-trip exactly through ``json``)."""
        return {
            "mode": self.mode,
            "window": self.window,
            "low_q": self.low_q,
            "high_q": self.high_q,
            "count": self.count,
            "history": list(self._history),
            "min": self._min if self.count and self.mode == "minmax" else None,
            "max": self._max if self.count and self.mode == "minmax" else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state of the same mode; this normalizer's window and quantiles win
        (the history keeps its newest ``window`` rewards)."""
        try:
            mode = state["mode"]
            if mode != self.mode:
                raise ValueError(
                    f"reward normalization differs (state: {mode!r}, configured: {self.mode!r})"
                )
            count = int(state["count"])
            history = [as_reward(v) for v in state["history"]]
            lo = None if state["min"] is None else as_reward(state["min"])
            hi = None if state["max"] is None else as_reward(state["max"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed reward normalizer state: {exc!r}") from None
        if count < 0 or (mode == "minmax" and count and (lo is None or hi is None or lo > hi)):
            raise ValueError("malformed reward normalizer state: bad count or min/max")
        self._reset()
        self.count = count
        self._history.extend(history[-self.window :] if mode == "quantile" else [])
        if mode == "minmax" and count:
            self._min, self._max = lo, hi  # type: ignore[assignment]

    def config(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "window": self.window,
            "low_q": self.low_q,
            "high_q": self.high_q,
        }


def _scale(r: float, lo: float, hi: float) -> float:
    """r mapped from [lo, hi] to [0, 1], clipped; 0.5 while the range is degenerate (or not
    finite: bounds of rewards near the float limit overflow)."""
    scaled = (r - lo) / (hi - lo) if hi > lo else math.nan
    return min(1.0, max(0.0, scaled)) if math.isfinite(scaled) else 0.5
