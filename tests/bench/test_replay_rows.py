"""`--rows A:B` replays one stretch of the shipped stream, e.g. the rows after a dev split,
and a malformed range is refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from laser_bench import replay
from laser_bench.cli import main as bench_main

POOLS = Path(__file__).resolve().parents[2] / "bench" / "pools"


def _replay(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "out.json"
    args = ["mix", "--pools", str(POOLS), "--seeds", "2", "--bootstrap", "50", "--out", str(out)]
    assert bench_main([*args, "--methods", "greedy", "oracle", *extra]) == 0
    return json.loads(out.read_text())


def test_rows_replays_that_stretch_of_the_stream(tmp_path: Path) -> None:
    _, records = replay.read_pools(POOLS / "mix.jsonl.gz")
    tail = _replay(tmp_path, "--rows", f"{len(records) - 29}:")
    assert tail["rounds"] == 30 and tail["config"]["rows"] == f"{len(records) - 29}:"
    middle = _replay(tmp_path, "--rows", "11:40")
    assert middle["rounds"] == 30 and middle["config"]["rows"] == "11:40"
    # Greedy and the oracle do not depend on the shuffle: their scores are those rows' means.
    names = list(next(iter(records))[1]["scores"])
    pools = replay.pools_from_records(records[10:40], names)
    assert set(middle["tasks"]) == {p.task for p in pools}
    greedy = 100 * sum(p.greedy_quality for p in pools) / len(pools)
    oracle = 100 * sum(p.quality.max() for p in pools) / len(pools)
    assert middle["methods"]["greedy"]["score"] == pytest.approx(greedy)
    assert middle["methods"]["oracle"]["score"] == pytest.approx(oracle)


@pytest.mark.parametrize("bad", ["0:5", "5:4", "x:", "12"])
def test_malformed_rows_are_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        bench_main(["mix", "--pools", str(POOLS), "--rows", bad])
    assert exit_.value.code == 2
    assert "--rows" in capsys.readouterr().err
