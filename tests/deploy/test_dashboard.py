"""deploy/grafana-dashboard.json: valid JSON, a sane Grafana model, and PromQL that reads only
metrics the live server exports (and every one of them)."""

from __future__ import annotations

import pytest
from deployutil import (
    DOCUMENTED,
    Laser,
    dashboard,
    exported_names,
    expressions,
    families,
    metric_names,
    panels,
)

pytestmark = pytest.mark.timeout(120)


def test_dashboard_is_a_grafana_model() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 30
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= variables
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels(board):
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], f"panel {p['title']!r} has no query"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == "${datasource}"
    titles = " / ".join(p["title"] for p in panels(board)).lower()
    for wanted in (
        "requests/s",
        "latency",
        "stage latency",
        "selection share",
        "feedback reward",
        "pending selections",
        "in-flight",
    ):
        assert wanted in titles, f"the dashboard lacks a {wanted!r} panel"


def test_every_selector_is_scoped_to_job_and_instance() -> None:
    for where, expr in expressions(dashboard()):
        if where.startswith("variable"):
            continue
        selectors = expr.count("{")
        assert selectors == expr.count('job=~"$job", instance=~"$instance"'), (where, expr)


def test_dashboard_uses_only_exported_metrics_and_all_of_them(laser: Laser) -> None:
    text = laser.exposition()
    exported = exported_names(text)
    missing = DOCUMENTED - families(text)
    assert not missing, f"the server no longer exports {missing}"
    used: set[str] = set()
    for where, expr in expressions(dashboard()):
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        unknown = names - exported
        assert not unknown, f"{where} reads metrics the server does not export: {unknown}"
        used |= names
    used_families = {
        n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in used
    }
    unused = DOCUMENTED - used_families
    assert not unused, f"exported metrics without a panel: {unused}"


def test_metric_name_lexer() -> None:
    expr = (
        'sum by (reward_model) (rate(laser_rm_selected_total{job=~"$job", code!="a{b}"}[5m]))'
        " / ignoring (reward_model) group_left sum(rate(laser_rm_selected_total[$smoothing]))"
        " > 0.95 and on (job) count by (job) (up) > 1e3 unless vector(0)"
    )
    assert metric_names(expr) == {"laser_rm_selected_total", "up"}
    assert metric_names('label_values(laser_requests_total{x="y"}, instance)') == {
        "laser_requests_total"
    }
