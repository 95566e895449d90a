"""#18 item 7: the OpenAPI document says which bodies the server accepts per search space (one ``anyOf`` branch per
registered space for jobs, the registered input variants for devices), the server accepts what it allows and
refuses the rest (422 naming the field), and the measurements query treats an arch of another space as no rows."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from latfarm.predictor.spaces import SPACES
from latfarm.services.domain.conditions import Conditions
from latfarm.services.store.crud import device_by_name, ensure_archs
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Measurement, Source
from tests.api_support import ADMIN, add_device, add_measurements, arch

FBNET = SPACES["fbnet"]
FIRST = FBNET.sample(1, seed=3)[0]


def _validator(api, component: str) -> Draft202012Validator:
    """A validator of the OpenAPI document's schema ``component``."""
    document = api.get("/openapi.json").json()
    return Draft202012Validator({"$ref": f"#/components/schemas/{component}", "components": document["components"]})


def test_the_job_schema_has_one_branch_per_registered_space(api):
    schema = api.get("/openapi.json").json()["components"]["schemas"]["JobCreate"]
    branches = {branch["properties"]["space"]["const"]: branch for branch in schema["anyOf"]}
    assert set(branches) == set(SPACES)
    for name, space in SPACES.items():
        branch = branches[name]
        assert branch["required"] == ([] if name == "nb201" else ["space"])  # only the default may be left out
        forms = branch["properties"]["archs"]["items"]["anyOf"]
        assert {"type": "string", "pattern": space.string_pattern} in forms
        lists = [form for form in forms if form["type"] == "array"]
        assert [(f["minItems"], f["maxItems"], f["items"]["maximum"]) for f in lists] == [
            (space.length, space.length, space.choices - 1)
        ]
        assert any(form["type"] == "integer" for form in forms) == (space.reference_set() is not None)
        conditions = branch["properties"]["conditions"]["anyOf"][1]
        pairs = [
            (option["properties"]["resolution"]["const"], option["properties"]["classes"]["const"])
            for option in conditions["anyOf"][1:]
        ]
        assert pairs == [(v.resolution, v.classes) for v in space.input_variants.values()]
        assert conditions["properties"]["graph"]["anyOf"][0]["enum"] == list(space.graphs)


@pytest.mark.parametrize(
    ("body", "valid", "field"),
    [
        ({"archs": [list(FIRST)], "space": "fbnet"}, True, None),
        ({"archs": [[float(v) for v in FIRST]], "space": "fbnet"}, True, None),  # 3.0 is the integer 3
        ({"archs": [[True, *FIRST[1:]]], "space": "fbnet"}, False, "archs[0]"),
        ({"archs": [FBNET.to_string(FIRST)], "space": "fbnet"}, True, None),
        ({"archs": [FBNET.to_string(FIRST)]}, False, "archs[0]"),  # the default space is nb201
        ({"archs": [arch(5)], "space": "fbnet"}, False, "archs[0]"),
        ({"archs": [7, arch(5), [0, 1, 2, 3, 4, 0]]}, True, None),
        ({"archs": [[0, 1, 2, 3, 4, 0]], "space": "fbnet"}, False, "archs[0]"),
        ({"archs": [7, 4999], "space": "fbnet"}, True, None),  # positions in HELP's 5,000
        ({"archs": [5000], "space": "fbnet"}, False, "archs[0]"),
        ({"archs": [list(FIRST)], "space": "fbnet", "conditions": {"resolution": 224, "classes": 1000}}, True, None),
        ({"archs": [7], "conditions": {"resolution": 224, "classes": 1000}}, False, "conditions.resolution"),
        ({"archs": [7], "conditions": {"resolution": 16, "classes": 120, "graph": "pruned"}}, True, None),
        ({"archs": [list(FIRST)], "space": "fbnet", "conditions": {"graph": "pruned"}}, False, "conditions.graph"),
        ({"archs": [7], "conditions": {"resolution": 32}}, False, "conditions.classes"),  # a variant is given whole
        ({"archs": [7], "conditions": {"classes": 100, "resolution": None}}, False, "conditions.resolution"),
    ],
)
def test_a_job_body_is_accepted_exactly_when_its_spaces_branch_allows_it(api, keys, body, valid, field):
    add_device(api, "dev1")
    request = {"device": "dev1", **body}
    assert _validator(api, "JobCreate").is_valid(request) == valid
    response = api.post("/v1/jobs", json=request, headers=keys["client"])
    assert response.status_code == (201 if valid else 422), response.text
    if field is not None:
        assert response.json()["message"].startswith(f"{field}: ") and response.json()["field"] == field, response.text


@pytest.mark.parametrize(
    ("fields", "valid"),
    [
        ({}, True),
        ({"classes": 100}, True),
        ({"resolution": 16, "classes": 120}, True),
        ({"resolution": 224, "classes": 1000}, True),
        ({"resolution": 32, "classes": 99999}, False),
        ({"resolution": 224}, False),
        ({"classes": 1000}, False),
    ],
)
def test_a_device_is_accepted_exactly_when_its_input_is_a_registered_variant(api, fields, valid):
    body = {"name": "dev1", **fields}
    assert _validator(api, "DeviceCreate").is_valid(body) == valid
    response = api.post("/v1/devices", json=body, headers=ADMIN)
    assert response.status_code == (201 if valid else 422), response.text


def test_measurements_match_an_arch_in_its_own_space_only(api):
    add_device(api, "dev1", resolution=32, classes=100)
    add_measurements(api, "dev1", {5: 1.0})
    conditions = Conditions(space="fbnet", resolution=32, classes=100)
    with transaction(api.app.state.sessions) as session:
        (arch_id,) = ensure_archs(session, [FIRST], space="fbnet").values()
        session.add(
            Measurement(
                device_id=device_by_name(session, "dev1").id,
                arch_id=arch_id,
                source=Source.measured,
                latency_ms=2.0,
                median_ms=2.0,
                conditions=conditions.to_dict(),
                conditions_key=conditions.key,
            )
        )

    def found(**params: str) -> list[tuple[str, str]]:
        response = api.get("/v1/measurements", params=params, headers=ADMIN)
        assert response.status_code == 200, response.text
        return [(item["conditions"]["space"], item["arch"]) for item in response.json()["items"]]

    fbnet = FBNET.to_string(FIRST)
    assert found(arch=fbnet) == [("fbnet", fbnet)]  # the space of its form
    assert found(arch=arch(5)) == found(arch="5") == found(space="nb201", arch=arch(5)) == [("nb201", arch(5))]
    assert found(space="fbnet", arch=arch(5)) == found(space="nb201", arch=fbnet) == []


def test_a_device_owner_of_no_key_is_a_conflict_not_a_missing_device(api):
    add_device(api, "dev1")
    response = api.put("/v1/devices/dev1/owner", json={"key_id": 6813849}, headers=ADMIN)
    assert response.status_code == 409 and response.json()["message"] == "key_id: no API key has id 6813849"
    for outside in (0, 2**31):
        assert api.put("/v1/devices/dev1/owner", json={"key_id": outside}, headers=ADMIN).status_code == 422


def test_the_export_space_parameter_lists_the_registered_spaces(api):
    (space,) = [
        p
        for p in api.get("/openapi.json").json()["paths"]["/v1/devices/{name}/export"]["get"]["parameters"]
        if p["name"] == "space"
    ]
    assert space["schema"]["enum"] == list(SPACES)
