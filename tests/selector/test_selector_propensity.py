"""Randomized policies log exact propensities: LinTS (Thompson probabilities by quadrature) and
LinUCB with an exploration floor (ε, tie band). Empirical choice frequencies over many draws
match p(·|x) within binomial error (fixed seeds, so the checks are deterministic)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy.special import ndtr
from scipy.stats import norm

from laser_serve.selector import LinTS, LinUCB, SelectorStateError, make_policy, thompson_probs

DRAWS = 20_000


def _assert_binomial(decisions, probs: np.ndarray) -> None:
    """Choice frequencies within 4.5 binomial standard errors of p (and p = 0 never drawn)."""
    n = len(decisions)
    counts = np.bincount([d.arms[0] for d in decisions], minlength=probs.size)
    se = np.sqrt(probs * (1 - probs) / n)
    assert (np.abs(counts / n - probs) <= 4.5 * se + 1.0 / n).all(), (counts / n, probs)
    assert (counts[probs == 0] == 0).all()


def _trained(spec: str, env, play, rounds: int = 80, **kwargs):
    policy = make_policy(spec, env.arms, env.d, seed=3, **kwargs)
    play(policy, env, rounds, seed=2)
    return policy


# --- thompson_probs: the integral ----------------------------------------------------------


def test_thompson_probs_match_the_two_arm_closed_form() -> None:
    rng = np.random.default_rng(0)
    mean = rng.normal(0, 1, (500, 2)) * rng.choice([0.01, 1.0, 10.0], (500, 1))
    sd = np.exp(rng.uniform(np.log(1e-4), np.log(10.0), (500, 2)))
    exact = ndtr((mean[:, 0] - mean[:, 1]) / np.hypot(sd[:, 0], sd[:, 1]))
    p = thompson_probs(mean, sd)
    np.testing.assert_allclose(p[:, 0], exact, atol=1e-10)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)


def test_thompson_probs_match_adaptive_quadrature_for_many_arms() -> None:
    rng = np.random.default_rng(1)
    for _ in range(3):
        k = int(rng.integers(3, 8))
        m, s = rng.normal(0, 1, k), np.exp(rng.uniform(np.log(0.01), np.log(2.0), k))
        ref = []
        for j in range(k):
            others = [i for i in range(k) if i != j]

            def f(t, j=j, others=others, m=m, s=s):
                return norm.pdf(t, m[j], s[j]) * np.prod(ndtr((t - m[others]) / s[others]))

            lo, hi = m[j] - 12 * s[j], m[j] + 12 * s[j]
            ref.append(integrate.quad(f, lo, hi, points=list(m[j] + s[j] * np.arange(-8, 9)))[0])
        np.testing.assert_allclose(thompson_probs(m, s), ref, atol=1e-9)


def test_thompson_probs_degenerate_rows_are_one_hot() -> None:
    mean = np.array([[0.2, 0.5, 0.5], [1.0, 0.0, 0.0]])
    p = thompson_probs(mean, np.zeros((2, 3)))
    assert p.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]  # ties to the lowest index
    assert thompson_probs(np.array([3.0]), np.array([1.0])).tolist() == [1.0]


# --- LinTS ---------------------------------------------------------------------------------


def test_lints_choice_frequencies_match_its_probabilities(cluster_env, play) -> None:
    env = cluster_env(k=4, d=8, seed=0)
    policy = _trained("lints:alpha=0.5", env, play)
    rng = np.random.default_rng(5)
    for _ in range(2):
        x, _ = env.context(rng)
        decisions = policy.decide_batch(np.tile(x, (DRAWS // 2, 1)))
        probs = decisions[0].probs
        assert all(np.array_equal(d.probs, probs) for d in decisions[:50])
        assert 0.0 < probs.max() < 1.0  # genuinely random at this state
        _assert_binomial(decisions, probs)


def test_lints_samples_theta_as_the_formula_says(cluster_env, play) -> None:
    """p(k|x) equals the frequency of argmax_k θ̃_kᵀx with θ̃_k ~ N(θ_k, α²A_k⁻¹) drawn in
    full (d dimensions, Cholesky of A⁻¹), the definition LinTS samples in one dimension."""
    env = cluster_env(k=3, d=6, seed=1)
    policy = _trained("lints:alpha=0.5", env, play, rounds=30)
    x, _ = env.context(np.random.default_rng(9))
    rng = np.random.default_rng(0)
    theta, a_inv = policy.theta, policy.a_inv
    draws = np.stack(
        [
            rng.multivariate_normal(theta[k], 0.25 * a_inv[k], size=DRAWS) @ x
            for k in range(env.n_arms)
        ],
        axis=1,
    )
    freq = np.bincount(draws.argmax(axis=1), minlength=env.n_arms) / DRAWS
    probs = policy.decide(x).probs
    assert (np.abs(freq - probs) <= 4.5 * np.sqrt(probs * (1 - probs) / DRAWS) + 1e-4).all()


def test_lints_tries_untried_arms_first_one_hot_and_learns(cluster_env, play) -> None:
    env = cluster_env(k=4, d=8, seed=0)
    policy = LinTS(env.arms, env.d, alpha=0.2, seed=1)
    first = [policy.decide(env.centers[0]) for _ in range(4)]
    assert [d.arms for d in first] == [(0,), (1,), (2,), (3,)]
    assert all(d.propensity == 1.0 for d in first)
    _, best, regret = play(policy, env, 300, seed=4)
    assert regret[-100:].mean() < 0.1


def test_lints_batches_equal_singles_and_state_round_trips(cluster_env, play, tmp_path) -> None:
    env = cluster_env(k=4, d=8, seed=0)
    a, b = (_trained("lints", env, play) for _ in range(2))
    X = np.random.default_rng(3).standard_normal((40, env.d))
    singles = [a.decide(x) for x in X]
    batch = b.decide_batch(X)
    assert [d.arms for d in singles] == [d.arms for d in batch]
    np.testing.assert_allclose([d.probs for d in singles], [d.probs for d in batch], atol=1e-12)
    a.save(tmp_path / "lints.npz")
    c = LinTS(env.arms, env.d)
    c.load(tmp_path / "lints.npz")
    assert [c.choose(x) for x in X] == [a.choose(x) for x in X]  # the draws continue too
    with pytest.raises(SelectorStateError, match="state is for policy 'lints'"):
        LinUCB(env.arms, env.d).load(tmp_path / "lints.npz")


# --- LinUCB's exploration floor ------------------------------------------------------------


def _floor_probs(policy: LinUCB, x: np.ndarray) -> np.ndarray:
    """p(·|x) = ε/K + (1 − ε)·[k in band]/|band|, from the UCB scores (independently)."""
    scores = policy.ucb(x)
    k = scores.size
    if policy.band:
        best = scores >= scores.max() - policy.band
    else:
        best = np.arange(k) == np.argmax(scores)
    return policy.epsilon / k + (1 - policy.epsilon) * best / best.sum()


def test_epsilon_linucb_frequencies_match_the_exact_mixture(cluster_env, play) -> None:
    env = cluster_env(k=4, d=8, seed=0)
    trained = _trained("linucb", env, play)
    rng = np.random.default_rng(6)
    x, _ = env.context(rng)
    scores = np.sort(trained.ucb(x))
    band = float(scores[-1] - scores[-2]) * 1.01  # the two best arms tie within the band
    for spec in (
        "linucb:epsilon=0.2",
        f"linucb:epsilon=0.1,band={band!r}",
        f"linucb:band={band!r}",
    ):
        policy = make_policy(spec, env.arms, env.d, seed=11)
        policy.load_state_dict(trained.state_dict())  # a plain LinUCB state loads
        decisions = policy.decide_batch(np.tile(x, (DRAWS, 1)))
        expected = _floor_probs(policy, x)
        np.testing.assert_allclose(decisions[0].probs, expected, atol=1e-15)
        assert all(d.propensity == expected[d.arms[0]] for d in decisions[:100])
        _assert_binomial(decisions, expected)


def test_epsilon_applies_to_untried_first_decisions_too() -> None:
    arms = ["a", "b", "c", "d"]
    policy = LinUCB(arms, 3, epsilon=0.4, seed=2)
    twin = LinUCB(arms, 3, epsilon=0.4, seed=2)
    x = np.ones(3)
    np.testing.assert_allclose(policy.decide(x).probs, [0.7, 0.1, 0.1, 0.1])  # untried arm 0
    singles = [policy.decide(x) for _ in range(199)]
    batch = twin.decide_batch(np.tile(x, (200, 1)))[1:]
    assert [d.arms for d in singles] == [d.arms for d in batch]  # explored picks count too
    np.testing.assert_array_equal([d.probs for d in singles], [d.probs for d in batch])
    assert len({d.probs.argmax() for d in singles}) == 4  # the greedy arm moves on


def test_plain_linucb_is_unchanged_and_draws_nothing(cluster_env, play) -> None:
    env = cluster_env(k=4, d=8, seed=0)
    policy = _trained("linucb", env, play)
    state = policy.state_dict()["extra"]["rng"]
    x = env.centers[1]
    d = policy.decide(x)
    assert d.propensity == 1.0 and d.arms == (int(np.argmax(policy.ucb(x))),)
    assert policy.state_dict()["extra"]["rng"] == state
    assert policy.name == "linucb" and policy.params()["epsilon"] == 0.0


def test_old_linucb_state_without_a_generator_loads(cluster_env, play) -> None:
    env = cluster_env(k=4, d=8, seed=0)
    old = _trained("linucb", env, play).state_dict()
    del old["extra"]["rng"]  # states saved before LinUCB explored have none
    policy = LinUCB(env.arms, env.d, epsilon=0.1)
    policy.load_state_dict(old)
    assert policy.stats()[0].pulls > 0


def test_floor_specs_names_and_errors() -> None:
    arms = ["a", "b"]
    p = make_policy("linucb:band=0.05,epsilon=0.1", arms, 2, alpha=0.3)
    assert p.name == "linucb:epsilon=0.1,band=0.05" and p.alpha == 0.3
    assert make_policy(p.name, arms, 2).name == p.name
    assert make_policy("linucb:alpha=0.7", arms, 2, alpha=0.3).alpha == 0.7
    assert make_policy("lints", arms, 2).name == "lints"
    for spec, message in [
        ("linucb:epsilon=2", "epsilon must be in"),
        ("linucb:gamma=1", "bad option 'gamma=1'"),
        ("lints:epsilon=0.1", "bad option 'epsilon=0.1'"),
        ("linucb:epsilon=x", "bad epsilon 'x'"),
        ("linucb:band=-1", "band must be a finite non-negative"),
    ]:
        with pytest.raises(ValueError, match=message):
            make_policy(spec, arms, 2)
