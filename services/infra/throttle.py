"""Throttling of failed authentication, per client address, shared by REST, the admin login and gRPC.

A client that presented ``limit`` wrong credentials (``LATFARM_AUTH_FAILURE_LIMIT``, e.g. ``20/minute``, a moving
window) is refused at once, before its credential is looked at, until the window has room again: REST answers 429
with ``Retry-After``, gRPC RESOURCE_EXHAUSTED. Other clients are not affected. A request without any credential is
not a guess and is not counted. Counters are per process (each replica throttles on its own).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import CollectorRegistry, Counter

from latfarm.services.core.errors import Throttled

NAMESPACE = "auth-failures"


class AuthGuard:
    """Counts failed authentications per client and refuses a client over ``limit`` (``Throttled``).

    ``surface`` (``rest``, ``admin``, ``grpc``) only labels the metrics: a client's failures count across all.
    """

    def __init__(self, limit: str, registry: CollectorRegistry | None = None) -> None:
        """Throttle at ``limit``; count failures and refusals into ``registry`` (a private one when None).

        ``ValueError`` naming the setting when ``limit`` is not a rate such as ``20/minute``.
        """
        try:
            self.item: RateLimitItem = parse(limit)
        except ValueError:
            raise ValueError(f"LATFARM_AUTH_FAILURE_LIMIT: {limit!r} is not a rate such as '20/minute'") from None
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        registry = registry if registry is not None else CollectorRegistry()
        self.failures = Counter(
            "latfarm_auth_failures", "Failed authentications (wrong credential).", ["surface"], registry=registry
        )
        self.throttled = Counter(
            "latfarm_auth_throttled",
            "Requests refused because their client failed authentication too often.",
            ["surface"],
            registry=registry,
        )

    def allows(self, client: str) -> bool:
        """Whether ``client`` is under the limit (nothing counted)."""
        return self.limiter.test(self.item, NAMESPACE, client)

    def check(self, surface: str, client: str) -> None:
        """``Throttled`` with the seconds to wait when ``client`` is over the limit; else nothing."""
        if self.allows(client):
            return
        self.throttled.labels(surface).inc()
        reset = self.limiter.get_window_stats(self.item, NAMESPACE, client).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise Throttled(
            f"too many failed authentications from this client; retry in {retry_after} s", retry_after_s=retry_after
        )

    def failed(self, surface: str, client: str) -> None:
        """Record one failed authentication of ``client``."""
        self.failures.labels(surface).inc()
        self.limiter.hit(self.item, NAMESPACE, client)


def grpc_client(peer: str) -> str:
    """The address of a gRPC peer (``ipv4:10.0.0.5:53412`` → ``10.0.0.5``, ``ipv6:[::1]:53412`` → ``::1``)."""
    _, _, address = peer.partition(":")
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host.strip("[]") or peer
