"""``latfarm serve``: the REST app (uvicorn) and the agents' gRPC server in one process, or with ``grpc_processes``
N > 1 the REST app here and N child processes serving the gRPC port (``rpc.processes``)."""

from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import TypeVar

import uvicorn

from latfarm.common.lock import check, hold
from latfarm.services.api.app import create_app
from latfarm.services.api.deps import warm_arch_tables
from latfarm.services.cli.database import reachable_database, server_lock
from latfarm.services.cli.errors import exit_on_error, locked
from latfarm.services.core.config import Settings
from latfarm.services.rpc.processes import GrpcChildren, check_unshared, grpc_processes, reserve_port
from latfarm.services.rpc.server import build_grpc_server, server_credentials
from latfarm.services.runtime import Runtime

log = logging.getLogger(__name__)
T = TypeVar("T")
SQLITE_RULE = "; one server per SQLite database (PostgreSQL: several)"
GRPC_GRACE_S = 3.0
CHILDREN_START_S = 60.0  # the gRPC children have this long to listen before the URLs are printed


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` owns SIGINT/SIGTERM and stops gRPC too."""

    def capture_signals(self):
        return nullcontext()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # clients may connect as soon as the URL is printed; uvicorn accepts once started
    return sock


def _bound(port_name: str, bind: Callable[[], T]) -> T:
    """``bind()``; a port that cannot be bound (in use, not allowed) exits with one line naming it."""
    try:
        return bind()
    except OSError as err:
        raise SystemExit(f"latfarm serve: cannot listen on the {port_name}: {err.strerror or err}") from err


def _shown(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def serve(settings: Settings) -> None:
    """Run REST on ``settings.http_port`` and gRPC on ``settings.grpc_port`` (0 = any free port) until SIGINT or
    SIGTERM, then stop both. Prints the URLs, and the bootstrap admin key when it was generated now. A port it cannot
    bind, or a SQLite database another server uses (``database.server_lock``), exits with one line before the
    database is opened or created."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with exit_on_error("latfarm serve"):
        credentials = server_credentials(settings)  # a bad TLS setting fails before the database is touched
        processes = grpc_processes(settings)
    with reachable_database("latfarm serve", settings.database_url):  # an unparsable URL: one line
        lock = server_lock(settings.database_url)
    if lock:  # before the ports: the line then names the server that has them
        locked("latfarm serve", lambda: check(*lock), SQLITE_RULE)
    http_sock = _bound(f"REST port {settings.http_port}", lambda: _listen(settings.http_host, settings.http_port))
    grpc_name = f"gRPC port {settings.grpc_port}"
    if settings.grpc_port:  # another server's gRPC port would be shared, not refused
        _bound(grpc_name, lambda: check_unshared(settings.grpc_listen_host, settings.grpc_port))
    reserved = None
    if processes > 1:  # the children serve the agents; this process holds the port for them
        reserved = _bound(grpc_name, lambda: reserve_port(settings.grpc_listen_host, settings.grpc_port))
    held = None  # the SQLite database's lock, held while it serves
    if lock:
        held = locked("latfarm serve", lambda: hold(lock[0], "latfarm serve", lock[1]), SQLITE_RULE)
    with reachable_database("latfarm serve", settings.database_url):
        runtime = Runtime(settings)
        new_admin_key = runtime.bootstrap()
    grpc_server = None
    if reserved:
        grpc_port = reserved.getsockname()[1]
    else:
        grpc_server, grpc_port = _bound(
            grpc_name,
            lambda: build_grpc_server(
                settings,
                runtime.sessions,
                runtime.read_sessions,
                runtime.artifacts,
                runtime.notifier,
                credentials=credentials,
                port=settings.grpc_port,
                guard=runtime.auth_guard,
            ),
        )
    app = create_app(runtime, grpc_port)
    children = GrpcChildren(settings, grpc_port, processes if reserved else 0)
    config = uvicorn.Config(
        app,
        log_level="info",
        access_log=settings.http_access_log,
        timeout_graceful_shutdown=5,
    )
    server = _Server(config)

    def stop(signum, _frame) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        server.force_exit = server.should_exit  # a second signal skips the graceful wait
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    grpc_host = _shown(settings.grpc_listen_host)
    if grpc_server:
        grpc_server.start()
    children.start()
    if reserved and not children.wait_listening(grpc_host, CHILDREN_START_S):
        children.stop(GRPC_GRACE_S)
        raise SystemExit(f"latfarm serve: no gRPC process listened on port {grpc_port} (their log lines are above)")
    runtime.start_workers()
    host = _shown(settings.http_host)
    http_port = http_sock.getsockname()[1]
    print(f"latfarm REST  http://{host}:{http_port}  (API docs: http://{host}:{http_port}/docs)", flush=True)
    tls = credentials is not None
    spread = f"  {processes} processes" if processes > 1 else ""
    agent_tls = " --tls (or --ca-cert CERT.pem when self-signed)" if tls else ""
    print(
        f"latfarm gRPC  {grpc_host}:{grpc_port}{'  TLS' if tls else ''}{spread}  "
        f"(agents: latfarm agent --server {grpc_host}:{grpc_port}{agent_tls})",
        flush=True,
    )
    if new_admin_key:
        print(f"bootstrap admin key (shown once, store it): {new_admin_key}", flush=True)

    def settle() -> None:  # before the tables are logged ready: a full collection holds the GIL for 0.1-0.4 s
        gc.collect()
        gc.freeze()  # what start-up built lives on: full collections skip it (shorter pauses under load)

    def warm() -> None:
        warm_arch_tables()
        runtime.predictions.warm(loaded=settle)

    threading.Thread(target=warm, name="warmup", daemon=True).start()
    try:
        server.run(sockets=[http_sock])
    finally:
        stopped = grpc_server.stop(GRPC_GRACE_S) if grpc_server else None
        children.stop(GRPC_GRACE_S)
        if stopped:
            stopped.wait(GRPC_GRACE_S + 2)
        runtime.close()
        http_sock.close()
        if held:
            held.close()
        if reserved:
            reserved.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("latfarm stopped", flush=True)
