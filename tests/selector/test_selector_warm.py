"""Warm start from logged events or a full-information table: it helps on unseen rounds, its
weight means what it says, and mismatched data is refused with the difference named."""

from __future__ import annotations

import numpy as np
import pytest

from laser_serve.selector import LinUCB, make_policy, warm_start, warm_start_table


def _table(env, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n contexts of ``env`` with every arm's observed reward (full information)."""
    rng = np.random.default_rng(seed)
    X = np.stack([env.context(rng)[0] for _ in range(n)])
    R = np.array([[env.reward(k, x, rng) for k in range(env.n_arms)] for x in X])
    return X, R


@pytest.mark.parametrize("spec", ["linucb", "lints:alpha=0.3"])
def test_warm_start_lowers_regret_on_rounds_it_was_not_warmed_on(cluster_env, play, spec):
    env = cluster_env(k=4, d=16, seed=0)
    X, R = _table(env, 100, seed=100)  # the prior's contexts; play() draws others
    cold = make_policy(spec, env.arms, env.d, seed=1)
    table = make_policy(spec, env.arms, env.d, seed=1)
    assert warm_start_table(table, X, R, rounds=100) == 400
    logged = make_policy(spec, env.arms, env.d, seed=1)
    arms = np.random.default_rng(5).integers(0, env.n_arms, 400)  # a uniform logger
    Xl = np.repeat(X, 4, axis=0)
    rewards = R.reshape(-1)[np.arange(400) // 4 * 4 + arms]  # R[i // 4, arms[i]]
    names = [env.arms[a] for a in arms]
    assert warm_start(logged, Xl, names, rewards, arm_names=env.arms) == 400
    regrets = {
        name: play(p, env, 200, seed=7)[2].sum()
        for name, p in {"cold": cold, "table": table, "logged": logged}.items()
    }
    assert regrets["table"] < 0.5 * regrets["cold"], regrets
    assert regrets["logged"] < 0.5 * regrets["cold"], regrets


def test_the_weight_scales_the_sufficient_statistics() -> None:
    rng = np.random.default_rng(0)
    X, r = rng.standard_normal((30, 3)), rng.standard_normal(30)
    p = LinUCB(["a", "b"], 3, lam=1.0)
    warm_start(p, X, np.zeros(30, dtype=int), r, rounds=6)  # each event weighs 6/30
    w = 6 / 30
    A = np.eye(3) + w * X.T @ X
    np.testing.assert_allclose(p.a_inv[0], np.linalg.inv(A), atol=1e-12)
    np.testing.assert_allclose(p.theta[0], np.linalg.solve(A, w * X.T @ r), atol=1e-12)
    np.testing.assert_allclose(p.a_inv[1], np.eye(3))  # arm b saw nothing
    assert [s.pulls for s in p.stats()] == [30, 0]  # counts count events once
    with pytest.raises(ValueError, match="weight must be a finite positive"):
        p.update(0, X[0], 1.0, weight=0.0)


def test_warm_start_refuses_mismatched_arms_and_dimension() -> None:
    p = make_policy("linucb", ["rm_a", "rm_b", "rm_c"], dim=4)
    X = np.zeros((2, 4))
    with pytest.raises(ValueError, match="dimension 5, the policy's is 4"):
        warm_start(p, np.zeros((2, 5)), [0, 1], [1.0, 0.0])
    with pytest.raises(ValueError, match=r"missing from the data: \['rm_c'\]; not in the policy"):
        warm_start(p, X, [0, 1], [1.0, 0.0], arm_names=["rm_a", "rm_b", "rm_x"])
    with pytest.raises(ValueError, match="same arms in another order"):
        warm_start(p, X, [0, 1], [1.0, 0.0], arm_names=["rm_b", "rm_a", "rm_c"])
    with pytest.raises(ValueError, match=r"warm-start arm 'rm_x' is not one of the policy's 3"):
        warm_start(p, X, ["rm_a", "rm_x"], [1.0, 0.0])
    with pytest.raises(ValueError, match=r"warm-start arm 3 is not one of"):
        warm_start(p, X, [0, 3], [1.0, 0.0])
    with pytest.raises(ValueError, match="2 contexts, 1 arms and 2 rewards"):
        warm_start(p, X, [0], [1.0, 0.0])
    with pytest.raises(ValueError, match=r"table has 2 arm columns, the policy has 3 arms \(rm_a"):
        warm_start_table(p, X, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="dimension 3, the policy's is 4"):
        warm_start_table(p, np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="rounds must be a positive number"):
        warm_start_table(p, X, np.zeros((2, 3)), rounds=-1)
    assert p.stats()[0].pulls == 0  # nothing was applied
