"""What ``/healthz`` answers: the database and Redis pinged by a thread of their own, the answer read from memory.

A request never pings: under an agent fleet's load each round trip waits for the main process's interpreter
(docs/fleet.md, "Health under load"). One thread pings both every ``EVERY_S`` while someone asks; a request reads
the last result, and waits for a ping only when there is none fresh (the first request, or the first after
``IDLE_S`` unasked). When the last result is older than ``STALE_S`` and a ping has been in flight for over
``HANG_S`` (an unreachable host), the database is not answering.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from latfarm.services.store.db import detached_connection

EVERY_S = 0.5  # between the starts of two pings while someone asks
STALE_S = 2.0  # a result older than this is not the database's state: a dead database shows within this
HANG_S = STALE_S - EVERY_S  # a ping in flight this long, with no fresh result, is a database not answering
IDLE_S = 60.0  # the thread stops pinging when nobody asked this long, and starts again on the next request
NO_ANSWER = f"unreachable: no answer within {STALE_S:.0f} s"


class _Pingable(Protocol):
    def health(self) -> str: ...


@dataclass(frozen=True)
class Health:
    """One ping's outcome: ``database`` ``ok`` or ``unreachable: <error class>``; ``redis`` as the cache's
    ``health`` says; ``at``: when it finished (``time.monotonic``, s)."""

    database: str
    redis: str
    at: float

    @property
    def status(self) -> str:
        """``error`` (database unreachable), ``degraded`` (Redis unreachable) or ``ok``."""
        if self.database != "ok":
            return "error"
        return "degraded" if self.redis.startswith("unreachable") else "ok"


class HealthProbe:
    """Pings ``cache``'s Redis and ``engine``'s database (on a connection of its own: never waiting for a pool
    slot) on a daemon thread started by the first ``latest`` or ``next``; ``close`` stops it."""

    def __init__(self, engine: Engine, cache: _Pingable) -> None:
        """Nothing runs until asked."""
        self._engine, self._cache = engine, cache
        self._lock = threading.Lock()
        self._asked = threading.Condition(self._lock)
        self._result: Health | None = None
        self._redis = NO_ANSWER  # Redis's last answer
        self._waiters: list[Future[Health]] = []
        self._asked_at = 0.0
        self._pinging_since: float | None = None  # when the ping in flight started
        self._thread: threading.Thread | None = None
        self._closed = False
        self._connection: PoolProxiedConnection | None = None

    def latest(self) -> Health | None:
        """The last result if it is at most ``STALE_S`` old; else ``no_answer`` if a ping has been in flight for
        over ``HANG_S``; else None (``next`` waits for one). Keeps the thread pinging for ``IDLE_S``."""
        with self._lock:
            self._ask()
            result, since = self._result, self._pinging_since
        now = time.monotonic()
        if result is not None and now - result.at <= STALE_S:
            return result
        return self.no_answer() if since is not None and now - since > HANG_S else None

    def next(self) -> Future[Health]:
        """The next ping's result."""
        future: Future[Health] = Future()
        with self._lock:
            self._ask()
            self._waiters.append(future)
        return future

    def no_answer(self) -> Health:
        """The database did not answer within ``STALE_S``; Redis as it last answered."""
        return Health(NO_ANSWER, self._redis, time.monotonic())

    def close(self) -> None:
        """Stop the thread (it ends after the ping in flight, waited for up to ``STALE_S``)."""
        with self._lock:
            self._closed = True
            self._asked.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=STALE_S)

    def _ask(self) -> None:  # under the lock
        self._asked_at = time.monotonic()
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="latfarm-health", daemon=True)
            self._thread.start()
        self._asked.notify()

    def _run(self) -> None:
        started = 0.0
        while True:
            with self._lock:
                while not self._closed and not self._waiters and time.monotonic() - started < EVERY_S:
                    self._asked.wait(max(0.0, EVERY_S - (time.monotonic() - started)))
                while not self._closed and not self._waiters and time.monotonic() - self._asked_at > IDLE_S:
                    self._asked.wait()
                if self._closed:
                    break
                started = self._pinging_since = time.monotonic()
            self._redis = self._cache.health()  # first: it has a timeout, so a hanging database leaves it known
            result = Health(self._ping_database(), self._redis, time.monotonic())
            with self._lock:
                self._result, self._pinging_since, waiters, self._waiters = result, None, self._waiters, []
            for waiter in waiters:
                if waiter.set_running_or_notify_cancel():  # not given up on (a request's wait timed out)
                    waiter.set_result(result)
        self._drop_connection()

    def _ping_database(self) -> str:
        """``SELECT 1`` on the thread's connection (opened again after a failure)."""
        try:
            if self._connection is None:
                self._connection = detached_connection(self._engine)
            cursor = self._connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            cursor.close()
            return "ok"
        except Exception as err:  # noqa: BLE001 - any failure is the database not answering
            self._drop_connection()
            return f"unreachable: {type(err).__name__}"

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close too; it is dropped
                self._connection.close()
            self._connection = None
