"""Off-policy evaluation: the value of a target policy estimated from a bandit log.

A log has N rounds: context x_i, chosen arm a_i, the logger's propensity p_i = μ(a_i|x_i)
(and, where it was recorded, the logger's whole μ(·|x_i)) and reward r_i (:class:`BanditLog`).
The target is given by its probabilities on the logged contexts, an (N, K) matrix
π(·|x_i) (``laser_serve.selector.offline.target_probs`` builds one from a policy spec). With
importance weights w_i = π(a_i|x_i)/p_i and a reward model q̂(x, k):

- DM (direct method):  V = 1/N Σ_i Σ_k π(k|x_i)·q̂(x_i, k)
- IPS:                 V = 1/N Σ_i w_i·r_i
- SNIPS:               V = Σ_i w_i·r_i / Σ_i w_i
- DR (doubly robust):  V = 1/N Σ_i [Σ_k π(k|x_i)·q̂(x_i, k) + w_i·(r_i − q̂(x_i, a_i))]

q̂ is a ridge regression per arm on the logged contexts (:class:`RidgeRewardModel`). DM uses it
fitted on the whole log. DR uses it cross-fitted (:func:`cross_fitted_predictions`): round i's
q̂ comes from a model that never saw round i's context. Fitted in-sample, a flexible q̂
(d = 384 contexts, few distinct ones) reproduces r_i at the logged arm, the correction
w_i·(r_i − q̂) vanishes and DR collapses onto DM, bias and all, with DM's too-narrow interval;
cross-fitting keeps DR's correction honest (Chernozhukov et al. 2018; Kallus & Uehara 2019).

Confidence intervals: a percentile bootstrap over rounds, in numpy. Every estimator above is
a ratio of sums Σnum_i/Σden_i (den = 1, or w for SNIPS), so one set of resampled indices
serves all four (their intervals are comparable) and a resample costs two gathers per
estimator; resamples go in chunks, so memory stays bounded for long journals. Not
``scipy.stats.bootstrap``: it redraws for each statistic, and its default BCa interval runs a
jackknife of N statistics of N rounds, quadratic in the log length. q̂ is held fixed across
resamples, so the DM interval covers the sampling of rounds, not the model's own error.

Effective sample size: Kish's (Σw)²/Σw². Support: IPS and DR cannot see target probability
on arms the logger could not choose; :func:`check_support` measures that mass and says so.
Everything is numpy; file formats (journals, pools) are the callers' business.

>>> rng = np.random.default_rng(0)
>>> n, k = 2000, 3
>>> X = rng.standard_normal((n, 2))
>>> a = rng.integers(0, k, n)  # a uniformly random logger
>>> r = (a == 1) + 0.1 * rng.standard_normal(n)  # arm 1 pays 1, the others 0
>>> log = BanditLog(X, a, np.full(n, 1 / k), r, n_arms=k)
>>> always_1 = np.tile([0.0, 1.0, 0.0], (n, 1))
>>> result = evaluate(log, always_1, n_boot=200)
>>> round(result.estimates["ips"].value, 1), round(result.estimates["dr"].value, 2)
(1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ESTIMATORS = ("dm", "ips", "snips", "dr")
_BOOT_CELLS = 1 << 22  # resampled indices held at once (32 MiB of int64)


@dataclass(frozen=True, eq=False)
class BanditLog:
    """N logged rounds, checked on construction (ValueError names what is wrong).

    ``contexts`` (N, d), ``arms`` (N,) chosen arm indices, ``propensities`` (N,) the logger's
    p of each chosen arm, ``rewards`` (N,), ``n_arms`` K, and optionally ``probs`` (N, K), the
    logger's whole p(·|x_i), which makes the support check exact.
    """

    contexts: np.ndarray
    arms: np.ndarray
    propensities: np.ndarray
    rewards: np.ndarray
    n_arms: int
    probs: np.ndarray | None = None

    def __post_init__(self) -> None:
        X = np.asarray(self.contexts, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"contexts must have shape (N, d), got {X.shape}")
        n, k = X.shape[0], int(self.n_arms)
        if k < 1:
            raise ValueError(f"n_arms must be positive, got {self.n_arms!r}")
        a = np.asarray(self.arms)
        if a.shape != (n,) or (a.size and a.dtype.kind not in "iu"):
            raise ValueError(f"arms must be {n} integers, got shape {a.shape} dtype {a.dtype}")
        a = a.astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= k):
            raise ValueError(f"arm indices must be in [0, {k}), got {a.min()}..{a.max()}")
        p = _vector(self.propensities, n, "propensities")
        bad = np.flatnonzero(~((p > 0) & (p <= 1)))
        if bad.size:
            raise ValueError(
                f"logged propensities must be in (0, 1]; rows {bad[:5].tolist()} are not "
                f"(e.g. {p[bad[0]]!r}): a chosen arm had positive probability"
            )
        r = _vector(self.rewards, n, "rewards")
        if not np.isfinite(X).all():
            raise ValueError("contexts contain NaN or infinite values")
        P = None
        if self.probs is not None:
            P = np.asarray(self.probs, dtype=np.float64)
            if P.shape != (n, k) or not np.isfinite(P).all() or (P < 0).any():
                raise ValueError(f"probs must be finite, non-negative, shape {(n, k)}")
            if not np.allclose(P.sum(axis=1), 1.0, atol=1e-6):
                raise ValueError("each row of probs must sum to 1")
            if not np.allclose(P[np.arange(n), a], p, rtol=1e-6, atol=1e-12):
                raise ValueError("probs at the chosen arms differ from the propensities")
        for name, value in (("contexts", X), ("arms", a), ("propensities", p), ("rewards", r)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "n_arms", k)
        object.__setattr__(self, "probs", P)

    def __len__(self) -> int:
        return self.arms.shape[0]


@dataclass(frozen=True)
class Estimate:
    """One estimator's value and its bootstrap interval (``ci`` = (low, high))."""

    estimator: str
    value: float
    ci: tuple[float, float]


