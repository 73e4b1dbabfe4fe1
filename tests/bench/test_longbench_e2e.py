"""`laser-bench longbench` end to end on real LongBench rows, on the replay engine.

Two tasks × the two shortest examples, n=2 candidates of at most 8 new tokens, on the
SmolLM2-135M stack with a 256-token window (longer prompts are cut in the middle, as
LongBench does). multi_news goes through the chat template, samsum as a plain prompt.
A second run builds nothing (the pools are cached) and replays the same pools; the shipped
file replays with --pools, with no models at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from laser_bench.cli import main as bench_main

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "longbench"  # ../shared
TASKS = ("multi_news", "samsum")

pytestmark = pytest.mark.skipif(
    not all((SHARED / f"{t}.jsonl").is_file() for t in TASKS),
    reason=f"LongBench rows for {TASKS} not in {SHARED}",
)


def test_longbench_builds_replays_and_ships(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = [
        "longbench", "--profile", "smollm2-135m", "--set", "generator.max_model_len=256",
        "--data", str(SHARED), "--tasks", *TASKS, "--limit", "2", "--shortest",
        "--n", "2", "--max-new-tokens", "8", "--cache-dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    ship = tmp_path / "pools" / "longbench.jsonl.gz"
    out = tmp_path / "results.json"  # in-process vLLM logs to this test's stdout
    plots = tmp_path / "plots"
    shipping = ["--out", str(out), "--ship", str(ship), "--plot-dir", str(plots)]
    assert bench_main([*build, "--seeds", "3", *shipping]) == 0
    res = json.loads(out.read_text())

    rms = [rm["name"] for rm in res["config"]["reward_models"]]
    assert rms == ["smol-judge", "smol-loglik", "minilm-sim"]
    methods = {"greedy", "random", "round-robin", "ensemble", "laser", "laser-nll", "oracle"}
    assert set(res["methods"]) == methods | {f"rm:{r}" for r in rms}
    assert res["rounds"] == 4 and res["seeds"] == 3 and set(res["tasks"]) == set(TASKS)
    for name, row in res["methods"].items():
        lo, hi = row["ci"]
        assert 0.0 <= lo <= row["score"] + 1e-9 and row["score"] <= hi + 1e-9 <= 100.0 + 1e-9, name
        if name != "greedy":  # greedy is not in the pool
            assert row["score"] <= res["methods"]["oracle"]["score"] + 1e-9, name
    assert res["methods"]["ensemble"]["rm_seconds_vs_ensemble"] == pytest.approx(1.0)
    assert 0 < res["methods"]["laser"]["rm_seconds"] < res["methods"]["ensemble"]["rm_seconds"]
    assert set(res["paired"]) == {"laser-ensemble", "laser-best_rm", "laser-greedy"}
    for p in res["paired"].values():
        assert p["ci"][0] <= p["diff"] <= p["ci"][1]
    assert res["curve"]["rounds"][-1] == 4
    assert sum(res["selection"]["laser"]["samsum"].values()) == pytest.approx(1.0)
    assert {p.name for p in plots.iterdir()} == {
        "longbench-curve.png",
        "longbench-selection.png",
    }

    # Resumed: everything is cached, nothing is generated or scored again.
    cached = _files(tmp_path / "cache")
    assert bench_main([*build, "--seeds", "3", "--out", str(out)]) == 0
    assert _files(tmp_path / "cache") == cached  # no stage written again
    assert json.loads(out.read_text())["methods"] == res["methods"]

    # The shipped file alone replays the same table, with no models and no data.
    replayed = tmp_path / "replayed.json"
    assert (
        bench_main(
            ["longbench", "--pools", str(ship.parent), "--seeds", "3", "--out", str(replayed)]
        )
        == 0
    )
    shipped = json.loads(replayed.read_text())
    assert "| laser |" in capsys.readouterr().out  # the table for people
    assert shipped["methods"] == res["methods"] and shipped["paired"] == res["paired"]
    assert shipped["config"]["command"].startswith("laser-bench longbench")
    # Every shipped row says which CPU sampled it (the regeneration check needs the same).
    from laser_bench import replay

    _, records = replay.read_pools(ship)
    assert [replay.row_cpu_flags({}, r) for _, r in records] == [replay.cpu_flags()] * 4


def _files(folder: Path) -> dict[str, int]:
    """Every cache file with its modification time (ns)."""
    return {str(f): f.stat().st_mtime_ns for f in folder.rglob("*") if f.is_file()}
