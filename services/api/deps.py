"""Shared dependencies and helpers of the routes: DB sessions, device lookup, arch parsing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import cast

from fastapi import Request
from sqlalchemy.orm import Session

from latfarm.predictor.spaces import SPACES, ArchError, SearchSpace, UnknownSpace, get_space, other_space_hint
from latfarm.services.core.errors import InvalidArgument, NotFound, TooLarge
from latfarm.services.domain.names import unknown_device
from latfarm.services.domain.prediction_tables import Table
from latfarm.services.domain.predictions import keyed_by_position
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.models import Device

from .schemas import MAX_ARCHS


def db(request: Request) -> Iterator[Session]:
    """A session per request: read-only for GET and HEAD (never waits for a writer on SQLite); routes that write
    call ``session.commit()`` themselves before answering."""
    read_only = request.method in ("GET", "HEAD")
    with (request.app.state.read_sessions if read_only else request.app.state.sessions)() as session:
        yield session


def read_db(request: Request) -> Iterator[Session]:
    """A read-only session for a route that only reads whatever its method (``POST /v1/predict``): on SQLite it
    never waits for the writer."""
    with request.app.state.read_sessions() as session:
        yield session


def get_device(session: Session, name: str) -> Device:
    """The device called ``name``; ``NotFound`` otherwise."""
    device = device_by_name(session, name)
    if device is None:
        raise NotFound(unknown_device(session, name))
    return device


def get_device_table(request: Request, session: Session, name: str, space: str) -> tuple[Device, Table]:
    """The device called ``name`` and its prediction ``Table`` of position-keyed ``space``
    (``PredictionService.table_by_name``); ``NotFound`` when there is no such device."""
    found = request.app.state.predictions.table_by_name(session, name, space)
    if found is None:
        raise NotFound(unknown_device(session, name))
    return found


def warm_arch_tables() -> None:
    """Build every space's reference string tables now (server start) rather than in the first large request."""
    for name in SPACES:
        _reference_strings(name)


def request_keys(
    archs: Sequence[str | int | Sequence[int]], space: str, field: str = "archs"
) -> tuple[Sequence[int | str], list[str]]:
    """A predict or rank request's archs as the keys its space's predictions take (``predictions.keyed_by_position``:
    reference positions of an enumerated space such as NB201, other spaces' canonical strings) and their canonical
    strings; checked like ``request_archs``."""
    if (plain := request_positions(archs, space)) is not None:
        strings, _known = _reference_strings(space)
        return plain, [strings[arch] for arch in plain]
    canonical = request_archs(archs, space, field)
    if not keyed_by_position(space):
        return canonical, canonical
    positions = _reference_positions(space)
    return [positions[arch] for arch in canonical], canonical


def request_positions(archs: Sequence[str | int | Sequence[int]], space: str) -> list[int] | None:
    """``request_keys``'s keys without the strings when every arch is a plain position in an enumerated space's
    reference set whose positions each name a distinct arch (checked at C speed); None otherwise."""
    if not request_space(space).enumerated or len(archs) > MAX_ARCHS or {type(arch) for arch in archs} != {int}:
        return None
    strings, _known = _reference_strings(space)
    positions = cast("list[int]", archs)
    if len(_reference_positions(space)) != len(strings) or min(positions) < 0 or max(positions) >= len(strings):
        return None
    return list(positions)


def request_space(name: str) -> SearchSpace:
    """The registered space a request names; ``InvalidArgument`` naming ``space`` and the known ones otherwise."""
    try:
        return get_space(name)
    except UnknownSpace as err:
        raise InvalidArgument(f"space: {err}", field="space") from err


def request_archs(archs: Sequence[str | int | Sequence[int]], space: str, field: str = "archs") -> list[str]:
    """The canonical strings of a request's archs of ``space``, checked before anything is stored: each entry is an
    arch string, an index list (one choice per position) or a position in the space's reference set (NB201: the
    official index). ``InvalidArgument`` naming ``space`` or ``field[i]`` and what is wrong; ``TooLarge`` past
    ``MAX_ARCHS``."""
    searched = request_space(space)
    if len(archs) > MAX_ARCHS:
        raise TooLarge(f"{field}: {len(archs)} archs in one request; the limit is {MAX_ARCHS}", field=field)
    return [_canonical(searched, arch, f"{field}[{i}]") for i, arch in enumerate(archs)]


def request_arch(arch: str | int | Sequence[int], space: str, field: str = "arch") -> str:
    """The canonical string of one arch a request names in ``field`` (a query's ``arch``), checked as
    ``request_archs`` checks each entry, in its words (``arch: nb201: reference position 99999 is outside
    0..15624``)."""
    return _canonical(request_space(space), arch, field)


@lru_cache(maxsize=8)
def _reference_positions(space: str) -> dict[str, int]:
    """Canonical string -> position in a space's reference set (the first position of an arch listed twice)."""
    strings, _known = _reference_strings(space)
    return {arch: position for position, arch in reversed(list(enumerate(strings)))}


@lru_cache(maxsize=8)
def _reference_strings(space: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """The canonical strings of a space's reference set by position, and as a set (a large request of reference
    archs is checked by lookup rather than parsed)."""
    searched = get_space(space)
    strings = tuple(searched.to_string(arch) for arch in searched.reference_set() or ())
    return strings, frozenset(strings)


def _canonical(space: SearchSpace, arch: str | int | Sequence[int], field: str) -> str:
    strings, known = _reference_strings(space.name)
    try:
        if isinstance(arch, str) and arch in known:
            return arch
        if not isinstance(arch, int):
            return space.canonical(arch)
        if 0 <= arch < len(strings):
            return strings[arch]
        return space.to_string(space.at(arch))  # a position outside the reference set: at() says so
    except ArchError as err:
        raise InvalidArgument(f"{field}: {err}{other_space_hint(arch, space.name)}", field=field) from err
