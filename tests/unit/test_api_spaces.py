"""Measurement requests for a search space other than NB201 (FBNet): archs in every form, the space's input variants
as conditions, and 4xx errors naming the field with nothing stored."""

from __future__ import annotations

import pytest

from latfarm.predictor.spaces import get_space
from latfarm.predictor.spaces.fbnet import BLOCKS
from latfarm.services.store.models import Arch, Job, JobBatch
from tests.api_support import ADMIN, add_device, arch

FBNET = get_space("fbnet")
FIRST, SECOND = FBNET.sample(2, seed=1)


def _stored(api) -> tuple[int, int, int]:
    with api.app.state.sessions() as session:
        return session.query(JobBatch).count(), session.query(Job).count(), session.query(Arch).count()


def test_fbnet_jobs_take_strings_and_index_lists_at_the_spaces_default_variant(api, keys):
    add_device(api, "dev1")  # NB201 on CIFAR-10 by default: FBNet has no 10-class variant
    body = {"device": "dev1", "space": "fbnet", "archs": [FBNET.to_string(FIRST), list(FIRST), list(SECOND)]}
    response = api.post("/v1/jobs", json=body, headers=keys["client"])
    assert response.status_code == 201, response.text
    assert response.json()["jobs"] == 2
    batch = api.get(f"/v1/jobs/{response.json()['id']}", params={"items": True}, headers=keys["client"]).json()
    assert batch["conditions"] == {
        "key": "fbnet/32px/100cls/b1/fp32/reference",
        "space": "fbnet",
        "resolution": 32,
        "classes": 100,
        "batch_size": 1,
        "precision": "fp32",
        "graph": "reference",
    }
    assert sorted(i["arch"] for i in batch["items"]) == sorted(FBNET.to_string(a) for a in (FIRST, SECOND))
    assert all(
        i.get("index") is None and i.get("nb201_index") is None for i in batch["items"]
    )  # random archs: in no dataset's reference set
    with api.app.state.sessions() as session:
        assert {(a.space, a.reference_index) for a in session.query(Arch)} == {("fbnet", None)}


def test_fbnet_jobs_take_positions_in_helps_reference_set(api, keys):
    add_device(api, "dev1")
    reference = FBNET.reference_set()
    body = {"device": "dev1", "space": "fbnet", "archs": [0, 17, 4999, list(reference[17])]}
    response = api.post("/v1/jobs", json=body, headers=keys["client"])
    assert response.status_code == 201, response.text
    assert response.json()["jobs"] == 3  # position 17 and its index list are one arch
    batch = api.get(f"/v1/jobs/{response.json()['id']}", params={"items": True}, headers=keys["client"]).json()
    shown = sorted((i["index"], i["arch"]) for i in batch["items"])
    assert shown == [(p, FBNET.to_string(reference[p])) for p in (0, 17, 4999)]
    with api.app.state.sessions() as session:
        assert sorted(a.reference_index for a in session.query(Arch)) == [0, 17, 4999]
    for value in ("17", FBNET.to_string(reference[17])):  # measurements' arch filter: position or string, one arch
        found = api.get("/v1/measurements", params={"space": "fbnet", "arch": value}, headers=ADMIN)
        assert found.status_code == 200 and found.json()["items"] == []  # queued, not measured: the filter runs
    beyond = api.get("/v1/measurements", params={"space": "fbnet", "arch": "5000"}, headers=ADMIN)
    assert beyond.status_code == 422 and "arch" in beyond.json()["message"]  # no arch has it: refused, as predict does


def test_fbnet_jobs_take_the_imagenet_variant_and_nb201_jobs_keep_nb201_indices(api, keys):
    add_device(api, "dev1", resolution=32, classes=100)
    imagenet = {"resolution": 224, "classes": 1000}
    body = {"device": "dev1", "space": "fbnet", "archs": [list(FIRST)], "conditions": imagenet}
    response = api.post("/v1/jobs", json=body, headers=keys["client"])
    assert response.status_code == 201, response.text
    shown = api.get(f"/v1/jobs/{response.json()['id']}", headers=keys["client"]).json()["conditions"]
    assert (shown["space"], shown["resolution"], shown["classes"]) == ("fbnet", 224, 1000)
    nb = api.post("/v1/jobs", json={"device": "dev1", "archs": [7]}, headers=keys["client"]).json()
    batch = api.get(f"/v1/jobs/{nb['id']}", params={"items": True}, headers=keys["client"]).json()
    assert (batch["conditions"]["space"], batch["conditions"]["classes"]) == ("nb201", 100)  # the device's variant
    assert [(i["arch"], i["index"], i["nb201_index"]) for i in batch["items"]] == [(arch(7), 7, 7)]


