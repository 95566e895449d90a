"""Throttling of failed authentication, per client address, shared by REST, the admin login and gRPC.

Only failing attempts are throttled: a credential that verifies always goes through (then its own scopes and limits
apply), so a guesser behind a shared address (a NAT) does not lock out the agents and clients behind it. A client
that presented ``limit`` wrong credentials (``LATFARM_AUTH_FAILURE_LIMIT``, e.g. ``20/minute``, a moving window) has
its further wrong ones answered 429 with ``Retry-After`` (gRPC RESOURCE_EXHAUSTED) instead of 401 until the window
has room again. While it is over the limit a credential shaped like the secrets latfarm makes
(``security.generated_shape``, 192 random bits: hopeless to guess at any rate) is still verified; any other (a
custom ``LATFARM_ADMIN_KEY``, which may be guessable) is refused unverified, so it cannot be guessed faster than
``limit``. Other clients are not affected. A request without any credential is not a guess and is not counted.
Counters are per process (each replica throttles on its own).
"""

from __future__ import annotations

import math
import time
from typing import NoReturn

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import CollectorRegistry, Counter

from latfarm.services.core.errors import Throttled
from latfarm.services.core.security import generated_shape

NAMESPACE = "auth-failures"


class AuthGuard:
    """Counts failed authentications per client; refuses (``Throttled``) a client over ``limit`` the credentials
    that fail, and those it would not verify (module docstring).

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
            "latfarm_auth_failures",
            "Failed authentications counted against the limit (wrong credential, answered 401).",
            ["surface"],
            registry=registry,
        )
        self.throttled = Counter(
            "latfarm_auth_throttled",
            "Requests refused because their client failed authentication too often.",
            ["surface"],
            registry=registry,
        )

    def verifies(self, client: str, secret: str) -> bool:
        """Whether ``secret`` presented by ``client`` is to be verified (nothing counted): always when it has a
        generated secret's shape, else while ``client`` is under the limit."""
        return generated_shape(secret) or self.limiter.test(self.item, NAMESPACE, client)

    def check(self, surface: str, client: str, secret: str) -> None:
        """Before ``secret`` from ``client`` is verified: ``Throttled`` with the seconds to wait when it is not to
        be (``verifies``); else nothing."""
        if not self.verifies(client, secret):
            self._refuse(surface, client)

    def failed(self, surface: str, client: str) -> None:
        """Count one failed authentication of ``client`` (the caller then answers 401); ``Throttled`` instead when
        ``client`` is over the limit."""
        if not self.limiter.hit(self.item, NAMESPACE, client):
            self._refuse(surface, client)
        self.failures.labels(surface).inc()

    def _refuse(self, surface: str, client: str) -> NoReturn:
        """``Throttled`` with the seconds until ``client``'s window has room, counted."""
        self.throttled.labels(surface).inc()
        reset = self.limiter.get_window_stats(self.item, NAMESPACE, client).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise Throttled(
            f"too many failed authentications from this client; retry in {retry_after} s", retry_after_s=retry_after
        )


def grpc_client(peer: str) -> str:
    """The address of a gRPC peer (``ipv4:10.0.0.5:53412`` → ``10.0.0.5``, ``ipv6:[::1]:53412`` → ``::1``)."""
    _, _, address = peer.partition(":")
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host.strip("[]") or peer
