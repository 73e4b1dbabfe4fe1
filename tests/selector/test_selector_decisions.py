"""Policy.decide: the choice with p(·|x) and the propensity (one-hot for these policies)."""

from __future__ import annotations

import numpy as np
import pytest

from laser_serve.selector import make_policy

ARMS = ["a", "b", "c"]


@pytest.mark.parametrize("spec", ["linucb", "fixed:b", "round-robin", "ensemble"])
def test_decide_is_choose_with_its_probabilities(spec):
    p, q = make_policy(spec, ARMS, 4), make_policy(spec, ARMS, 4)
    rng = np.random.default_rng(0)
    for _ in range(6):
        x = rng.standard_normal(4)
        d = p.decide(x)
        assert d.arms == q.choose(x)
        assert d.probs.shape == (3,) and d.propensity == 1.0
        expected = np.zeros(3)
        expected[list(d.arms)] = 1.0
        np.testing.assert_array_equal(d.probs, expected)
        p.update(d.arms[0], x, 0.5)
        q.update(d.arms[0], x, 0.5)
    # decide counts selections as choose does
    assert [s.selections for s in p.stats()] == [s.selections for s in q.stats()]
