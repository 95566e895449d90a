"""The device-name rule (``core.names``) for every way a device is created: REST, ``latfarm import`` (given or
derived from the dataset's file and metric names) and ``latfarm up --device``; and the message for an unknown one.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from latfarm.services.core.errors import InvalidArgument
from latfarm.services.core.names import is_device_name, refusal
from latfarm.services.store.models import Device

MAX_LISTED = 20  # known device names an unknown-device message lists


def checked_device_name(name: str) -> str:
    """``name`` if it follows the rule; else ``InvalidArgument`` (field ``name``) quoting it and the rule."""
    if not is_device_name(name):
        raise InvalidArgument(refusal(name), field="name")
    return name


def unknown_device(session: Session, name: str) -> str:
    """The message for a device ``name`` that does not exist: ``unknown device 'x'; known devices: a, b`` (the
    first ``MAX_LISTED`` by name, then ``...``; ``none yet`` when there are none)."""
    known = session.scalars(select(Device.name).order_by(Device.name).limit(MAX_LISTED + 1)).all()
    listed = ", ".join(known[:MAX_LISTED]) + (", ..." if len(known) > MAX_LISTED else "")
    return f"unknown device {name!r}; known devices: {listed or 'none yet'}"
