"""The one device-name rule, for every way a device is created: REST, ``latfarm import`` (given or derived from
the dataset's file and metric names) and ``latfarm up --device``.

A name is 1-128 ASCII letters, digits, ``.``, ``_`` and ``-``: it appears in URL paths (no ``/``), file names and
HTTP headers (ASCII only), and in shell commands (no spaces).
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from latfarm.services.core.errors import InvalidArgument
from latfarm.services.store.models import Device

NAME_PATTERN = r"^[A-Za-z0-9._-]+$"
MAX_NAME_LENGTH = 128
NAME_RULE = f"use 1-{MAX_NAME_LENGTH} ASCII letters, digits, '.', '_' or '-'"  # what a refusal tells the user
MAX_LISTED = 20  # known device names an unknown-device message lists
_NAME = re.compile(NAME_PATTERN)


def checked_device_name(name: str) -> str:
    """``name`` if it follows the rule; else ``InvalidArgument`` (field ``name``) quoting it and the rule."""
    if not isinstance(name, str) or not (1 <= len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name)):
        raise InvalidArgument(refusal(name), field="name")
    return name


def refusal(name: object) -> str:
    """Why ``name`` is refused, in the one wording (REST's schema check and ``checked_device_name`` alike)."""
    return f"device name {name!r} is not allowed: {NAME_RULE}"


def unknown_device(session: Session, name: str) -> str:
    """The message for a device ``name`` that does not exist: ``unknown device 'x'; known devices: a, b`` (the
    first ``MAX_LISTED`` by name, then ``...``; ``none yet`` when there are none)."""
    known = session.scalars(select(Device.name).order_by(Device.name).limit(MAX_LISTED + 1)).all()
    listed = ", ".join(known[:MAX_LISTED]) + (", ..." if len(known) > MAX_LISTED else "")
    return f"unknown device {name!r}; known devices: {listed or 'none yet'}"
