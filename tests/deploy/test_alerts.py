"""deploy/alerts.yml: promtool accepts it, its unit tests pass, it reads only exported metrics."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from deployutil import DEPLOY, PROMETHEUS_SYNTHETIC, Laser, exported_names, metric_names

pytestmark = pytest.mark.timeout(120)
HERE = Path(__file__).resolve().parent


def _rules() -> list[dict]:
    data = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_promtool_check_rules(promtool: str) -> None:
    out = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in out.stdout


def test_example_prometheus_config_loads_the_rules(promtool: str) -> None:
    out = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout


def test_alerts_fire_on_the_conditions_they_describe(promtool: str, tmp_path: Path) -> None:
    """promtool unit tests (alerts_test.yml) on synthetic series: every alert fires when it
    should and stays quiet on the near misses. Annotations are stripped from the copy under
    test, so the tests compare labels only."""
    data = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.copy(HERE / "alerts_test.yml", tmp_path / "alerts_test.yml")
    out = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    spec = yaml.safe_load((HERE / "alerts_test.yml").read_text())
    tested = {
        case["alertname"]
        for test in spec["tests"]
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert tested == {rule["alert"] for rule in _rules()}, "every alert needs a firing test"


def test_alert_rules_use_only_exported_metrics(laser: Laser) -> None:
    exported = exported_names(laser.exposition()) | PROMETHEUS_SYNTHETIC
    for rule in _rules():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        unknown = names - exported
        assert not unknown, f"{rule['alert']} reads metrics the server does not export: {unknown}"
