"""The one wording of a number refused for its bounds, e.g. ``must be between 1 and 1000, got 0``: the API's 422s
(``services/api/bounds.py``), the domain's and the gRPC service's checks, the command line's usage errors, the
agent's measurement settings and the predictor's latency rule all say it this way. A value that is no number at all
is refused alike, by the kind it must be (``must be a whole number, got 'abc'``, ``not_of_kind``).

Bounds go by pydantic's names, as a field declares them: ``ge`` (at least), ``gt`` (greater than), ``le`` (at most),
``lt`` (less than). Dependency-free: the agent-only install's ``latfarm agent`` imports it.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

WORDS = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
# pydantic's error types of a value that is not of a field's kind, and the kind in words
KINDS = {
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "int_type": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}
HOLDS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}  # value HOLDS[name] bound


def number(value: object) -> str:
    """A number as a person writes it: 3600, not 3600.0."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def within(value: float, bounds: Mapping[str, float | None]) -> bool:
    """Whether ``value`` lies within ``bounds`` (``{"ge": 1, "le": 1000}``; a None bound is no bound). NaN never
    does (every comparison with it is false)."""
    return all(HOLDS[name](value, bound) for name, bound in bounds.items() if bound is not None)


def out_of_range(got: object, bounds: Mapping[str, float | None], unit: str = "") -> str:
    """``must be between 1 and 1000, got 0`` (``ge`` and ``le`` both given), else ``must be at least 1, got 0``,
    ``must be greater than 0 and at most 3600, got 0``...; ``unit`` (e.g. ``ms``) follows each bound. ``got`` is
    shown as given (a string as it is, e.g. the text the user typed)."""
    given = {name: bound for name, bound in bounds.items() if bound is not None}
    lower = next(((n, given[n]) for n in ("ge", "gt") if n in given), None)
    upper = next(((n, given[n]) for n in ("le", "lt") if n in given), None)
    suffix = f" {unit}" if unit else ""
    if lower and upper and lower[0] == "ge" and upper[0] == "le":
        return f"must be between {number(lower[1])}{suffix} and {number(upper[1])}{suffix}, got {got}"
    ends = " and ".join(f"{WORDS[n]} {number(v)}{suffix}" for n, v in filter(None, (lower, upper)))
    return f"must be {ends}, got {got}"


def not_of_kind(error_type: str, got: object) -> str | None:
    """``must be a whole number, got 'abc'`` for pydantic's error type of a value not of its field's kind (``KINDS``:
    a whole number, a number, true or false, a string, a list, an object; ``got`` shown as given), None for any other
    type."""
    kind = KINDS.get(error_type)
    return None if kind is None else f"must be {kind}, got {got}"
