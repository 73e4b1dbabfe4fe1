"""Batch-level vs per-instance RM choice (no models needed)."""

import numpy as np

from laser_serve.selector import make_policy
from laser_serve.training.loop import choose_groups, reward_selector

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


def test_a_loss_the_selector_refuses_teaches_nothing_and_is_logged():
    """-loss rewards go through the same finite-state guard as served feedback."""
    policy = make_policy("linucb", ARMS, 3)  # reward_norm none: rewards reach A⁻¹, b, θ as is
    x = np.array([1.0, 0.5, 0.0])
    assert reward_selector(policy, (1,), x, -0.25, {}) == -0.25
    before = policy.state_dict()["arrays"]
    for bad in (float("nan"), 1e308):
        record: dict = {}
        assert reward_selector(policy, (1,), x, bad, record) is None
        assert "selector_refused" in record
    after = policy.state_dict()["arrays"]
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
