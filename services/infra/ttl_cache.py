"""A thread-safe map whose entries lapse a fixed time after they were put: who a credential is, trusted briefly so
that authenticating a call need not read the database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Key -> value, each for ``ttl_s`` seconds; at most ``max_entries`` (past that, lapsed entries are dropped,
    then the oldest)."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        """An empty cache whose entries live ``ttl_s`` seconds."""
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._lock = threading.Lock()
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        """The value put for ``key`` less than ``ttl_s`` ago, else None."""
        with self._lock:
            entry = self._entries.get(key)
        return entry[1] if entry is not None and time.monotonic() - entry[0] < self.ttl_s else None

    def put(self, key: K, value: V) -> None:
        """Remember ``value`` for ``key`` for ``ttl_s`` from now."""
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries = {k: v for k, v in self._entries.items() if now - v[0] < self.ttl_s}
                while len(self._entries) >= self.max_entries:  # dicts keep insertion order: the oldest first
                    del self._entries[next(iter(self._entries))]
            self._entries[key] = (now, value)

    def forget(self, which: Callable[[V], bool]) -> None:
        """Drop at once every entry whose value ``which`` selects (a revoked key, a removed agent)."""
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if not which(v[1])}

    def __len__(self) -> int:
        """Entries held, lapsed ones included until the next clean-up."""
        with self._lock:
            return len(self._entries)
