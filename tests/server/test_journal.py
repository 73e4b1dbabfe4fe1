"""The journal: records survive torn writes and round-trip every field; the learner replays
exactly what was acknowledged, reads format-1 state dirs, and skips poisoned records."""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from laser_serve import config as config_module
from laser_serve.errors import InvalidArgument
from laser_serve.selector import Decision, LinUCB
from laser_serve.server import journal
from laser_serve.server.journal import DecisionRecord, FeedbackRecord
from laser_serve.server.learning import Learner
from laser_serve.server.metrics import Metrics

ARMS = ("a", "b", "c")
X = np.array([1.0, 0.0, 0.0, 0.0])
T0 = time.time()  # records within the pending TTL: start-up would expire older ones


def _decision(i: int = 0, **kw) -> DecisionRecord:
    fields = dict(
        id=f"{i:032x}",
        time=T0 + i,
        replica="host-1",
        policy="linucb",
        params={"alpha": 0.1, "policy": "linucb", "project_to": "none"},
        eligible=ARMS,
        x=np.arange(4, dtype=np.float32) / 3,
        probs=np.array([0.0, 1.0, 0.0], dtype=np.float32),
        chosen=(1,),
        propensity=1.0,
        n=4,
        chosen_index=2,
        expect_feedback=True,
        nll_reward=-1.25,
    )
    return DecisionRecord(**{**fields, **kw})


def _same(a: journal.Record, b: journal.Record) -> bool:
    for name in a.__dataclass_fields__:
        va, vb = getattr(a, name), getattr(b, name)
        if isinstance(va, np.ndarray):
            if va.dtype != vb.dtype or not np.array_equal(va, vb):
                return False
        elif isinstance(va, float) and math.isnan(va):
            if not math.isnan(vb):
                return False
        elif va != vb or type(va) is not type(vb):
            return False
    return True


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    records = [
        _decision(0),
        _decision(1, chosen=(0, 1, 2), probs=np.ones(3, np.float32), nll_reward=None),
        FeedbackRecord(f"{0:032x}", 1_700_000_009.25, "application", 0.75, 0.75, 8.75, "alice"),
        FeedbackRecord(f"{1:032x}", 1_700_000_010.0, "auto_nll", -1.5, None, 9.0, ""),
        FeedbackRecord(f"{2:032x}", 1_700_000_011.0, "expired", None, None, math.nan, ""),
    ]
    path = tmp_path / "journal-1.log"
    w = journal.JournalWriter(path)
    for r in records:
        w.append(r, sync=False)
    w.close()
    back, good, problem = journal.read(path)
    assert problem is None and good == path.stat().st_size
    assert len(back) == len(records)
    for a, b in zip(records, back, strict=True):
        assert _same(a, b), (a, b)
    # contexts are binary float32: a 384-dim decision is ~1.5 KB plus a small header
    big = journal.encode(_decision(x=np.ones(384, np.float32)))
    assert 384 * 4 < len(big) < 384 * 4 + 600


def test_torn_tail_is_cut_and_earlier_records_kept(tmp_path: Path) -> None:
    path = tmp_path / "journal-1.log"
    w = journal.JournalWriter(path)
    for i in range(3):
        w.append(_decision(i), sync=True)
    w.close()
    with open(path, "ab") as f:
        f.write(journal.encode(_decision(3))[:-7])  # a record cut mid-write
    records, _, problem = journal.read(path)
    assert [r.id for r in records] == [_decision(i).id for i in range(3)] and "torn" in problem
    assert len(journal.repair(path)) == 3
    assert journal.read(path)[2] is None


def test_corrupt_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    frames = [journal.encode(_decision(i)) for i in range(3)]
    bad = bytearray(frames[1])
    bad[-3] ^= 0xFF
    path.write_bytes(journal.MAGIC + frames[0] + bytes(bad) + frames[2])
    records, _, problem = journal.read(path)
    assert len(records) == 1 and "checksum" in problem


def _learner(tmp_path: Path, *settings: str) -> Learner:
    c = config_module.load(None, [f"server.state_dir={tmp_path}", *settings])
    return Learner(c, ARMS, 4, Metrics())


def _choose(learner: Learner, arm: int, x: np.ndarray = X, **kw) -> str:
    probs = np.zeros(3)
    probs[arm] = 1.0
    return learner.record(
        learner.policy, Decision((arm,), probs, 1.0), x, 2, 0, kw.pop("expect", True), None
    )


def _stats(learner: Learner) -> list[tuple[str, int, float]]:
    return [(s.name, s.pulls, s.mean_reward) for s in learner.policy.stats()]


