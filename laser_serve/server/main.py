"""`laser-serve`: start the gRPC server on the configured models.

Order of start-up: gRPC (health NOT_SERVING, so probes get an answer) and metrics come up
first, then the models load, the saved learning state is replayed, and health turns SERVING.
SIGTERM/SIGINT: NOT_SERVING, stop accepting, finish in-flight requests up to
server.shutdown_grace_s, save the selector state, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from laser_serve import config as config_module
from laser_serve.api import SERVICE_NAME, pb
from laser_serve.config import Config
from laser_serve.durable import atomic_write, lock_dir
from laser_serve.errors import ConfigError
from laser_serve.models import hidden_size
from laser_serve.selector import SelectorStateError
from laser_serve.server.auth import BearerTokenInterceptor, TokenSource, server_credentials
from laser_serve.server.learning import Learner
from laser_serve.server.metrics import Metrics
from laser_serve.server.service import LaserService, add_to_server

log = logging.getLogger("laser_serve")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: easy to ship and to grep."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="laser-serve", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument(
        "--profile",
        choices=list(config_module.PROFILES),
        help=f"embedded stack (default: $LASER_PROFILE, else {config_module.DEFAULT_PROFILE}); "
        "a config file's [generator] model and [[reward_models]] override it",
    )
    p.add_argument("--host", help="gRPC bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="gRPC port (default 50051; 0 picks a free one)")
    p.add_argument("--metrics-host", help="metrics bind address (default 127.0.0.1)")
    p.add_argument(
        "--metrics-port", type=int, help="Prometheus port (default 9464; 0: free port; -1: off)"
    )
    p.add_argument("--generator", choices=config_module.BACKENDS, help="generation backend")
    p.add_argument("--state-dir", help="where selector state and the journal live")
    p.add_argument(
        "--warm-start",
        metavar="FILE",
        help="initialize a fresh selector from a state dir's logged decisions or from "
        "best-of-n pool files (selector.warm_start; ignored once the state dir has state)",
    )
    p.add_argument(
        "--warm-start-rounds",
        type=float,
        metavar="N",
        help="the rounds the whole prior counts as (selector.warm_start_rounds; default: "
        "each logged event once)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any configuration value, e.g. --set selector.alpha=0.5",
    )
    p.add_argument("--print-config", action="store_true", help="print the effective config")
    p.add_argument(
        "--health-check",
        action="store_true",
        help="probe the server this configuration describes (TLS and tokens included) through "
        "grpc.health.v1; exit 0 when SERVING, 1 otherwise (for Docker HEALTHCHECK)",
    )
    p.add_argument("--port-file", help="write the bound ports here (JSON) once serving")
    p.add_argument("--log-level", default="info")
    ops = p.add_argument_group("state tools (offline; pass the server's --config and --state-dir)")
    ops.add_argument(
        "--inspect",
        action="store_true",
        help="print the selector's per-arm statistics and what the journal holds (rewards by "
        "token and their range); changes nothing",
    )
    ops.add_argument(
        "--rebuild",
        metavar="NEW_DIR",
        help="replay the journal of --state-dir into a fresh selector in NEW_DIR, dropping "
        "the feedback the filters below name; then start the server on NEW_DIR",
    )
    ops.add_argument(
        "--drop-token",
        action="append",
        default=[],
        metavar="NAME",
        help="with --rebuild: drop feedback sent with this bearer token's name (repeatable)",
    )
    ops.add_argument(
        "--drop-window",
        metavar="START,END",
        help="with --rebuild: drop feedback received in [START, END) (ISO 8601, UTC unless "
        "it has an offset, or unix seconds)",
    )
    ops.add_argument(
        "--keep-rewards",
        metavar="LO,HI",
        help="with --rebuild: drop feedback whose raw reward is outside [LO, HI]",
    )
    return p.parse_args(argv)


def offline(args: argparse.Namespace, config: Config) -> int:
    """--inspect and --rebuild."""
    from laser_serve.server import offline as tools

    if args.inspect:
        print(tools.inspect(config))
        return 0
    window = args.drop_window and tools.parse_pair(
        args.drop_window, "--drop-window", tools.parse_time
    )
    keep = tools.FeedbackFilter(
        drop_tokens=frozenset(args.drop_token),
        drop_window=window or None,
        reward_range=args.keep_rewards and tools.parse_pair(args.keep_rewards, "--keep-rewards"),
    )
    counts = tools.rebuild(config, Path(args.rebuild), keep)
    print(json.dumps(counts))
    return 0


def build_config(args: argparse.Namespace) -> Config:
    overrides = list(args.set)
    for flag, key in (
        ("host", "server.host"),
        ("port", "server.port"),
        ("metrics_host", "server.metrics_host"),
        ("metrics_port", "server.metrics_port"),
        ("generator", "generator.backend"),
        ("state_dir", "server.state_dir"),
        ("warm_start", "selector.warm_start"),
        ("warm_start_rounds", "selector.warm_start_rounds"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    config = config_module.load(args.config, overrides, args.profile)
    if any(rm.kind == "verifier" for rm in config.reward_models):
        raise ConfigError("verifier reward models need gold answers; use them in laser-train")
    return config


async def serve(config: Config, port_file: str | None = None) -> int:
    """Serve until SIGTERM/SIGINT (returns 0) or until the generator dies (returns 1)."""
    lock = lock_dir(config.state_dir())  # first: a second server here fails fast
    try:
        return await _serve(config, port_file)
    finally:
        os.close(lock)


async def _serve(config: Config, port_file: str | None) -> int:
    metrics = Metrics()
    metrics_port = _serve_metrics(config, metrics)
    tokens = TokenSource(config.server)
    service = LaserService(config, metrics, tokens)
    server, health_servicer, port = await _start_grpc(config, service, tokens)

    started = time.monotonic()
    # The saved state is checked before any model loads: a state dir saved for other RMs or
    # another encoder fails in seconds, not after minutes of loading weights.
    learner = _learner(config, context_dim(config), metrics)
    await asyncio.get_running_loop().run_in_executor(None, learner.open)
    from laser_serve.pipeline import Pipeline  # torch and vLLM imports are slow

    try:
        pipeline = await Pipeline.load(config)
        if pipeline.encoder.dim != learner.dim:
            raise RuntimeError(f"encoder dim {pipeline.encoder.dim}, config.json {learner.dim}")
    except BaseException:
        learner.close()
        raise
    service.attach(pipeline, learner)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving %s with policy %s on %d reward models; ready in %.1fs",
        SERVICE_NAME,
        learner.policy.name,
        len(pipeline.arms),
        time.monotonic() - started,
    )
    if port_file:  # for tests and supervisors that start us on free ports
        atomic_write(Path(port_file), json.dumps({"grpc": port, "metrics": metrics_port}).encode())

    cluster_health = asyncio.create_task(_cluster_health(learner, health_servicer))
    await _until_stopped(config, service, learner)
    cluster_health.cancel()
    log.info(
        "shutting down: finishing in-flight requests (up to %.0fs)", config.server.shutdown_grace_s
    )
    await health_servicer.enter_graceful_shutdown()
    await server.stop(config.server.shutdown_grace_s)
    learner.close()
    await pipeline.close()
    log.info("selector state saved in %s; bye", config.state_dir())
    return 1 if service.fatal.is_set() else 0


def context_dim(config: Config) -> int:
    """The context encoder's output dimension, read from its model's config."""
    model = config.generator.model if config.context.encoder == "policy" else config.context.model
    return hidden_size(model)


def _learner(config: Config, dim: int, metrics: Metrics) -> Learner:
    """The journaled Learner, or a cluster replica's when cluster.redis_url is set."""
    if not config.cluster.redis_url:
        return Learner(config, config.arms, dim, metrics)
    from laser_serve.server.cluster import ClusterLearner

    return ClusterLearner(config, config.arms, dim, metrics)


