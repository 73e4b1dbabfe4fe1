"""Baselines, make_policy, combine_scores, batch_context, RewardNormalizer and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from laser_serve.selector import (
    EnsemblePolicy,
    EpsilonGreedyPolicy,
    FixedPolicy,
    LinUCB,
    Policy,
    RandomPolicy,
    RewardNormalizer,
    RoundRobinPolicy,
    batch_context,
    combine_scores,
    make_policy,
)

ARMS = ["rm_a", "rm_b", "rm_c", "rm_d"]
ALL_SPECS = ["linucb", "random", "fixed:rm_c", "round-robin", "epsilon-greedy", "ensemble"]
X0 = np.zeros(5)

# --- baselines ------------------------------------------------------------------------------


def test_round_robin_cycles_across_single_and_batch_calls():
    p = RoundRobinPolicy(ARMS, 5)
    singles = [p.choose(X0)[0] for _ in range(6)]
    batch = [c[0] for c in p.choose_batch(np.zeros((5, 5)))]
    assert singles + batch == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]
    assert p.name == "round-robin" and make_policy("sequential", ARMS, 5).name == "round-robin"


def test_fixed_always_same():
    p = FixedPolicy(ARMS, 5, "rm_c")
    rng = np.random.default_rng(0)
    assert {p.choose(rng.standard_normal(5)) for _ in range(50)} == {(2,)}
    assert p.choose_batch(rng.standard_normal((7, 5))) == [(2,)] * 7
    assert p.name == "fixed:rm_c" and FixedPolicy(ARMS, 5, 1).name == "fixed:rm_b"


def test_random_uniform_and_seeded():
    p = RandomPolicy(ARMS, 5, seed=1)
    picks = [p.choose(X0)[0] for _ in range(4000)]
    counts = np.bincount(picks, minlength=4)
    assert (np.abs(counts - 1000) < 120).all(), counts
    again = RandomPolicy(ARMS, 5, seed=1)
    assert [again.choose(X0)[0] for _ in range(4000)] == picks
    other = RandomPolicy(ARMS, 5, seed=2)
    assert [other.choose(X0)[0] for _ in range(100)] != picks[:100]
    batched = RandomPolicy(ARMS, 5, seed=1)
    assert [c[0] for c in batched.choose_batch(np.zeros((4000, 5)))] == picks


def test_epsilon_greedy_exploits_best_mean():
    means = [0.2, 0.8, 0.5, 0.1]
    p = EpsilonGreedyPolicy(ARMS, 5, epsilon=0.1, seed=0)
    rng = np.random.default_rng(0)
    picks = []
    for _ in range(2000):
        arm = p.choose(X0)[0]
        p.update(arm, X0, means[arm] + 0.1 * rng.standard_normal())
        picks.append(arm)
    assert picks[:4] == [0, 1, 2, 3]  # untried arms first
    share = np.mean(np.array(picks[-1000:]) == 1)
    assert 0.88 <= share <= 0.98  # 1 - ε + ε/K = 0.925 in expectation
    greedy = EpsilonGreedyPolicy(ARMS, 5, epsilon=0.0)
    for arm, r in enumerate([0.3, 0.3, 0.1, 0.2]):
        greedy.update(arm, X0, r)
    assert greedy.choose(X0) == (0,)  # tie between 0 and 1 → lowest index
    assert p.params()["epsilon"] == 0.1


def test_ensemble_returns_all_arms_and_counts():
    p = EnsemblePolicy(ARMS, 5)
    assert p.choose(X0) == (0, 1, 2, 3)
    assert p.choose_batch(np.zeros((3, 5))) == [(0, 1, 2, 3)] * 3
    assert [s.selections for s in p.stats()] == [4, 4, 4, 4]
    assert p.update("rm_b", X0, 2.0) == 2.0
    assert p.stats()[1].pulls == 1 and p.stats()[1].mean_reward == 2.0


def test_every_policy_validates_context_and_tracks_stats():
    for spec in ALL_SPECS:
        p = make_policy(spec, ARMS, 5, reward_norm="minmax")
        assert isinstance(p, Policy) and p.arms == tuple(ARMS) and p.dim == 5
        with pytest.raises(ValueError, match="dimension"):
            p.choose(np.zeros(4))
        with pytest.raises(ValueError, match="NaN"):
            p.update("rm_a", np.full(5, np.nan), 1.0)
        assert p.update("rm_a", X0, 1.0) == 0.5
        assert p.update("rm_a", X0, 3.0) == 1.0
        assert p.stats()[0].pulls == 2 and p.stats()[0].mean_reward == 2.0
        assert p.stats()[0].mean_normalized_reward == 0.75
        assert p.params()["policy"] == p.name


# --- make_policy ----------------------------------------------------------------------------


def test_make_policy_specs():
    kinds = {
        "linucb": LinUCB,
        "random": RandomPolicy,
        "fixed:rm_c": FixedPolicy,
        "round-robin": RoundRobinPolicy,
        "epsilon-greedy": EpsilonGreedyPolicy,
        "ensemble": EnsemblePolicy,
    }
    for spec, cls in kinds.items():
        p = make_policy(spec, ARMS, 5, seed=3, alpha=0.5, lam=2.0, project_to=3)
        assert type(p) is cls and p.name == spec and p.seed == 3
        assert type(make_policy(p.name, ARMS, 5)) is cls  # name is a canonical spec
    lin = make_policy("linucb", ARMS, 5, alpha=0.5, lam=2.0, project_to=3, normalize=True)
    assert (lin.alpha, lin.lam, lin.project_to, lin.normalize) == (0.5, 2.0, 3, True)
    eps = make_policy("epsilon-greedy:0.25", ARMS, 5)
    assert eps.epsilon == 0.25 and eps.name == "epsilon-greedy:0.25"
    assert make_policy("epsilon-greedy:0.1", ARMS, 5).name == "epsilon-greedy"
    assert make_policy(" ensemble ", ARMS, 5).name == "ensemble"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("ucb1", "unknown policy spec 'ucb1'"),
        ("fixed:rm_z", "unknown RM 'rm_z'"),
        ("fixed", "needs a reward model"),
        ("fixed:", "needs a reward model"),
        ("epsilon-greedy:lots", "bad epsilon 'lots'"),
        ("epsilon-greedy:1.5", "epsilon must be in"),
        ("linucb:3", "bad option '3' in policy spec 'linucb:3'"),
        ("", "unknown policy spec ''"),
    ],
)
def test_make_policy_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        make_policy(spec, ARMS, 5)


def test_make_policy_rejects_unknown_kwargs():
    with pytest.raises(TypeError, match="alpah"):
        make_policy("linucb", ARMS, 5, alpah=0.1)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_bad_input_messages(spec):
    p = make_policy(spec, ARMS, 3)
    cases = [
        (lambda: p.choose(np.zeros(4)), "context dimension 4 does not match dim 3"),
        (lambda: p.choose(np.zeros((1, 3))), "1-D vector"),
        (lambda: p.choose([0.0, np.inf, 0.0]), "NaN or infinite"),
        (lambda: p.choose(["a", "b", "c"]), "not a numeric"),
        (lambda: p.choose(np.zeros(3, dtype=complex)), "real-valued"),
        (lambda: p.choose_batch(np.zeros(3)), "2-D array"),
        (lambda: p.choose_batch(np.zeros((2, 4))), "dimension 4"),
        (lambda: p.choose_batch(np.array([[0, 0, 0], [0, np.nan, 0]])), r"rows \[1\]"),
        (lambda: p.update("rm_z", np.zeros(3), 1.0), "unknown arm 'rm_z'"),
        (lambda: p.update(4, np.zeros(3), 1.0), "unknown arm 4"),
        (lambda: p.update(-1, np.zeros(3), 1.0), "unknown arm -1"),
        (lambda: p.update(True, np.zeros(3), 1.0), "unknown arm True"),
        (lambda: p.update(0, np.zeros(3), float("nan")), "reward must be finite"),
        (lambda: p.update(0, np.zeros(3), float("inf")), "reward must be finite"),
        (lambda: p.update(0, np.zeros(3), "high"), "reward must be a real number"),
        (lambda: p.update(0, np.zeros(2), 1.0), "dimension 2"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert sum(s.pulls for s in p.stats()) == 0  # nothing half-applied


@pytest.mark.parametrize("cls", [LinUCB, RandomPolicy, RoundRobinPolicy, EnsemblePolicy])
def test_bad_arms_and_dims(cls):
    with pytest.raises(ValueError, match="arm list is empty"):
        cls([], 3)
    with pytest.raises(ValueError, match=r"duplicate arm names: \['a'\]"):
        cls(["a", "b", "a"], 3)
    with pytest.raises(ValueError, match="non-empty strings"):
        cls(["a", ""], 3)
    with pytest.raises(ValueError, match="sequence of names"):
        cls("ab", 3)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        cls(["a"], 0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        cls(["a"], 3, seed=1.5)


def test_bad_linucb_parameters():
    for kwargs, message in [
        ({"alpha": -1.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"lam": 0.0}, "lam must be a finite positive"),
        ({"project_to": 0}, "project_to must be a positive integer"),
        ({"normalize": "yes"}, "normalize must be a bool"),
        ({"reward_norm": "zscore"}, "unknown reward normalization 'zscore'"),
        ({"window": 0}, "window must be a positive integer"),
        ({"kernel": "gpu"}, "unknown kernel 'gpu'"),
    ]:
        with pytest.raises(ValueError, match=message):
            LinUCB(ARMS, 4, **kwargs)
    with pytest.raises(ValueError, match="unknown arm 'rm_x'"):
        FixedPolicy(ARMS, 4, "rm_x")


# --- combine_scores and batch_context -------------------------------------------------------


def test_combine_scores():
    scores = np.array([[1.0, 2.0, 3.0], [10.0, 10.0, 10.0], [5.0, 1.0, 3.0]])
    z1 = np.array([-1.0, 0.0, 1.0]) * math.sqrt(1.5)  # population std of [1, 2, 3] is sqrt(2/3)
    z3 = np.array([1.0, -1.0, 0.0]) * math.sqrt(1.5)
    np.testing.assert_allclose(combine_scores(scores), (z1 + 0.0 + z3) / 3, atol=1e-12)
    # invariant to each RM's offset and (positive) scale
    s = np.random.default_rng(0).standard_normal((3, 8))
    t = s * np.array([[2.0], [0.01], [300.0]]) + np.array([[5.0], [-1.0], [7.0]])
    np.testing.assert_allclose(combine_scores(s), combine_scores(t), atol=1e-12)
    np.testing.assert_array_equal(combine_scores(np.array([[0.1] * 5])), np.zeros(5))
    np.testing.assert_array_equal(combine_scores(np.array([[3.0], [4.0]])), [0.0])
    assert combine_scores(np.zeros((2, 0))).shape == (0,)
    assert int(np.argmax(combine_scores(np.array([[0.0, 1.0, 0.5], [0.0, 9.0, 1.0]])))) == 1
    for bad, message in [
        (np.zeros(3), "shape"),
        (np.zeros((0, 3)), "shape"),
        (np.array([[1.0, np.nan]]), "NaN"),
    ]:
        with pytest.raises(ValueError, match=message):
            combine_scores(bad)


def test_batch_context():
    X = np.array([[1.0, 2.0], [3.0, 6.0]])
    np.testing.assert_array_equal(batch_context(X), [2.0, 4.0])
    for bad, message in [
        (np.zeros((0, 2)), "non-empty"),
        (np.zeros(2), "2-D"),
        (np.array([[np.inf, 0.0]]), "NaN"),
    ]:
        with pytest.raises(ValueError, match=message):
            batch_context(bad)


# --- RewardNormalizer -----------------------------------------------------------------------


def test_normalizer_none_and_minmax():
    n = RewardNormalizer("none")
    assert n(3.5) == 3.5 and n(-2.0) == -2.0 and n.count == 2
    m = RewardNormalizer("minmax")
    assert m.normalize(1.0) == 0.5  # no history yet
    assert [m(r) for r in (2.0, 4.0, 3.0, 0.0, 4.0)] == [0.5, 1.0, 0.5, 0.0, 1.0]
    assert m.bounds() == (0.0, 4.0)


def test_normalizer_quantile_matches_numpy_and_window():
    n = RewardNormalizer("quantile", window=50)
    assert n(7.0) == 0.5  # one reward: degenerate range
    rng = np.random.default_rng(0)
    stream = [7.0] + (rng.standard_normal(300) * 3 + 1).tolist()
    for r in stream[1:]:
        out = n(r)
        hist = np.array(n.history)
        lo, hi = np.quantile(hist, 0.2), np.quantile(hist, 0.8)
        assert out == pytest.approx(min(1.0, max(0.0, (r - lo) / (hi - lo))), abs=1e-12)
        assert 0.0 <= out <= 1.0
    assert len(n.history) == 50 and list(n.history) == stream[-50:]
    flat = RewardNormalizer("quantile")
    assert [flat(2.0) for _ in range(5)] == [0.5] * 5


def test_normalizer_state_is_json_and_round_trips():
    for mode in ("none", "quantile", "minmax"):
        a = RewardNormalizer(mode, window=20)
        rng = np.random.default_rng(1)
        for r in rng.standard_normal(40):
            a(float(r))
        b = RewardNormalizer(mode, window=20)
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))
        for r in rng.standard_normal(30):
            assert a(float(r)) == b(float(r))
    with pytest.raises(ValueError, match="reward normalization differs"):
        RewardNormalizer("minmax").load_state_dict(RewardNormalizer("quantile").state_dict())
    small = RewardNormalizer("quantile", window=5)
    big = RewardNormalizer("quantile", window=20)
    for r in range(20):
        big(float(r))
    small.load_state_dict(big.state_dict())  # this normalizer's window wins
    assert small.history == (15.0, 16.0, 17.0, 18.0, 19.0)
    for bad in ({"mode": "quantile"}, {**big.state_dict(), "history": ["x"]}):
        with pytest.raises(ValueError, match="malformed|reward must be"):
            RewardNormalizer("quantile").load_state_dict(bad)


def test_normalizer_bad_arguments():
    for kwargs, message in [
        ({"mode": "z"}, "unknown reward normalization"),
        ({"window": 0}, "window"),
        ({"low_q": 0.9, "high_q": 0.1}, "low_q < high_q"),
    ]:
        with pytest.raises(ValueError, match=message):
            RewardNormalizer(**kwargs)
    with pytest.raises(ValueError, match="reward must be finite"):
        RewardNormalizer("quantile")(float("nan"))
