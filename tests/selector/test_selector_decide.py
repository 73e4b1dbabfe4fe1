"""decide(x) -> Decision: the chosen arms with p(·|x), for every policy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from laser_serve.selector import Decision, make_policy

ARMS = ["rm_a", "rm_b", "rm_c", "rm_d"]
SPECS = ["linucb", "random", "fixed:rm_c", "round-robin", "epsilon-greedy", "ensemble"]


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(5)


@pytest.mark.parametrize("spec", SPECS)
def test_decision_is_consistent_and_immutable(spec: str) -> None:
    p = make_policy(spec, ARMS, 5, seed=3)
    for i in range(12):
        x = _x(i)
        d = p.decide(x)
        assert isinstance(d, Decision)
        assert d.probs.shape == (4,) and not d.probs.flags.writeable
        if spec == "ensemble":
            assert d.arms == (0, 1, 2, 3) and d.propensity == 1.0
            assert d.probs.tolist() == [1.0] * 4
        else:
            (arm,) = d.arms
            assert d.probs.sum() == pytest.approx(1.0) and (d.probs >= 0).all()
            assert d.propensity == d.probs[arm] > 0
        with pytest.raises(dataclasses.FrozenInstanceError):
            d.propensity = 0.5  # type: ignore[misc]
        p.update(d.arms[0], x, float(i % 3))


@pytest.mark.parametrize("spec", SPECS)
def test_choose_is_decide_arms_and_batches_equal_singles(spec: str) -> None:
    X = np.random.default_rng(1).standard_normal((9, 5))
    single, batch, chooser = (make_policy(spec, ARMS, 5, seed=4) for _ in range(3))
    for p in (single, batch, chooser):
        for arm in range(2):
            p.update(arm, X[arm], 1.0)  # some arms tried, some not
    singles = [single.decide(x) for x in X]
    batched = batch.decide_batch(X)
    assert [d.arms for d in singles] == [d.arms for d in batched] == chooser.choose_batch(X)
    np.testing.assert_array_equal([d.probs for d in singles], [d.probs for d in batched])


def test_deterministic_policies_are_one_hot_and_random_is_uniform() -> None:
    rr = make_policy("round-robin", ARMS, 5)
    assert [rr.decide(_x()).probs.argmax() for _ in range(5)] == [0, 1, 2, 3, 0]
    assert make_policy("fixed:rm_b", ARMS, 5).decide(_x()).probs.tolist() == [0, 1, 0, 0]
    d = make_policy("random", ARMS, 5).decide(_x())
    assert d.probs.tolist() == [0.25] * 4 and d.propensity == 0.25
    lin = make_policy("linucb", ARMS, 5)
    assert lin.decide(_x()).probs.tolist() == [1, 0, 0, 0]  # untried-first: one-hot too
    for arm in range(4):
        lin.update(arm, _x(arm), float(arm == 2))
    d = lin.decide(_x(2))
    assert d.propensity == 1.0 and d.arms == (int(np.argmax(lin.ucb(_x(2)))),)


def test_epsilon_greedy_probs_are_the_exact_mixture() -> None:
    p = make_policy("epsilon-greedy:0.2", ARMS, 5)
    assert p.decide(_x()).probs.tolist() == [1, 0, 0, 0]  # untried arms first, no exploring
    for arm, r in enumerate([0.1, 0.9, 0.5, 0.2]):
        p.update(arm, _x(), r)
    np.testing.assert_allclose(p.decide(_x()).probs, [0.05, 0.85, 0.05, 0.05])
