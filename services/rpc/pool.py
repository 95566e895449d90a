"""The gRPC server's threads, handed to calls by kind: heartbeats first, then reports and other calls, then leases.

A synchronous gRPC server runs each call on a thread of the executor it is given. The standard pool serves calls in
the order they arrive, so when every thread is held (long-polls waiting for work, calls waiting for a database slot)
a heartbeat would queue behind every lease that came before it (figures: docs/fleet.md). ``CallPool`` keeps one
queue per ``capacity.Kind`` and gives a free thread to the oldest call of the highest kind waiting (a report never
waits for a thread behind the long-polls that hold them; database slots then go to heartbeats first and to the
others in arrival order: ``capacity.Capacity``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from latfarm.services.rpc.capacity import Kind

_Item = tuple[Future, Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class CallPool(Executor):
    """Up to ``workers`` threads (named ``<prefix>_<n>``, started as needed, kept while the pool lives) running
    submitted calls highest ``Kind`` first, in submission order within a kind. ``kind_of`` maps a submission's
    positional arguments to its kind (``call_kind``)."""

    def __init__(self, workers: int, kind_of: Callable[[tuple[Any, ...]], Kind], prefix: str = "grpc") -> None:
        if workers < 1:
            raise ValueError(f"need at least one worker, got {workers}")
        self.workers, self.kind_of, self.prefix = workers, kind_of, prefix
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queues: dict[Kind, deque[_Item]] = {kind: deque() for kind in Kind}
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Queue ``fn(*args, **kwargs)`` by its kind; raises ``RuntimeError`` after ``shutdown``."""
        future: Future = Future()
        kind = self.kind_of(args)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit to a pool that was shut down")
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
            try:
                result = fn(*args, **kwargs)
            except BaseException as err:  # noqa: BLE001 - the caller reads it from the future
                future.set_exception(err)
            else:
                future.set_result(result)
            del item, future, fn, args, kwargs  # drop the call's objects before waiting for the next

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


def call_kind(servicer: object, kinds: dict[str, Kind], default: Kind = Kind.WRITE) -> Callable[[tuple], Kind]:
    """A ``CallPool.kind_of`` for a gRPC server: the kind of the ``servicer`` method a submission runs (grpc passes
    the bound method among the arguments it submits), by name in ``kinds``; ``default`` for other calls (health
    checks, other services)."""

    def kind_of(args: tuple) -> Kind:
        for arg in args:
            if getattr(arg, "__self__", None) is servicer:
                return kinds.get(getattr(arg, "__name__", ""), default)
        return default

    return kind_of
