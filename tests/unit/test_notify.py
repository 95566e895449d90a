"""Wake-ups and cache: Redis (real server, shared by two notifiers like two replicas) and the in-process fallback."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from latfarm.services.infra.cache import MemoryCache, RedisCache, make_cache
from latfarm.services.infra.wakeups import LocalNotifier, RedisNotifier, make_notifier


def _wait_in_thread(notifier, device_id: int, timeout: float, after=None):
    result: dict = {}

    def run() -> None:
        start = time.monotonic()
        result["woken"] = notifier.wait(device_id, timeout, after=after)
        result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


@pytest.fixture(params=["local", "redis"])
def notifier_pair(request):
    """Two notifiers standing for two server replicas (in-process: the same object)."""
    if request.param == "local":
        local = make_notifier(None)
        yield local, local
        return
    url = request.getfixturevalue("redis_url")
    waiter, sender = make_notifier(url), make_notifier(url)
    yield waiter, sender
    waiter.close()
    sender.close()


def test_notify_wakes_a_waiter_of_that_device_only(notifier_pair):
    waiter, sender = notifier_pair
    device = uuid.uuid4().int % 10**9
    thread, result = _wait_in_thread(waiter, device, 10)
    other, other_result = _wait_in_thread(waiter, device + 1, 1.0)
    time.sleep(0.2)
    sender.notify(device)
    thread.join(5)
    other.join(5)
    assert result["woken"] is True and result["elapsed"] < 5
    assert other_result["woken"] is False and other_result["elapsed"] >= 0.9


def test_notification_between_check_and_wait_is_not_missed(notifier_pair):
    waiter, sender = notifier_pair
    device = uuid.uuid4().int % 10**9
    seen = waiter.version(device)
    sender.notify(device)  # arrives after the queue check, before wait()
    deadline = time.monotonic() + 5
    while waiter.version(device) == seen and time.monotonic() < deadline:
        time.sleep(0.01)  # Redis delivers asynchronously
    start = time.monotonic()
    assert waiter.wait(device, 5, after=seen) is True
    assert time.monotonic() - start < 1


def test_wait_times_out_without_notification():
    notifier = LocalNotifier()
    start = time.monotonic()
    assert notifier.wait(7, 0.3) is False
    assert time.monotonic() - start >= 0.29


def test_redis_notifier_is_shared(redis_url):
    notifier = make_notifier(redis_url)
    try:
        assert isinstance(notifier, RedisNotifier) and notifier.shared
    finally:
        notifier.close()
    assert not make_notifier(None).shared


@pytest.fixture(params=["memory", "redis"])
def cache(request):
    if request.param == "memory":
        yield make_cache(None)
        return
    prefix = f"latfarm-test-{uuid.uuid4().hex[:8]}:"
    redis_cache = make_cache(request.getfixturevalue("redis_url"), prefix=prefix)
    assert isinstance(redis_cache, RedisCache)
    yield redis_cache  # its keys expire with their ttl
    redis_cache.close()


def test_cache_get_set_expire(cache):
    assert cache.get("pred:1:abc") is None
    cache.set("pred:1:abc", b"\x00\x01", ttl_s=60)
    cache.set("pred:2:abc", b"3", ttl_s=60)
    cache.set("short", b"4", ttl_s=1)
    assert (cache.get("pred:1:abc"), cache.get("pred:2:abc")) == (b"\x00\x01", b"3")
    time.sleep(1.2)
    assert cache.get("short") is None


def test_memory_cache_evicts_least_recently_used():
    cache = MemoryCache(max_entries=2)
    cache.set("a", b"1", 60)
    cache.set("b", b"2", 60)
    assert cache.get("a") == b"1"
    cache.set("c", b"3", 60)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"1", None, b"3")


def test_unreachable_redis_degrades_to_misses():
    cache = RedisCache("redis://127.0.0.1:1/0")
    cache.set("k", b"v", 10)
    assert cache.get("k") is None


def test_wake_ends_a_wait_whose_until_holds_without_notifying():
    notifier = LocalNotifier()
    ended = threading.Event()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(notifier.wait(3, 30, until=ended.is_set)))
    waiter.start()
    deadline = time.monotonic() + 5
    while not notifier.waiting():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    notifier.wake(3)  # until() is false: the wait goes on
    time.sleep(0.1)
    assert waiter.is_alive()
    ended.set()
    notifier.wake(3)
    waiter.join(5)
    assert result == [False] and notifier.version(3) == 0 and notifier.waiting() == 0
