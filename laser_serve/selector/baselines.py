"""Baseline policies behind the Policy interface, and the ensemble score combiner.

Random draws use ``Generator.random`` (one double per draw) so a batch consumes the stream
exactly as the same number of single calls would; the generator state is saved with the
policy (``SeededPolicy``), so a loaded policy continues the same sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from laser_serve.selector.base import (
    Decision,
    Policy,
    SeededPolicy,
    SingleArmPolicy,
    argmax_lowest,
    check_finite_param,
    one_hot,
)

DEFAULT_EPSILON = 0.1


class RandomPolicy(SeededPolicy):
    """Uniformly random arm."""

    name = "random"

    def _decide(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = len(self.arms)
        picks = np.minimum((self._rng.random(int(X.shape[0])) * k).astype(np.int64), k - 1)
        return picks, np.full((X.shape[0], k), 1.0 / k)


class FixedPolicy(SingleArmPolicy):
    """Always the same arm (one named reward model)."""

    def __init__(
        self,
        arms: Sequence[str],
        dim: int,
        arm: int | str,
        seed: int = 0,
        reward_norm: str = "none",
        window: int = 1000,
    ) -> None:
        super().__init__(arms, dim, seed=seed, reward_norm=reward_norm, window=window)
        self.arm = self.arm_index(arm)
        self.name = f"fixed:{self.arms[self.arm]}"

    def _decide(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        picks = np.full(X.shape[0], self.arm, dtype=np.int64)
        return picks, one_hot(picks, len(self.arms))


class RoundRobinPolicy(SingleArmPolicy):
    """Arms in turn, 0, 1, …, K−1, 0, … (LASeR's "sequential" baseline)."""

    name = "round-robin"
    _cursor = 0  # rebound per instance by _decide and _install

    def _decide(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = len(self.arms)
        picks = (self._cursor + np.arange(X.shape[0], dtype=np.int64)) % k
        self._cursor = (self._cursor + X.shape[0]) % k
        return picks, one_hot(picks, k)

    def _extra(self) -> dict[str, Any]:
        return {**super()._extra(), "cursor": self._cursor}

    def _parse_extra(self, extra: dict[str, Any]) -> dict[str, Any]:
        cursor = extra["cursor"]
        if not isinstance(cursor, int) or not 0 <= cursor < len(self.arms):
            raise ValueError(f"bad round-robin cursor {cursor!r}")
        return {**super()._parse_extra(extra), "cursor": cursor}

    def _install(self, arrays: dict[str, np.ndarray], parsed: dict[str, Any]) -> None:
        super()._install(arrays, parsed)
        self._cursor = parsed["cursor"]


class EpsilonGreedyPolicy(SeededPolicy):
    """Non-contextual ε-greedy on the mean normalized reward.

    While some arm has never been updated, that arm is chosen (lowest index first); after
    that, a uniform arm with probability ε, else the best mean (ties to the lowest index):
    p(k) = ε/K + (1 − ε)·[k = best].
    """

    def __init__(
        self,
        arms: Sequence[str],
        dim: int,
        epsilon: float = DEFAULT_EPSILON,
        seed: int = 0,
        reward_norm: str = "none",
        window: int = 1000,
    ) -> None:
        super().__init__(arms, dim, seed=seed, reward_norm=reward_norm, window=window)
        self.epsilon = check_finite_param(epsilon, "epsilon")
        if self.epsilon > 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        self.name = (
            "epsilon-greedy"
            if self.epsilon == DEFAULT_EPSILON
            else f"epsilon-greedy:{self.epsilon!r}"
        )

    def _greedy(self) -> int:
        untried = np.flatnonzero(self._pulls == 0)
        if untried.size:
            return int(untried[0])
        means = self._norm_reward_sum / self._pulls
        return int(argmax_lowest(means[None, :])[0])

    def _decide(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        greedy = self._greedy()  # the state does not change within one call
        untried = bool((self._pulls == 0).any())
        picks = np.empty(X.shape[0], dtype=np.int64)
        for i in range(X.shape[0]):
            explore = not untried and self._rng.random() < self.epsilon
            picks[i] = self._uniform_arm() if explore else greedy
        k, epsilon = len(self.arms), 0.0 if untried else self.epsilon
        probs = np.full((X.shape[0], k), epsilon / k)
        probs[:, greedy] += 1.0 - epsilon
        return picks, probs

    def params(self) -> dict[str, float | int | str]:
        return {**super().params(), "epsilon": self.epsilon}


class EnsemblePolicy(Policy):
    """Score with every reward model and combine with :func:`combine_scores`."""

    name = "ensemble"

    def __init__(
        self,
        arms: Sequence[str],
        dim: int,
        seed: int = 0,
        reward_norm: str = "none",
        window: int = 1000,
    ) -> None:
        super().__init__(arms, dim, seed=seed, reward_norm=reward_norm, window=window)
        ones = np.ones(len(self.arms))
        ones.setflags(write=False)
        self._all = Decision(tuple(range(len(self.arms))), ones, 1.0)  # immutable, shared

    def _decide_locked(self, X: np.ndarray) -> list[Decision]:
        self._selections += X.shape[0]
        return [self._all] * X.shape[0]


def combine_scores(scores: np.ndarray) -> np.ndarray:
    """Mean over reward models of per-model z-normalized scores.

    ``scores`` has shape (K_used, n): one row per reward model, one column per candidate.
    A row with (numerically) zero spread carries no preference and contributes zeros.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] == 0:
        raise ValueError(f"scores must have shape (K_used >= 1, n), got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    if s.shape[1] == 0:
        return np.zeros(0)
    mean = s.mean(axis=1, keepdims=True)
    std = s.std(axis=1, keepdims=True)
    # Relative threshold: a constant row's std is rounding noise, not a signal to amplify.
    flat = std <= 1e-12 * np.maximum(1.0, np.abs(s).max(axis=1, keepdims=True))
    z = np.where(flat, 0.0, (s - mean) / np.where(flat, 1.0, std))
    return z.mean(axis=0)
