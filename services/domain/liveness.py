"""Agent liveness: an agent is online while its last heartbeat is at most two heartbeat intervals old.

Every place that shows or counts online agents (REST, admin UI, metrics) asks this module; the agent calls that
prove an agent alive (heartbeats, leases) record it with ``mark_alive``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from latfarm.services.core.clock import as_utc, utcnow
from latfarm.services.core.errors import Unauthenticated
from latfarm.services.store.models import Agent

HEARTBEATS_ONLINE = 2  # heartbeat intervals an agent may stay silent and still count as online


class UnknownAgent(Unauthenticated):
    """No agent has this id (removed meanwhile): its credential is no longer valid."""

    def __init__(self, agent_id: str) -> None:
        """Name no id to the client: the credential is what it sent."""
        super().__init__("unknown agent credential; register again")
        self.agent_id = agent_id


@dataclass(frozen=True)
class AgentRef:
    """An agent as its calls need it: its id and its device's."""

    id: str
    device_id: int


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


def mark_alive(session: Session, agent_id: str, now: datetime | None = None, **reported: Any) -> AgentRef:
    """Record agent ``agent_id`` alive at ``now`` (with what it ``reported`` of itself: ``state``, ``descriptor``)
    in one ``UPDATE ... RETURNING`` on the session's connection (no ORM load or flush; an ``Agent`` loaded in this
    session keeps its old values). Raises ``UnknownAgent`` when there is no such agent."""
    values = {"agent_id": agent_id, "now": now or utcnow(), **{f"reported_{k}": v for k, v in reported.items()}}
    device_id = session.connection().execute(_mark_alive(tuple(sorted(reported))), values).scalar()
    if device_id is None:
        raise UnknownAgent(agent_id)
    return AgentRef(agent_id, device_id)


def registered(session: Session, agent_id: str) -> AgentRef:
    """Agent ``agent_id`` as it is registered now (one read on the session's connection); ``UnknownAgent`` when
    there is no such agent."""
    device_id = session.connection().execute(_REGISTERED, {"agent_id": agent_id}).scalar()
    if device_id is None:
        raise UnknownAgent(agent_id)
    return AgentRef(agent_id, device_id)


@lru_cache(maxsize=8)
def _mark_alive(reported: tuple[str, ...]) -> Any:
    """The statement ``mark_alive`` runs when the agent reported the ``Agent`` columns ``reported`` (sorted), built
    once per such set; its values are bound per call: ``agent_id``, ``now`` and ``reported_<column>``."""
    columns = Agent.__table__.c
    return (
        update(Agent)
        .where(Agent.id == bindparam("agent_id"))
        .values(last_heartbeat=bindparam("now", type_=columns.last_heartbeat.type))
        .values({name: bindparam(f"reported_{name}", type_=columns[name].type) for name in reported})
        .returning(Agent.device_id)
    )


_REGISTERED = select(Agent.device_id).where(Agent.id == bindparam("agent_id"))
