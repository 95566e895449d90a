"""Admin review of stored measurements: quarantine (kept, read by no estimate or export), release, delete; and the
record of jobs and agents an admin deletes.

Every action writes an ``AuditEntry`` naming who did it, to which row, what the row held and why.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from latfarm.services.core.errors import NotFound
from latfarm.services.store.models import Agent, Arch, AuditEntry, Device, Job, Measurement

MAX_REASON = 500  # characters of the reason an admin gives


def _measurement(session: Session, measurement_id: int) -> Measurement:
    measurement = session.get(Measurement, measurement_id, with_for_update=True)
    if measurement is None:
        raise NotFound(f"no measurement {measurement_id}", field="id")
    return measurement


def _audit(session: Session, actor: str, action: str, measurement: Measurement, reason: str) -> None:
    """Record ``action`` on ``measurement`` by ``actor``, with what the row held."""
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            target=f"measurement {measurement.id}",
            detail={
                "device": session.get_one(Device, measurement.device_id).name,
                "arch": session.get_one(Arch, measurement.arch_id).arch,
                "source": measurement.source.value,
                "agent_id": measurement.agent_id,
                "job_id": measurement.job_id,
                "latency_ms": measurement.latency_ms,
                "reason": reason[:MAX_REASON],
            },
        )
    )


def set_quarantined(
    session: Session, measurement_id: int, quarantined: bool, actor: str, reason: str = ""
) -> Measurement:
    """Quarantine (or release) one measurement, audited; a no-op change is not recorded. NotFound if unknown."""
    measurement = _measurement(session, measurement_id)
    if measurement.quarantined != quarantined:
        measurement.quarantined = quarantined
        _audit(session, actor, "quarantine" if quarantined else "release", measurement, reason)
    session.flush()
    return measurement


def delete(session: Session, measurement_id: int, actor: str, reason: str = "") -> None:
    """Delete one measurement, audited. NotFound if unknown."""
    measurement = _measurement(session, measurement_id)
    _audit(session, actor, "delete", measurement, reason)
    session.delete(measurement)
    session.flush()


def record_delete(session: Session, actor: str, row: Job | Agent, reason: str = "") -> None:
    """Record that ``actor`` deletes job or agent ``row`` (action ``delete``, target ``job <id>`` or
    ``agent <id>``), with what the row held; the caller deletes it in the same transaction."""
    held: dict = {"device": session.get_one(Device, row.device_id).name}
    if isinstance(row, Job):
        kind = "job"
        held |= {
            "arch": session.get_one(Arch, row.arch_id).arch,
            "state": row.state.value,
            "batch_id": row.batch_id,
            "requested_by": row.requested_by,
            "attempts": row.attempts,
        }
    else:
        kind = "agent"
        held |= {"name": row.name, "owner": row.owner, "state": row.state}
    held["reason"] = reason[:MAX_REASON]
    session.add(AuditEntry(actor=actor, action="delete", target=f"{kind} {row.id}", detail=held))
