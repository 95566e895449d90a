"""More gRPC server processes: children serving the agent service on one port.

A server process is GIL-bound at about one core. With ``grpc_processes`` N > 1, ``latfarm serve`` starts N children
(``python -m latfarm.services.rpc.child``); each builds its own runtime (engine, sessions, notifier) and gRPC server
bound to the same port, and the kernel spreads new connections over the processes (SO_REUSEPORT, on in gRPC by
default on Linux; an agent keeps its channel, so it stays with one process). They share only the database and
Redis, as replicas do. The main process keeps REST and the background workers and serves no agent, so a busy fleet
does not hold the interpreter that answers NAS clients; it holds the port (``reserve_port``: bound, not listening)
from before the children start until it stops. A child dies with the main process (Linux parent-death signal, else
within a second) and is restarted when it exits on its own after running ``STEADY_S``.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
import threading
import time

from latfarm.services.core.config import Settings
from latfarm.services.core.errors import InvalidArgument

log = logging.getLogger(__name__)
AUTO_MAX = 4  # auto: at most this many processes (each holds up to a pool of database connections)
STEADY_S = 10.0  # a child that exits sooner after its start is not restarted (it would fail again)
CHILD_MODULE = "latfarm.services.rpc.child"


def grpc_processes(settings: Settings, cpus: int | None = None) -> int:
    """How many processes serve gRPC: ``grpc_processes``, or when 0 one per CPU (``cpus``, default the machine's)
    up to ``AUTO_MAX`` on PostgreSQL with Redis (without Redis an agent waiting in one process would not hear of
    work arriving through another until its long-poll ends), else 1. Raises ``InvalidArgument`` for more than 1
    on SQLite (one writer per file: processes would wait for each other's write lock)."""
    sqlite = settings.database_url.startswith("sqlite")
    if settings.grpc_processes == 0:
        if sqlite or not settings.redis_url:
            return 1
        return max(1, min(cpus or os.cpu_count() or 1, AUTO_MAX))
    if sqlite and settings.grpc_processes > 1:
        raise InvalidArgument(
            f"LATFARM_GRPC_PROCESSES={settings.grpc_processes} needs PostgreSQL: SQLite allows one gRPC process "
            "(set it to 1, or 0 for the default)",
            field="grpc_processes",
        )
    return settings.grpc_processes


def check_unshared(host: str, port: int) -> None:
    """Raise ``OSError`` (``EADDRINUSE``) when a socket of this machine holds ``host``:``port``. gRPC binds its port
    with SO_REUSEPORT (as ``reserve_port`` does), so a second server would otherwise share the port of one already
    serving it, and the kernel would hand it some of that server's agents. Another failure (no IPv6, say) is left to
    the bind itself."""
    every = host in ("0.0.0.0", "::", "")
    try:
        sock = socket.socket(socket.AF_INET6 if every or ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections left in TIME_WAIT hold no port
        try:
            if every:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::" if every else host, port))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (0 picks a free port) with SO_REUSEPORT, not listening: it keeps the
    port from other programs while the children bind it beside it, and takes none of its connections (the kernel
    spreads them over listening sockets only). Every interface for ``0.0.0.0``, ``::`` or empty (IPv4 and IPv6, as
    gRPC binds it). Raises ``OSError`` when the port is taken."""
    every = host in ("0.0.0.0", "::", "")
    family = socket.AF_INET6 if every or ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if every:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind(("::" if every else host, port))
    except OSError:
        sock.close()
        raise
    return sock


class GrpcChildren:
    """``count`` child gRPC servers on ``port``, started by ``start``, stopped by ``stop``."""

    def __init__(self, settings: Settings, port: int, count: int) -> None:
        self.settings, self.port, self.count = settings, port, count
        self._procs: list[tuple[subprocess.Popen, float]] = []
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="grpc-children", daemon=True)

    def _spawn(self) -> tuple[subprocess.Popen, float]:
        command = [sys.executable, "-m", CHILD_MODULE, str(self.port), str(os.getpid())]
        env = {**os.environ, **self.settings.to_env()}
        return subprocess.Popen(command, env=env), time.monotonic()

    def start(self) -> None:
        """Start the children and the thread that restarts one that exits."""
        self._procs = [self._spawn() for _ in range(self.count)]
        if self._procs:
            self._watcher.start()

    def _watch(self) -> None:
        given_up = float("inf")  # the start time of a child left dead
        while not self._stopping.wait(1.0):
            for index, (proc, started) in enumerate(self._procs):
                if started == given_up or proc.poll() is None or self._stopping.is_set():
                    continue
                if time.monotonic() - started < STEADY_S:
                    log.error("gRPC process %d exited at its start (code %s); not restarted", proc.pid, proc.returncode)
                    self._procs[index] = (proc, given_up)
                else:
                    log.error("gRPC process %d exited (code %s); starting another", proc.pid, proc.returncode)
                    self._procs[index] = self._spawn()

    def wait_listening(self, host: str, timeout_s: float) -> bool:
        """Wait until a child accepts connections on ``host`` (the shown address), for at most ``timeout_s``; False
        when none did in time or every child exited."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                socket.create_connection((host, self.port), timeout=1).close()
                return True
            except OSError:
                if all(proc.poll() is not None for proc, _ in self._procs):
                    return False
                time.sleep(0.1)
        return False

    def stop(self, grace_s: float) -> None:
        """SIGTERM every child (each lets its calls finish for ``grace_s``), then SIGKILL those still running."""
        self._stopping.set()
        for proc, _ in self._procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace_s + 5
        for proc, _ in self._procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
