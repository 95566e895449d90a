"""The prediction cache: Redis when configured (shared by replicas), an in-process LRU otherwise.

A miss only recomputes; Redis errors are logged and count as misses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import cast

from latfarm.services.infra.outage import Outage

log = logging.getLogger(__name__)


class MemoryCache:
    """An in-process LRU cache with per-entry expiry."""

    def __init__(self, max_entries: int = 4096) -> None:
        """Keep at most ``max_entries`` entries, evicting the least recently used."""
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        """The value under ``key``; None when absent or expired."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return item[1]

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds."""
        with self._lock:
            self._items[key] = (time.monotonic() + ttl_s, bytes(value))
            self._items.move_to_end(key)
            while len(self._items) > self._max:
                self._items.popitem(last=False)

    def health(self) -> str:
        """``not configured``: there is no Redis behind this cache."""
        return "not configured"

    def close(self) -> None:
        """Nothing to release."""


class RedisCache:
    """A cache in Redis under ``prefix``, shared by replicas; errors count as misses."""

    def __init__(self, redis_url: str, prefix: str = "latfarm:", outage: Outage | None = None) -> None:
        """Connect to ``redis_url`` (2 s timeouts); keys are stored under ``prefix``; failures are logged once per
        ``outage`` (shared with the notifier by the runtime)."""
        import redis

        self._client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._probe = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)  # health
        self._prefix = prefix
        self.outage = outage or Outage("redis", log)

    def get(self, key: str) -> bytes | None:
        """The value under ``key``; None when absent, expired or Redis fails."""
        try:
            value = cast("bytes | None", self._client.get(self._prefix + key))  # responses are not decoded: bytes
        except Exception as err:  # noqa: BLE001
            self.outage.failed("cache get", err)
            return None
        self.outage.succeeded()
        return value

    def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store ``value`` under ``key`` for ``ttl_s`` seconds (at least 1); a Redis failure is logged."""
        try:
            self._client.set(self._prefix + key, value, ex=max(int(ttl_s), 1))
        except Exception as err:  # noqa: BLE001
            self.outage.failed("cache set", err)
            return
        self.outage.succeeded()

    def health(self) -> str:
        """``ok`` when Redis answers a ping within 0.5 s (health probes wait about 1 s), else ``unreachable: <error
        class>``."""
        try:
            self._probe.ping()
        except Exception as err:  # noqa: BLE001
            return f"unreachable: {type(err).__name__}"
        return "ok"

    def close(self) -> None:
        """Close the Redis connections."""
        self._client.close()
        self._probe.close()


def make_cache(
    redis_url: str | None, prefix: str = "latfarm:", outage: Outage | None = None
) -> MemoryCache | RedisCache:
    """A byte cache: Redis when configured (its failures logged once per ``outage``), an in-memory LRU otherwise."""
    return RedisCache(redis_url, prefix, outage) if redis_url else MemoryCache()
