"""Helpers for the deployment checks: paths, the documented metrics, a PromQL name lexer."""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laser_serve.server.testing import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MAX_INFLIGHT = 2  # the test server's limit: small, so the load-bench test provokes overload


@dataclass
class Laser:
    process: ServerProcess
    target: str
    metrics_url: str
    pid: int

    def exposition(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as resp:
            return resp.read().decode()


# --- PromQL: which metric names does an expression read? ------------------------------------

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan", "atan2",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (a small lexer, enough for dashboards and rules:
    strings, label matchers, ranges and grouping clauses are dropped; identifiers followed by
    "(" are functions or aggregations)."""
    names = set(re.findall(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)", expr))
    expr = re.sub(r"label_values\([^)]*\)", "", expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = m.group()
        if word.lower() in _KEYWORDS or expr[m.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def exported_names(exposition: str) -> set[str]:
    """Every sample name the exposition carries or can carry: the sample names present, and
    for a family without series yet (such as laser_stage_cut_total before any cut) the names
    its TYPE implies. Present samples are authoritative: prometheus_client drops `_sum` from
    histograms with negative buckets (laser_feedback_reward), so a dashboard must not use it."""
    present = set(re.findall(r"^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]", exposition, re.MULTILINE))
    names = set(present)
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
        if not any(name + suffix in present for suffix in suffixes):
            names |= {name + suffix for suffix in suffixes}
    return names


def families(exposition: str) -> set[str]:
    """Metric family names from the TYPE lines (histograms without their suffixes)."""
    return set(re.findall(r"^# TYPE (\S+) \S+$", exposition, re.MULTILINE))


# The metrics the server is documented to export (README, issue 6).
DOCUMENTED = {
    "laser_requests_total",
    "laser_request_duration_seconds",
    "laser_stage_duration_seconds",
    "laser_rm_selected_total",
    "laser_feedback_total",
    "laser_feedback_reward",
    "laser_selector_pulls",
    "laser_pending_selections",
    "laser_inflight_requests",
    "laser_generated_tokens_total",
    "laser_stage_cut_total",
    "laser_rm_score_duration_seconds",
    "laser_rerank_tasks_total",
}
# Series Prometheus itself attaches to every scrape target; rules may use them.
PROMETHEUS_SYNTHETIC = {"up"}


# --- the dashboard -------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana-dashboard.json").read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out += panel.get("panels", [])  # collapsed rows nest their panels
    return out


def expressions(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    exprs = [
        (f"panel {p['title']!r} target {t['refId']}", t["expr"])
        for p in panels(board)
        for t in p.get("targets", [])
    ]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            exprs.append((f"variable {var['name']}", query))
    return exprs