async def _cluster_health(learner: Learner, health_servicer: health.aio.HealthServicer) -> None:
    """laser.v1.Cluster health follows the replica's reach to Redis. laser.v1.Laser stays
    SERVING meanwhile: Rerank answers from local state (only Feedback needs Redis)."""
    from laser_serve.server.cluster import CLUSTER_HEALTH, ClusterLearner

    if not isinstance(learner, ClusterLearner):
        return
    status = health_pb2.HealthCheckResponse
    while True:
        await health_servicer.set(
            CLUSTER_HEALTH, status.SERVING if learner.redis_ok else status.NOT_SERVING
        )
        await asyncio.sleep(0.5)


def _serve_metrics(config: Config, metrics: Metrics) -> int:
    """Start the Prometheus endpoint; returns its port (-1: off)."""
    s = config.server
    if s.metrics_port < 0:
        return -1
    try:
        port = metrics.serve(s.metrics_host, s.metrics_port)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {s.metrics_host}:{s.metrics_port} ({exc.strerror}); "
            "pick another --metrics-port"
        ) from None
    log.info("metrics on http://%s:%d/metrics", s.metrics_host, port)
    return port


async def _start_grpc(
    config: Config, service: LaserService, tokens: TokenSource
) -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    """Bind and start gRPC (Laser, health NOT_SERVING, reflection); returns the port."""
    s = config.server
    interceptors = [BearerTokenInterceptor(tokens, s.auth_health_open)] if tokens.enabled else []
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", s.max_message_bytes),
            ("grpc.max_send_message_length", s.max_message_bytes),
        ],
    )
    add_to_server(service, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    credentials = server_credentials(s)
    address = f"{s.host}:{s.port}"
    try:
        port = (
            server.add_secure_port(address, credentials)
            if credentials
            else server.add_insecure_port(address)
        )
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"cannot bind gRPC to {s.host}:{s.port}; is the port in use?")
    for name in ("", SERVICE_NAME):  # "" is liveness; the service name is readiness
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    log.info(
        "grpc listening on %s:%d (%s, %s; NOT_SERVING while models load)",
        s.host,
        port,
        "tls" if credentials else "plaintext",
        "token auth" if tokens.enabled else "no auth",
    )
    return server, health_servicer, port


