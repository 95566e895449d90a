"""The size limits on everything an agent sends: one declaration both sides read.

The server refuses a request with a string, list or map over its limit (``oversized`` names the field) and
receives no message over ``MAX_MESSAGE_BYTES``; the agent keeps what it sends within them.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

MAX_MESSAGE_BYTES = 4 << 20  # a whole request
MAX_STRING = 256  # characters of a string field not named in STRINGS
STRINGS = {"error_message": 2000, "name": 128}
MAX_LIST = 64  # items of a repeated field not named in LISTS
LISTS = {"job_ids": 10_000, "results": 1_000, "round_medians_ms": 1_000, "affinity": 1_024}
MAX_MAP = 64  # entries of a map field
MAX_MAP_KEY = 128  # characters of a map key
MAX_MAP_VALUE = 1_024  # characters of a map value


def string_limit(name: str) -> int:
    """The most characters string field ``name`` may hold."""
    return STRINGS.get(name, MAX_STRING)


def oversized(message: Message, path: str = "") -> tuple[str, str] | None:
    """(field path, what is over) of the first string, list or map in ``message`` over its limit; None if all fit."""
    for field, value in message.ListFields():
        where = f"{path}{field.name}"
        if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            found = _oversized_map(where, value)
        elif field.is_repeated:
            limit = LISTS.get(field.name, MAX_LIST)
            if len(value) > limit:
                return where, f"at most {limit} items, got {len(value)}"
            found = next(filter(None, (_oversized_item(field, f"{where}[{i}]", v) for i, v in enumerate(value))), None)
        else:
            found = _oversized_item(field, where, value)
        if found:
            return found
    return None


def _oversized_map(where: str, entries) -> tuple[str, str] | None:
    if len(entries) > MAX_MAP:
        return where, f"at most {MAX_MAP} entries, got {len(entries)}"
    for key, value in entries.items():
        if len(str(key)) > MAX_MAP_KEY:
            return where, f"keys of at most {MAX_MAP_KEY} characters, got one of {len(str(key))}"
        if isinstance(value, str) and len(value) > MAX_MAP_VALUE:
            return f"{where}[{key}]", f"at most {MAX_MAP_VALUE} characters, got {len(value)}"
    return None


def _oversized_item(field: FieldDescriptor, where: str, value) -> tuple[str, str] | None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return oversized(value, f"{where}.")
    if field.type == FieldDescriptor.TYPE_STRING and len(value) > (limit := string_limit(field.name)):
        return where, f"at most {limit} characters, got {len(value)}"
    return None
