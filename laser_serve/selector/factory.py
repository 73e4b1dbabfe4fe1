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
from laser_serve.selector.lints import LinTS
from laser_serve.selector.linucb import LinUCB

SPECS = (
    "linucb[:alpha=A,epsilon=E,band=B], lints[:alpha=A], random, fixed:<rm>, round-robin, "
    "epsilon-greedy[:<eps>], ensemble"
)
_LINUCB_KWARGS = frozenset(
    {"alpha", "lam", "normalize", "project_to", "reward_norm", "window", "kernel"}
)
_SHARED_KWARGS = ("reward_norm", "window")  # the baselines normalize rewards too
_OPTIONS = {"linucb": ("alpha", "epsilon", "band"), "lints": ("alpha",)}
_RIDGE = {"linucb": LinUCB, "lints": LinTS}


def make_policy(
    spec: str, arms: Sequence[str], dim: int, seed: int = 0, **linucb_kwargs: Any
) -> Policy:
    """Parse ``spec`` and build the policy.

    ``linucb_kwargs`` are LinUCB's (and LinTS's) keyword arguments; baselines use
    ``reward_norm`` and ``window`` from them and ignore the rest, so one configuration serves
    every spec. ``linucb`` and ``lints`` take options after a colon, ``key=value`` separated
    by commas; an ``alpha`` there overrides the keyword argument.

    >>> make_policy("linucb:epsilon=0.05,band=0.01", ["a", "b"], dim=4).name
    'linucb:epsilon=0.05,band=0.01'
    >>> make_policy("lints:alpha=0.5", ["a", "b"], dim=4, seed=3).alpha
    0.5
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
    if kind in _RIDGE:
        options = _options(spec, arg, _OPTIONS[kind]) if has_arg else {}
        return _RIDGE[kind](arms, dim, seed=seed, **{**linucb_kwargs, **options})
    if not has_arg:
        if kind == "random":
            return RandomPolicy(arms, dim, seed=seed, **shared)
        if kind in ("round-robin", "sequential"):
            return RoundRobinPolicy(arms, dim, seed=seed, **shared)
        if kind == "ensemble":
            return EnsemblePolicy(arms, dim, seed=seed, **shared)
    raise ValueError(f"unknown policy spec {spec!r}; expected one of: {SPECS}")


def _options(spec: str, arg: str, allowed: tuple[str, ...]) -> dict[str, float]:
    """``key=value,...`` options of a spec as floats; ValueError names what is wrong."""
    options: dict[str, float] = {}
    for item in arg.split(","):
        key, eq, value = item.strip().partition("=")
        if key not in allowed or not eq:
            raise ValueError(
                f"bad option {item.strip()!r} in policy spec {spec!r}; "
                f"expected key=value with key one of {list(allowed)}"
            )
        try:
            options[key] = float(value)
        except ValueError:
            raise ValueError(f"bad {key} {value!r} in policy spec {spec!r}") from None
    return options
