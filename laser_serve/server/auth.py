"""Bearer-token check for every RPC (health checks may stay open) and TLS credentials."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from laser_serve.config import ServerConfig
from laser_serve.errors import ConfigError

HEALTH_PREFIX = "/grpc.health.v1.Health/"
log = logging.getLogger(__name__)


def parse_tokens(text: str) -> list[tuple[str, bytes]]:
    """(name, secret) for each whitespace-separated entry: ``name:secret`` names a token,
    a bare ``secret`` is named ``sha256:<first 8 hex digits of its SHA-256>``. The name is
    what the journal records for each Feedback (never the secret)."""
    out = []
    for entry in text.split():
        name, sep, secret = entry.partition(":")
        if not sep:
            name, secret = f"sha256:{hashlib.sha256(entry.encode()).hexdigest()[:8]}", entry
        if not name or not secret:
            raise ValueError("a token entry has an empty name or secret (':' at its start or end)")
        out.append((name, secret.encode()))
    return out


class TokenSource:
    """Tokens from server.auth_tokens_file (one per line) and/or the env var it names.

    The file is re-read when it changes (checked at most once a second), so tokens rotate
    without a restart; a file that cannot be read or parsed then keeps the tokens in use
    (and says so in the log) rather than locking everyone out.
    """

    RECHECK_S = 1.0

    def __init__(self, config: ServerConfig) -> None:
        self.path = Path(config.auth_tokens_file) if config.auth_tokens_file else None
        self.env_tokens: list[tuple[str, bytes]] = []
        if config.auth_tokens_env:
            value = os.environ.get(config.auth_tokens_env, "")
            if not value:
                raise ConfigError(f"server.auth_tokens_env: ${config.auth_tokens_env} is empty")
            try:
                self.env_tokens = parse_tokens(value.replace(",", " "))
            except ValueError as exc:
                raise ConfigError(f"server.auth_tokens_env: {exc}") from None
        self._file_tokens: list[tuple[str, bytes]] = []
        self._seen: tuple[int, int] | None = None
        self._checked = 0.0
        if self.path is not None:
            try:
                self._reload()
            except (OSError, ValueError) as exc:
                raise ConfigError(f"server.auth_tokens_file: cannot read it: {exc}") from None

    @property
    def enabled(self) -> bool:
        return self.path is not None or bool(self.env_tokens)

    def tokens(self) -> list[tuple[str, bytes]]:
        """(name, secret) of every token in use."""
        if self.path is not None and time.monotonic() - self._checked >= self.RECHECK_S:
            try:
                self._reload()
            except (OSError, ValueError) as exc:
                log.warning("server.auth_tokens_file: %s; keeping the tokens in use", exc)
        return self._file_tokens + self.env_tokens

    def match(self, metadata: Any) -> str | None:
        """The name of the token in the call's ``authorization: Bearer`` header, or None.
        Every token is compared, in constant time, so timing does not tell which matched."""
        header = dict(metadata or ()).get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        given, found = token.encode(), None
        for name, secret in self.tokens():
            if hmac.compare_digest(given, secret):
                found = name
        return found

    def _reload(self) -> None:
        assert self.path is not None
        self._checked = time.monotonic()
        st = self.path.stat()
        if (st.st_mtime_ns, st.st_size) != self._seen:
            self._file_tokens = parse_tokens(self.path.read_text())
            self._seen = (st.st_mtime_ns, st.st_size)
            log.info("loaded %d bearer tokens from %s", len(self._file_tokens), self.path)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tokens: TokenSource, health_open: bool) -> None:
        self.tokens = tokens
        self.health_open = health_open

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or (self.health_open and details.method.startswith(HEALTH_PREFIX)):
            return handler
        if self.tokens.match(details.invocation_metadata) is not None:
            return handler
        return _deny(handler)


def _deny(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    message = "missing or invalid bearer token (metadata 'authorization: Bearer <token>')"

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return make(
        abort,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS from server.tls_cert/tls_key; with server.tls_client_ca, clients must present a
    certificate signed by that CA."""
    if not config.tls_cert and not config.tls_key:
        return None
    if not (config.tls_cert and config.tls_key):
        raise ConfigError("server.tls_cert and server.tls_key must be set together")

    def read(key: str, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"server.{key}: cannot read {path}: {exc}") from None

    client_ca = read("tls_client_ca", config.tls_client_ca) if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(read("tls_key", config.tls_key), read("tls_cert", config.tls_cert))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
