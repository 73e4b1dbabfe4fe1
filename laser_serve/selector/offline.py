"""Policies replayed on logged data: target probabilities for off-policy evaluation, simulated
logging on a full-information table, and the check of the estimators against the truth.

A full-information table gives every arm's reward for every context: contexts X (N, d) and
rewards R (N, K) (the best-of-n benches' cached pools are such tables). On it the value of a
target is known exactly, so the estimators of ``ope`` can be checked: :func:`validate` logs
with a randomized policy, estimates every target's value from the log alone and compares
each estimate with the truth.

A learning target (LinUCB, LinTS, ε-greedy) is replayed online over the log, as Li et al.
(2011) replay a policy on logged data: at round i it decides on x_i, which gives π(·|x_i),
and it learns (x_i, a_i, r_i) only when its own choice equals the logged arm a_i. For a
uniformly random logger the accepted rounds are a fair sample of what the target would have
seen; for any logger, π(·|x_i) depends only on rounds before i, so the estimators stay
unbiased for the value of exactly these π(·|x_i), and that is the estimand (and, in
:func:`validate`, the truth). The approximation to state: the replayed target learns from
the accepted rounds only (about N·mean π(a_i|x_i) of them), so it is the value of a target
that has seen fewer rounds than the log holds, on contexts tilted towards where it agreed
with the logger.

>>> X, R = synthetic_table(500, d=4, k=3, seed=0)
>>> log = simulate_log("linucb:epsilon=0.2", X, R, ["a", "b", "c"], seed=1)
>>> pi = target_probs("random", log, ["a", "b", "c"])
>>> dr = evaluate(log, pi, n_boot=200).estimates["dr"]
>>> dr.ci[0] <= true_value(pi, R) <= dr.ci[1]
True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from laser_serve.selector.base import Policy
from laser_serve.selector.factory import make_policy
from laser_serve.selector.ope import ESTIMATORS, BanditLog, evaluate

LOGGED = "logged"  # the target spec for the logging policy itself
LOGGERS = ("lints:alpha=0.5", "linucb:epsilon=0.1,band=0.02")
TARGETS = ("random", "round-robin", "linucb", "linucb:alpha=1.0", "lints:alpha=0.2", LOGGED)


def target_probs(
    target: str, log: BanditLog, arms: Sequence[str], *, seed: int = 0, **policy_kwargs: Any
) -> np.ndarray:
    """π(·|x_i) of a target on every logged round: (N, K).

    ``target``: "logged" (the logger's own probabilities, which the log must carry) or any
    :func:`make_policy` spec but ``ensemble`` (random, fixed:<rm>, round-robin, linucb[:…],
    lints[:…], epsilon-greedy[:ε]), built with ``seed`` and ``policy_kwargs`` and replayed
    over the log as the module docstring says.
    """
    if target == LOGGED:
        if log.probs is None:
            raise ValueError("target 'logged' needs the logger's p(·|x) for every round")
        return log.probs
    if target.strip() == "ensemble":
        raise ValueError("ensemble scores with every RM: one arm's reward cannot value it")
    policy = make_policy(target, arms, log.contexts.shape[1], seed=seed, **policy_kwargs)
    if len(policy.arms) != log.n_arms:
        raise ValueError(f"the log has {log.n_arms} arms, the target {len(policy.arms)}")
    probs = np.empty((len(log), log.n_arms))
    for i, (x, a, r) in enumerate(zip(log.contexts, log.arms, log.rewards, strict=True)):
        decision = policy.decide(x)
        probs[i] = decision.probs
        if decision.arms[0] == a:
            policy.update(int(a), x, float(r))
    return probs


def simulate_log(
    logger: Policy | str,
    contexts: np.ndarray,
    table: np.ndarray,
    arms: Sequence[str] | None = None,
    *,
    seed: int = 0,
    **policy_kwargs: Any,
) -> BanditLog:
    """Run ``logger`` over the rows of a full-information table in order: it decides on each
    context, sees the reward of its chosen arm only and learns from it. Returns the log with
    the logger's full p(·|x) per round."""
    X, R = _table(contexts, table)
    names = _arm_names(arms, R.shape[1])
    if isinstance(logger, str):
        logger = make_policy(logger, names, X.shape[1], seed=seed, **policy_kwargs)
    n = X.shape[0]
    chosen, probs = np.empty(n, dtype=np.int64), np.empty((n, R.shape[1]))
    for i, x in enumerate(X):
        decision = logger.decide(x)
        chosen[i], probs[i] = decision.arms[0], decision.probs
        logger.update(chosen[i], x, float(R[i, chosen[i]]))
    rows = np.arange(n)
    return BanditLog(X, chosen, probs[rows, chosen], R[rows, chosen], R.shape[1], probs)


def true_value(target: np.ndarray, table: np.ndarray) -> float:
    """A target's value on a full-information table: mean over rounds of Σ_k π(k|x_i)·R_ik."""
    return float(np.einsum("ik,ik->i", target, table).mean())


@dataclass(frozen=True)
class Validation:
    """Rows of (logger, target, estimator, seed, estimate, ci, truth), and for each estimator
    the share of rows whose interval holds the truth (``coverage``) and the mean error of the
    estimate (``bias``)."""

    rows: list[dict[str, Any]]
    coverage: dict[str, float]
    bias: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """``{"coverage": DR's coverage, "rows": [...], ...}``, as laser-bench prints it."""
        return {
            "coverage": self.coverage["dr"],
            "coverage_by_estimator": self.coverage,
            "bias_by_estimator": self.bias,
            "rows": self.rows,
        }


def validate(
    contexts: np.ndarray,
    table: np.ndarray,
    arms: Sequence[str] | None = None,
    *,
    loggers: Iterable[str] = LOGGERS,
    targets: Iterable[str] = TARGETS,
    seeds: Iterable[int] = range(10),
    rounds: int = 1000,
    level: float = 0.95,
    n_boot: int = 1000,
    lam: float = 0.01,
    **policy_kwargs: Any,
) -> Validation:
    """Check the estimators against the truth on a full-information table (X, R).

    For every seed and logger: draw ``rounds`` rows in a seeded random order (the table again
    in a new order when it has fewer rows), log them with the logger (seeded too), then for
    every target compute π(·|x_i) by :func:`target_probs`, estimate its value from the log
    with every estimator and compare it with :func:`true_value` on the same rows.
    ``policy_kwargs`` go to every policy (e.g. ``normalize=True``).
    """
    X, R = _table(contexts, table)
    names = _arm_names(arms, R.shape[1])
    loggers, targets = list(loggers), list(targets)
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        order = _order(X.shape[0], rounds, seed)
        Xs, Rs = X[order], R[order]
        for logger in loggers:
            log = simulate_log(logger, Xs, Rs, names, seed=seed, **policy_kwargs)
            for target in targets:
                pi = target_probs(target, log, names, seed=seed + 1, **policy_kwargs)
                result = evaluate(log, pi, level=level, n_boot=n_boot, lam=lam, seed=seed)
                truth = true_value(pi, Rs)
                for name, est in result.estimates.items():
                    rows.append(
                        {
                            "logger": logger,
                            "target": target,
                            "estimator": name,
                            "seed": int(seed),
                            "estimate": est.value,
                            "ci": list(est.ci),
                            "truth": truth,
                            "ess": result.ess,
                            "unsupported": result.support.unsupported_mass,
                        }
                    )
    coverage, bias = {}, {}
    for name in ESTIMATORS:
        mine = [row for row in rows if row["estimator"] == name]
        coverage[name] = float(np.mean([r["ci"][0] <= r["truth"] <= r["ci"][1] for r in mine]))
        bias[name] = float(np.mean([r["estimate"] - r["truth"] for r in mine]))
    return Validation(rows, coverage, bias)


def synthetic_table(
    n: int = 5000, d: int = 8, k: int = 4, *, noise: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A linear-contextual full-information table: contexts x = [1, z] with z ~ N(0, I/(d−1)),
    rewards R_ik = w_kᵀx_i + noise·ε_ik with w_k = [0.5 + 0.1·u_k, 0.5·v_k] (u, v standard
    normal), so every arm is best somewhere and a contextual policy beats a fixed one."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d - 1)) / np.sqrt(d - 1)
    X = np.hstack([np.ones((n, 1)), z])
    W = np.hstack([0.5 + 0.1 * rng.standard_normal((k, 1)), 0.5 * rng.standard_normal((k, d - 1))])
    return X, X @ W.T + noise * rng.standard_normal((n, k))


def _order(n: int, rounds: int, seed: int) -> np.ndarray:
    if rounds < 1:
        raise ValueError(f"rounds must be positive, got {rounds}")
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(n) for _ in range(-(-rounds // n))])[:rounds]


def _table(contexts: Any, table: Any) -> tuple[np.ndarray, np.ndarray]:
    X, R = np.asarray(contexts, dtype=np.float64), np.asarray(table, dtype=np.float64)
    if X.ndim != 2 or R.ndim != 2 or X.shape[0] != R.shape[0] or X.shape[0] == 0:
        raise ValueError(
            f"need contexts (N, d) and a reward table (N, K) with N > 0, got {X.shape} and "
            f"{R.shape}"
        )
    if not (np.isfinite(X).all() and np.isfinite(R).all()):
        raise ValueError("contexts and rewards must be finite")
    return X, R


def _arm_names(arms: Sequence[str] | None, k: int) -> tuple[str, ...]:
    names = tuple(arms) if arms is not None else tuple(f"arm{j}" for j in range(k))
    if len(names) != k:
        raise ValueError(f"{len(names)} arm names for a table of {k} arms")
    return names


def warm_start_regret(
    contexts: np.ndarray,
    table: np.ndarray,
    spec: str = "linucb",
    arms: Sequence[str] | None = None,
    *,
    warm_rows: int = 200,
    rounds: int = 200,
    prior_rounds: float | None = None,
    seeds: Iterable[int] = range(10),
    **policy_kwargs: Any,
) -> dict[str, Any]:
    """Does a warm start pay off on rows it was not warmed on? For every seed the rows are
    shuffled, the first ``warm_rows`` are the prior (full information, through
    :func:`warm_start_table` with ``prior_rounds``) and the next ``rounds`` are played online
    by a cold and by a warm-started ``spec`` (same seed). Returns the summed regret against
    the best arm's realized reward per seed, its mean and standard error, for each, and the
    same of their paired difference (``"warm - cold"``, negative when the warm start pays)."""
    from laser_serve.selector.warm import warm_start_table

    X, R = _table(contexts, table)
    names = _arm_names(arms, R.shape[1])
    if warm_rows < 1 or rounds < 1 or warm_rows + rounds > X.shape[0]:
        raise ValueError(
            f"need warm_rows + rounds <= {X.shape[0]} rows (both positive), got "
            f"{warm_rows} + {rounds}"
        )
    regret: dict[str, list[float]] = {"cold": [], "warm": []}
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(X.shape[0])
        prior, play = order[:warm_rows], order[warm_rows : warm_rows + rounds]
        for kind in regret:
            policy = make_policy(spec, names, X.shape[1], seed=seed, **policy_kwargs)
            if kind == "warm":
                warm_start_table(policy, X[prior], R[prior], rounds=prior_rounds)
            total = 0.0
            for i in play:
                k = policy.decide(X[i]).arms[0]
                policy.update(k, X[i], float(R[i, k]))
                total += float(R[i].max() - R[i, k])
            regret[kind].append(total)
    out: dict[str, Any] = {"spec": spec, "warm_rows": warm_rows, "rounds": rounds}
    # Cold and warm play the same rows with the same seed: their per-seed difference is paired.
    regret["warm - cold"] = list(np.subtract(regret["warm"], regret["cold"]))
    for kind, values in regret.items():
        v = np.asarray(values, dtype=np.float64)
        se = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
        out[kind] = {"regret": v.tolist(), "mean": float(v.mean()), "se": se}
    return out
