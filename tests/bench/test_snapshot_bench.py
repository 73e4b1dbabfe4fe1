"""`laser-bench snapshot` on a small learner: what it reports is what the state dir holds."""

from __future__ import annotations

import json

from laser_bench.cli import main


def test_snapshot_bench_reports_sizes_and_times(capsys) -> None:
    assert main(["snapshot", "--pending", "300", "--dim", "16", "--repeats", "2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["pending"] == 300 and len(r["snapshot_s_all"]) == 2
    # 300 frames of a 16-dim float32 context plus a small JSON header each
    assert 300 * 64 < r["learner_bytes"] < 300 * (64 + 700)
    # the lock is held inside one snapshot, so never longer than the slowest snapshot took
    assert 0 < r["lock_held_s_max"] <= max(r["snapshot_s_all"]) and r["load_s"] > 0
    assert main(["snapshot", "--pending", "50", "--dim", "8", "--repeats", "1"]) == 0
    assert capsys.readouterr().out.startswith("| pending | dim | snapshot s (median) |")
