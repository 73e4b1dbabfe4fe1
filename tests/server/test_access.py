"""Access and limits on one real server (transformers generator, TLS, a tokens file, a tiny
queue limit): tokens, their rotation, the health-check CLI, the state-dir lock, queue time."""

from __future__ import annotations

import datetime
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from laser_serve.api import pb, rpc
from laser_serve.server import journal
from laser_serve.server.journal import FeedbackRecord
from laser_serve.server.testing import ServerProcess


def self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


QUEUE_S = 0.05
FEEDBACK_RATE = 0.1  # per second per token: a burst of 1, then one per 10 s


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("secured")
    cert, key = self_signed(tmp)
    tokens = tmp / "tokens"
    tokens.write_text("first-token\nsecond-token\nalice:alice-secret\nbob:bob-secret\n")
    settings = [
        f"server.tls_cert={cert}",
        f"server.tls_key={key}",
        f"server.auth_tokens_file={tokens}",
        f"server.max_queue_s={QUEUE_S}",
        f"server.feedback_rate_per_token={FEEDBACK_RATE}",
    ]
    server = ServerProcess(
        ["--generator", "hf", *[a for s in settings for a in ("--set", s)]],
        str(tmp / "state"),
        tmp / "server.log",
    )
    creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    options = [("grpc.ssl_target_name_override", "localhost")]
    try:
        server.start(wait=False)
        with grpc.secure_channel(server.target, creds, options=options) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            server.wait_ready(
                lambda: (
                    health.Check(
                        health_pb2.HealthCheckRequest(service="laser.v1.Laser"), timeout=5
                    ).status
                    == health_pb2.HealthCheckResponse.SERVING
                )
            )
            yield {
                "server": server,
                "stub": rpc.LaserStub(channel),
                "tokens": tokens,
                "settings": settings,
                "tmp": tmp,
            }
    finally:
        server.kill()


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def test_tls_and_tokens(secured: dict[str, Any]) -> None:
    stub, request = secured["stub"], pb.GetSelectorStateRequest()
    for metadata in ((), _bearer("wrong"), (("authorization", "second-token"),)):
        with pytest.raises(grpc.RpcError) as err:
            stub.GetSelectorState(request, metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stub.GetSelectorState(request, metadata=_bearer("second-token")).policy == "linucb"
    with grpc.insecure_channel(secured["server"].target) as plain:  # TLS is required
        with pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)


def _rerank(stub: rpc.LaserStub, token: str) -> pb.RerankResponse:
    request = pb.RerankRequest(
        prompt="Say hi.", candidates=["hi", "bye"], policy="fixed:minilm-sim", expect_feedback=True
    )
    for _ in range(5):  # the 50 ms queue limit can refuse a call on a busy machine
        try:
            return stub.Rerank(request, metadata=_bearer(token), timeout=120)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc.details()
    raise AssertionError("Rerank refused five times")


def test_feedback_journals_the_token_name_never_the_secret(secured: dict[str, Any]) -> None:
    stub = secured["stub"]
    plain = "sha256:" + hashlib.sha256(b"second-token").hexdigest()[:8]
    for token in ("alice-secret", "second-token"):
        resp = _rerank(stub, token)
        stub.Feedback(
            pb.FeedbackRequest(selection_id=resp.selection_id, reward=1.0), metadata=_bearer(token)
        )
    state = Path(secured["server"].state_dir)
    tokens = [r.token for _, r in journal.read_all(state) if isinstance(r, FeedbackRecord)]
    assert tokens[-2:] == ["alice", plain]
    for path in state.iterdir():
        data = path.read_bytes()
        assert b"alice-secret" not in data and b"second-token" not in data, path


def test_feedback_rate_per_token(secured: dict[str, Any]) -> None:
    stub = secured["stub"]

    def feedback(token: str) -> grpc.StatusCode:
        try:
            stub.Feedback(
                pb.FeedbackRequest(selection_id="0" * 32, reward=1.0), metadata=_bearer(token)
            )
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    assert feedback("bob-secret") == grpc.StatusCode.NOT_FOUND  # passes the limit
    assert feedback("bob-secret") == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert feedback("first-token") == grpc.StatusCode.NOT_FOUND  # other clients still pass


def test_tokens_rotate_without_restart(secured: dict[str, Any]) -> None:
    stub, request, tokens = secured["stub"], pb.GetSelectorStateRequest(), secured["tokens"]
    stub.GetSelectorState(request, metadata=_bearer("first-token"))
    fresh = tokens.with_name("tokens.new")
    fresh.write_text("second-token\nthird-token\n")
    os.replace(fresh, tokens)  # atomic, as the operations guide says
    deadline = time.monotonic() + 10
    while True:  # the file is re-checked at most once a second
        try:
            stub.GetSelectorState(request, metadata=_bearer("third-token"))
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            assert time.monotonic() < deadline, "the new token was never accepted"
            time.sleep(0.2)
    with pytest.raises(grpc.RpcError) as err:
        stub.GetSelectorState(request, metadata=_bearer("first-token"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _laser_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "laser_serve.server.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_health_check_cli_speaks_tls(secured: dict[str, Any]) -> None:
    port = secured["server"].target.rsplit(":", 1)[1]
    settings = [a for s in secured["settings"] for a in ("--set", s)]
    ok = _laser_serve("--port", port, *settings, "--health-check")
    assert ok.returncode == 0, ok.stderr
    assert "laser.v1.Laser SERVING" in ok.stdout
    closed = _laser_serve(
        "--port", port, *settings, "--set", "server.auth_health_open=false", "--health-check"
    )
    assert closed.returncode == 0, closed.stderr  # sends the file's first token
    plain = _laser_serve("--port", port, "--health-check")  # no TLS: the handshake fails
    assert plain.returncode == 1 and "UNAVAILABLE" in plain.stderr


def test_second_server_on_the_same_state_dir_exits(secured: dict[str, Any]) -> None:
    state = secured["server"].state_dir
    second = _laser_serve("--generator", "hf", "--port", "0", "--state-dir", state)
    assert second.returncode == 2
    assert f"server.state_dir {state} is in use by another laser-serve (pid" in second.stderr


def test_queued_work_past_max_queue_s_is_refused(secured: dict[str, Any]) -> None:
    stub, metadata = secured["stub"], _bearer("second-token")
    request = pb.RerankRequest(
        prompt="Name a primary colour.",
        # Long candidates keep the judge busy well past the 50 ms limit on any machine.
        candidates=[f"{c}. " + "Painters mix every other hue from it. " * 40 for c in "RGBY"],
        policy="fixed:smol-judge",
        context_text="Name a primary colour.",
    )

    def call(_: int) -> grpc.StatusCode:
        try:
            stub.Rerank(request, metadata=metadata, timeout=120)
            return grpc.StatusCode.OK
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                assert "server.max_queue_s" in exc.details()
            return exc.code()

    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(call, range(6)))
    # Six calls at once on one model worker: the first runs, work queued past 50 ms is refused.
    assert codes.count(grpc.StatusCode.OK) >= 1
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 1
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert call(0) == grpc.StatusCode.OK  # alone again, it is served
