"""The agent credential cache: entries last AUTH_TTL_S, forget drops an agent at once."""

from __future__ import annotations

import time

from latfarm.services.rpc import callers
from latfarm.services.rpc.callers import Caller, CallerCache


def test_a_cached_caller_lapses_after_the_ttl(monkeypatch):
    cache = CallerCache()
    pi = Caller("agent-1", 7, ("onnx",))
    cache.put("hash-1", pi)
    assert cache.get("hash-1") == pi and cache.get("hash-2") is None
    monkeypatch.setattr(callers, "AUTH_TTL_S", 0.05)
    time.sleep(0.06)
    assert cache.get("hash-1") is None


def test_forget_drops_every_credential_of_the_agent_only():
    cache = CallerCache()
    cache.put("old", Caller("agent-1", 7, ()))
    cache.put("new", Caller("agent-1", 7, ()))
    cache.put("other", Caller("agent-2", 7, ()))
    cache.forget("agent-1")
    assert (cache.get("old"), cache.get("new")) == (None, None)
    assert cache.get("other") == Caller("agent-2", 7, ())


def test_the_cache_stays_bounded(monkeypatch):
    cache = CallerCache()
    monkeypatch.setattr(callers, "MAX_ENTRIES", 3)
    monkeypatch.setattr(callers, "AUTH_TTL_S", 0.01)
    for n in range(3):
        cache.put(f"h{n}", Caller(f"a{n}", 1, ()))
    time.sleep(0.02)
    cache.put("h3", Caller("a3", 1, ()))
    cache.put("h4", Caller("a4", 1, ()))
    assert len(cache._entries) <= 3
