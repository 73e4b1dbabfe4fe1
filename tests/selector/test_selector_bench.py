"""Smoke test of `laser-bench selector` with a minimal configuration."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
from pathlib import Path

import pytest

ROW_KEYS = {"d", "K", "impl", "select_us_p50", "select_us_p99", "update_us_p50"}


def _bench_module():
    try:
        return importlib.import_module("laser_bench.selector_bench")
    except ModuleNotFoundError:  # not installed: load it from the source tree
        path = Path(__file__).resolve().parents[2] / "bench" / "selector_bench.py"
        spec = importlib.util.spec_from_file_location("selector_bench_under_test", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def test_bench_rows_minimal():
    sb = _bench_module()
    rows = sb.bench_rows([64], [2], quick=True, impls=("exact", "naive"))
    assert [r["impl"] for r in rows] == ["exact", "naive"]
    for r in rows:
        assert ROW_KEYS <= set(r) and r["d"] == 64 and r["K"] == 2
        assert 0 < r["select_us_p50"] <= r["select_us_p99"]
    result = sb.summarize(rows, {"copy_gbps": 10.0, "read_gbps": 20.0})
    assert result["bounds"][0]["bound_us"] == pytest.approx(2 * 64 * 64 * 8 / 10e9 * 1e6)
    assert result["speedups"][0]["speedup"] > 1
    assert "| 64 | 2 | exact |" in sb.format_report(result)
    with pytest.raises(ValueError, match="unknown impls"):
        sb.bench_rows([64], [2], impls=("gpu",))


def test_cli_json(capsys, monkeypatch):
    sb = _bench_module()
    monkeypatch.setattr(
        sb, "measure_bandwidth", lambda repeats=7: {"copy_gbps": 1.0, "read_gbps": 2.0}
    )
    parser = argparse.ArgumentParser()
    sb.register(parser.add_subparsers(dest="bench"))
    args = parser.parse_args(
        ["selector", "--json", "--quick", "--dims", "64", "--arms", "2", "--impls", "exact"]
    )
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bandwidth_gbps"] == 1.0
    assert [r["impl"] for r in out["rows"]] == ["exact"]
    assert ROW_KEYS <= set(out["rows"][0])
