"""deploy/compose.yaml and deploy/nginx.conf: the shipped shape of a cluster."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from laser_serve.server.testing import nginx_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
REPLICAS = [f"replica{i}" for i in (1, 2, 3)]


def test_nginx_conf_is_the_one_the_tests_run() -> None:
    """The shipped config is what nginx_config makes for the compose services (the tests run
    the same text with 127.0.0.1 backends), so the two cannot drift apart."""
    shipped = (DEPLOY / "nginx.conf").read_text()
    assert shipped == nginx_config(50051, [f"{r}:50051" for r in REPLICAS])
    assert "grpc_pass grpc://laser;" in shipped and "listen 50051 http2;" in shipped


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed")
def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_config(50051, ["127.0.0.1:1", "127.0.0.1:2"], tmp_path))
    check = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "err.log")],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def test_compose_runs_redis_with_fsync_three_replicas_and_nginx() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    assert set(services) == {"redis", *REPLICAS, "nginx"}
    redis_cmd = services["redis"]["command"]
    for flag, value in (("--appendonly", "yes"), ("--appendfsync", "always")):
        assert redis_cmd[redis_cmd.index(flag) + 1] == value
    for name in REPLICAS:
        command = services[name]["command"]
        assert "cluster.redis_url=redis://redis:6379/0" in command
        assert f"server.replica_id={name}" in command
        assert any(v.endswith(":/var/lib/laser-serve") for v in services[name]["volumes"])
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["nginx"]["volumes"]
