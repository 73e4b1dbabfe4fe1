"""LinUCB maths: incremental inverse, batched = single selection, kernels, introspection."""

from __future__ import annotations

import time

import numpy as np
import pytest

from laser_serve.selector import LinUCB

KERNELS = ["full", "sym"]


def _trained(kernel: str, d: int = 24, k: int = 3, n: int = 1000, seed: int = 0, **kw) -> LinUCB:
    return _trained_with_gram(kernel, d, k, n, seed, **kw)[0]


def _trained_with_gram(
    kernel: str, d: int = 24, k: int = 3, n: int = 1000, seed: int = 0, **kw
) -> tuple[LinUCB, np.ndarray]:
    """The policy and Σ x xᵀ per arm, accumulated here (LinUCB keeps only A⁻¹)."""
    rng = np.random.default_rng(seed)
    p = LinUCB([f"a{i}" for i in range(k)], d, kernel=kernel, **kw)
    gram = np.zeros((k, d, d))
    for _ in range(n):
        x, arm = rng.standard_normal(d), int(rng.integers(k))
        p.update(arm, x, float(rng.standard_normal()))
        gram[arm] += np.outer(x, x)
    return p, gram


@pytest.mark.parametrize("kernel", KERNELS)
def test_incremental_inverse_matches_explicit_inverse(kernel):
    lam = 1.0
    p, gram = _trained_with_gram(kernel, lam=lam)
    b = p.state_dict()["arrays"]["b"]
    exact = np.linalg.inv(gram + lam * np.eye(p.context_dim))
    assert np.abs(p.a_inv - exact).max() < 1e-8
    theta_exact = np.einsum("kij,kj->ki", exact, b)
    assert np.abs(p.theta - theta_exact).max() < 1e-8
    assert p.stats()[0].pulls + p.stats()[1].pulls + p.stats()[2].pulls == 1000


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("extra", [{}, {"normalize": True, "project_to": 8, "alpha": 1.0}])
def test_batched_selection_equals_single_calls(kernel, extra):
    p = _trained(kernel, n=300, **extra)
    X = np.random.default_rng(5).standard_normal((200, p.dim))
    before = p.stats()
    batch = p.select_batch(X)
    singles = [p.select(x) for x in X]
    assert batch.tolist() == singles
    assert [t[0] for t in p.choose_batch(X)] == singles
    np.testing.assert_allclose(p.ucb(X), np.stack([p.ucb(x) for x in X]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p.width(X), np.stack([p.width(x) for x in X]), rtol=1e-12)
    after = p.stats()
    assert sum(a.selections - b.selections for a, b in zip(after, before, strict=True)) == 600


@pytest.mark.parametrize("kernel", KERNELS)
def test_empty_batch(kernel):
    p = LinUCB(["a", "b"], 8, project_to=4, kernel=kernel)
    assert p.select_batch(np.zeros((0, 8))).shape == (0,)
    assert p.choose_batch(np.zeros((0, 8))) == []
    assert p.ucb(np.zeros((0, 8))).shape == (0, 2)


def test_untried_arms_come_first_then_ties_go_to_lowest_index():
    X = np.random.default_rng(0).standard_normal((10, 4))
    for kernel in KERNELS:
        batched, single = LinUCB(["a", "b", "c"], 4, kernel=kernel), LinUCB(["a", "b", "c"], 4)
        assert batched.select_batch(X).tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
        assert [single.select(x) for x in X] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
        batched.update("c", X[0], 1.0)  # c is tried: a and b, selected least, still come first
        assert [batched.select(x) for x in X[:3]] == [1, 0, 1]
        for arm in "abc":
            single.update(arm, X[0], 0.0)
        assert single.select_batch(X).tolist() == [0] * 10  # all tried, all tied


def test_kernels_agree():
    full, sym = _trained("full", n=500), _trained("sym", n=500)
    np.testing.assert_allclose(full.a_inv, sym.a_inv, atol=1e-10)
    np.testing.assert_allclose(full.theta, sym.theta, atol=1e-10)
    X = np.random.default_rng(1).standard_normal((100, full.dim))
    assert full.select_batch(X).tolist() == sym.select_batch(X).tolist()
    assert full.params()["kernel"] == "full" and sym.params()["kernel"] == "sym"
    assert LinUCB(["a"], 600).params()["kernel"] == "sym"  # auto from SYM_MIN_DIM
    assert LinUCB(["a"], 600, project_to=64).params()["kernel"] == "full"


def test_ucb_is_mean_plus_width_and_width_shrinks():
    p = LinUCB(["a", "b"], 5, alpha=0.5)
    x = np.array([1.0, 0.0, 2.0, 0.0, -1.0])
    w0 = p.width(x)
    np.testing.assert_allclose(w0, 0.5 * np.sqrt(x @ x) * np.ones(2))
    for _ in range(10):
        p.update("a", x, 1.0)
    w1 = p.width(x)
    assert w1[0] < w0[0] / 3 and w1[1] == pytest.approx(w0[1])
    np.testing.assert_allclose(p.ucb(x), p.theta @ x + w1, rtol=1e-12)
    assert p.select(x) == 1  # b's untried bonus (0.5·sqrt(6)) still beats a's ~0.98 + 0.16


def test_alpha_zero_is_greedy_and_update_returns_normalized_reward():
    p = LinUCB(["a", "b"], 2, alpha=0.0)
    x = np.array([1.0, 0.0])
    assert p.update(1, x, 2.0) == 2.0
    assert p.select(x) == 0  # untried
    p.update(0, x, 1.0)
    assert p.select(x) == 1
    q = LinUCB(["a", "b"], 2, reward_norm="minmax")
    assert q.update("a", x, 3.0) == 0.5  # degenerate range
    assert q.update("a", x, 5.0) == 1.0
    assert q.update("b", x, 4.0) == 0.5


def test_projection_and_normalization():
    p = LinUCB(["a", "b"], 64, project_to=8, normalize=True, seed=3)
    assert p.context_dim == 8 and p.theta.shape == (2, 8) and p.a_inv.shape == (2, 8, 8)
    proj = p.projection
    assert proj.shape == (8, 64)
    np.testing.assert_array_equal(proj, LinUCB(["a", "b"], 64, project_to=8, seed=3).projection)
    assert not np.array_equal(proj, LinUCB(["a", "b"], 64, project_to=8, seed=4).projection)
    # Very sparse projection: 1/sqrt(d) of the entries nonzero, E[||Px||²] = ||x||².
    big = LinUCB(["a"], 1024, project_to=256, seed=3).projection
    assert np.count_nonzero(big) / big.size == pytest.approx(1 / 32, rel=0.05)
    assert np.sum(big.astype(np.float64) ** 2) / 1024 == pytest.approx(1.0, rel=0.05)
    X = np.random.default_rng(1).standard_normal((200, 1024))
    ratios = np.sum((X @ big.T.astype(np.float64)) ** 2, axis=1) / np.sum(X**2, axis=1)
    assert np.mean(ratios) == pytest.approx(1.0, rel=0.05)
    x = np.random.default_rng(0).standard_normal(64)
    z = p._features(x[None])[0]
    assert np.linalg.norm(z) == pytest.approx(1.0)
    # the width of a unit context at the prior is alpha / sqrt(lam)
    np.testing.assert_allclose(p.width(x), 0.1 * np.ones(2))
    np.testing.assert_array_equal(p.width(np.zeros(64)), np.zeros(2))  # zero stays zero
    p.update("a", np.zeros(64), 1.0)
    assert np.isfinite(p.a_inv).all()


def test_stats_params_and_selection_counts():
    p = LinUCB(["a", "b", "c"], 3, alpha=0.2, lam=2.0)
    assert [s.last_update for s in p.stats()] == [0.0, 0.0, 0.0]
    x = np.ones(3)
    t0 = time.time()
    p.update("b", x, 1.0)
    p.update("b", x, 3.0)
    s = p.stats()[1]
    assert (s.name, s.index, s.pulls, s.mean_reward) == ("b", 1, 2, 2.0)
    assert t0 <= s.last_update <= time.time()
    assert p.stats()[0].mean_reward == 0.0
    p.choose(x)
    p.select_batch(np.ones((4, 3)))
    assert sum(s.selections for s in p.stats()) == 5
    params = p.params()
    assert params["alpha"] == 0.2 and params["lam"] == 2.0 and params["policy"] == "linucb"
    assert params["project_to"] == "none" and params["dim"] == 3
    np.testing.assert_allclose(p.a_inv[0], np.eye(3) / 2.0)


def test_inputs_are_not_modified_and_float32_accepted():
    p = LinUCB(["a", "b"], 4, normalize=True)
    x = np.arange(4, dtype=np.float32)
    keep = x.copy()
    p.update(0, x, 1.0)
    p.choose(x)
    p.select_batch(np.stack([x, x]))
    np.testing.assert_array_equal(x, keep)
    assert p.choose([0.0, 1.0, 2.0, 3.0]) in ((0,), (1,))
