"""Admission to the database for agent calls: a few slots, heartbeats first, other calls in arrival order.

Agent calls run on gRPC threads, far more than the database can serve at once; more concurrent transactions only
queue for connections and row locks. A call's database work holds one of ``slots`` slots. Heartbeats come first
(an agent whose heartbeats lag looks offline and its leases lapse); reports, other writes and leases then take
slots in the order they arrived, so on a saturated server an agent that reports and leases again waits its turn in
both calls, not all of its wait in the lease behind every later report. Leases may hold at most ``slots - reserve``
slots, so reports and heartbeats always find one soon. A call that cannot get a slot within its kind's wait, or
finds too many of its kind queued already, is refused with RESOURCE_EXHAUSTED and a retry hint (``retry-after-ms``
trailing metadata) that agents honour, instead of queueing past its deadline.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum

RETRY_AFTER_KEY = "retry-after-ms"  # trailing metadata of a refused call: wait this long (ms) before retrying
MIN_RETRY_MS, MAX_RETRY_MS = 100, 5_000


class Kind(IntEnum):
    """Call kinds, highest priority first (for threads, ``pool.CallPool``; database slots go to heartbeats first and
    to the others in arrival order)."""

    HEARTBEAT = 0
    WRITE = 1  # reports, releases, registrations
    LEASE = 2


@dataclass(frozen=True)
class Limits:
    """How a kind queues for a slot: at most ``queued`` waiting at once, each at most ``wait_s`` seconds."""

    queued: int
    wait_s: float


class Busy(Exception):
    """No slot for this call now; retry after ``retry_after_ms``."""

    def __init__(self, kind: Kind, retry_after_ms: int, reason: str = "") -> None:
        reason = reason or f"{kind.name.lower()} calls are queued for the database"
        super().__init__(f"the server is busy: {reason}; retry in {retry_after_ms} ms")
        self.kind, self.retry_after_ms = kind, retry_after_ms


class _Waiter:
    """A queued call: ``granted`` (under the capacity's lock) when a slot is handed to it, then ``ready`` is set."""

    __slots__ = ("granted", "ready", "seq")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.granted = False
        self.ready = threading.Event()


class Capacity:
    """``slots`` concurrent database calls; leases use at most ``slots - reserve`` of them.

    A freed slot is handed to the first queued heartbeat, else to the earliest queued write or lease that may take
    it (while leases hold ``slots - reserve``, the earliest write; one waiter woken, not all). ``limits`` per kind
    bound the queue; the retry hint is the time the queue ahead needs at the recent mean call duration (between
    ``MIN_RETRY_MS`` and ``MAX_RETRY_MS``).
    """

    def __init__(self, slots: int, reserve: int, limits: dict[Kind, Limits]) -> None:
        if slots < 1 or not 0 <= reserve < slots:
            raise ValueError(f"need slots >= 1 and 0 <= reserve < slots, got {slots} and {reserve}")
        self.slots, self.reserve, self.limits = slots, reserve, limits
        self._lock = threading.Lock()
        self._busy = 0  # slots held
        self._leases = 0  # of them by leases
        self._queues: dict[Kind, deque[_Waiter]] = {kind: deque() for kind in Kind}
        self._mean_s = 0.01  # moving mean of a slot's hold time
        self._arrivals = 0  # calls queued so far: a waiter's place in arrival order

    def _fits(self, kind: Kind) -> bool:
        return self._busy < self.slots and (kind != Kind.LEASE or self._leases < self.slots - self.reserve)

    def _take(self, kind: Kind) -> None:
        self._busy += 1
        self._leases += kind == Kind.LEASE

    def _hand_over(self) -> None:
        """Give free slots to heartbeats first, then to writes and leases in arrival order."""
        while True:
            heads = [(self._queues[k][0].seq, k) for k in Kind if self._queues[k] and self._fits(k)]
            if self._queues[Kind.HEARTBEAT]:
                heads = [head for head in heads if head[1] == Kind.HEARTBEAT]
            if not heads:
                return
            kind = min(heads)[1]
            waiter = self._queues[kind].popleft()
            waiter.granted = True
            self._take(kind)
            waiter.ready.set()

    def _retry_after_ms(self, kind: Kind) -> int:
        kinds = (Kind.HEARTBEAT,) if kind == Kind.HEARTBEAT else tuple(Kind)
        ahead = sum(len(self._queues[k]) for k in kinds) + 1
        estimate = 1000 * self._mean_s * ahead / self.slots
        return int(min(MAX_RETRY_MS, max(MIN_RETRY_MS, estimate)))

    @contextmanager
    def slot(self, kind: Kind, timeout_s: float | None = None) -> Iterator[None]:
        """Hold a slot for the block; waits at most the kind's ``wait_s`` (or ``timeout_s`` if shorter). Raises
        ``Busy`` when none frees up in time or the kind's queue is full."""
        limits = self.limits[kind]
        wait_s = limits.wait_s if timeout_s is None else min(limits.wait_s, timeout_s)
        with self._lock:
            if self._fits(kind) and not any(self._queues[k] for k in Kind if k <= kind):
                self._take(kind)
                waiter = None
            elif len(self._queues[kind]) >= limits.queued:
                raise Busy(kind, self._retry_after_ms(kind))
            else:
                self._arrivals += 1
                waiter = _Waiter(self._arrivals)
                self._queues[kind].append(waiter)
        if waiter is not None:
            waiter.ready.wait(max(wait_s, 0.0))
            with self._lock:
                if not waiter.granted:
                    self._queues[kind].remove(waiter)
                    self._hand_over()  # the calls queued behind this one may go now
                    raise Busy(kind, self._retry_after_ms(kind))
        started = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._leases -= kind == Kind.LEASE
                self._mean_s += 0.05 * (time.monotonic() - started - self._mean_s)
                self._hand_over()

    def in_use(self) -> int:
        """Slots held now."""
        with self._lock:
            return self._busy

    def queued(self) -> int:
        """Calls waiting for a slot now."""
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())


