"""Build a policy from its spec string (the server's configuration and per-request overrides)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from laser_serve.selector.base import Policy
from laser_serve.selector.baselines import (
    DEFAULT_EPSILON,
    EnsemblePolicy,
    EpsilonGreedyPolicy,
    FixedPolicy,
    RandomPolicy,
    RoundRobinPolicy,
)
from laser_serve.selector.context import check_arms
from laser_serve.selector.linucb import LinUCB

SPECS = "linucb, random, fixed:<rm>, round-robin, epsilon-greedy[:<eps>], ensemble"
_LINUCB_KWARGS = frozenset(
    {"alpha", "lam", "normalize", "project_to", "reward_norm", "window", "kernel"}
)
_SHARED_KWARGS = ("reward_norm", "window")  # the baselines normalize rewards too


def make_policy(
    spec: str, arms: Sequence[str], dim: int, seed: int = 0, **linucb_kwargs: Any
) -> Policy:
    """Parse ``spec`` and build the policy.

    ``linucb_kwargs`` are LinUCB's keyword arguments; baselines use ``reward_norm`` and
    ``window`` from them and ignore the rest, so one configuration serves every spec.
    """
    unknown = sorted(set(linucb_kwargs) - _LINUCB_KWARGS)
    if unknown:
        raise TypeError(f"make_policy() got unexpected keyword arguments {unknown}")
    if not isinstance(spec, str):
        raise ValueError(f"policy spec must be a string, got {spec!r}")
    arms = check_arms(arms)
    shared = {k: linucb_kwargs[k] for k in _SHARED_KWARGS if k in linucb_kwargs}
    kind, has_arg, arg = spec.strip().partition(":")
    if kind == "fixed":
        if not arg:
            raise ValueError(f"policy spec {spec!r} needs a reward model: 'fixed:<rm>'")
        if arg not in arms:
            raise ValueError(f"unknown RM {arg!r} in policy spec {spec!r}; arms are {list(arms)}")
        return FixedPolicy(arms, dim, arg, seed=seed, **shared)
    if kind == "epsilon-greedy":
        epsilon = DEFAULT_EPSILON
        if has_arg:
            try:
                epsilon = float(arg)
            except ValueError:
                raise ValueError(f"bad epsilon {arg!r} in policy spec {spec!r}") from None
        return EpsilonGreedyPolicy(arms, dim, epsilon=epsilon, seed=seed, **shared)
    if not has_arg:
        if kind == "linucb":
            return LinUCB(arms, dim, seed=seed, **linucb_kwargs)
        if kind == "random":
            return RandomPolicy(arms, dim, seed=seed, **shared)
        if kind in ("round-robin", "sequential"):
            return RoundRobinPolicy(arms, dim, seed=seed, **shared)
        if kind == "ensemble":
            return EnsemblePolicy(arms, dim, seed=seed, **shared)
    raise ValueError(f"unknown policy spec {spec!r}; expected one of: {SPECS}")
