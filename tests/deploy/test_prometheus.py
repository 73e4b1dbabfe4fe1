"""A real Prometheus on 127.0.0.1 scrapes the live server every second and evaluates the
alert rules; the values it stores match what the test sent, every dashboard query is valid
PromQL to it, and every alert rule evaluates without error."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from deployutil import DEPLOY, Laser, dashboard, expressions

from laser_serve.api import rpc
from laser_serve.client import rerank_request

pytestmark = pytest.mark.timeout(180)
JOB = "laser-serve"  # the job name deploy/alerts.yml and the dashboard expect
TASK_RERANKS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:  # 400/422 carry a JSON error body
            return json.loads(err.read())

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = self.get("/api/v1/query", query=expr)
        assert body["status"] == "success", f"{expr!r}: {body.get('error')}"
        return body["data"]["result"]

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus: {what} not seen in {timeout:.0f} s")
            time.sleep(0.25)


@pytest.fixture(scope="module")
def prometheus(
    prometheus_bin: str, laser: Laser, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    tmp = tmp_path_factory.mktemp("prometheus")
    shutil.copy(DEPLOY / "alerts.yml", tmp / "alerts.yml")
    metrics = urllib.parse.urlparse(laser.metrics_url)
    (tmp / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files: [alerts.yml]\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    metrics_path: {metrics.path}\n"
        f"    static_configs:\n      - targets: ['{metrics.netloc}']\n"
    )
    port = free_port()
    log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 -- closed below
    proc = subprocess.Popen(
        [
            prometheus_bin,
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited {proc.returncode}:\n"
                    + Path(tmp / "prometheus.log").read_text()[-3000:]
                )
            try:
                with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as resp:
                    return resp.status == 200
            except OSError:
                return False

        prom.wait("readiness", ready)
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


def _live(laser: Laser, series: str) -> float:
    """The value of one series in the server's own exposition right now."""
    name, labels = series.split("{", 1) if "{" in series else (series, "}")
    want = set(re.findall(r'(\w+)="([^"]*)"', labels))
    for line in laser.exposition().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, value = line.rsplit(" ", 1)
            if want <= set(re.findall(r'(\w+)="([^"]*)"', head)):
                return float(value)
    raise AssertionError(f"{series} not in the exposition")


def test_prometheus_scrapes_what_the_test_sent(laser: Laser, prometheus: Prometheus) -> None:
    with grpc.insecure_channel(laser.target) as channel:
        stub = rpc.LaserStub(channel)
        for i in range(TASK_RERANKS):
            stub.Rerank(
                rerank_request(f"prom {i}?", candidates=["x", "y"], task="prom"), timeout=60
            )
    # Only this test uses task "prom": the count is exactly what it sent.
    prometheus.wait(
        f"laser_rerank_tasks_total{{task='prom'}} == {TASK_RERANKS}",
        lambda: (
            _value(prometheus.query(f'laser_rerank_tasks_total{{job="{JOB}", task="prom"}}'))
            == TASK_RERANKS
        ),
    )
    # The session's Rerank OK count (warm-up, other tests, these calls) as the server has it.
    oks = _live(laser, 'laser_requests_total{code="OK",method="Rerank"}')
    assert oks >= TASK_RERANKS
    prometheus.wait(
        f"laser_requests_total{{method='Rerank', code='OK'}} == {oks}",
        lambda: (
            _value(
                prometheus.query(f'laser_requests_total{{job="{JOB}", method="Rerank", code="OK"}}')
            )
            == oks
        ),
    )
    up = prometheus.query(f'up{{job="{JOB}"}}')
    assert (
        _value(up) == 1.0
        and up[0]["metric"]["instance"] == urllib.parse.urlparse(laser.metrics_url).netloc
    )


def test_dashboard_queries_are_valid_promql(laser: Laser, prometheus: Prometheus) -> None:
    prometheus.wait(
        "three scrapes",
        lambda: (_value(prometheus.query(f'count_over_time(up{{job="{JOB}"}}[1m])')) or 0) >= 3,
    )
    empty = []
    for where, expr in expressions(dashboard()):
        if expr.startswith("label_values("):  # a Grafana function, not PromQL
            metric = re.match(r"label_values\((.*),\s*(\w+)\)$", expr)
            assert metric, where
            expr = metric.group(1)
        expr = (
            expr.replace("$__rate_interval", "1m")
            .replace("$smoothing", "15m")
            .replace("$job", JOB)
            .replace("$instance", ".*")
        )
        assert "$" not in expr, f"{where}: unknown variable in {expr!r}"
        if not prometheus.query(expr):  # raises on a syntax or type error
            empty.append(where)
    # Rates of counters that exist return series after two scrapes; only the panels whose
    # series need an event this server never had (errors, overload, deadline cuts) may be
    # empty.
    for where in empty:
        assert any(
            title in where
            for title in ("Server errors", "Rejected (overload)", "Stages cut by deadlines")
        ), f"{where}: no data from a live server"


def test_alert_rules_load_and_evaluate_cleanly(prometheus: Prometheus) -> None:
    def evaluated() -> bool:
        groups = prometheus.get("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return bool(rules) and all(r.get("lastEvaluation", "").startswith("2") for r in rules)

    prometheus.wait("a rule evaluation", evaluated)
    groups = prometheus.get("/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert len(rules) == 8
    for name, rule in rules.items():
        assert rule["type"] == "alerting", name
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
    # A healthy server fires nothing (every rule has a `for` of minutes: none can be firing
    # yet; "pending" is allowed).
    firing = {r["name"] for r in rules.values() if r["state"] == "firing"}
    assert not firing, firing
