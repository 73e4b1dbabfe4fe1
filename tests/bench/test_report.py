"""bench/report.py on hand-built pools: the headroom and the paired differences, checked
against values computed by hand from the pools."""

from __future__ import annotations

import numpy as np
import pytest
from laser_bench import methods, report
from laser_bench.replay import Pool

RMS = ["a", "b"]


def _pool(key: str, right: int, scores_a: list[float], scores_b: list[float]) -> Pool:
    """Three GSM8K candidates, only candidate `right` correct; greedy is wrong."""
    return Pool(
        task="gsm8k",
        key=key,
        answers=("#### 4",),
        candidates=[f"#### {4 if i == right else 5 + i}" for i in range(3)],
        scores={"a": np.array(scores_a), "b": np.array(scores_b)},
        rm_seconds={"a": 1.0, "b": 3.0},
        context=np.array([1.0, float(key)]),
        mean_logprob=np.zeros(3),
        greedy="#### 9",
    )


def test_headroom_and_paired_differences() -> None:
    A, B, LAST = [1, 0, 0], [0, 1, 0], [0, 0, 1]  # which candidate an RM ranks first
    pools = [
        _pool("0", 0, A, B),  # only a is right
        _pool("1", 1, A, B),  # only b
        _pool("2", 2, LAST, LAST),  # both
        _pool("3", 0, A, B),  # only a
        _pool("4", 2, A, LAST),  # only b
        _pool("5", 2, A, LAST),  # only b
    ]
    for p in pools[4:]:
        p.task = "other"  # scored as GSM8K above; only the task label differs
    names = ["greedy", "rm:a", "rm:b", "ensemble", "laser", "oracle"]
    runs = [methods.replay(pools, RMS, names, seed) for seed in range(3)]
    res = report.summarize(pools, runs, RMS, n_boot=200)

    # a is right on 3 of 6 rows, b on 4; per task: a on gsm8k (3 of 4), b on the other (2
    # of 2): 5 of 6; per row, every row has a right RM.
    assert res["best_rm"] == "rm:b"
    assert res["headroom"]["best_rm"] == pytest.approx(100 * 4 / 6)
    assert res["headroom"]["best_rm_per_task"] == pytest.approx(100 * 5 / 6)
    assert res["headroom"]["best_rm_per_row"] == pytest.approx(100.0)
    laser = report.per_row(runs, "laser", len(pools))
    assert res["paired"]["laser-greedy"]["diff"] == pytest.approx(100 * laser.mean())  # greedy 0
    assert res["paired"]["laser-greedy"]["against"] == "greedy"
    text = report.format_table(res, "t")
    assert "best single RM 66.7, best RM per task 83.3, best RM per row 100.0" in text
    # Per-task CIs for the headline methods: on "other" greedy is never right, b always.
    assert "| task | n | greedy | rm:b | ensemble | laser | oracle |" in text
    assert "| other | 2 | 0.0 [0.0, 0.0] | 100.0 [100.0, 100.0] |" in text
    # Every reranker against greedy, paired: greedy is wrong on every row, so each
    # method's difference is its own score.
    assert set(res["vs_greedy"]) == {"rm:a", "rm:b", "ensemble", "laser"}
    assert res["vs_greedy"]["rm:b"]["diff"] == pytest.approx(100 * 4 / 6)
    assert "| rm:b | +66.67 |" in text
