"""`laser-bench rerank-cost`'s scoring table on the suite's 135M RMs, at toy sizes: one row per
(RM, prompt length, n) with the three timings, and the prompt really that long."""

from __future__ import annotations

import json

import pytest
from laser_bench.cli import main as bench_main

pytestmark = pytest.mark.timeout(300)


def test_scoring_rows(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "rerank-cost", "--skip-policies", "--skip-generation",
        "--scoring-profile", "smollm2-135m",
        "--scoring-ns", "1,3", "--scoring-lengths", "64", "--repeats", "1", "--json",
    ]  # fmt: skip
    assert bench_main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["scoring"]
    assert sorted((r["rm"], r["n"]) for r in rows) == [
        ("smol-judge", 1), ("smol-judge", 3), ("smol-loglik", 1), ("smol-loglik", 3),
    ]  # fmt: skip
    kinds = {r["rm"]: r["kind"] for r in rows}
    assert kinds == {"smol-judge": "lm-judge", "smol-loglik": "lm-loglik"}
    for r in rows:
        # The loglik prefix is the chat-templated prompt; the judge's adds its template.
        assert r["prompt_tokens"] >= 64
        assert min(r["seconds"], r["bound_seconds"], r["old_seconds"]) > 0
