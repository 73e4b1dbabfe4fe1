"""TLS and bearer tokens on a real server; health stays open."""

from __future__ import annotations

import datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from laser_serve.api import pb, rpc
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


def test_tls_and_tokens(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tokens = tmp_path / "tokens"
    tokens.write_text("first-token\nsecond-token\n")
    server = ServerProcess(
        [
            "--generator",
            "hf",
            "--set",
            f"server.tls_cert={cert}",
            "--set",
            f"server.tls_key={key}",
            "--set",
            f"server.auth_tokens_file={tokens}",
        ],
        str(tmp_path / "state"),
        tmp_path / "server.log",
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
            stub = rpc.LaserStub(channel)
            request = pb.GetSelectorStateRequest()
            for metadata in (
                (),
                (("authorization", "Bearer wrong"),),
                (("authorization", "second-token"),),
            ):
                with pytest.raises(grpc.RpcError) as err:
                    stub.GetSelectorState(request, metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            state = stub.GetSelectorState(
                request, metadata=(("authorization", "Bearer second-token"),)
            )
            assert state.policy == "linucb"
        with grpc.insecure_channel(server.target) as plain:  # TLS is required
            with pytest.raises(grpc.RpcError):
                health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        server.kill()
