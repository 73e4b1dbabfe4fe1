"""`laser-bench longbench` against a real embedded laser-serve on real LongBench rows.

Two tasks × the three shortest examples, n=2 candidates of at most 8 new tokens. The server
runs with a 256-token window, so it cuts longer prompts in the middle (LongBench's rule) and
the policy model and the RMs see short prompts; that keeps the test to a few minutes on 2 CPU
cores. multi_news is sent as chat messages, samsum as a plain prompt (no chat template).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from laser_bench.cli import main as bench_main

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "longbench"  # ../shared
TASKS = ("multi_news", "samsum")

pytestmark = pytest.mark.skipif(
    not all((SHARED / f"{t}.jsonl").is_file() for t in TASKS),
    reason=f"LongBench rows for {TASKS} not in {SHARED}",
)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    from laser_serve.server.testing import running_server

    args = [
        "--generator", "hf",
        "--set", "generator.max_model_len=256",
        "--set", f"server.tasks=default,{','.join(TASKS)}",
    ]  # fmt: skip
    with running_server(args) as target:
        yield target


def test_longbench_every_method_on_a_real_server(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    argv = [
        "longbench", "--server", server, "--data", str(SHARED), "--tasks", *TASKS,
        "--limit", "3", "--shortest", "--n", "2", "--max-new-tokens", "8",
        "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    started = time.monotonic()
    outputs = ["--out", str(out), "--plot", str(tmp_path / "selection.png")]
    assert bench_main([*argv, "--seeds", "2", *outputs]) == 0
    first_run = time.monotonic() - started
    table = capsys.readouterr().out
    assert "oracle (upper bound)" in table and "laser-frozen*" in table

    res = json.loads(out.read_text())
    rms = res["config"]["reward_models"]
    assert len(rms) >= 2
    methods = {"greedy", "random", "ensemble", "laser", "laser-nll", "laser-frozen", "oracle"}
    methods |= {f"rm:{r}" for r in rms}
    assert set(res["tasks"]) == set(TASKS)
    for task, rows in res["tasks"].items():
        assert set(rows) == methods, task
        for method, row in rows.items():
            for name in ("score", "ci_low", "ci_high"):
                assert 0.0 <= row[name] <= 100.0, (task, method, name)
            assert row["ci_low"] - 1e-9 <= row["score"] <= row["ci_high"] + 1e-9
            if method not in ("greedy", "laser-frozen"):  # greedy is not in the pool
                assert row["score"] <= rows["oracle"]["score"] + 1e-9, (task, method)
        # laser-frozen is scored on its held-out part only: compare on the same examples.
        held = rows["laser-frozen"]["heldout_scores"]
        assert rows["laser-frozen"]["score"] <= held["oracle"] + 1e-9
        assert rows["ensemble"]["rm_calls_per_example"] == len(rms)
        assert rows["laser"]["rm_calls_per_example"] == 1
        assert rows["laser"]["rm_seconds_per_example"] < rows["ensemble"]["rm_seconds_per_example"]
        assert rows["laser"]["generate_seconds_per_example"] > 0
        assert len(res["examples"][task]) == 3
        assert sum(res["selection"]["laser"][task].values()) == pytest.approx(1.0)
    assert set(res["average"]) == methods
    assert (tmp_path / "selection.png").stat().st_size > 0
    # The samsum prompts (thousands of tokens) do not fit 256 tokens: the server cut them.
    assert res["task_info"]["samsum"]["truncated"] == 3

    # A second run with another seed count reuses the cached pools: no generation, same pools.
    started = time.monotonic()
    assert bench_main([*argv, "--seeds", "1", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["config"]["cache_hits"] == 6
    assert time.monotonic() - started < first_run
    for task in TASKS:
        assert [e["candidate_scores"] for e in again["examples"][task]] == [
            e["candidate_scores"] for e in res["examples"][task]
        ]
        assert again["tasks"][task]["oracle"]["score"] == res["tasks"][task]["oracle"]["score"]
