"""Journal records survive torn writes; the learner replays exactly what was acknowledged."""

from pathlib import Path

import numpy as np

from laser_serve import config as config_module
from laser_serve.server import journal
from laser_serve.server.learning import Learner
from laser_serve.server.metrics import Metrics


def test_torn_tail_is_cut_and_earlier_records_kept(tmp_path: Path) -> None:
    path = tmp_path / "journal-1.log"
    w = journal.JournalWriter(path)
    for i in range(3):
        w.append({"i": i}, sync=True)
    w.close()
    with open(path, "ab") as f:
        f.write(journal.encode({"i": 3})[:-7])  # a record cut mid-write
    records, _, problem = journal.read(path)
    assert [r["i"] for r in records] == [0, 1, 2] and "torn" in problem
    assert [r["i"] for r in journal.repair(path)] == [0, 1, 2]
    assert journal.read(path)[2] is None


def test_corrupt_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    path.write_bytes(journal.encode({"a": 1}) + b'00000000 {"a": 2}\n' + journal.encode({"a": 3}))
    records, _, problem = journal.read(path)
    assert records == [{"a": 1}] and "checksum" in problem


def _learner(tmp_path: Path) -> Learner:
    c = config_module.load(None, [f"server.state_dir={tmp_path}"])
    return Learner(c, ("a", "b", "c"), 4, Metrics())


def test_feedback_replays_after_a_crash(tmp_path: Path) -> None:
    first = _learner(tmp_path)
    first.open()
    x = np.array([1.0, 0.0, 0.0, 0.0])
    ids = [first.record((k % 3,), "linucb", x, True, None) for k in range(5)]
    for k, sel in enumerate(ids[:4]):
        first.feedback(sel, float(k))
    expected = [(s.name, s.pulls, s.mean_reward) for s in first.policy.stats()]
    # No close(): the process "dies" here; the journal holds everything.
    second = _learner(tmp_path)
    second.open()
    assert [(s.name, s.pulls, s.mean_reward) for s in second.policy.stats()] == expected
    assert list(second.pending) == [ids[4]]
    assert second.feedback(ids[4], 1.0)[0] == "b"
