"""Who a credential is, kept for a few seconds so agent calls need not read the database to authenticate."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

AUTH_TTL_S = 5.0  # how long a credential is trusted without reading the database again
MAX_ENTRIES = 10_000  # past this, lapsed entries are dropped


@dataclass(frozen=True)
class Caller:
    """An authenticated agent as far as a call needs it before its transaction."""

    agent_id: str
    device_id: int
    formats: tuple[str, ...]


class CallerCache:
    """Credential hash -> ``Caller``, each for ``AUTH_TTL_S``; ``forget`` drops an agent at once (removal)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Caller]] = {}

    def get(self, credential_hash: str) -> Caller | None:
        """The cached caller of this credential, or None when unknown or older than ``AUTH_TTL_S``."""
        with self._lock:
            entry = self._entries.get(credential_hash)
        return entry[1] if entry is not None and time.monotonic() - entry[0] < AUTH_TTL_S else None

    def put(self, credential_hash: str, caller: Caller) -> None:
        """Remember ``caller`` for ``AUTH_TTL_S``."""
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:  # keep it bounded: drop what has lapsed
                self._entries = {k: v for k, v in self._entries.items() if now - v[0] < AUTH_TTL_S}
            self._entries[credential_hash] = (now, caller)

    def forget(self, agent_id: str) -> None:
        """Drop the entries of ``agent_id`` (removed or re-credentialed)."""
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if v[1].agent_id != agent_id}


CALLERS = CallerCache()  # one per process: the admin UI's agent removal calls ``CALLERS.forget``
