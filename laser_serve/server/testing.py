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
