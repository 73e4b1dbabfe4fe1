"""Fixtures for the deployment checks: promtool, Prometheus and one light laser-serve.

The server runs the transformers generator and two embedding RMs on the embedded MiniLM, so it
starts in a few seconds; `laser` has already answered a few Rerank and Feedback calls (and
one of each kind of caller error), so the labelled series exist in its exposition.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator

import grpc
import pytest
from deployutil import MAX_INFLIGHT, Laser

from laser_serve.api import pb, rpc
from laser_serve.client import rerank_request
from laser_serve.server.testing import ServerProcess

CONFIG = f"""
[server]
tasks = ["default", "prom"]
max_inflight = {MAX_INFLIGHT}

[[reward_models]]
name = "long"
kind = "embedding"
model = "builtin:all-minilm-l6-v2"

[[reward_models]]
name = "short"
kind = "embedding"
model = "builtin:all-minilm-l6-v2"
max_length = 32
"""


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: `apt-get install prometheus` (Debian package, which "
            f"ships promtool and prometheus; `make promtool` does it)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _binary("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return _binary("prometheus")


@pytest.fixture(scope="session")
def laser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Laser]:
    tmp = tmp_path_factory.mktemp("deploy-server")
    (tmp / "laser.toml").write_text(textwrap.dedent(CONFIG))
    proc = ServerProcess(
        ["--config", str(tmp / "laser.toml"), "--generator", "hf"],
        str(tmp / "state"),
        tmp / "server.log",
    )
    try:
        target = proc.start(timeout=300)
        assert proc.proc is not None
        with grpc.insecure_channel(target) as channel:
            _warm_up(rpc.LaserStub(channel))
    except BaseException:
        proc.kill()
        print(proc.log_tail() if (tmp / "server.log").exists() else "(no server log)")
        raise
    try:
        yield Laser(proc, target, proc.metrics_url, proc.proc.pid)
    finally:
        if proc.proc.poll() is None:
            assert proc.stop() == 0, proc.log_tail()


def _warm_up(stub: rpc.LaserStub) -> None:
    """Create the labelled series: selections under two policies, feedback, caller errors."""
    for i, policy in enumerate(("", "", "ensemble")):
        q = f"What is {i} plus {i}?"
        request = rerank_request(
            q, candidates=[str(2 * i), "no idea"], policy=policy, expect_feedback=True
        )
        resp = stub.Rerank(request, timeout=60)
        stub.Feedback(pb.FeedbackRequest(selection_id=resp.selection_id, reward=0.5), timeout=60)
    with pytest.raises(grpc.RpcError) as err:
        stub.Feedback(pb.FeedbackRequest(selection_id="0" * 32, reward=1.0), timeout=60)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        stub.Rerank(rerank_request("q", candidates=["a"], task="nope"), timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
