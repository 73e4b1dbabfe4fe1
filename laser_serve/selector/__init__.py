"""Bandit selector core: which reward model(s) score a request's candidates.

Policies (all behind :class:`Policy`): :class:`LinUCB` (disjoint arms, LASeR's selector,
optionally with an exploration floor), :class:`LinTS` (linear Thompson sampling on the same
statistics) and the baselines random, fixed:<rm>, round-robin, epsilon-greedy and ensemble.
Build one from a spec string with :func:`make_policy`. ``decide(x)`` returns a
:class:`Decision`: the chosen arms and p(·|x), the probability the policy gave every arm, for
the decision log and off-policy evaluation (estimators in :mod:`laser_serve.selector.ope`,
replay on logged and full-information data in :mod:`laser_serve.selector.offline`).
:func:`warm_start` and :func:`warm_start_table` initialize a policy from a prior. Only numpy
and scipy are used.

Locking: each policy owns one ``threading.RLock``. ``decide``/``choose`` and their batch
forms, ``select``, ``update``, ``ucb``/``width``, ``stats``, the ``theta``/``a_inv`` copies,
``state_dict``, ``load_state_dict``, ``save``/``load`` take it for the whole read or
read-modify-write of the state, so concurrent calls from server threads behave as some
sequential order of the same calls. Input checks run before the lock is taken; ``save``
copies the state under the lock and writes the file outside it. BLAS releases the GIL, so a
long LinUCB select at large d blocks other callers of the same policy only.

No update can make the state non-finite: ``update`` checks what it would produce and raises
ValueError, changing nothing, if any statistic would overflow.
"""

from laser_serve.selector.base import ArmStats, Decision, Policy
from laser_serve.selector.baselines import (
    EnsemblePolicy,
    EpsilonGreedyPolicy,
    FixedPolicy,
    RandomPolicy,
    RoundRobinPolicy,
    combine_scores,
)
from laser_serve.selector.context import batch_context
from laser_serve.selector.factory import make_policy
from laser_serve.selector.lints import LinTS, thompson_probs
from laser_serve.selector.linucb import LinUCB
from laser_serve.selector.normalizer import RewardNormalizer
from laser_serve.selector.state import SelectorStateError
from laser_serve.selector.warm import warm_start, warm_start_table

__all__ = [
    "ArmStats",
    "Decision",
    "EnsemblePolicy",
    "EpsilonGreedyPolicy",
    "FixedPolicy",
    "LinTS",
    "LinUCB",
    "Policy",
    "RandomPolicy",
    "RewardNormalizer",
    "RoundRobinPolicy",
    "SelectorStateError",
    "batch_context",
    "combine_scores",
    "make_policy",
    "thompson_probs",
    "warm_start",
    "warm_start_table",
]