def test_feedback_replays_after_a_crash(tmp_path: Path) -> None:
    first = _learner(tmp_path)
    first.open()
    ids = [_choose(first, k % 3) for k in range(5)]
    for k, sel in enumerate(ids[:4]):
        first.feedback(sel, k / 4, token="alice")
    expected = _stats(first)
    # No close(): the process "dies" here; the journal holds everything.
    second = _learner(tmp_path)
    second.open()
    assert _stats(second) == expected
    assert list(second.pending) == [ids[4]]
    assert second.feedback(ids[4], 1.0)[0] == "b"
    feedback = [r for _, r in journal.read_all(tmp_path) if isinstance(r, FeedbackRecord)]
    assert [r.token for r in feedback] == ["alice"] * 4 + [""]
    assert [r.normalized for r in feedback] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(r.delay >= 0 for r in feedback)


def test_snapshot_keeps_pending_contexts_in_binary(tmp_path: Path) -> None:
    first = _learner(tmp_path)
    first.open()
    x = np.random.default_rng(0).standard_normal(4)
    sel = _choose(first, 2, x)
    first.close()
    meta = json.loads((tmp_path / "learner.json").read_text())
    assert meta["version"] == 2 and "pending" not in meta
    second = _learner(tmp_path)
    second.open()
    dec = second.decision(sel)
    np.testing.assert_array_equal(dec.x, x.astype(np.float32))
    assert dec.replica == first.replica
    # The update uses the float32 context, so replaying the journal reproduces it exactly.
    second.feedback(sel, 0.5)
    reference = LinUCB(ARMS, 4, normalize=True)
    reference.update(2, x.astype(np.float32), 0.5)
    np.testing.assert_array_equal(second.policy.theta, reference.theta)


def test_a_crash_after_a_new_segment_is_not_replayed_twice(tmp_path: Path) -> None:
    first = _learner(tmp_path)
    first.open()  # generation 1, journal-2... is next
    sel = _choose(first, 0)
    # Die in the middle of a snapshot: the next segment exists, learner.json is not updated.
    first._journal = journal.JournalWriter(tmp_path / f"journal-{first.generation + 1}.log")
    first.feedback(sel, 1.0)
    second = _learner(tmp_path)
    second.open()
    assert _stats(second)[0][1] == 1
    third = _learner(tmp_path)
    third.open()
    assert _stats(third) == _stats(second)


def test_rewards_outside_the_contract_are_refused_and_change_nothing(tmp_path: Path) -> None:
    learner = _learner(tmp_path)
    learner.open()
    sel = _choose(learner, 0)
    size = learner._journal.path.stat().st_size
    for reward in (1e308, -0.5, 1.5):
        with pytest.raises(
            InvalidArgument, match=r"reward: .* outside selector.reward_range \[0, 1\]"
        ):
            learner.feedback(sel, reward)
    assert learner._journal.path.stat().st_size == size  # nothing journaled
    assert sel in learner.pending and _stats(learner)[0][1] == 0
    rejected = learner.metrics.feedback.labels("a", "rejected")._value.get()
    assert rejected == 3
    learner.feedback(sel, 1.0)  # a good reward still lands
    assert _stats(learner)[0][1:] == (1, 1.0)


def test_with_reward_normalization_any_finite_reward_is_accepted(tmp_path: Path) -> None:
    learner = _learner(tmp_path, "selector.reward_norm=quantile")
    learner.open()
    for reward in (1e308, 1e308, 1e308, -3.0):
        learner.feedback(_choose(learner, 1), reward)
    arrays = learner.policy.state_dict()["arrays"]
    assert all(np.isfinite(a).all() for a in arrays.values())
    assert learner.policy.stats()[1].pulls == 4


def _write_v1(path: Path, records: list[dict]) -> None:
    with open(path, "wb") as f:
        for r in records:
            body = json.dumps(r, separators=(",", ":"))
            f.write(f"{zlib.crc32(body.encode()):08x} {body}\n".encode())


def _v1_state_dir(folder: Path, journal_records: list[dict], pending: list[dict]) -> None:
    """What a format-1 build leaves: learner.json with JSON pending, a v1 journal."""
    folder.mkdir()
    LinUCB(ARMS, 4, normalize=True).save(folder / "selector-1.npz")
    meta = {
        "generation": 1,
        "pending": pending,
        "answered": [],
        "nll_norm": {
            "mode": "quantile",
            "window": 1000,
            "low_q": 0.2,
            "high_q": 0.8,
            "count": 0,
            "history": [],
            "min": None,
            "max": None,
        },
    }
    (folder / "learner.json").write_text(json.dumps(meta))
    _write_v1(folder / "journal-1.log", journal_records)


def _v1_selection(i: int, arm: int) -> dict:
    return {
        "type": "selection",
        "id": f"{i:032x}",
        "arms": [arm],
        "policy": "linucb",
        "x": X.tolist(),
        "created": T0 + i,
        "expect_feedback": True,
        "nll_reward": None,
    }


def _v1_feedback(i: int, arm: int, reward: float) -> dict:
    return {
        "type": "feedback",
        "id": f"{i:032x}",
        "reward": reward,
        "source": "app",
        "arms": [arm],
        "policy": "linucb",
        "x": X.tolist(),
        "time": T0 + i + 0.5,
    }


