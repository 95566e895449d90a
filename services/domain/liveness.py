"""Agent liveness: an agent is online while its last heartbeat is at most two heartbeat intervals old.

Every place that shows or counts online agents (REST, admin UI, metrics) asks this module.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from latfarm.services.core.clock import as_utc, utcnow
from latfarm.services.store.models import Agent

HEARTBEATS_ONLINE = 2  # heartbeat intervals an agent may stay silent and still count as online


def online_window_s(heartbeat_interval_s: float) -> float:
    """How long after its last heartbeat an agent still counts as online, in seconds."""
    return HEARTBEATS_ONLINE * heartbeat_interval_s


def online_cutoff(heartbeat_interval_s: float, now: datetime | None = None) -> datetime:
    """Agents whose last heartbeat is at or after this moment are online (for queries)."""
    return (now or utcnow()) - timedelta(seconds=online_window_s(heartbeat_interval_s))


def is_online(agent: Agent, heartbeat_interval_s: float, now: datetime | None = None) -> bool:
    """Whether ``agent`` is online at ``now`` (default: the current time)."""
    last = as_utc(agent.last_heartbeat)
    return last is not None and last >= online_cutoff(heartbeat_interval_s, now)
