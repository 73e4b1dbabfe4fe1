"""`laser-bench rerank-cost`'s scoring tables on the suite's 135M RMs, at toy sizes: one row per
(RM, prompt length, n) with the three timings, and the prompt really that long; one row per
(RM, short or long) of the batching table."""

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
        "--batching", "2", "--batching-tokens", "48", "--scoring-dtypes", "float32",
    ]  # fmt: skip
    assert bench_main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["scoring"]
    assert sorted((r["rm"], r["n"], r["dtype"]) for r in rows) == [
        (rm, n, dtype)
        for rm in ("smol-judge", "smol-loglik")
        for n in (1, 3)
        for dtype in ("float32",)  # bf16 scoring is checked against fp32 in test_causal.py
    ]
    kinds = {r["rm"]: r["kind"] for r in rows}
    assert kinds == {"smol-judge": "lm-judge", "smol-loglik": "lm-loglik"}
    for r in rows:
        # The loglik prefix is the chat-templated prompt; the judge's adds its template.
        assert r["prompt_tokens"] >= 64
        assert min(r["seconds"], r["bound_seconds"], r["old_seconds"]) > 0
    # Every RM of the profile, short and long requests, alone against batched.
    batching = {(r["rm"], r["prompt"]): r for r in doc["batching"]}
    assert set(batching) == {
        (rm, p) for rm in ("smol-judge", "smol-loglik", "minilm-sim") for p in ("short", "long")
    }
    for r in batching.values():
        assert r["requests"] == 2 and min(r["alone_s"], r["batched_s"]) > 0
        assert r["gain"] == pytest.approx(r["alone_s"] / r["batched_s"])
        # The scheduler's batches under server.max_batch_tokens: two small requests fit one.
        assert r["capped_batches"] == [2] and r["tokens"] < r["max_batch_tokens"] / 2
        assert r["capped_gain"] == pytest.approx(r["alone_s"] / r["capped_s"])
