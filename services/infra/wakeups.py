"""Wake-ups for agents long-polling for jobs: Redis pub/sub when configured (shared by replicas), in-process otherwise.

A missed wake-up only delays an agent until its long-poll ends; Redis errors are logged and degrade to exactly that.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from latfarm.services.infra.outage import Outage

log = logging.getLogger(__name__)

CHANNEL = "latfarm:jobs:"


class LocalNotifier:
    """In-process wake-ups: a version counter per device, and a condition per device on one lock (a notification
    wakes that device's waiters only).

    Read ``version(device_id)`` before checking the queue and pass it to ``wait(..., after=...)``: a notification in
    between then returns at once instead of being missed. Without Redis, other replicas' submissions are not
    announced: their agents learn of them when their long-poll ends.
    """

    shared = False  # wakes waiters of this process only

    def __init__(self) -> None:
        """No device notified yet: every version starts at 0."""
        self._lock = threading.Lock()
        self._versions: dict[int, int] = {}
        self._waiting: dict[int, tuple[threading.Condition, int]] = {}  # device -> (its condition, waiters)

    def version(self, device_id: int) -> int:
        """How often ``device_id`` was notified so far (pass it to ``wait`` as ``after``)."""
        with self._lock:
            return self._versions.get(device_id, 0)

    def notify(self, device_id: int) -> None:
        """Wake this process's waiters on ``device_id``."""
        self._bump(device_id)

    def _bump(self, device_id: int) -> None:
        with self._lock:
            self._versions[device_id] = self._versions.get(device_id, 0) + 1
            if device_id in self._waiting:
                self._waiting[device_id][0].notify_all()

    def wait(
        self, device_id: int, timeout: float, after: int | None = None, until: Callable[[], bool] | None = None
    ) -> bool:
        """Block until ``device_id`` is notified (after version ``after``, default now), ``timeout`` s pass, or
        ``until()`` holds when ``wake(device_id)`` is called (a cancelled call); returns whether it was notified."""
        with self._lock:
            start = self._versions.get(device_id, 0) if after is None else after
            cond, waiters = self._waiting.get(device_id) or (threading.Condition(self._lock), 0)
            self._waiting[device_id] = (cond, waiters + 1)
            try:
                cond.wait_for(
                    lambda: self._versions.get(device_id, 0) != start or (until is not None and until()),
                    timeout=max(timeout, 0),
                )
                return self._versions.get(device_id, 0) != start
            finally:
                cond, waiters = self._waiting[device_id]
                if waiters == 1:
                    del self._waiting[device_id]
                else:
                    self._waiting[device_id] = (cond, waiters - 1)

    def waiting(self) -> int:
        """Calls of this process waiting now, all devices."""
        with self._lock:
            return sum(waiters for _, waiters in self._waiting.values())

    def wake(self, device_id: int) -> None:
        """Let this process's waiters on ``device_id`` re-check their ``until`` (not a notification)."""
        with self._lock:
            if device_id in self._waiting:
                self._waiting[device_id][0].notify_all()

    def close(self) -> None:
        """Nothing to release."""


class RedisNotifier(LocalNotifier):
    """Redis pub/sub: ``notify`` publishes; one listener thread per process wakes this process's waiters."""

    shared = True

    def __init__(self, redis_url: str, outage: Outage | None = None) -> None:
        """Connect to ``redis_url`` and start the listener thread (waits up to 5 s for its subscription); failures
        are logged once per ``outage`` (shared with the cache by the runtime)."""
        import redis

        super().__init__()
        self.outage = outage or Outage("redis", log)
        self._client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="latfarm-notify", daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def notify(self, device_id: int) -> None:
        """Wake the waiters on ``device_id`` in every process; a Redis failure is logged."""
        self._bump(device_id)  # local waiters need not wait for the round trip
        try:  # while Redis is down, other replicas' agents wake at their poll timeout
            self._client.publish(f"{CHANNEL}{device_id}", b"1")
        except Exception as err:  # noqa: BLE001
            self.outage.failed("wake-up publish", err)
            return
        self.outage.succeeded()

    def _listen(self) -> None:
        while not self._stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(f"{CHANNEL}*")
                pubsub.get_message(timeout=1)  # the subscribe confirmation
                self.outage.succeeded()
                self._ready.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.25)
                    if message and message["type"] == "pmessage":
                        self._bump(int(message["channel"].decode().removeprefix(CHANNEL)))
            except Exception as err:  # noqa: BLE001 - reconnects every second while Redis is down
                self.outage.failed("wake-up listener", err)
                self._ready.set()
                self._stop.wait(1)
            finally:
                pubsub.close()

    def close(self) -> None:
        """Stop the listener thread and close the Redis connection."""
        self._stop.set()
        self._thread.join(timeout=3)
        self._client.close()


def make_notifier(redis_url: str | None, outage: Outage | None = None) -> LocalNotifier:
    """Wakes agents waiting for jobs of a device: shared via Redis when configured (its failures logged once per
    ``outage``), in-process otherwise."""
    return RedisNotifier(redis_url, outage) if redis_url else LocalNotifier()