class Backoff:
    """A retry hint that grows with recent refusals, so a crowd refused together spreads its retries out.

    The hint is ``base_ms`` x (1 + r / ``room``), at most ``MAX_RETRY_MS``, where r counts the earlier refusals of
    about the last ``window_s`` seconds (each decays with time constant ``window_s``) and ``room`` is how many calls
    the refused resource holds: a lone refusal gets the base hint; after as many as it holds, twice the base.
    """

    def __init__(self, base_ms: int, room: int, window_s: float = 10.0) -> None:
        self.base_ms, self.room, self.window_s = base_ms, max(room, 1), window_s
        self._lock = threading.Lock()
        self._recent = 0.0
        self._at = time.monotonic()

    def refused(self) -> int:
        """Count a refusal now; the hint (ms) for the refused call."""
        with self._lock:
            now = time.monotonic()
            earlier = self._recent * math.exp((self._at - now) / self.window_s)
            self._recent, self._at = earlier + 1, now
            return int(min(MAX_RETRY_MS, self.base_ms * (1 + earlier / self.room)))


def default_capacity(slots: int, threads: int) -> Capacity:
    """The server's admission for ``slots`` database calls on ``threads`` gRPC threads: a quarter of ``slots`` (at
    least one) reserved from leases; heartbeats wait up to 5 s, writes 10 s, leases 5 s before they are refused.
    (The servicer bounds the threads leases hold, waiting here or for work, by ``servicer.max_waiting``.)"""
    return Capacity(
        slots,
        reserve=max(1, slots // 4) if slots > 1 else 0,
        limits={
            Kind.HEARTBEAT: Limits(queued=threads, wait_s=5.0),
            Kind.WRITE: Limits(queued=threads, wait_s=10.0),
            Kind.LEASE: Limits(queued=threads, wait_s=5.0),
        },
    )