@dataclass(frozen=True)
class Support:
    """How much of the target's probability the log cannot see.

    ``unsupported_mass``: mean over rounds of the target's probability on arms whose logged
    probability was 0 (needs the log's ``probs``; without them, only arms the log never
    chose are known to be unsupported, so it is a lower bound). ``untried_arms``: arms the
    target uses that the log never chose. ``warnings``: sentences for people.
    """

    unsupported_mass: float
    untried_arms: tuple[int, ...]
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class Evaluation:
    """The estimates of one target on one log, with the effective sample size and support."""

    estimates: dict[str, Estimate]
    ess: float
    support: Support
    n: int


class RidgeRewardModel:
    """q̂(x, k) = c_k + xᵀβ_k: per arm, a ridge regression of r on x over the rounds where
    arm k was chosen. An arm the log never chose predicts the mean logged reward.

    The penalty on β_k is ``lam`` times the mean diagonal of the arm's centred XᵀX, so it
    does not depend on the contexts' scale; the intercept c_k is not penalized. Both matter
    on adaptive logs: a rarely chosen arm was chosen where it looked good, and shrinking its
    slope (or its intercept towards the mean reward of the logger's favourites) carries that
    optimism to every other context. On the synthetic check (offline.validate) lam = 1 left
    DM 0.026 too high for a uniform target, lam = 0.01 left 0.001.

    >>> X, arms = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 0, 1, 1])
    >>> m = RidgeRewardModel(lam=1e-9).fit(X, arms, np.array([0.0, 1.0, 5.0, 6.0]), n_arms=2)
    >>> m.predict(np.array([[0.0], [3.0]])).round(6).tolist()  # arm 0: r = x, arm 1: r = x + 3
    [[0.0, 3.0], [3.0, 6.0]]
    """

    def __init__(self, lam: float = 0.01) -> None:
        if not lam > 0:
            raise ValueError(f"lam must be positive, got {lam!r}")
        self.lam = float(lam)
        self.coef: np.ndarray | None = None  # β, (K, d)
        self.intercept: np.ndarray | None = None  # c, (K,)

    def fit(
        self, contexts: np.ndarray, arms: np.ndarray, rewards: np.ndarray, n_arms: int
    ) -> RidgeRewardModel:
        X = np.asarray(contexts, dtype=np.float64)
        self.coef = np.zeros((n_arms, X.shape[1]))
        self.intercept = np.full(n_arms, rewards.mean() if rewards.size else 0.0)
        for k in range(n_arms):
            rows = arms == k
            if rows.any():
                x_mean, r_mean = X[rows].mean(axis=0), rewards[rows].mean()
                Xc, rc = X[rows] - x_mean, rewards[rows] - r_mean
                gram = Xc.T @ Xc
                penalty = self.lam * np.trace(gram) / X.shape[1] + 1e-12  # > 0 for one row
                self.coef[k] = np.linalg.solve(gram + penalty * np.eye(X.shape[1]), Xc.T @ rc)
                self.intercept[k] = r_mean - x_mean @ self.coef[k]
        return self

    def predict(self, contexts: np.ndarray) -> np.ndarray:
        """q̂ for every row and arm: (N, K)."""
        if self.coef is None or self.intercept is None:
            raise ValueError("fit the reward model first")
        return np.asarray(contexts, dtype=np.float64) @ self.coef.T + self.intercept


