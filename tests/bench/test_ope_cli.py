"""`laser-bench ope --validate`: synthetic and .npz tables, the table and the JSON document."""

from __future__ import annotations

import json

import numpy as np
import pytest
from laser_bench import cli

from laser_serve.selector.offline import synthetic_table

QUICK = ["--seeds", "1", "--rounds", "300", "--n-boot", "100", "--targets", "random", "logged"]


def test_validate_json_on_the_synthetic_table(capsys) -> None:
    assert cli.main(["ope", "--validate", "--json", "--rows", "500", *QUICK]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert 0.0 <= doc["coverage"] <= 1.0
    assert len(doc["rows"]) == 2 * 2 * 4  # loggers × targets × estimators, one seed
    row = doc["rows"][0]
    assert {"target", "estimator", "seed", "estimate", "ci", "truth"} <= set(row)
    assert len(row["ci"]) == 2 and row["ci"][0] <= row["ci"][1]


def test_validate_table_from_an_npz_file(tmp_path, capsys) -> None:
    X, R = synthetic_table(400, 5, 3, seed=4)
    path = tmp_path / "pool.npz"
    np.savez(path, X=X, R=R, arms=np.array(["judge", "loglik", "sim"]))
    args = ["ope", "--validate", "--table", str(path), *QUICK[:6], "--targets", "fixed:sim"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "| fixed:sim | dr |" in out and "Coverage over (logger, target, seed)" in out
    assert f"{path}: 400 rows, d=5, K=3" in out


def test_errors_are_one_line_for_people(tmp_path, capsys) -> None:
    np.savez(tmp_path / "bad.npz", X=np.zeros((3, 2)))
    assert cli.main(["ope", "--validate", "--table", str(tmp_path / "bad.npz")]) == 2
    assert "it needs X (N, d) and R (N, K)" in capsys.readouterr().err
    assert cli.main(["ope", "--validate", "--table", str(tmp_path / "none.npz")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert cli.main(["ope"]) == 2
    assert "pass --validate" in capsys.readouterr().err


def test_warm_start_bench_lowers_regret_on_rows_it_was_not_warmed_on(capsys) -> None:
    argv = ["ope", "--warm-start", "--json", "--rows", "500", "--seeds", "3"]
    assert cli.main([*argv, "--policies", "linucb", "--warm-rows", "100"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["warm"]["mean"] < 0.5 * row["cold"]["mean"]
    paired = np.subtract(row["warm"]["regret"], row["cold"]["regret"])
    assert row["warm - cold"]["mean"] == pytest.approx(paired.mean())
    assert cli.main([*argv, "--warm-rows", "400", "--play-rounds", "200"]) == 2
    assert "need warm_rows + rounds <= 500 rows" in capsys.readouterr().err
