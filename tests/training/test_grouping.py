"""Batch-level vs per-instance RM choice (no models needed)."""

import numpy as np

from laser_serve.selector import make_policy
from laser_serve.training.loop import choose_groups

ARMS = ["a", "b", "c"]


def test_batch_grouping_is_one_choice_on_the_mean_context():
    X = np.arange(12, dtype=float).reshape(4, 3)
    policy = make_policy("round-robin", ARMS, 3)
    ((arms, members, x),) = choose_groups(policy, X, "batch")
    assert arms == (0,) and members == [0, 1, 2, 3]
    np.testing.assert_allclose(x, X.mean(axis=0))
    assert [s.selections for s in policy.stats()] == [1, 0, 0]


def test_instance_grouping_partitions_the_batch_by_arm():
    X = np.random.default_rng(0).standard_normal((5, 3))
    policy = make_policy("round-robin", ARMS, 3)  # arms 0, 1, 2, 0, 1 for the five prompts
    groups = choose_groups(policy, X, "instance")
    assert [(arms, members) for arms, members, _ in groups] == [
        ((0,), [0, 3]),
        ((1,), [1, 4]),
        ((2,), [2]),
    ]
    for _, members, x in groups:
        np.testing.assert_allclose(x, X[members].mean(axis=0))
    assert [s.selections for s in policy.stats()] == [2, 2, 1]  # one choice per prompt


def test_instance_grouping_with_ensemble_is_one_group():
    X = np.ones((3, 2))
    ((arms, members, _),) = choose_groups(make_policy("ensemble", ARMS, 2), X, "instance")
    assert arms == (0, 1, 2) and members == [0, 1, 2]
