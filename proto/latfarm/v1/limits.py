"""The size limits on everything an agent sends: one declaration both sides read.

The server refuses a request with a string, list or map over its limit (``oversized`` names the field) and
receives no message over ``MAX_MESSAGE_BYTES``; the agent keeps what it sends within them.
"""

from __future__ import annotations

import math
from functools import cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor
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
    """(field path, what is over) of the first string, list or map in ``message`` over its limit; None if all fit.

    A message (or nested message) no longer than ``_fits_below`` bytes is passed without a look at its fields."""
    if message.ByteSize() <= _fits_below(message.DESCRIPTOR):
        return None
    for field, value in message.ListFields():
        kind, repeated = _kind(field)
        if kind == _MAP:
            found = _oversized_map(f"{path}{field.name}", value)
        elif repeated:
            limit = LISTS.get(field.name, MAX_LIST)
            if len(value) > limit:
                return f"{path}{field.name}", f"at most {limit} items, got {len(value)}"
            if kind == _SCALAR:  # numbers and booleans: no item can be over
                continue
            items = (_oversized_item(kind, field, f"{path}{field.name}[{i}]", v) for i, v in enumerate(value))
            found = next(filter(None, items), None)
        elif kind == _SCALAR:
            continue
        else:
            found = _oversized_item(kind, field, f"{path}{field.name}", value)
        if found:
            return found
    return None


_MAP, _MESSAGE, _STRING, _SCALAR = range(4)  # what a field holds, as far as its limits go


@cache
def _kind(field: FieldDescriptor) -> tuple[int, bool]:
    """(what ``field`` holds, whether it is repeated), read from its descriptor once (``GetOptions`` is slow)."""
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return (_MAP if field.message_type.GetOptions().map_entry else _MESSAGE), field.is_repeated
    return (_STRING if field.type == FieldDescriptor.TYPE_STRING else _SCALAR), field.is_repeated


@cache
def _fits_below(message: Descriptor) -> float:
    """The size in bytes (``ByteSize``) up to which a message of this type has nothing over its limits: a string
    over its limit holds more characters, a list more items, a map more entries than that limit, and each character,
    item and entry takes at least a byte. (The agent protocol's messages do not nest themselves.)"""
    floors = [math.inf]
    for field in message.fields:
        kind, repeated = _kind(field)
        if kind == _MAP:
            floors.append(min(MAX_MAP, MAX_MAP_KEY, MAX_MAP_VALUE))
            continue
        if repeated:
            floors.append(LISTS.get(field.name, MAX_LIST))
        if kind == _MESSAGE:
            floors.append(_fits_below(field.message_type))
        elif kind == _STRING:
            floors.append(string_limit(field.name))
    return min(floors)


def _oversized_map(where: str, entries) -> tuple[str, str] | None:
    if len(entries) > MAX_MAP:
        return where, f"at most {MAX_MAP} entries, got {len(entries)}"
    for key, value in entries.items():
        if len(str(key)) > MAX_MAP_KEY:
            return where, f"keys of at most {MAX_MAP_KEY} characters, got one of {len(str(key))}"
        if isinstance(value, str) and len(value) > MAX_MAP_VALUE:
            return f"{where}[{key}]", f"at most {MAX_MAP_VALUE} characters, got {len(value)}"
    return None


def _oversized_item(kind: int, field: FieldDescriptor, where: str, value) -> tuple[str, str] | None:
    if kind == _MESSAGE:
        return oversized(value, f"{where}.")
    if len(value) > (limit := string_limit(field.name)):
        return where, f"at most {limit} characters, got {len(value)}"
    return None
