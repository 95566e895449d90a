"""Small shared queries. Resource-specific ones live beside their users (queue, datasets, API routes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from latfarm.predictor.spaces import SPACES, get_space
from latfarm.services.store.models import Adaptation, AdaptState, Arch, Device

DEFAULT_SPACE = next(iter(SPACES))


def ensure_archs(
    session: Session,
    archs: Iterable[str | Sequence[int]],
    space: str = DEFAULT_SPACE,
    positions: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Arch ids for archs of ``space`` (strings or index lists), creating missing rows; keys are the canonical
    strings, in the order of ``archs`` (a repeat at its first place). A row's ``reference_index`` is its position
    in ``positions`` (canonical string -> position: a dataset's own reference set), else in the space's reference
    set; rows without one get it from ``positions``.

    Raises ``ArchError`` / ``UnknownSpace`` (naming the bad arch or space) before writing anything. An arch another
    open transaction is creating: PostgreSQL waits for it and returns its row's id.
    """
    searched = get_space(space)
    encodings = {}
    for arch in archs:
        encoding = searched.parse(arch)
        encodings[searched.to_string(encoding)] = encoding
    positions = positions or {}

    def position(arch: str) -> int | None:
        return positions[arch] if arch in positions else searched.index_of(encodings[arch])

    ids: dict[str, int] = {}
    wanted = list(encodings)
    ids.update(_existing_ids(session, space, wanted))
    missing = [a for a in wanted if a not in ids]
    if missing:
        # another transaction may be adding the same archs: wait for it and take its rows (no key violation)
        adding = (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(Arch)
        session.execute(
            adding.on_conflict_do_nothing(index_elements=["space", "arch"]),
            [{"space": space, "arch": a, "reference_index": position(a)} for a in missing],
        )
        ids.update(_existing_ids(session, space, missing))
    if positions:
        table = cast(Table, Arch.__table__)
        statement = (
            update(table)
            .where(table.c.id == bindparam("arch_id"), table.c.reference_index.is_(None))
            .values(reference_index=bindparam("position"))
        )
        known = [{"arch_id": ids[a], "position": positions[a]} for a in wanted if a in positions]
        if known:
            session.execute(statement, known)
    return {arch: ids[arch] for arch in wanted}


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
