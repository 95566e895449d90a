"""The gRPC server's handler threads, handed to calls by kind: heartbeats first, then reports and other calls, then
leases.

The asyncio server (``aio``) runs each call's handler on a thread of a ``CallPool``. When every thread is held (calls
waiting for a database slot or running), a heartbeat must not queue behind every lease that came before it:
``CallPool`` keeps one queue per ``capacity.Kind`` and gives a free thread to the oldest call of the highest kind
waiting (the order ``capacity.Capacity`` hands out database slots in). A kind's queue holds at most its
``capacity.Limits.queued`` calls; a fuller one refuses the call with ``capacity.Busy`` and a retry hint.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from latfarm.services.rpc.capacity import MAX_RETRY_MS, MIN_RETRY_MS, Busy, Kind, Limits

_Item = tuple[Future, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class CallPool(Executor):
    """Up to ``workers`` threads (named ``<prefix>_<n>``, started as needed, kept while the pool lives) running
    submitted calls highest ``Kind`` first, in submission order within a kind; ``limits`` bound each kind's queue
    (None: unbounded; their ``wait_s`` is for the caller: ``aio`` cancels a call still queued after it and refuses
    it with ``busy``)."""

    def __init__(
        self,
        workers: int,
        prefix: str = "grpc",
        limits: dict[Kind, Limits] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"need at least one worker, got {workers}")
        self.workers, self.prefix, self.limits = workers, prefix, limits
        self._mean_s = 0.01  # moving mean of a call's run time
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queues: dict[Kind, deque[_Item]] = {kind: deque() for kind in Kind}
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """``submit_as`` a write (``Executor``'s interface)."""
        return self.submit_as(Kind.WRITE, fn, *args, **kwargs)

    def submit_as(self, kind: Kind, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)`` as a call of ``kind``; raises ``RuntimeError`` after ``shutdown``.
        Raises ``Busy`` when ``kind``'s queue is full."""
        future: Future = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
            if self.limits is not None and len(self._queues[kind]) >= self.limits[kind].queued:
                raise Busy(kind, self._retry_after_ms(kind), f"{kind.name.lower()} calls are queued for a thread")
            self._queues[kind].append((future, fn, args, kwargs))
            if self._idle > sum(len(queue) for queue in self._queues.values()) - 1:
                self._work.notify()
            elif len(self._threads) < self.workers:
                thread = threading.Thread(target=self._run, name=f"{self.prefix}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _next(self) -> _Item | None:
        """The next call to run (None: the pool is shut down and drained); waits for one."""
        with self._lock:
            while True:
                for kind in Kind:
                    if self._queues[kind]:
                        return self._queues[kind].popleft()
                if self._shutdown:
                    return None
                self._idle += 1
                self._work.wait()
                self._idle -= 1

    def _run(self) -> None:
        while (item := self._next()) is not None:
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            started = time.monotonic()
            try:
                result = fn(*args, **kwargs)
            except BaseException as err:  # noqa: BLE001 - the caller reads it from the future
                future.set_exception(err)
            else:
                future.set_result(result)
            with self._lock:
                self._mean_s += 0.05 * (time.monotonic() - started - self._mean_s)
            del item, future, fn, args, kwargs  # drop the call's objects before waiting for the next

    def _retry_after_ms(self, kind: Kind) -> int:
        """The time the queue ahead of a new ``kind`` call needs at the mean run time (under the lock)."""
        ahead = sum(len(self._queues[k]) for k in Kind if k <= kind) + 1
        estimate = 1000 * self._mean_s * ahead / self.workers
        return int(min(MAX_RETRY_MS, max(MIN_RETRY_MS, estimate)))

    def busy(self, kind: Kind) -> Busy:
        """The refusal of a ``kind`` call that waited its ``limits`` for a thread."""
        with self._lock:
            hint = self._retry_after_ms(kind)
        return Busy(kind, hint, f"{kind.name.lower()} calls are queued for a thread")

    def queued(self) -> int:
        """Calls waiting for a thread now."""
        with self._lock:
            return sum(len(queue) for queue in self._queues.values())

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; threads exit once the queue is drained (``cancel_futures``: cancel what is queued)."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for queue in self._queues.values():
                    while queue:
                        queue.popleft()[0].cancel()
            self._work.notify_all()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                thread.join()