def test_a_format_1_state_dir_is_replayed_and_continues_in_format_2(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _v1_state_dir(
        state,
        [
            _v1_selection(1, 1),
            _v1_feedback(0, 0, 0.25),
            _v1_feedback(1, 1, 1.0),
            _v1_selection(2, 2),
            {"type": "expire", "id": f"{2:032x}"},
            _v1_selection(3, 2),
        ],
        pending=[_v1_selection(0, 0)],
    )
    learner = _learner(state)
    learner.open()
    assert _stats(learner) == [("a", 1, 0.25), ("b", 1, 1.0), ("c", 0, 0.0)]
    assert list(learner.pending) == [f"{3:032x}"]
    dec = learner.decision(f"{3:032x}")
    assert (dec.chosen, dec.propensity, dec.n, dec.chosen_index) == ((2,), 1.0, 0, -1)
    learner.feedback(f"{3:032x}", 0.5)
    learner.close()
    # the v1 segment stays readable next to the new ones; a restart does not replay it again
    assert (state / "journal-1.log").exists()
    again = _learner(state)
    again.open()
    assert _stats(again) == [("a", 1, 0.25), ("b", 1, 1.0), ("c", 1, 0.5)]
    sources = [r.source for _, r in journal.read_all(state, ARMS) if isinstance(r, FeedbackRecord)]
    assert sources == ["application", "application", "expired", "application"]


def test_poisoned_records_are_reported_and_skipped(tmp_path: Path, caplog) -> None:
    """The issue's reproduction as an older build journaled it (1e308 accepted three times),
    and the same in format 2: replay applies the good feedback and skips the rest."""
    state = tmp_path / "state"
    poisoned = [_v1_selection(i, 2) for i in range(1, 4)] + [
        _v1_feedback(i, 2, 1e308) for i in range(1, 4)
    ]
    _v1_state_dir(state, [*poisoned, _v1_feedback(0, 0, 0.5)], pending=[_v1_selection(0, 0)])
    w = journal.JournalWriter(state / "journal-2.log")  # a hand-written format-2 segment
    w.append(_decision(7, chosen=(1,)), sync=False)
    w.append(FeedbackRecord(f"{7:032x}", 1.7e9, "application", 1e308, 1e308, 1.0, "m"), False)
    w.close()
    with caplog.at_level(logging.WARNING):
        learner = _learner(state)
        learner.open()
    assert learner.skipped == 4
    skipped = [
        m for m in caplog.messages if "skipped" in m and "outside selector.reward_range" in m
    ]
    assert len(skipped) == 4 and "token 'm'" in skipped[-1]
    assert _stats(learner) == [("a", 1, 0.5), ("b", 0, 0.0), ("c", 0, 0.0)]
    assert not learner.pending  # skipped feedback still answered its selection


def test_a_record_that_would_overflow_is_skipped_even_inside_the_range(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _v1_state_dir(
        state,
        [_v1_selection(1, 1), _v1_feedback(1, 1, 1e308)],
        pending=[],
    )
    learner = _learner(state, "selector.reward_range=-1e308,1e308")
    learner.open()
    assert learner.skipped == 1 and _stats(learner)[1][1] == 0


def test_decision_log_joins_both_formats_and_counts_what_it_leaves_out(tmp_path: Path) -> None:
    state = tmp_path / "state"
    records = [_v1_selection(1, 1), _v1_feedback(1, 1, 0.25), _v1_selection(2, 2)]
    _v1_state_dir(state, records, pending=[])
    with pytest.raises(ValueError, match="format-1 journal segments .*journal-1.log"):
        journal.decision_log(state)
    learner = _learner(state)
    learner.open()  # continues in format 2 next to the v1 segment
    learner.feedback(f"{2:032x}", 0.5)
    live = _choose(learner, 0)
    learner.feedback(live, 1.0)
    _choose(learner, 1)  # no feedback yet
    ensemble = learner.record(
        learner.policy, Decision((0, 1), np.full(3, 1 / 3), 1.0), X, 2, 0, True, None
    )
    learner.feedback(ensemble, 0.75)
    learner.close()
    dlog = journal.decision_log(state, ARMS)
    assert dlog.arms == ARMS and len(dlog) == 3
    assert dlog.chosen.tolist() == [1, 2, 0] and dlog.rewards.tolist() == [0.25, 0.5, 1.0]
    assert dlog.propensities.tolist() == [1.0, 1.0, 1.0]
    c = dlog.counts
    assert (c["decisions"], c["rows"], c["no_feedback"], c["several_arms"]) == (5, 3, 1, 1)
    assert c["raw_reward"] == 1  # the v1 feedback logged no normalized reward


def test_decision_log_says_when_nothing_has_a_reward_yet(tmp_path: Path) -> None:
    learner = _learner(tmp_path)
    learner.open()
    _choose(learner, 0)
    learner.close()
    with pytest.raises(
        ValueError, match=r"none of the 1 decisions .* reward yet \(no feedback 1\)"
    ):
        journal.decision_log(tmp_path)
