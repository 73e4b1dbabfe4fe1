"""The cheap half of a best-of-n bench: every selection method replayed over cached pools.

Each seed shuffles the rows into one stream; every method sees that same stream, chooses a
candidate per row through the pipeline's own `choose_candidate`, and (for the learners)
learns from the reward an application would send. The pools are fixed, so methods differ
only in how they choose.

Methods: greedy, oracle (the best candidate in the pool: a bound, not a method), random,
round-robin, rm:<name> (one RM always), ensemble (z-scored mean of all RMs), laser (LinUCB
learning from the task score of its pick), laser-nll (LinUCB learning from the pick's mean
token log-probability, the paper's label-free reward), and policy:<spec> for any selector
spec (e.g. policy:lints, policy:linucb:alpha=0.5) learning from the task score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from laser_bench.replay import Pool

GREEDY, ORACLE, RANDOM, ROUND_ROBIN = "greedy", "oracle", "random", "round-robin"
ENSEMBLE, LASER, LASER_NLL = "ensemble", "laser", "laser-nll"
RM_PREFIX, POLICY_PREFIX = "rm:", "policy:"
LEARNERS = (LASER, LASER_NLL)


def default_methods(rm_names: Sequence[str]) -> list[str]:
    return [
        GREEDY,
        RANDOM,
        ROUND_ROBIN,
        *(RM_PREFIX + r for r in rm_names),
        ENSEMBLE,
        LASER,
        LASER_NLL,
        ORACLE,
    ]


@dataclass(frozen=True)
class Replay:
    """One method over one stream: per round (in stream order) the row index, the chosen
    candidate's task score, the RMs that scored it and their seconds."""

    method: str
    rows: np.ndarray  # (T,) indices into the pool list
    reward: np.ndarray  # (T,) task score of the pick, in [0, 1]
    rm_seconds: np.ndarray  # (T,)
    arms: list[tuple[str, ...]]  # RMs used per round


@dataclass(frozen=True)
class Options:
    alpha: float = 0.1  # LinUCB's exploration (the paper's value, not tuned here)
    normalize: bool = True  # unit-norm contexts, as the server's default selector


def replay(
    pools: Sequence[Pool],
    rm_names: Sequence[str],
    methods: Sequence[str],
    seed: int,
    options: Options = Options(),
) -> dict[str, Replay]:
    """Every method over the stream that `seed` shuffles."""
    order = np.random.default_rng(seed).permutation(len(pools))
    return {m: _run(m, pools, list(rm_names), order, seed, options) for m in methods}


def _run(
    method: str,
    pools: Sequence[Pool],
    rm_names: list[str],
    order: np.ndarray,
    seed: int,
    options: Options,
) -> Replay:
    from laser_serve.pipeline import choose_candidate

    rewards, seconds, arms = [], [], []
    pick = _picker(method, rm_names, len(pools[0].context) if pools else 1, seed, options)
    for i in order:
        pool = pools[i]
        if method == GREEDY:
            names: tuple[str, ...] = ()
            reward = pool.greedy_quality
        elif method == ORACLE:
            names, reward = (), float(pool.quality.max())
        else:
            names = pick.choose(pool) if pick else ()
            index, _ = choose_candidate(pool.scores, names)
            reward = float(pool.quality[index])
            if pick:
                pick.learn(pool, names, index, reward)
        rewards.append(reward)
        seconds.append(sum(pool.rm_seconds[n] for n in names))
        arms.append(names)
    return Replay(method, order, np.asarray(rewards), np.asarray(seconds), arms)


class _Picker:
    """Chooses the RMs of a round and learns from its outcome."""

    def __init__(self, policy: Any, rm_names: list[str], reward: str) -> None:
        self.policy, self.rm_names, self.reward = policy, rm_names, reward

    def choose(self, pool: Pool) -> tuple[str, ...]:
        return tuple(self.rm_names[a] for a in self.policy.choose(pool.context))

    def learn(self, pool: Pool, names: tuple[str, ...], index: int, task_score: float) -> None:
        if len(names) != 1:
            return  # ensemble selections credit no single RM (as the server)
        reward = task_score if self.reward == "task" else float(pool.mean_logprob[index])
        if np.isfinite(reward):
            self.policy.update(names[0], pool.context, reward)


def _picker(
    method: str, rm_names: list[str], dim: int, seed: int, options: Options
) -> _Picker | None:
    from laser_serve.selector import make_policy

    def policy(spec: str, reward_norm: str = "none") -> Any:
        return make_policy(
            spec,
            rm_names,
            dim,
            seed=seed,
            alpha=options.alpha,
            normalize=options.normalize,
            reward_norm=reward_norm,
        )

    if method in (GREEDY, ORACLE):
        return None
    if method == LASER:
        return _Picker(policy("linucb"), rm_names, "task")
    if method == LASER_NLL:
        return _Picker(policy("linucb", "quantile"), rm_names, "nll")
    if method in (RANDOM, ROUND_ROBIN, ENSEMBLE):
        return _Picker(policy(method), rm_names, "task")
    if method.startswith(RM_PREFIX):
        return _Picker(policy("fixed:" + method[len(RM_PREFIX) :]), rm_names, "task")
    if method.startswith(POLICY_PREFIX):
        return _Picker(policy(method[len(POLICY_PREFIX) :]), rm_names, "task")
    raise ValueError(f"unknown method {method!r}")
