"""#15 item 4: REST errors a newcomer meets first say what to do: a body sent without the JSON content type, a key
sent without ``Bearer``, a device name against the rule (the CLI's wording) and an unknown device (the known ones,
capped)."""

from __future__ import annotations

from latfarm.services.core.names import NAME_RULE
from latfarm.services.domain.names import MAX_LISTED
from tests.api_support import ADMIN_KEY, add_device, devices_and_jobs, refusal


def test_a_body_without_the_json_content_type_says_to_send_json(api, keys):
    for content_type in ("", "text/plain"):
        headers = {**keys["admin"], "content-type": content_type}
        response = api.post("/v1/devices", content='{"name": "dev1"}', headers=headers)
        assert response.status_code == 422, response.text
        assert (
            response.json()["message"]
            == "body: send the body as JSON, with the header 'Content-Type: application/json'"
        )
    assert api.get("/v1/devices", headers=keys["admin"]).json() == []


def test_a_key_without_bearer_is_told_the_header_form(api):
    raw = api.get("/v1/devices", headers={"Authorization": ADMIN_KEY})
    assert raw.status_code == 401
    assert "does not start with 'Bearer '" in raw.json()["message"]
    assert "Authorization: Bearer <key>" in raw.json()["message"]
    for headers in ({}, {"Authorization": "Bearer "}):
        missing = api.get("/v1/devices", headers=headers)
        assert missing.status_code == 401 and missing.json()["message"].startswith("missing API key")


def test_a_bad_device_name_is_refused_in_the_clis_wording(api, keys):
    for name in ("my phone", "", "x" * 129):  # empty and too long: the rule's words too, not pydantic's
        response = api.post("/v1/devices", json={"name": name}, headers=keys["admin"])
        assert response.status_code == 422
        assert response.json()["message"] == f"name: device name {name!r} is not allowed: {NAME_RULE}"
        assert "pattern" not in response.text
    assert api.post("/v1/devices", json={"name": "x" * 128}, headers=keys["admin"]).status_code == 201


def test_an_unknown_device_lists_the_known_ones_capped(api, keys):
    assert api.get("/v1/devices/nope", headers=keys["admin"]).json()["message"] == (
        "unknown device 'nope'; known devices: none yet"
    )
    names = [f"dev{i:02d}" for i in range(MAX_LISTED + 1)]
    for name in names:
        add_device(api, name)
    message = api.get("/v1/devices/nope/adapt", headers=keys["admin"]).json()["message"]
    assert message == f"unknown device 'nope'; known devices: {', '.join(names[:MAX_LISTED])}, ..."


def test_an_unknown_space_lists_the_known_ones_as_words(api, keys):
    add_device(api, "dev1")
    response = api.get("/v1/devices/dev1/adapt", params={"space": "ofa"}, headers=keys["admin"])
    assert response.status_code == 422, response.text
    assert response.json()["message"].endswith("unknown search space 'ofa'; known: fbnet, nb201")


ARCH_FORMS = "must be a string, a whole number or a list of whole numbers"
PUBLIC_422 = [  # method, path, body or query, the field by its public path, its message
    ("post", "/v1/predict", {"device": "dev1", "archs": [True]}, "archs[0]", f"{ARCH_FORMS}, got true"),
    ("post", "/v1/predict", {"device": "dev1", "archs": [0, 1.5]}, "archs[1]", f"{ARCH_FORMS}, got 1.5"),
    ("post", "/v1/rank", {"device": "dev1", "archs": [[1, "a"]]}, "archs[0]", f'{ARCH_FORMS}, got [1, "a"]'),
    ("post", "/v1/jobs", {"device": "dev1", "archs": [None]}, "archs[0]", f"{ARCH_FORMS}, got null"),
    (
        "get",
        "/v1/measurements",
        {"arch": "xyz"},
        "arch",
        "'xyz' is no arch string of a registered space and no reference position",
    ),
    ("get", "/v1/devices/dev1/export", {"format": "xls"}, "format", "must be one of csv, latbench, got 'xls'"),
    ("get", "/v1/measurements", {"cursor": "abc"}, "cursor", "'abc' is not of the form this field takes"),
    ("post", "/v1/devices", {"name": "x2", "precision": "fp8"}, "precision", "must be one of fp32, fp16, int8"),
    ("post", "/v1/devices", {"name": "x3", "resolution": 17}, "resolution", "17px with 10 classes is not an input"),
    ("post", "/v1/devices", {"name": "x4", "resolution": 16}, "classes", "16px with 10 classes is not an input"),
    ("post", "/v1/devices/dev1/adapt", {"samples": True}, "samples", "must be a whole number, got true"),
    ("post", "/v1/devices/dev1/adapt", {"calibration": 5}, "calibration", "must be 0 or between 10 and 200 archs"),
    (
        "post",
        "/v1/jobs",
        {"device": "dev1", "archs": [0], "protocol": {"rounds": "x"}},
        "protocol.rounds",
        "must be a whole number, got 'x'",
    ),
    ("get", "/v1/measurements", {"limit": "abc"}, "limit", "must be a whole number, got 'abc'"),
    ("get", "/v1/measurements", {"source": "bogus"}, "source", "must be one of measured, imported, got 'bogus'"),
    ("post", "/v1/predict", {"archs": [0]}, "device", "required"),
    ("post", "/v1/predict", {"device": "dev1", "archs": [0], "colour": 1}, "colour", "not a field of this request"),
    ("post", "/v1/predict", {"device": "dev1", "archs": "x"}, "archs", "must be a list, got 'x'"),
    ("post", "/v1/predict", {"device": 5, "archs": [0]}, "device", "must be a string, got 5"),
    ("post", "/v1/keys", {"name": "x" * 300, "scopes": ["admin"]}, "name", "its length must be between 1 and 128"),
    ("post", "/v1/jobs", {"device": "dev1", "archs": [0], "protocol": []}, "protocol", "must be an object, got []"),
    ("get", "/v1/measurements", {"quarantined": "maybe"}, "quarantined", "must be true or false, got 'maybe'"),
]


