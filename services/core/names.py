"""What device names and record ids look like: the server's rules, which the client also checks before a request,
since both go into URL paths (``/v1/devices/{name}``, ``/v1/jobs/{id}``).

A device name is 1-128 ASCII letters, digits, ``.``, ``_`` and ``-``, not dots only: it appears in URL paths (no
``/``; a path resolves ``.`` and ``..`` away), file names and HTTP headers (ASCII only), and in shell commands (no
spaces). A record id (a job batch's, an adaptation's) is 32 lowercase hex digits.
"""

from __future__ import annotations

import re
import uuid

NAME_PATTERN = r"^[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*$"
MAX_NAME_LENGTH = 128
NAME_RULE = f"use 1-{MAX_NAME_LENGTH} ASCII letters, digits, '.', '_' or '-', not dots only"  # a refusal's advice
ID_RULE = "32 hex digits"
_NAME = re.compile(NAME_PATTERN)
_ID = re.compile(r"[0-9a-f]{32}")


def is_device_name(name: object) -> bool:
    """Whether ``name`` follows the device-name rule."""
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None


def refusal(name: object) -> str:
    """Why ``name`` is refused as a device name, in the one wording (the server's checks and the client's alike)."""
    return f"device name {name!r} is not allowed: {NAME_RULE}"


def id_refusal(value: object) -> str:
    """Why ``value`` is refused as a job batch id, in the one wording (the client's checks and the CLI's alike)."""
    return f"not a job batch id: {value!r} (a batch id is {ID_RULE})"


def new_id() -> str:
    """A new random record id (primary key)."""
    return uuid.uuid4().hex


def is_id(value: object) -> bool:
    """Whether ``value`` has the form of a record id (``new_id``'s)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None
