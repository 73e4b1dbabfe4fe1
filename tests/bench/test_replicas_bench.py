"""`laser-bench replicas` at tiny sizes: it runs the real cluster and prints its JSON shape."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from laser_bench.cli import main

pytest.importorskip("redis")


@pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("nginx")),
    reason="redis-server and nginx not installed (make cluster-deps installs them)",
)
def test_replicas_bench_prints_rows_and_catchup(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["replicas", "--replicas", "1", "--seconds", "1", "--concurrency", "2"]
    assert main([*args, "--lag-samples", "3", "--catchup-events", "20", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) == {"rows", "catchup_s"}
    (row,) = r["rows"]
    assert set(row) == {"replicas", "rerank_per_s", "feedback_per_s", "lag_ms_p50", "lag_ms_p99"}
    assert row["replicas"] == 1
    assert all(row[k] > 0 and math.isfinite(row[k]) for k in row)
    assert row["lag_ms_p50"] <= row["lag_ms_p99"]
    assert r["catchup_s"] > 0
