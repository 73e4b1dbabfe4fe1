"""Method evaluation on synthetic candidate pools, statistics, table and plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from laser_bench import longbench_eval as lbe

RMS = ("a", "b", "c")
GOOD, BAD, HALF = "alpha", "beta", "alpha gamma"  # F1 vs gold "alpha": 1, 0, 2/3


def make_pool(
    i: int,
    rm_scores: dict[str, list[float]],
    candidates: tuple[str, ...] = (GOOD, BAD),
    task: str = "hotpotqa",
    dim: int = 4,
    mean_logprob: list[float] | None = None,
) -> lbe.Pool:
    rng = np.random.default_rng(i)
    return lbe.Pool(
        task=task,
        key=f"k{i}",
        answers=["alpha"],
        candidates=list(candidates),
        rm_scores=rm_scores,
        context=list(rng.normal(size=dim) / 2 + 1.0),
        mean_logprob=mean_logprob or [-1.0] * len(candidates),
        generate_seconds=2.0,
        rm_seconds={"a": 0.1, "b": 0.2, "c": 0.3},
        greedy=HALF,
        greedy_generate_seconds=0.5,
    )


def always_right_pools(count: int, right: str = "a", task: str = "hotpotqa") -> list[lbe.Pool]:
    """RM `right` always ranks the gold candidate first; the others always rank it last."""
    pools = []
    for i in range(count):
        good_first = [1.0, 0.0]
        scores = {r: good_first if r == right else good_first[::-1] for r in RMS}
        cands = (GOOD, BAD) if i % 2 else (BAD, GOOD)
        if cands[0] == BAD:
            scores = {r: s[::-1] for r, s in scores.items()}
        pools.append(make_pool(i, scores, cands, task=task))
    return pools


def test_rm_method_picks_argmax_and_oracle_bounds_everything() -> None:
    rng = np.random.default_rng(0)
    cands = (GOOD, BAD, HALF, "gamma")
    pools = [
        make_pool(i, {r: list(rng.normal(size=4)) for r in RMS}, cands, mean_logprob=[-1.0] * 4)
        for i in range(30)
    ]
    methods = lbe.all_methods(RMS)
    out = lbe.evaluate_methods(pools, RMS, methods, seed=1)
    for i, pool in enumerate(pools):
        for r in RMS:
            choice = out[f"rm:{r}"][i]
            assert choice.candidate == int(np.argmax(pool.rm_scores[r]))
            assert choice.rms == (r,)
        oracle = out["oracle"][i].score
        for m in methods:
            if m != "greedy" and out[m][i] is not None:  # greedy is not in the pool
                assert out[m][i].score <= oracle
    assert out["greedy"][0] == lbe.Choice(-1, (), pytest.approx(2 / 3))


def test_ensemble_uses_z_normalized_scores() -> None:
    # Raw sums pick candidate 0 (RM a's scale dominates); z-normalized means pick candidate 2:
    # a -> [1.22, -1.22, 0], b -> [-1.41, 0.81, 0.59], mean -> [-0.10, -0.20, 0.30].
    pool = make_pool(
        0, {"a": [100.0, 0.0, 50.0], "b": [0.0, 1.0, 0.9]}, candidates=(BAD, BAD, GOOD)
    )
    out = lbe.evaluate_methods([pool], ("a", "b"), ["ensemble"])
    assert out["ensemble"][0].candidate == 2
    assert out["ensemble"][0].rms == ("a", "b")
    assert out["ensemble"][0].score == 1.0


def test_random_is_seeded_and_uses_every_rm() -> None:
    pools = always_right_pools(60)
    first = lbe.evaluate_methods(pools, RMS, ["random"], seed=3)["random"]
    again = lbe.evaluate_methods(pools, RMS, ["random"], seed=3)["random"]
    other = lbe.evaluate_methods(pools, RMS, ["random"], seed=4)["random"]
    assert first == again != other
    assert {c.rms[0] for c in first} == set(RMS)


def test_laser_learns_the_rm_that_is_always_right() -> None:
    pools = always_right_pools(80, right="b")
    out = lbe.evaluate_methods(pools, RMS, ["laser", "random"], seed=0, alpha=0.1)
    order = np.random.default_rng(0).permutation(len(pools))
    late = [out["laser"][i] for i in order[40:]]
    assert sum(c.rms[0] == "b" for c in late) >= 0.9 * len(late)
    laser_score = np.mean([c.score for c in out["laser"]])
    assert laser_score > np.mean([c.score for c in out["random"]]) + 0.3


def test_laser_nll_learns_from_log_probs_without_gold() -> None:
    # Gold favours RMs a and b, but the policy's log-probs favour what RM c picks: a label-free
    # learner must follow the log-probs, i.e. converge to c. (alpha=1: with rewards in [0, 1]
    # and zero-initialized arms, a small alpha may never try c.)
    pools = always_right_pools(120, right="a")
    rng = np.random.default_rng(0)
    for p in pools:
        p.rm_scores = {**p.rm_scores, "b": list(p.rm_scores["a"])}
        c_pick = int(np.argmax(p.rm_scores["c"]))
        p.mean_logprob = [
            (-0.5 if j == c_pick else -2.0) + 0.1 * float(rng.normal()) for j in range(2)
        ]
    out = lbe.evaluate_methods(pools, RMS, ["laser-nll", "laser"], seed=0, alpha=1.0)
    order = np.random.default_rng(0).permutation(len(pools))
    late = [out["laser-nll"][i] for i in order[60:]]
    assert sum(c.rms[0] == "c" for c in late) >= 0.8 * len(late)
    assert sum(out["laser"][i].rms[0] in ("a", "b") for i in order[60:]) >= 0.8 * len(late)


class SpyLinUCB:
    """Records every update; chooses arm 0 (a stand-in that shows what the bench calls)."""

    instances: list[SpyLinUCB] = []

    def __init__(self, arms: list[str], dim: int, **kwargs: object) -> None:
        self.updated: list[tuple[int | str, float]] = []
        self.chosen = 0
        self.kwargs = kwargs
        SpyLinUCB.instances.append(self)

    def choose(self, x: np.ndarray) -> tuple[int, ...]:
        self.chosen += 1
        return (0,)

    def update(self, arm: int | str, x: np.ndarray, reward: float) -> float:
        self.updated.append((arm, reward))
        return reward


def test_laser_frozen_does_not_update_on_the_eval_part() -> None:
    SpyLinUCB.instances.clear()
    pools = always_right_pools(10, task="hotpotqa") + always_right_pools(6, task="qasper")
    out = lbe.evaluate_methods(
        pools, RMS, ["laser-frozen"], seed=5, train_fraction=0.5, linucb_factory=SpyLinUCB
    )
    (spy,) = SpyLinUCB.instances
    evaluated = [i for i, c in enumerate(out["laser-frozen"]) if c is not None]
    # 5 of 10 and 3 of 6 train; only those are updated, the rest is chosen without updates.
    assert len(spy.updated) == 8
    assert len(evaluated) == 8
    assert spy.chosen == 16
    assert sum(pools[i].task == "qasper" for i in evaluated) == 3
    assert spy.kwargs["reward_norm"] == "none"


def test_laser_variants_pass_dim_and_reward_norm() -> None:
    SpyLinUCB.instances.clear()
    pools = always_right_pools(4)
    lbe.evaluate_methods(pools, RMS, ["laser", "laser-nll"], linucb_factory=SpyLinUCB, alpha=0.7)
    laser, nll = SpyLinUCB.instances
    assert laser.kwargs["alpha"] == nll.kwargs["alpha"] == 0.7
    assert (laser.kwargs["reward_norm"], nll.kwargs["reward_norm"]) == ("none", "quantile")
    # laser feeds back the task score (0..1); laser-nll the chosen candidate's mean log-prob.
    assert {r for _, r in laser.updated} <= {0.0, 1.0}
    assert {r for _, r in nll.updated} == {-1.0}


def test_laser_nll_skips_unknown_log_probs() -> None:
    SpyLinUCB.instances.clear()
    pools = always_right_pools(4)
    for p in pools:
        p.mean_logprob = [math.nan, math.nan]
    lbe.evaluate_methods(pools, RMS, ["laser-nll"], linucb_factory=SpyLinUCB)
    assert SpyLinUCB.instances[0].updated == []


def test_frozen_split_keeps_a_held_out_example_per_task() -> None:
    pools = always_right_pools(1, task="hotpotqa") + always_right_pools(3, task="qasper")
    train = lbe.frozen_split(pools, [3, 2, 1, 0], 0.9)
    assert train == {3, 2}  # hotpotqa: 0 of 1; qasper: min(int(2.7), 2) = 2, in shuffled order


def test_bootstrap_ci() -> None:
    assert lbe.bootstrap_ci([0.5] * 10) == (0.5, 0.5)
    assert lbe.bootstrap_ci([0.3]) == (0.3, 0.3)
    lo, hi = lbe.bootstrap_ci([0.0, 1.0] * 50)
    assert lo < 0.5 < hi and hi - lo < 0.3
    assert lbe.bootstrap_ci([0.1, 0.9], seed=1) == lbe.bootstrap_ci([0.1, 0.9], seed=1)


def summarize_two_tasks(seeds: int = 2) -> dict:
    pools = {
        "hotpotqa": always_right_pools(8, right="a", task="hotpotqa"),
        "qasper": always_right_pools(6, right="b", task="qasper"),
    }
    flat = [p for ps in pools.values() for p in ps]
    methods = lbe.all_methods(RMS)
    runs = [lbe.evaluate_methods(flat, RMS, methods, seed=s) for s in range(seeds)]
    return lbe.summarize(pools, runs, methods, RMS, n_boot=200)


def test_summarize_structure_and_costs() -> None:
    res = summarize_two_tasks()
    methods = lbe.all_methods(RMS)
    assert set(res["tasks"]) == {"hotpotqa", "qasper"}
    for task, rows in res["tasks"].items():
        assert list(rows) == methods
        for m, row in rows.items():
            assert {"score", "ci_low", "ci_high", "rm_calls_per_example"} <= set(row)
            assert 0.0 <= row["ci_low"] <= row["score"] + 1e-9 <= row["ci_high"] + 2e-9
            assert row["score"] <= rows["oracle"]["score"] + 1e-9 or m == "greedy"
        assert rows["oracle"]["score"] == 100.0
        assert rows["rm:a"]["score"] == (100.0 if task == "hotpotqa" else 0.0)
        assert rows["greedy"]["score"] == pytest.approx(100 * 2 / 3)
        assert rows["ensemble"]["rm_calls_per_example"] == 3
        assert rows["ensemble"]["rm_seconds_per_example"] == pytest.approx(0.6)
        assert rows["rm:c"]["rm_seconds_per_example"] == pytest.approx(0.3)
        assert rows["laser"]["rm_calls_per_example"] == 1
        assert rows["oracle"]["rm_calls_per_example"] == rows["greedy"]["rm_calls_per_example"] == 0
        assert rows["greedy"]["generate_seconds_per_example"] == 0.5
        assert rows["laser"]["generate_seconds_per_example"] == 2.0
        n = len(res["examples"][task])
        assert rows["laser"]["n_examples"] == n
        assert rows["laser-frozen"]["n_examples"] == n - n // 2
    avg = res["average"]
    assert avg["rm:a"] == pytest.approx(50.0)
    assert avg["oracle"] == 100.0
    assert res["average_detail"]["oracle"]["score"] == 100.0
    shares = res["selection"]["laser"]["hotpotqa"]
    assert set(shares) == set(RMS) and sum(shares.values()) == pytest.approx(1.0)
    ex = res["examples"]["qasper"][0]
    assert ex["key"] == "k0" and len(ex["choices"]) == 2
    assert ex["choices"][0]["oracle"]["score"] == 100.0


def test_laser_frozen_is_compared_on_its_held_out_examples() -> None:
    res = summarize_two_tasks(seeds=3)
    for rows in res["tasks"].values():
        frozen = rows["laser-frozen"]
        held = frozen["heldout_scores"]
        assert "laser-frozen" not in held and set(held) == set(rows) - {"laser-frozen"}
        assert frozen["score"] <= held["oracle"] + 1e-9
        assert held["oracle"] == 100.0 and held["rm:c"] == 0.0
    assert "Others on the same held-out examples" in lbe.format_table(res)


def test_seed_spread_is_reported() -> None:
    res = summarize_two_tasks(seeds=3)
    row = res["tasks"]["hotpotqa"]["random"]
    assert len(row["seed_scores"]) == 3
    assert row["score"] == pytest.approx(np.mean(row["seed_scores"]))
    assert row["seed_std"] == pytest.approx(np.std(row["seed_scores"]))
    assert res["tasks"]["hotpotqa"]["rm:a"]["seed_std"] == 0.0


def test_table_and_plot(tmp_path: Path) -> None:
    res = summarize_two_tasks()
    res["config"] = {"seeds": 2}
    table = lbe.format_table(res)
    for needle in ("hotpotqa", "qasper", "average over 2 task(s)", "rm:b", "laser-frozen*"):
        assert needle in table
    assert "oracle (upper bound)" in table and "laser / ensemble" in table
    out = tmp_path / "sel.png"
    lbe.plot_selection(res, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
