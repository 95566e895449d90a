"""The credential caches: entries last their TTL, forgetting drops an agent (or key) at once, the size is bounded."""

from __future__ import annotations

import time

from latfarm.services.infra.ttl_cache import TtlCache
from latfarm.services.rpc.callers import AUTH_TTL_S, Caller, CallerCache


def test_a_cached_caller_lapses_after_the_ttl():
    cache = CallerCache()
    assert cache.ttl_s == AUTH_TTL_S
    pi = Caller("agent-1", 7, ("onnx",))
    cache.put("hash-1", pi)
    assert cache.get("hash-1") == pi and cache.get("hash-2") is None
    short: TtlCache[str, Caller] = TtlCache(0.05)
    short.put("hash-1", pi)
    time.sleep(0.06)
    assert short.get("hash-1") is None


def test_forget_drops_every_credential_of_the_agent_only():
    cache = CallerCache()
    cache.put("old", Caller("agent-1", 7, ()))
    cache.put("new", Caller("agent-1", 7, ()))
    cache.put("other", Caller("agent-2", 7, ()))
    cache.forget_agent("agent-1")
    assert (cache.get("old"), cache.get("new")) == (None, None)
    assert cache.get("other") == Caller("agent-2", 7, ())


def test_the_cache_stays_bounded():
    cache: TtlCache[str, int] = TtlCache(0.01, max_entries=3)
    for n in range(3):
        cache.put(f"h{n}", n)
    time.sleep(0.02)
    cache.put("h3", 3)
    cache.put("h4", 4)
    assert len(cache) <= 3 and cache.get("h4") == 4
    fresh: TtlCache[str, int] = TtlCache(60, max_entries=3)
    for n in range(5):  # none lapsed: the oldest give way
        fresh.put(f"h{n}", n)
    assert len(fresh) == 3 and fresh.get("h0") is None and fresh.get("h4") == 4
