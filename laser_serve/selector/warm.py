"""Warm start: initialize a policy from logged events or from a full-information table.

Both go through the policy's public ``update`` with a weight, so a warm-started policy is
exactly a policy that saw the prior's events, each counted ``weight`` times: for LinUCB and
LinTS, A_k = λI + w·Σ xxᵀ and b_k = w·Σ r·x over the prior's events of arm k. ``rounds``
says how many rounds the whole prior counts as (None: each event counts once), so a large
but old log can be made to count as, say, 200 rounds and be outweighed by live traffic.
Rewards pass through the policy's reward normalizer, which the prior thereby primes. Counts
(``stats().pulls``) count each prior event once, so arms the prior covers are no longer
"untried". Data whose arms or context dimension do not match the policy is refused with a
ValueError that names the difference.

>>> import numpy as np
>>> from laser_serve.selector import make_policy
>>> p = make_policy("linucb", ["a", "b"], dim=2)
>>> X = np.array([[1.0, 0.0], [0.0, 1.0]])
>>> warm_start_table(p, X, np.array([[1.0, 0.0], [0.0, 1.0]]), rounds=50)
4
>>> p.choose([1.0, 0.0]), p.choose([0.0, 1.0])
((0,), (1,))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from laser_serve.selector.base import Policy


def warm_start(
    policy: Policy,
    contexts: Any,
    arms: Sequence[int | str] | np.ndarray,
    rewards: Any,
    *,
    rounds: float | None = None,
    arm_names: Sequence[str] | None = None,
) -> int:
    """Learn from logged events (x_i, a_i, r_i) in order; returns the number applied.

    ``arms``: arm indices, or names of the policy's arms. ``arm_names``: the log's arm list
    in index order, checked against the policy's (so that index j means the same RM on both
    sides). ``rounds``: the prior counts as this many rounds in all (each of the n events
    weighs rounds/n).
    """
    X = _contexts(policy, contexts)
    _check_names(policy, arm_names)
    r = np.asarray(rewards, dtype=np.float64)
    a = list(np.asarray(arms).tolist())
    if len(a) != X.shape[0] or r.shape != (X.shape[0],):
        raise ValueError(
            f"warm-start data has {X.shape[0]} contexts, {len(a)} arms and {r.size} rewards; "
            "they must be equal in number"
        )
    indices = [_arm(policy, arm) for arm in a]
    weight = _weight(rounds, len(indices))
    for x, k, reward in zip(X, indices, r, strict=True):
        policy.update(k, x, float(reward), weight=weight)
    return len(indices)


def warm_start_table(
    policy: Policy,
    contexts: Any,
    table: Any,
    *,
    rounds: float | None = None,
    arm_names: Sequence[str] | None = None,
) -> int:
    """Learn from a full-information table: every arm's reward R[i, k] at every context x_i,
    row by row; returns the number of events applied (N·K).

    ``rounds``: the table's N rows count as this many rounds, each arm seeing each of them
    (each cell weighs rounds/N). ``arm_names``: the table's column names, checked.
    """
    X = _contexts(policy, contexts)
    _check_names(policy, arm_names)
    R = np.asarray(table, dtype=np.float64)
    k = len(policy.arms)
    if R.ndim != 2 or R.shape[1] != k:
        got = R.shape[1] if R.ndim == 2 else f"shape {R.shape}, not"
        raise ValueError(
            f"warm-start table has {got} arm columns, the policy has {k} arms "
            f"({', '.join(policy.arms)})"
        )
    if R.shape[0] != X.shape[0]:
        raise ValueError(f"warm-start table has {R.shape[0]} rows for {X.shape[0]} contexts")
    weight = _weight(rounds, X.shape[0])
    for x, row in zip(X, R, strict=True):
        for arm, reward in enumerate(row):
            policy.update(arm, x, float(reward), weight=weight)
    return R.size


def _contexts(policy: Policy, contexts: Any) -> np.ndarray:
    X = np.asarray(contexts, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"warm-start contexts must have shape (N, dim), got {X.shape}")
    if X.shape[1] != policy.dim:
        raise ValueError(
            f"warm-start contexts have dimension {X.shape[1]}, the policy's is {policy.dim}"
        )
    return X


def _check_names(policy: Policy, names: Sequence[str] | None) -> None:
    if names is None or tuple(names) == policy.arms:
        return
    missing = [a for a in policy.arms if a not in names]
    extra = [a for a in names if a not in policy.arms]
    what = "; ".join(
        part
        for part in (
            f"missing from the data: {missing}" if missing else "",
            f"not in the policy: {extra}" if extra else "",
            "same arms in another order" if not missing and not extra else "",
        )
        if part
    )
    raise ValueError(
        f"warm-start data has arms {list(names)}, the policy has {list(policy.arms)} ({what})"
    )


def _arm(policy: Policy, arm: int | str) -> int:
    try:
        return policy.arm_index(arm)
    except ValueError:
        raise ValueError(
            f"warm-start arm {arm!r} is not one of the policy's {len(policy.arms)} arms "
            f"{list(policy.arms)}"
        ) from None


def _weight(rounds: float | None, events: int) -> float:
    if rounds is None or events == 0:
        return 1.0
    if not (isinstance(rounds, int | float) and np.isfinite(rounds) and rounds > 0):
        raise ValueError(f"rounds must be a positive number, got {rounds!r}")
    return float(rounds) / events
