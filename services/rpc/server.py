"""Build the gRPC server: the agent service and health checking, plaintext or TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy.orm import Session, sessionmaker

from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc
from latfarm.proto.v1.limits import MAX_MESSAGE_BYTES
from latfarm.services.core.config import Settings, env_name
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.infra.throttle import AuthGuard
from latfarm.services.infra.wakeups import LocalNotifier
from latfarm.services.rpc.pool import CallPool, call_kind
from latfarm.services.rpc.servicer import CALL_KINDS, MAX_WAIT_S, AgentServicer, Artifacts

SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),  # agents send keepalive pings
    ("grpc.http2.max_ping_strikes", 0),
]
# a connection told to close keeps its calls in flight this long: the longest long-poll, answered, and a margin
CONNECTION_AGE_GRACE_MS = int((MAX_WAIT_S + 10) * 1000)


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """The gRPC server's channel options: ``OPTIONS``, and with ``grpc_max_connection_age_s`` > 0 the age after
    which a connection is sent GOAWAY (gRPC adds up to 10% jitter) and the grace for its calls in flight."""
    if settings.grpc_max_connection_age_s <= 0:
        return list(OPTIONS)
    age_ms = max(1, round(settings.grpc_max_connection_age_s * 1000))
    return [
        *OPTIONS,
        ("grpc.max_connection_age_ms", age_ms),
        ("grpc.max_connection_age_grace_ms", CONNECTION_AGE_GRACE_MS),
    ]


def _setting(name: str) -> str:
    """A setting as an operator may give it: ``grpc_tls_key (LATFARM_GRPC_TLS_KEY, --grpc-tls-key)``."""
    return f"{name} ({env_name(name)}, --{name.replace('_', '-')})"


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the ``grpc_tls_cert`` and ``grpc_tls_key`` PEM files; None (plaintext) when both are
    unset. Raises ``InvalidArgument``, naming the setting, when only one is set, a file is unreadable, or they are
    no pair."""
    paths = {"grpc_tls_cert": settings.grpc_tls_cert, "grpc_tls_key": settings.grpc_tls_key}
    if not any(paths.values()):
        return None
    files: dict[str, Path] = {}
    pem: dict[str, bytes] = {}
    for name, path in paths.items():
        if path is None:
            given = next(other for other in paths if other != name)
            raise InvalidArgument(f"{_setting(given)} is set but {_setting(name)} is not: TLS needs both")
        files[name] = Path(path)
        try:
            pem[name] = files[name].read_bytes()
        except OSError as err:
            raise InvalidArgument(f"{_setting(name)}: cannot read {path}: {err.strerror or err}") from err
    cert, key = files["grpc_tls_cert"], files["grpc_tls_key"]
    try:  # gRPC itself would only fail to bind the port
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as err:
        raise InvalidArgument(
            f"{_setting('grpc_tls_cert')} and {_setting('grpc_tls_key')} are not a PEM certificate and its "
            f"(unencrypted) private key: {err}"
        ) from err
    return grpc.ssl_server_credentials([(pem["grpc_tls_key"], pem["grpc_tls_cert"])])


def _bind_host(host: str) -> str:
    """``host`` as gRPC binds it: every interface (IPv4 and IPv6) for ``0.0.0.0`` or ``::``, IPv6 in brackets."""
    if host in ("0.0.0.0", "::", ""):
        return "[::]"
    return f"[{host}]" if ":" in host else host


def build_grpc_server(
    settings: Settings,
    sessions: sessionmaker[Session],
    read_sessions: sessionmaker[Session],
    artifacts: Artifacts,
    notifier: LocalNotifier,
    *,
    credentials: grpc.ServerCredentials | None = None,
    port: int | None = None,
    guard: AuthGuard | None = None,
) -> tuple[grpc.Server, int]:
    """The agent service and ``grpc.health.v1`` on ``port`` (default ``settings.grpc_port``; 0 picks a free one),
    over TLS with ``credentials`` (see ``server_credentials``), else plaintext. ``sessions`` write, ``read_sessions``
    only read (``runtime.Runtime`` builds both); ``guard`` throttles clients failing authentication (the runtime's,
    so REST and gRPC failures count together; a private one when None).

    Returns the server, not yet started, and the bound port; raises ``OSError`` when the port cannot be bound.
    Call ``server.start()``, and ``server.stop(grace)``.
    """
    port = settings.grpc_port if port is None else port
    guard = guard or AuthGuard(settings.auth_failure_limit)
    servicer = AgentServicer(settings, sessions, read_sessions, artifacts, notifier, guard)
    workers = CallPool(settings.grpc_workers, call_kind(servicer, CALL_KINDS))  # heartbeats get threads first
    server = grpc.server(workers, options=server_options(settings))
    agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    address = f"{_bind_host(settings.grpc_listen_host)}:{port}"
    try:
        bound = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as err:  # gRPC's word for a port it cannot bind
        raise OSError(f"cannot bind {address} (in use, or not allowed)") from err
    if not bound:
        raise OSError(f"cannot bind {address} (in use, or not allowed)")
    return server, bound
