"""The whole range of a bounded number, or of a bounded string's or list's length, a request refused, read from the
API's own OpenAPI document (one home for a field's bounds: the model's ``Field(ge=..., le=...)``,
``Field(max_length=...)`` as documented), for a message with both ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import Request

from latfarm.common.ranges import out_of_range

# pydantic's error types for a number outside its bounds, and the bound each one reports (its ``ctx`` key)
BOUND_ERRORS = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}
# JSON Schema's bound keywords, by pydantic's names
KEYWORDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
# pydantic's error types for a string or list of a length outside its bounds, and the bound each reports (ctx key)
LENGTH_ERRORS = {
    "string_too_short": ("ge", "min_length"),
    "string_too_long": ("le", "max_length"),
    "too_short": ("ge", "min_length"),
    "too_long": ("le", "max_length"),
}
LENGTH_KEYWORDS = {"ge": ("minLength", "minItems"), "le": ("maxLength", "maxItems")}  # JSON Schema's, by bound
LOCATIONS = ("query", "path", "header", "cookie")  # a parameter's place; a body field's loc opens with "body"


def _resolve(spec: dict, schema: dict) -> dict:
    """``schema`` with its ``$ref`` (into ``#/components/schemas``) followed."""
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _forms(spec: dict, schema: dict) -> Iterator[dict]:
    """``schema`` and, depth first, every member of its ``anyOf`` / ``oneOf`` / ``allOf`` (an optional field's
    value is one member of ``anyOf [value, null]``)."""
    schema = _resolve(spec, schema)
    yield schema
    for keyword in ("anyOf", "oneOf", "allOf"):
        for member in schema.get(keyword, []):
            yield from _forms(spec, member)


def _step(spec: dict, schema: dict, part: str | int) -> dict | None:
    """The schema of ``part`` (a property name or a list index) of a value of ``schema``; None when none says."""
    for form in _forms(spec, schema):
        if isinstance(part, int) and isinstance(form.get("items"), dict):
            return form["items"]
        if isinstance(part, str) and part in form.get("properties", {}):
            return form["properties"][part]
    return None


def _field_schema(request: Request, loc: tuple, stated: Callable[[dict], dict] | None = None) -> dict | None:
    """The documented schema of the request's field at pydantic location ``loc`` (``("body", "protocol",
    "rounds")``, ``("query", "limit")``): its form that states bounds (``stated``: ``_bounds`` by default); None
    when the document does not say."""
    stated = stated or _bounds
    route = request.scope.get("route")
    if route is None or not loc:
        return None
    spec = request.app.openapi()
    operation = spec["paths"].get(getattr(route, "path_format", ""), {}).get(request.method.lower(), {})
    if loc[0] in LOCATIONS and len(loc) > 1:
        found = [p for p in operation.get("parameters", []) if p.get("in") == loc[0] and p.get("name") == loc[1]]
        schema, rest = (found[0].get("schema") if found else None), loc[2:]
    elif loc[0] == "body":
        schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        rest = loc[1:]
    else:
        return None
    for part in rest:
        if schema is None:
            return None
        schema = _step(spec, schema, part)
    return None if schema is None else next((f for f in _forms(spec, schema) if stated(f)), None)


def _lengths(schema: dict) -> dict[str, float | None]:
    """``{"ge": 1, "le": 128}``: the length bounds ``schema`` states (a string's or a list's), by pydantic's names."""
    return {
        name: schema[key]
        for name, keys in LENGTH_KEYWORDS.items()
        for key in keys
        if isinstance(schema.get(key), int) and not isinstance(schema.get(key), bool)
    }


def _bounds(schema: dict) -> dict[str, float | None]:
    """``{"ge": 1, "le": 1000}``: the bounds ``schema`` states, by pydantic's names."""
    return {name: schema[key] for name, key in KEYWORDS.items() if isinstance(schema.get(key), (int, float))}


def range_message(request: Request, error: dict, got: str) -> str | None:
    """``must be between 1 and 1000, got 0`` for a number outside its bounds (both ends, from the documented
    schema, with pydantic's own bound as the fallback; ``common.ranges``' wording); None for any other error."""
    reported = BOUND_ERRORS.get(error["type"])
    if reported is None:
        return None
    schema = _field_schema(request, tuple(error["loc"]))
    bounds = _bounds(schema) if schema is not None else {}
    bounds.setdefault(reported, error.get("ctx", {}).get(reported))
    return out_of_range(got, bounds)


def length_message(request: Request, error: dict) -> str | None:
    """``its length must be between 1 and 128, got 300`` (as the command line says it) for a string or list of a
    length outside its bounds (both ends, from the documented schema, with pydantic's own bound as the fallback);
    None for any other error."""
    reported = LENGTH_ERRORS.get(error["type"])
    if reported is None:
        return None
    name, key = reported
    schema = _field_schema(request, tuple(error["loc"]), _lengths)
    bounds = _lengths(schema) if schema is not None else {}
    bounds.setdefault(name, error.get("ctx", {}).get(key))
    given = error.get("input")
    return f"its length {out_of_range(len(given) if isinstance(given, str | list) else '?', bounds)}"
