"""Device ownership: owner-scope keys act only on their own devices, admins on all; enrollment token limits."""

from __future__ import annotations

from datetime import timedelta

from latfarm.services.store.models import Device, Enrollment, utcnow
from tests.api_support import ADMIN, add_device, bearer


def _owner_key(api, name: str) -> tuple[int, dict[str, str]]:
    response = api.post("/v1/keys", json={"name": name, "scopes": ["owner"]}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["id"], bearer(response.json()["key"])


def test_a_second_owner_key_is_refused_on_the_first_owners_device(api):
    first_id, first = _owner_key(api, "alice")
    _, second = _owner_key(api, "bob")
    created = api.post("/v1/devices", json={"name": "alice-phone"}, headers=first)
    assert created.status_code == 201 and created.json()["owner_key_id"] == first_id
    assert api.post("/v1/devices/alice-phone/enrollments", headers=first).status_code == 201
    for path, body in [
        ("/v1/devices/alice-phone/enrollments", {}),
        ("/v1/jobs", {"device": "alice-phone", "archs": [0]}),
        ("/v1/devices/alice-phone/adapt", {"samples": 3}),
    ]:
        refused = api.post(path, json=body, headers=second)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["message"] == (
            "this key does not own device 'alice-phone': only its owner or an admin may do this"
        )
    assert api.post("/v1/jobs", json={"device": "alice-phone", "archs": [0]}, headers=first).status_code == 201
    assert api.post("/v1/devices/alice-phone/enrollments", headers=ADMIN).status_code == 201  # admins act on all
    with api.app.state.sessions() as session:
        assert session.query(Enrollment).count() == 2  # nothing stored for the refused requests


def test_devices_without_an_owner_are_admin_only_until_an_admin_sets_one(api):
    key_id, owner = _owner_key(api, "carol")
    with api.app.state.sessions() as session:  # as migrated: devices from before owners have none
        session.add(Device(name="legacy"))
        session.commit()
    assert api.get("/v1/devices/legacy", headers=owner).json()["owner_key_id"] is None
    assert api.post("/v1/devices/legacy/enrollments", headers=owner).status_code == 403
    assert api.put("/v1/devices/legacy/owner", json={"key_id": key_id}, headers=owner).status_code == 403
    unknown = api.put("/v1/devices/legacy/owner", json={"key_id": 999}, headers=ADMIN)
    assert unknown.status_code == 409 and unknown.json()["message"].startswith("key_id:")
    given = api.put("/v1/devices/legacy/owner", json={"key_id": key_id}, headers=ADMIN)
    assert given.status_code == 200 and given.json()["owner_key_id"] == key_id
    assert api.post("/v1/devices/legacy/enrollments", headers=owner).status_code == 201
    assert api.put("/v1/devices/legacy/owner", json={"key_id": None}, headers=ADMIN).json()["owner_key_id"] is None
    assert api.post("/v1/devices/legacy/enrollments", headers=owner).status_code == 403


def test_enrollment_tokens_expire_by_default_and_can_be_limited(api):
    add_device(api, "dev1")
    before = utcnow()
    default = api.post("/v1/devices/dev1/enrollments", headers=ADMIN)
    assert default.status_code == 201 and default.json()["max_uses"] is None
    ttl = timedelta(hours=api.app.state.settings.enrollment_ttl_h)
    with api.app.state.sessions() as session:
        expires = session.query(Enrollment).one().expires_at
    assert before + ttl <= expires.replace(tzinfo=before.tzinfo) <= utcnow() + ttl
    limited = api.post("/v1/devices/dev1/enrollments", json={"expires_in_s": 60, "max_uses": 3}, headers=ADMIN)
    assert limited.status_code == 201 and limited.json()["max_uses"] == 3
    for body, field in [({"expires_in_s": 1e12}, "expires_in_s"), ({"max_uses": 0}, "max_uses")]:
        bad = api.post("/v1/devices/dev1/enrollments", json=body, headers=ADMIN)
        assert bad.status_code == 422 and field in bad.json()["message"], bad.text


def test_an_owner_key_does_not_predict_even_on_its_own_device(api):
    """As the README says: predictions take a client or admin key."""
    _, owner = _owner_key(api, "dave")
    assert api.post("/v1/devices", json={"name": "dave-phone"}, headers=owner).status_code == 201
    for route in ("/v1/predict", "/v1/rank"):
        refused = api.post(route, json={"device": "dave-phone", "archs": [0]}, headers=owner)
        assert refused.status_code == 403
        assert refused.json()["message"] == "this key lacks permission 'predict'; it needs scope admin or client"
