"""Bandit selector core: which reward model(s) score a request's candidates.

Policies (all behind :class:`Policy`): :class:`LinUCB` (disjoint arms, LASeR's selector) and
the baselines random, fixed:<rm>, round-robin, epsilon-greedy and ensemble. Build one from
a spec string with :func:`make_policy`. Only numpy and scipy are used.

Locking: each policy owns one ``threading.RLock``. ``choose``/``choose_batch``/``select``/
``decide``, ``update``, ``ucb``/``width``, ``stats``, the ``theta``/``a_inv`` copies,
``state_dict``, ``load_state_dict`` and ``save``/``load`` take it for the whole read or
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
from laser_serve.selector.linucb import LinUCB
from laser_serve.selector.normalizer import RewardNormalizer
from laser_serve.selector.state import SelectorStateError

__all__ = [
    "ArmStats",
    "Decision",
    "EnsemblePolicy",
    "EpsilonGreedyPolicy",
    "FixedPolicy",
    "LinUCB",
    "Policy",
    "RandomPolicy",
    "RewardNormalizer",
    "RoundRobinPolicy",
    "SelectorStateError",
    "batch_context",
    "combine_scores",
    "make_policy",
]