def importance_weights(log: BanditLog, target: np.ndarray) -> np.ndarray:
    """w_i = π(a_i|x_i) / p_i."""
    pi = check_target(log, target)
    return pi[np.arange(len(log)), log.arms] / log.propensities


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size (Σw)²/Σw² (N for equal weights; 0 if all are 0)."""
    w = np.asarray(weights, dtype=np.float64)
    sq = float(np.dot(w, w))
    return float(w.sum()) ** 2 / sq if sq > 0 else 0.0


def estimator_terms(
    log: BanditLog, target: np.ndarray, q: np.ndarray, q_dr: np.ndarray | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-round (numerator, denominator) terms: estimator value = Σnum / Σden.

    ``q`` is q̂ at the logged contexts, (N, K), for DM; ``q_dr`` the one for DR (default
    ``q``; see the module docstring for why DR's is cross-fitted).
    """
    pi = check_target(log, target)
    n = len(log)
    w = importance_weights(log, pi)
    dm = np.einsum("ik,ik->i", pi, q)
    q_dr = q if q_dr is None else q_dr
    dr = np.einsum("ik,ik->i", pi, q_dr) + w * (log.rewards - q_dr[np.arange(n), log.arms])
    ones = np.ones(n)
    return {
        "dm": (dm, ones),
        "ips": (w * log.rewards, ones),
        "snips": (w * log.rewards, w),
        "dr": (dr, ones),
    }


