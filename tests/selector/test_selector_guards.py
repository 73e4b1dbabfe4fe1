"""No reward, however large, makes a policy's state non-finite: refused updates change nothing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from laser_serve.selector import LinUCB, RewardNormalizer, make_policy

ARMS = ["a", "b", "c"]
SPECS = ["linucb", "random", "fixed:b", "round-robin", "epsilon-greedy", "ensemble"]


def _arrays(policy) -> dict[str, np.ndarray]:
    return policy.state_dict()["arrays"]


def _assert_finite(policy) -> None:
    for key, a in _arrays(policy).items():
        assert np.isfinite(a).all(), key
    for s in policy.stats():
        assert np.isfinite(s.mean_reward) and np.isfinite(s.mean_normalized_reward), s


def test_a_reward_that_would_overflow_is_refused_and_changes_nothing():
    p = LinUCB(ARMS, 4, normalize=True)
    x = np.array([1.0, 2.0, 0.0, 0.0])
    p.update("a", x, 0.5)
    before = _arrays(p)
    with pytest.raises(ValueError, match="refused.*non-finite"):
        p.update("a", x, 1e308)  # b = r·x: its squared norm overflows
    after = _arrays(p)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)
    assert p.stats()[0].pulls == 1


def test_reward_statistics_that_would_overflow_are_refused():
    p = make_policy("random", ARMS, 2)
    p.update("c", np.zeros(2), 1e308)
    with pytest.raises(ValueError, match="reward statistics of arm 'c' would overflow"):
        p.update("c", np.zeros(2), 1e308)  # the sum of normalized (here: raw) rewards
    assert (p.stats()[2].pulls, p.stats()[2].mean_reward) == (1, 1e308)
    assert p.normalizer.count == 1  # the refused reward did not enter the history either
    q = make_policy("random", ARMS, 2, reward_norm="quantile")
    for _ in range(3):  # normalized into [0, 1]; the raw mean cannot overflow either
        q.update("c", np.zeros(2), 1.7e308)
    assert (q.stats()[2].pulls, q.stats()[2].mean_reward) == (3, 1.7e308)


def test_check_update_says_what_update_would_do_and_changes_nothing():
    p = LinUCB(ARMS, 3, reward_norm="quantile")
    x = np.ones(3)
    for r in (0.1, 0.9, 0.4):
        before = _arrays(p)
        expected = p.check_update("b", x, r)
        for key, a in _arrays(p).items():
            np.testing.assert_array_equal(a, before[key], err_msg=key)
        assert p.update("b", x, r) == expected


def test_a_state_saved_with_reward_sums_loads_as_means(tmp_path):
    from laser_serve.selector import state as state_mod

    a = make_policy("random", ARMS, 2)
    for r in (1.0, 2.0, 6.0):
        a.update("a", np.zeros(2), r)
    sd = a.state_dict()
    arrays = dict(sd["arrays"])
    arrays["reward_sum"] = arrays.pop("reward_mean") * arrays["pulls"]
    header = {"policy": sd["policy"], "config": sd["config"], "extra": sd["extra"]}
    state_mod.write_state(tmp_path / "old.npz", header, arrays)
    b = make_policy("random", ARMS, 2)
    b.load(tmp_path / "old.npz")
    assert b.stats()[0].mean_reward == 3.0 and b.stats()[1].mean_reward == 0.0


@pytest.mark.parametrize("mode", ["none", "quantile", "minmax"])
def test_peek_is_what_the_next_call_returns(mode):
    n = RewardNormalizer(mode, window=5)
    for r in [3.0, -1.0, 7.0, 7.0, 0.5, 100.0, 2.0, -4.0]:
        expected = n.peek(r)
        count = n.count
        assert n.count == count  # peek records nothing
        assert n(r) == expected


@pytest.mark.parametrize("reward_norm", ["none", "quantile", "minmax"])
@pytest.mark.parametrize("spec", SPECS)
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    normalize=st.booleans(),
    scale=st.sampled_from([1.0, 1e3, 1e100]),
    huge=st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 1e154, -1e200]),
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_any_finite_rewards_leave_the_state_finite_and_choices_defined(
    spec, reward_norm, normalize, scale, huge
):
    p = make_policy(spec, ARMS, 4, reward_norm=reward_norm, normalize=normalize)
    rng = np.random.default_rng(0)
    normal = [float(r) for r in rng.random(30)]
    for i, r in enumerate([*huge, *normal]):
        x = scale * rng.standard_normal(4)
        arm = p.choose(x)[0]
        assert 0 <= arm < len(ARMS)
        before = _arrays(p)
        try:
            p.update(arm, x, r)
        except ValueError:
            after = _arrays(p)  # refused: nothing changed
            for key in before:
                np.testing.assert_array_equal(before[key], after[key], err_msg=f"{key} at {i}")
        _assert_finite(p)
    if isinstance(p, LinUCB):
        assert np.isfinite(p.ucb(rng.standard_normal((8, 4)))).all()


def test_update_with_a_given_normalized_reward_and_time() -> None:
    """Replicas apply the value normalized when the event was logged, at the event's time:
    the raw reward still enters the history, and the guards still hold."""
    a = LinUCB(["x", "y"], 3, reward_norm="quantile")
    b = LinUCB(["x", "y"], 3, reward_norm="quantile")
    for i, r in enumerate([5.0, -2.0, 9.0]):
        rn = a.update("x", [1.0, 0.5, 0.0], r, at=100.0 + i)
        assert b.update("x", [1.0, 0.5, 0.0], r, normalized=rn, at=100.0 + i) == rn
    assert a.normalizer.history == b.normalizer.history == (5.0, -2.0, 9.0)
    sa, sb = a.state_dict(), b.state_dict()
    for key, arr in sa["arrays"].items():
        assert arr.tobytes() == sb["arrays"][key].tobytes(), key
    assert sa["arrays"]["last_update"][0] == 102.0
    assert b.update("y", [0.0, 1.0, 0.0], 1.0, normalized=0.25) == 0.25  # not its own 0.5
    with pytest.raises(ValueError, match="finite"):
        b.update("y", [0.0, 1.0, 0.0], 1.0, normalized=float("inf"))
    with pytest.raises(ValueError, match="refused"):
        b.update("y", [0.0, 1.0, 0.0], 1.0, normalized=1e308)
    assert b.stats()[1].pulls == 1  # the refused ones changed nothing
