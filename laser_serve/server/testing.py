"""Start a real laser-serve process on 127.0.0.1 for tests and benches."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from laser_serve.api import SERVICE_NAME


class ServerProcess:
    """A laser-serve child process; `target` is "127.0.0.1:PORT" once ready."""

    def __init__(self, args: list[str], state_dir: str, log_path: Path) -> None:
        self.args = args
        self.state_dir = state_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.target = ""
        self.metrics_url = ""

    def start(self, timeout: float = 900, wait: bool = True) -> str:
        """Start and return the target; with wait, block until health says SERVING (plaintext
        servers; for TLS use wait=False and `wait_ready`)."""
        port_file = Path(tempfile.mkstemp(prefix="laser-port-")[1])
        port_file.unlink()
        cmd = [
            sys.executable,
            "-m",
            "laser_serve.server.main",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--state-dir",
            self.state_dir,
            "--port-file",
            str(port_file),
            "--metrics-port",
            "0",
            *self.args,
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"laser-serve exited with {self.proc.returncode}:\n" + self.log_tail()
                )
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError("laser-serve did not become ready:\n" + self.log_tail())
            time.sleep(0.2)
        ports = json.loads(port_file.read_text())  # written atomically
        port_file.unlink()
        self.target = f"127.0.0.1:{ports['grpc']}"
        self.metrics_url = f"http://127.0.0.1:{ports['metrics']}/metrics"
        if wait:
            wait_serving(self.target, deadline - time.monotonic())
        return self.target

    def wait_ready(self, check: Callable[[], bool], timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if check():
                    return
            except grpc.RpcError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("laser-serve exited:\n" + self.log_tail())
            if time.monotonic() > deadline:
                raise TimeoutError("laser-serve did not become ready:\n" + self.log_tail())
            time.sleep(0.2)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_serving(target: str, timeout: float) -> None:
    deadline = time.monotonic() + max(timeout, 1)
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
                if status.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target} did not report SERVING")
            time.sleep(0.2)


@contextlib.contextmanager
def running_server(
    args: list[str] | tuple[str, ...] = (), timeout: float = 900, state_dir: str | None = None
) -> Iterator[str]:
    """Run laser-serve for the duration of the block; yields "127.0.0.1:PORT"."""
    with tempfile.TemporaryDirectory(prefix="laser-serve-") as tmp:
        server = ServerProcess(
            list(args),
            state_dir or str(Path(tmp) / "state"),
            Path(tmp) / "server.log",
        )
        try:
            yield server.start(timeout)
        finally:
            if server.proc and server.proc.poll() is None:
                try:
                    server.stop()
                except subprocess.TimeoutExpired:
                    pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A real redis-server (Debian's) on 127.0.0.1 with its data in ``folder``: append-only
    file on, fsynced on every write (as docs/operations.md asks of production), no RDB
    snapshots. ``kill`` is SIGKILL; ``start`` again comes back on the same port and data."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> str:
        import redis

        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always"]
        cmd += ["--save", "", "--logfile", str(self.folder / "redis.log")]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    return self.url
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                pass  # not listening yet, or still loading the append-only file
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "redis-server did not start:\n"
                    + (self.folder / "redis.log").read_text(errors="replace")[-3000:]
                )
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def nginx_config(listen: int, backends: list[str], prefix: Path | None = None) -> str:
    """nginx as the gRPC load balancer: round-robin over ``backends`` ("host:port").
    With ``prefix`` every file nginx writes goes there (a test instance, no root)."""
    servers = "".join(f"        server {b};\n" for b in backends)
    paths = ""
    if prefix is not None:
        paths = f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
    temp = ""
    if prefix is not None:
        temp = "".join(
            f"    {kind}_temp_path {prefix}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
    return f"""# gRPC load balancer in front of laser-serve replicas (docs/operations.md).
worker_processes 1;
{paths}events {{
    worker_connections 1024;
}}
http {{
    access_log off;
{temp}    upstream laser {{
        # Round-robin (nginx's default). A replica that refuses a connection is skipped
        # for 10 s (max_fails=1 fail_timeout=10s) and the request goes to the next one.
{servers}        keepalive 32;
    }}
    server {{
        listen {listen} http2;
        location / {{
            grpc_pass grpc://laser;
            grpc_read_timeout 300s;
        }}
    }}
}}
"""


class NginxProcess:
    """A real nginx (Debian's) on 127.0.0.1, balancing gRPC over ``backends``."""

    def __init__(self, folder: Path, backends: list[str], port: int = 0) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.backends = backends
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> str:
        import socket

        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "nginx.conf"
        conf.write_text(nginx_config(self.port, self.backends, self.folder))
        cmd = [
            "nginx",
            "-p",
            str(self.folder),
            "-c",
            str(conf),
            "-e",
            str(self.folder / "error.log"),
        ]
        self.proc = subprocess.Popen([*cmd, "-g", "daemon off;"])
        deadline = time.monotonic() + timeout
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self.target
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.folder / "error.log"
                raise RuntimeError(
                    "nginx did not start:\n" + (log.read_text() if log.exists() else "")
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
