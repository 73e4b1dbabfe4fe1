"""The LongBench ablation replays `laser` on cached pools exactly as the bench scores it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from laser_bench import longbench_ablate as ablate
from laser_bench import longbench_eval as lbe

RMS = ("smol-judge", "smol-loglik", "minilm-sim")  # the embedded server's order
TASKS = ("qasper", "hotpotqa")


def write_data_and_cache(root: Path, per_task: int = 6, n: int = 4) -> None:
    """LongBench rows and one cache record per row, in the bench's cache layout."""
    rng = np.random.default_rng(0)
    data = root / "data"
    data.mkdir()
    for task in TASKS:
        rows = [
            {"input": f"{task} question {i}?", "context": f"context {i}", "answers": [f"ans{i}"]}
            for i in range(per_task)
        ]
        (data / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        for i, row in enumerate(rows):
            key = {
                "task": task,
                "example": lbe.example_key(row["input"], row["context"]),
                "n": n,
                "reward_models": sorted(RMS),  # the cache keeps the names sorted
            }
            context = rng.normal(size=8)
            record = {
                "key": key,
                "context": (context / np.linalg.norm(context)).tolist(),
                "greedy": {"text": "no idea"},
                "candidates": [
                    {
                        "text": f"ans{i}" if j == i % n else f"wrong {j}",
                        "rm_scores": {rm: float(rng.normal()) for rm in sorted(RMS)},
                    }
                    for j in range(n)
                ],
            }
            path = root / "cache" / "model" / task / f"{key['example']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))


def test_laser_row_equals_the_bench_and_every_variant_runs(tmp_path: Path) -> None:
    write_data_and_cache(tmp_path)
    pools, rm_names = ablate.load_cached_pools(
        tmp_path / "cache", tmp_path / "data", TASKS, None, n=4
    )
    assert rm_names == list(RMS)
    assert {t: len(p) for t, p in pools.items()} == {t: 6 for t in TASKS}

    seeds = 3
    args = argparse.Namespace(
        cache_dir=tmp_path / "cache", data=tmp_path / "data", tasks=TASKS, limit=None, n=4,
        seeds=seeds,
    )  # fmt: skip
    rows = {label: (mean, spread) for label, mean, spread in ablate.run(args)}

    # The bench's own path: evaluate_methods per seed, then summarize.
    flat = [p for ps in pools.values() for p in ps]
    methods = ["random", "ensemble", "laser"]
    runs = [lbe.evaluate_methods(flat, rm_names, methods, seed=s) for s in range(seeds)]
    bench = lbe.summarize(pools, runs, methods, rm_names, n_boot=10)["average"]
    assert rows["laser as benched (alpha 0.1, shared, unit contexts)"][0] == pytest.approx(
        bench["laser"]
    )
    assert rows["random RM"][0] == pytest.approx(bench["random"])
    assert rows["ensemble"][0] == pytest.approx(bench["ensemble"])
    assert len(rows) == 2 + len(ablate.variants(rm_names))
    assert all(0.0 <= mean <= 100.0 for mean, _ in rows.values())


def test_no_cached_pools_says_what_to_run(tmp_path: Path) -> None:
    write_data_and_cache(tmp_path)
    with pytest.raises(SystemExit, match="run laser-bench longbench"):
        ablate.load_cached_pools(tmp_path / "cache", tmp_path / "data", TASKS, None, n=8)
