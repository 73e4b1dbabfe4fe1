"""One real laser-serve (vLLM generator, embedded models plus a tiny seq-cls RM) per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from serverutil import build_tiny_seq_cls, server_config

from laser_serve.api import rpc
from laser_serve.server.testing import ServerProcess


@pytest.fixture(scope="session")
def tiny_rm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_seq_cls(tmp_path_factory.mktemp("tiny-cls"))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_rm: Path) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("server")
    proc = ServerProcess(
        ["--config", str(server_config(tmp, tiny_rm)), "--metrics-port", "0"],
        str(tmp / "state"),
        tmp / "server.log",
    )
    try:
        proc.start()
    except Exception:
        print((tmp / "server.log").read_text()[-5000:])
        raise
    yield proc
    assert proc.stop() == 0, proc.log_tail()


@pytest.fixture(scope="session")
def stub(server: ServerProcess) -> Iterator[rpc.LaserStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield rpc.LaserStub(channel)
