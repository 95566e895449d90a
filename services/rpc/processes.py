"""More gRPC server processes: children serving the agent service on the main process's gRPC port.

A server process is GIL-bound at about one core. With ``grpc_processes`` N > 1, ``latfarm serve`` starts N - 1
children (``python -m latfarm.services.rpc.child``); each builds its own runtime (engine, sessions, notifier) and
gRPC server bound to the same port, and the kernel spreads new connections over the processes (SO_REUSEPORT, on
in gRPC by default on Linux; an agent keeps its channel, so it stays with one process). They share only the
database and Redis, as replicas do. The main process keeps REST, the background workers and its own share of the
agents. A child dies with the main process (Linux parent-death signal, else within a second) and is restarted when
it exits on its own after running ``STEADY_S``.
"""

from __future__ import annotations

import logging
import os
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
