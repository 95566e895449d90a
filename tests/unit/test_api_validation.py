"""#18 item 7: inputs that reached a 500 are refused with 422 naming the field, and the OpenAPI document shows every
status and the one error shape the API answers with."""

from __future__ import annotations

from tests.api_support import add_device, devices_and_jobs, refusal


def test_out_of_range_numbers_are_refused_naming_the_field(api, keys):
    add_device(api, "dev1")
    cases = [
        ("/v1/devices/dev1/enrollments", {"expires_in_s": 1e12}, "expires_in_s"),
        ("/v1/devices/dev1/adapt", {"samples": 5, "seed": -1}, "seed"),
        ("/v1/devices/dev1/adapt", {"samples": 5, "seed": True}, "seed"),
        ("/v1/devices/dev1/adapt", {"samples": "5"}, "samples"),
        ("/v1/devices", {"name": "dev2", "resolution": 69174}, "resolution"),
    ]
    for path, given, field in cases:
        body = refusal(api, "post", path, given)
        assert body["errors"][0]["field"] == body["field"] == field and field in body["message"]
        assert body["code"] == "invalid_argument"  # the shape of a route's own errors, plus errors[]
    accepted = api.post("/v1/devices/dev1/enrollments", json={"expires_in_s": 3600.0}, headers=keys["admin"])
    assert accepted.status_code == 201, accepted.text  # 3600.0 is an integer (JSON Schema's), as documented
    assert api.get("/v1/measurements", params={"cursor": "m5"}, headers=keys["client"]).json()["items"] == []


BOUNDED_422 = [  # method, path, body or query, the field by its public path, its message (the whole range)
    ("post", "/v1/devices/dev1/adapt", {"seed": -1}, "seed", "must be between 0 and 4294967295, got -1"),
    ("post", "/v1/devices", {"name": "d2", "batch_size": 0}, "batch_size", "must be between 1 and 1024, got 0"),
    ("post", "/v1/devices", {"name": "d2", "resolution": 1}, "resolution", "must be between 8 and 1024, got 1"),
    ("post", "/v1/devices", {"name": "d2", "classes": 0}, "classes", "must be between 1 and 100000, got 0"),
    ("post", "/v1/devices/dev1/enrollments", {"max_uses": 0}, "max_uses", "must be between 1 and 100000, got 0"),
    (
        "post",
        "/v1/devices/dev1/enrollments",
        {"expires_in_s": 0},
        "expires_in_s",
        "must be greater than 0 and at most 31622400, got 0",
    ),
    (
        "post",
        "/v1/jobs",
        {"device": "dev1", "archs": [0], "protocol": {"warmup_runs": 5000}},
        "protocol.warmup_runs",
        "must be between 0 and 1000, got 5000",
    ),
    (
        "post",
        "/v1/jobs",
        {"device": "dev1", "archs": [0], "protocol": {"rounds": 0}},
        "protocol.rounds",
        "must be between 1 and 1000, got 0",
    ),
    ("get", "/v1/measurements", {"limit": 0}, "limit", "must be between 1 and 1000, got 0"),
    ("post", "/v1/measurements/0/quarantine", {}, "measurement_id", f"must be between 1 and {2**63 - 1}, got 0"),
]


def test_a_value_outside_a_fixed_set_is_refused_in_one_wording_everywhere(api):
    """The model formats' one home (``domain.network_export.FORMATS``) for a job and an adaptation alike, and every
    other fixed set, in the command line's words."""
    add_device(api, "dev1")
    cases = [
        ("/v1/jobs", {"device": "dev1", "archs": [1], "format": "pt"}, "format: must be one of onnx, tflite, got 'pt'"),
        ("/v1/devices/dev1/adapt", {"samples": 10, "format": "pt"}, "format: must be one of onnx, tflite, got 'pt'"),
        (
            "/v1/jobs",
            {"device": "dev1", "archs": [1], "protocol": {"statistic": "mean"}},
            "protocol.statistic: must be one of min, median, got 'mean'",
        ),
        ("/v1/devices", {"name": "dev2", "runtime": "pt"}, "runtime: must be one of onnxruntime, litert, got 'pt'"),
    ]
    for path, given, message in cases:
        assert refusal(api, "post", path, given)["message"] == message


def test_a_number_out_of_its_bounds_is_told_its_whole_range(api):
    """Body fields, nested ones, query and path parameters: both ends of the documented range and the value sent,
    never pydantic's one-sided "greater than or equal to"; nothing stored."""
    add_device(api, "dev1")
    for method, path, given, field, message in BOUNDED_422:
        body = refusal(api, method, path, given)
        assert body["errors"] == [{"field": field, "message": message}], (path, body)
        assert body["message"] == f"{field}: {message}" and body["field"] == field, (path, body)
    assert devices_and_jobs(api) == (["dev1"], 0)


def test_openapi_documents_every_error_status_in_the_one_shape(api):
    spec = api.get("/openapi.json").json()
    error = {"$ref": "#/components/schemas/ErrorOut"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status in ("401", "403", "404", "409", "422", "429", "503"):
                shape = {"$ref": "#/components/schemas/HealthOut"} if (path, status) == ("/healthz", "503") else error
                assert responses[status]["content"]["application/json"]["schema"] == shape, (method, path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    arch = next(p for p in spec["paths"]["/v1/measurements"]["get"]["parameters"] if p["name"] == "arch")
    assert arch["schema"]["anyOf"][0]["pattern"].startswith("^(?:[0-9]{1,100}|")  # a position: request_arch checks it
    response = api.put("/v1/keys")
    assert response.status_code == 405 and response.headers["allow"] == "GET, POST"


def test_a_body_that_is_not_json_is_refused_saying_where(api, keys):
    add_device(api, "dev1")
    headers = {**keys["admin"], "Content-Type": "application/json"}
    body = '{"device": "dev1", "archs": [0]\n "space": "nb201"}'  # a comma missing before line 2's "space"
    response = api.post("/v1/jobs", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["message"] == "request body is not valid JSON: Expecting ',' delimiter at line 2 column 2"
    assert response.json()["code"] == "invalid_argument" and response.json()["field"] == "body"


def test_the_frameworks_own_refusals_have_the_one_shape_with_a_code(api, keys):
    from latfarm.services.api.schemas import ErrorOut

    cases = [
        (api.get("/v1/nope", headers=keys["admin"]), 404, "not_found", "path"),  # no route
        (api.get("/nope"), 404, "not_found", "path"),
        (api.get("/v1/devices/nope", headers=keys["admin"]), 404, "not_found", None),  # a route's: no such device
        (api.put("/v1/keys", headers=keys["admin"]), 405, "unimplemented", None),  # a method the path lacks
        (api.delete("/v1/devices", headers=keys["admin"]), 405, "unimplemented", None),
    ]
    for response, status, code, field in cases:
        assert response.status_code == status, response.text
        body = response.json()
        ErrorOut.model_validate(body)
        assert (body["code"], body.get("field")) == (code, field) and body["message"] == body["detail"], body


def test_an_unhandled_error_is_a_500_in_the_one_shape_without_its_message(api):
    from fastapi.testclient import TestClient

    def broken() -> None:
        raise RuntimeError("secret detail")

    api.app.add_api_route("/test-broken", broken)
    response = TestClient(api.app, raise_server_exceptions=False).get("/test-broken")
    assert response.status_code == 500 and response.json()["code"] == "internal", response.text
    assert "secret detail" not in response.text
