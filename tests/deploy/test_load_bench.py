"""`laser-bench load` against the session's light server (server.max_inflight = 2), with
second-long levels: rows, percentiles, RESOURCE_EXHAUSTED counting, soak with RSS samples."""

from __future__ import annotations

import json

import pytest
from deployutil import MAX_INFLIGHT, Laser
from laser_bench import load
from laser_bench.cli import main as bench_main

pytestmark = pytest.mark.timeout(180)


def test_load_levels_errors_and_soak(laser: Laser, capsys: pytest.CaptureFixture[str]) -> None:
    over = 4 * MAX_INFLIGHT
    argv = [
        "load",
        "--server", laser.target,
        "--server-pid", str(laser.pid),
        "--concurrency", f"1,{MAX_INFLIGHT},{over}",
        "--seconds", "1.5",
        "--skip-long",
        "--skip-generation",
        "--soak", "3",
        "--rss-interval", "1",
        "--timeout", "60",
        "--json",
    ]  # fmt: skip
    assert bench_main(argv) == 0
    result = json.loads(capsys.readouterr().out)

    rows = {r["callers"]: r for r in result["rows"]}
    assert sorted(rows) == [1, MAX_INFLIGHT, over]
    assert all(r["prompt"] == "short" for r in rows.values())
    for c in (1, MAX_INFLIGHT):  # at or under max_inflight: nothing is rejected
        r = rows[c]
        assert r["ok"] > 0 and r["errors"] == {}, r
        assert r["rerank_per_s"] > 0
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["server_rss_mib"] > 50
    # 8 callers against max_inflight 2: the overflow comes back RESOURCE_EXHAUSTED, counted.
    assert rows[over]["errors"].get("RESOURCE_EXHAUSTED", 0) > 0, rows[over]
    assert rows[over]["ok"] > 0
    assert rows[over]["requests"] == rows[over]["ok"] + sum(rows[over]["errors"].values())

    soak = result["soak"]
    assert soak["callers"] == MAX_INFLIGHT  # the highest level without errors
    assert soak["ok"] > 0 and soak["errors"] == {}
    assert soak["feedback_ok"] == soak["ok"] and not soak["feedback_errors"]
    assert len(soak["rss_samples"]) >= 3
    assert soak["rss_start_mib"] > 50 and isinstance(soak["rss_ok"], bool)

    table = load.format_tables(result)
    assert f"| short | {over} |" in table and "RESOURCE_EXHAUSTED" in table
    assert "RSS start MiB" in table
    assert result["command"] == (
        f"laser-bench load --server {laser.target} --server-pid {laser.pid} "
        f"--concurrency 1,{MAX_INFLIGHT},{over} --seconds 1.5 --skip-long --skip-generation "
        "--soak 3 --rss-interval 1 --timeout 60 --json"
    )


def test_bad_arguments_are_reported_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["load", "--server", "127.0.0.1:1", "--concurrency", "0,4"]) == 2
    err = capsys.readouterr().err
    assert "--concurrency" in err and "Traceback" not in err
    assert bench_main(["load", "--server", "127.0.0.1:1", "--soak", "0"]) == 2
    assert "--soak" in capsys.readouterr().err


def test_requests_and_percentiles() -> None:
    w = load.Workload("generate", "127.0.0.1:1", 1, 1.0, 1, 1.0, n=2, max_tokens=3)
    req = load._request(w, 5)
    assert req.sampling.n == 2 and req.sampling.max_tokens == 3 and not req.candidates
    w = load.Workload("short", "127.0.0.1:1", 1, 1.0, 1, 1.0, candidates=6, feedback=True)
    req = load._request(w, 5)
    assert len(req.candidates) == 6 and req.expect_feedback and req.context_text
    assert req.prompt == req.context_text  # the short prompt is the question alone
    w = load.Workload("long", "127.0.0.1:1", 1, 1.0, 1, 1.0, long_tokens=800)
    long = load._request(w, 5)
    assert len(long.prompt) > 2000 and long.prompt.endswith(long.context_text)
    assert load.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert load.percentile([1.0, 2.0], 99) == pytest.approx(1.99)
    assert load.percentile([7.0], 95) == 7.0