def bootstrap_ci(
    terms: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    level: float = 0.95,
    n_boot: int = 1000,
    rng: np.random.Generator | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of Σnum/Σden for every entry of ``terms``, all from the
    same ``n_boot`` resamples of the rounds (see the module docstring)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    rng = np.random.default_rng(0) if rng is None else rng
    n = len(next(iter(terms.values()))[0])
    stats = {name: np.empty(n_boot) for name in terms}
    chunk = max(1, _BOOT_CELLS // max(n, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, n_boot, chunk):
            idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
            for name, (num, den) in terms.items():
                stats[name][start : start + idx.shape[0]] = num[idx].sum(1) / den[idx].sum(1)
    tail = (1 - level) / 2
    out = {}
    for name, values in stats.items():
        finite = values[np.isfinite(values)]
        lo, hi = np.quantile(finite, [tail, 1 - tail]) if finite.size else (np.nan, np.nan)
        out[name] = (float(lo), float(hi))
    return out


def check_support(
    log: BanditLog, target: np.ndarray, arm_names: tuple[str, ...] | None = None
) -> Support:
    """Target probability the log cannot see; see :class:`Support`."""
    pi = check_target(log, target)
    n, k = pi.shape
    names = arm_names or tuple(str(j) for j in range(k))
    chosen = np.bincount(log.arms, minlength=k) > 0
    untried = tuple(int(j) for j in np.flatnonzero((pi.sum(axis=0) > 0) & ~chosen))
    if log.probs is None:
        unsupported = float(pi[:, ~chosen].sum() / n)
        where = "on arms the log never chose"
    else:
        per_row = (pi * (log.probs == 0)).sum(axis=1)
        unsupported = float(per_row.mean())
        where = f"in {int((per_row > 0).sum())} of {n} rounds"
    warnings = []
    if unsupported > 0:
        never = f"; never chosen: {', '.join(names[j] for j in untried)}" if untried else ""
        warnings.append(
            f"the target gives {unsupported:.2%} of its probability to arms the logger could "
            f"not choose ({where}{never}): IPS and DR cannot see that reward"
        )
    return Support(unsupported, untried, tuple(warnings))


def evaluate(
    log: BanditLog,
    target: np.ndarray,
    *,
    level: float = 0.95,
    n_boot: int = 1000,
    lam: float = 0.01,
    seed: int = 0,
    q: np.ndarray | None = None,
    q_dr: np.ndarray | None = None,
    arm_names: tuple[str, ...] | None = None,
) -> Evaluation:
    """Every estimator of ``ESTIMATORS`` with its bootstrap interval, the ESS and support.

    ``q``: q̂ at the logged contexts (N, K) for DM, and ``q_dr`` for DR (default ``q``).
    Without ``q``, a :class:`RidgeRewardModel` with ``lam``: fitted on the whole log for DM,
    cross-fitted for DR. ``seed`` seeds the bootstrap.
    """
    pi = check_target(log, target)
    if q is None:
        q = reward_model_predictions(log, lam)
        q_dr = cross_fitted_predictions(log, lam) if q_dr is None else q_dr
    terms = estimator_terms(log, pi, q, q_dr)
    cis = bootstrap_ci(terms, level=level, n_boot=n_boot, rng=np.random.default_rng(seed))
    with np.errstate(invalid="ignore", divide="ignore"):
        values = {name: float(num.sum() / den.sum()) for name, (num, den) in terms.items()}
    estimates = {name: Estimate(name, values[name], cis[name]) for name in ESTIMATORS}
    ess = effective_sample_size(importance_weights(log, pi))
    return Evaluation(estimates, ess, check_support(log, pi, arm_names), len(log))


def reward_model_predictions(log: BanditLog, lam: float = 0.01) -> np.ndarray:
    """q̂ at the logged contexts from a ridge model fitted on the log: (N, K)."""
    model = RidgeRewardModel(lam).fit(log.contexts, log.arms, log.rewards, log.n_arms)
    return model.predict(log.contexts)


def cross_fitted_predictions(log: BanditLog, lam: float = 0.01, folds: int = 5) -> np.ndarray:
    """q̂ at the logged contexts, each round's from a ridge model fitted on the other folds:
    (N, K). Rounds with the same context share a fold, so a context that repeats in the log
    (a pool replayed many times, a prompt sent again) is never predicted from itself. With
    fewer than two distinct contexts there is nothing to hold out: the in-sample fit."""
    _, group = np.unique(log.contexts, axis=0, return_inverse=True)
    group = group.reshape(-1)
    n_groups = int(group.max()) + 1 if group.size else 0
    folds = min(folds, n_groups)
    if folds < 2:
        return reward_model_predictions(log, lam)
    fold = np.random.default_rng(0).permutation(n_groups)[group] % folds
    q = np.empty((len(log), log.n_arms))
    for f in range(folds):
        held, kept = fold == f, fold != f
        model = RidgeRewardModel(lam).fit(
            log.contexts[kept], log.arms[kept], log.rewards[kept], log.n_arms
        )
        q[held] = model.predict(log.contexts[held])
    return q


def check_target(log: BanditLog, target: Any) -> np.ndarray:
    """The target matrix as (N, K) float64 probabilities; ValueError if it is not one."""
    pi = np.asarray(target, dtype=np.float64)
    shape = (len(log), log.n_arms)
    if pi.shape != shape:
        raise ValueError(f"target probabilities must have shape {shape}, got {pi.shape}")
    if not np.isfinite(pi).all() or (pi < 0).any():
        raise ValueError("target probabilities must be finite and non-negative")
    if not np.allclose(pi.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("each row of the target probabilities must sum to 1")
    return pi


def _vector(values: Any, n: int, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (n,):
        raise ValueError(f"{what} must have shape ({n},), got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return v
