"""Small shared queries. Resource-specific ones live beside their users (queue, datasets, API routes)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.services.store.models import Adaptation, AdaptState, Arch, Device


def ensure_archs(session: Session, archs: Iterable[str], space: str = nb201.SPACE) -> dict[str, int]:
    """Arch ids for arch strings, creating missing rows; keys are the canonical strings.

    Raises ``nb201.ArchError`` (naming the bad string) before writing anything.
    """
    if space != nb201.SPACE:
        raise nb201.ArchError(f"unknown search space {space!r}; supported: {nb201.SPACE!r}")
    ops_by_arch = {}
    for arch in archs:
        ops = nb201.parse(arch)
        ops_by_arch[nb201.to_string(ops)] = ops
    ids: dict[str, int] = {}
    wanted = list(ops_by_arch)
    ids.update(_existing_ids(session, space, wanted))
    missing = [a for a in wanted if a not in ids]
    if missing:
        session.execute(
            insert(Arch),
            [{"space": space, "arch": a, "nb201_index": nb201.official_index(ops_by_arch[a])} for a in missing],
        )
        ids.update(_existing_ids(session, space, missing))
    return ids


def _existing_ids(session: Session, space: str, names: list[str]) -> dict[str, int]:
    """Ids of the named arch rows that exist. Many names: read the whole space (15,625 short rows, milliseconds)
    rather than long IN lists, which PostgreSQL can plan badly (seconds on a fresh table)."""
    if len(names) > 500:
        wanted = set(names)
        rows = session.execute(select(Arch.arch, Arch.id).where(Arch.space == space))
        return {arch: id_ for arch, id_ in rows if arch in wanted}
    rows = session.execute(select(Arch.arch, Arch.id).where(Arch.space == space, Arch.arch.in_(names)))
    return {arch: id_ for arch, id_ in rows}


def device_by_name(session: Session, name: str) -> Device | None:
    """The device called ``name``; None when there is none."""
    return session.scalars(select(Device).where(Device.name == name)).one_or_none()


def active_adaptation(session: Session, device: Device, conditions_key: str) -> Adaptation | None:
    """The device's adaptation in use: the active one activated last among those fitted under ``conditions_key``
    (the device's current conditions; None: the device has none, or only ones fitted under other conditions)."""
    return session.scalars(
        select(Adaptation)
        .where(
            Adaptation.device_id == device.id,
            Adaptation.state == AdaptState.active,
            Adaptation.conditions_key == conditions_key,
        )
        .order_by(Adaptation.activated_at.desc())
        .limit(1)
    ).first()