async def _until_stopped(config: Config, service: LaserService, learner: Learner) -> None:
    """Housekeeping until SIGTERM/SIGINT or until the generator dies."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    housekeeping = asyncio.create_task(_housekeeping(config, learner))
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(service.fatal.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if service.fatal.is_set():
        log.error("the generator died; stopping so a supervisor can restart the server")
    for task in (housekeeping, *waiters):
        task.cancel()


async def _housekeeping(config: Config, learner: Learner) -> None:
    """Expire pending selections and snapshot the learning state periodically."""
    loop = asyncio.get_running_loop()
    last_snapshot = time.monotonic()
    tick = min(10.0, config.server.pending_ttl_s / 4, config.server.snapshot_interval_s)
    while True:
        await asyncio.sleep(tick)
        await loop.run_in_executor(None, learner.expire, time.time())
        if time.monotonic() - last_snapshot >= config.server.snapshot_interval_s:
            await loop.run_in_executor(None, learner.snapshot, False)
            last_snapshot = time.monotonic()


def health_check(config: Config, timeout: float = 4.0) -> int:
    """Ask the local server's health service for laser.v1 readiness, speaking its TLS (the
    probe trusts server.tls_cert itself: a self-signed certificate or a chain file that holds
    its root) and sending its first bearer token when health checks are not open."""
    s = config.server
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
    target = f"{host}:{s.port}"
    if s.tls_cert:
        try:
            cert = Path(s.tls_cert).read_bytes()
        except OSError as exc:
            raise ConfigError(f"server.tls_cert: cannot read it: {exc}") from None
        channel = grpc.secure_channel(
            target,
            grpc.ssl_channel_credentials(root_certificates=cert),
            options=[("grpc.ssl_target_name_override", _certificate_name(cert))],
        )
    else:
        channel = grpc.insecure_channel(target)
    tokens = TokenSource(s)
    metadata: tuple[tuple[str, str], ...] = ()
    if tokens.enabled and not s.auth_health_open and tokens.tokens():
        metadata = (("authorization", f"Bearer {tokens.tokens()[0][1].decode()}"),)
    request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                request, timeout=timeout, metadata=metadata
            )
        except grpc.RpcError as exc:
            print(f"laser-serve: {target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{target}: {SERVICE_NAME} {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


def _certificate_name(pem: bytes) -> str:
    """The first DNS name the server certificate is issued for (the TLS name to check)."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if names:
        return names[0]
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(cn[0].value) if cn else "localhost"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    try:
        config = build_config(args)
        if args.print_config:
            print(config.to_toml())
            return 0
        if args.health_check:
            return health_check(config)
        if args.inspect or args.rebuild:
            return offline(args, config)
        return asyncio.run(serve(config, args.port_file))
    except (ConfigError, SelectorStateError) as exc:
        print(f"laser-serve: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# pb is imported for its side effect of registering the descriptors used by reflection.
__all__ = ["main", "pb"]

if __name__ == "__main__":
    sys.exit(main())