def test_422s_name_the_field_by_its_public_path_in_words(api):
    """No pydantic internals (union member tags, validator names, 'Value error,'), no regular expressions, no
    ``body`` for a field the body has: the field as the client wrote it and what it must be."""
    add_device(api, "dev1")
    for method, path, given, field, message in PUBLIC_422:
        body = refusal(api, method, path, given)
        assert [e["field"] for e in body["errors"]] == [field], (path, body)
        assert message in body["errors"][0]["message"] and body["message"].startswith(f"{field}: "), (path, body)
        named = body["errors"][0]["message"]
        assert not named.startswith((f"{field}: ", f"{field} ")), (path, body)  # named once, by "field"
        pydantic = ("Input should", "Field required", "Extra inputs", "String should")
        for internal in ("function-", "whole_number", "Value error", "(?:", "[0-9]", "list[", ".str", *pydantic):
            assert internal not in body["message"], (path, internal, body["message"])
    assert devices_and_jobs(api) == (["dev1"], 0)  # nothing stored


SPACE_AND_CONDITION_422 = [  # path, body, the field by its public path, its message
    ("/v1/predict", {"device": "dev1", "space": "ofa", "archs": [0]}, "space", "unknown search space 'ofa'"),
    ("/v1/rank", {"device": "dev1", "space": "ofa", "archs": [0, 1]}, "space", "unknown search space 'ofa'"),
    ("/v1/jobs", {"device": "dev1", "space": "ofa", "archs": [0]}, "space", "unknown search space 'ofa'"),
    ("/v1/jobs", {"device": "dev1", "archs": [0], "conditions": {"precision": "fp8"}}, "conditions.precision", "fp8"),
    ("/v1/jobs", {"device": "dev1", "archs": [0], "conditions": {"graph": "x"}}, "conditions.graph", "reference"),
    ("/v1/jobs", {"device": "dev1", "archs": [0], "conditions": {"resolution": 17}}, "conditions.classes", "together"),
    (
        "/v1/jobs",
        {"device": "dev1", "archs": [0], "conditions": {"resolution": 16, "classes": 10}},
        "conditions.classes",
        "16px with 10 classes",
    ),
]


def test_a_bad_space_or_job_condition_is_named_by_its_path_in_the_request(api):
    """Every route names an unknown ``space`` as ``space``, and a job's bad condition as ``conditions.<name>``
    (where the request has it), with nothing queued."""
    add_device(api, "dev1")
    for path, given, field, message in SPACE_AND_CONDITION_422:
        body = refusal(api, "post", path, given)
        assert body.get("field") == field and body["message"].startswith(f"{field}: "), (path, body)
        assert not body["message"].startswith(f"{field}: {field.split('.')[-1]} "), (path, body)  # named once
        assert message in body["message"], (path, body)
    assert devices_and_jobs(api) == (["dev1"], 0)


def test_an_arch_string_of_another_space_names_that_space(api):
    from latfarm.predictor.spaces import get_space

    add_device(api, "dev1")
    fbnet, nb201 = get_space("fbnet").to_string([0] * 22), "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    for route, space, given, other in [
        ("/v1/predict", "nb201", fbnet, "fbnet"),
        ("/v1/rank", "fbnet", nb201, "nb201"),
        ("/v1/jobs", "nb201", fbnet, "fbnet"),
    ]:
        message = refusal(api, "post", route, {"device": "dev1", "space": space, "archs": [0, given]})["message"]
        assert message.startswith(f"archs[1]: {space}: ") and message.endswith(f"; it is an arch of space {other}")
    bad = refusal(api, "post", "/v1/predict", {"device": "dev1", "archs": ["foo"]})
    assert "it is an arch" not in bad["message"]  # no hint for a string of no space
    assert devices_and_jobs(api) == (["dev1"], 0)