def test_bad_fbnet_requests_name_the_field_and_store_nothing(api, keys):
    add_device(api, "dev1")
    good = list(FIRST)
    names = FBNET.to_string(FIRST).split("-")
    cases = [
        ({"archs": [good[:21]]}, "archs[0]", "21 entries, expected 22"),
        ({"archs": [good, "-".join(names[:20])]}, "archs[1]", "20 blocks"),
        ({"archs": ["-".join([*names[:5], "k7_e6", *names[6:]])]}, "archs[0]", "'k7_e6' at position 5"),
        ({"archs": [good, [*good[:3], len(BLOCKS), *good[4:]]]}, "archs[1]", "position 3 holds 9"),
        ({"archs": [0, 5000]}, "archs[1]", "fbnet: reference position 5000 is outside 0..4999"),
        ({"archs": [arch(3)]}, "archs[0]", "22"),  # an NB201 string is not an FBNet arch
        ({"archs": [good], "conditions": {"resolution": 64}}, "resolution", "input variant of fbnet"),
        ({"archs": [good], "conditions": {"classes": 10}}, "classes", "input variant of fbnet"),
        ({"archs": [good], "conditions": {"graph": "pruned"}}, "graph", "reference"),
        ({"archs": [good], "space": "darts"}, "space", "darts"),
    ]
    for change, field, named in cases:
        body = {"device": "dev1", "space": "fbnet", **change}
        response = api.post("/v1/jobs", json=body, headers=keys["client"])
        assert response.status_code == 422, (change, response.text)
        message = response.json()["message"]
        assert field in message and named in message, (change, message)
    assert api.post("/v1/jobs", json={"device": "dev1", "archs": [good]}, headers=ADMIN).status_code == 422  # NB201
    assert _stored(api) == (0, 0, 0)


def test_measurements_filter_by_space_and_arch(api, keys):
    add_device(api, "dev1")
    for space, archs in (("fbnet", [list(FIRST)]), ("nb201", [5])):
        response = api.post("/v1/jobs", json={"device": "dev1", "space": space, "archs": archs}, headers=ADMIN)
        assert response.status_code == 201, response.text
    assert api.get("/v1/measurements", params={"space": "fbnet"}, headers=ADMIN).json()["items"] == []
    wrong = api.get("/v1/measurements", params={"space": "fbnet", "arch": arch(5)}, headers=ADMIN)
    assert wrong.status_code == 200 and wrong.json()["items"] == []  # an NB201 string is no FBNet arch: no rows
    unknown = api.get("/v1/measurements", params={"space": "ofa"}, headers=ADMIN)
    assert unknown.status_code == 422 and "space" in unknown.json()["message"]


@pytest.mark.parametrize(
    ("space", "position", "outside"),
    [
        (None, 99999, "nb201: reference position 99999 is outside 0..15624"),
        ("fbnet", 5000, "fbnet: reference position 5000 is outside 0..4999"),
        ("nb201", 10**30, f"nb201: reference position {10**30} is outside 0..15624"),
    ],
)
def test_a_position_outside_the_reference_set_is_refused_alike_in_a_query_and_a_body(api, space, position, outside):
    """One parser for arch references: ``GET /v1/measurements?arch=`` refuses a position its space lacks in the
    words ``/v1/predict`` refuses it in, naming its own field."""
    add_device(api, "dev1")
    query = {"arch": str(position), **({"space": space} if space else {})}
    listed = api.get("/v1/measurements", params=query, headers=ADMIN)
    predicted = api.post(
        "/v1/predict", json={"device": "dev1", "archs": [position], "space": space or "nb201"}, headers=ADMIN
    )
    assert listed.status_code == predicted.status_code == 422, (listed.text, predicted.text)
    assert listed.json()["message"] == f"arch: {outside}"
    assert predicted.json()["message"] == f"archs[0]: {outside}"
