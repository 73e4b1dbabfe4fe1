"""Shared helpers for the selector tests: a synthetic clustered contextual-bandit environment."""

from __future__ import annotations

import numpy as np
import pytest


class ClusterEnv:
    """K arms, d dims, contexts from orthonormal cluster centres; arm c is best in cluster c.

    The expected reward of arm k at x is w_kᵀx with w_k the centre of cluster k, so the best
    arm earns about 1 and the others about 0; observed rewards add Gaussian noise. An optional
    extra "noise arm" pays pure noise (mean ``noise_arm_mean``, sd 1) whatever the context.
    """

    def __init__(
        self,
        k: int = 4,
        d: int = 16,
        noise: float = 0.1,
        spread: float = 0.3,
        seed: int = 0,
        noise_arm: bool = False,
        noise_arm_mean: float = 0.3,
    ) -> None:
        rng = np.random.default_rng(seed)
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        self.centers = q[:, :k].T.copy()
        self.k, self.d, self.noise, self.spread = k, d, noise, spread
        self.noise_arm = noise_arm
        self.noise_arm_mean = noise_arm_mean
        self.n_arms = k + int(noise_arm)
        self.arms = [f"rm{i}" for i in range(self.n_arms)]

    def context(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        c = int(rng.integers(self.k))
        return self.centers[c] + self.spread * rng.standard_normal(self.d) / np.sqrt(self.d), c

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, int]:
        c = int(rng.integers(self.k))
        noise = self.spread * rng.standard_normal((size, self.d)) / np.sqrt(self.d)
        return self.centers[c] + noise, c

    def expected(self, x: np.ndarray) -> np.ndarray:
        mean = self.centers @ x
        if self.noise_arm:
            mean = np.append(mean, self.noise_arm_mean)
        return mean

    def reward(self, arm: int, x: np.ndarray, rng: np.random.Generator) -> float:
        if arm == self.k:  # the noise arm
            return float(self.noise_arm_mean + rng.standard_normal())
        return float(self.centers[arm] @ x + self.noise * rng.standard_normal())


def run_env(policy, env: ClusterEnv, rounds: int, seed: int = 1):
    """Play ``rounds`` per-instance rounds; returns (chosen arms, best arms, regrets)."""
    rng = np.random.default_rng(seed)
    chosen, best, regret = [], [], []
    for _ in range(rounds):
        x, _c = env.context(rng)
        arm = policy.choose(x)[0]
        exp = env.expected(x)
        policy.update(arm, x, env.reward(arm, x, rng))
        chosen.append(arm)
        best.append(int(np.argmax(exp)))
        regret.append(float(exp.max() - exp[arm]))
    return np.array(chosen), np.array(best), np.array(regret)


@pytest.fixture
def cluster_env():
    return ClusterEnv


@pytest.fixture
def play():
    return run_env
