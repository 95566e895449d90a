"""Admin review of stored measurements: quarantine (kept, read by no estimate or export), release, delete.

Every action writes an ``AuditEntry`` naming who did it, to which row, what the row held and why.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from latfarm.services.core.errors import NotFound
from latfarm.services.store.models import Arch, AuditEntry, Device, Measurement

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
