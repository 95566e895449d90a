"""The one device-name rule, for every way a device is created: REST, ``latfarm import`` (given or derived from
the dataset's file and metric names) and ``latfarm up --device``.

A name is 1-128 ASCII letters, digits, ``.``, ``_`` and ``-``: it appears in URL paths (no ``/``), file names and
HTTP headers (ASCII only), and in shell commands (no spaces).
"""

from __future__ import annotations

import re

from latfarm.services.core.errors import InvalidArgument

NAME_PATTERN = r"^[A-Za-z0-9._-]+$"
MAX_NAME_LENGTH = 128
_NAME = re.compile(NAME_PATTERN)


def checked_device_name(name: str) -> str:
    """``name`` if it follows the rule; else ``InvalidArgument`` (field ``name``) quoting it and the rule."""
    if not isinstance(name, str) or not (1 <= len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name)):
        raise InvalidArgument(
            f"device name {name!r} is not allowed: use 1-{MAX_NAME_LENGTH} ASCII letters, digits, '.', '_' or '-'",
            field="name",
        )
    return name
