"""Who an agent credential is, kept for a few seconds so agent calls need not read the database to authenticate."""

from __future__ import annotations

from dataclasses import dataclass

from latfarm.services.infra.ttl_cache import TtlCache

AUTH_TTL_S = 5.0  # how long a credential is trusted without reading the database again


@dataclass(frozen=True)
class Caller:
    """An authenticated agent as far as a call needs it before its transaction."""

    agent_id: str
    device_id: int
    formats: tuple[str, ...]


class CallerCache(TtlCache[str, Caller]):
    """Credential hash -> ``Caller``, each for ``AUTH_TTL_S``; ``forget_agent`` drops an agent at once (removal)."""

    def __init__(self) -> None:
        """An empty cache."""
        super().__init__(AUTH_TTL_S)

    def forget_agent(self, agent_id: str) -> None:
        """Drop the entries of ``agent_id`` (removed or re-credentialed)."""
        self.forget(lambda caller: caller.agent_id == agent_id)


CALLERS = CallerCache()  # one per process: the admin UI's agent removal calls ``CALLERS.forget_agent``
