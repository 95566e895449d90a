"""Measurement queries with filters and cursor pagination."""

from __future__ import annotations

from sqlalchemy import select, update

from latfarm.services.domain.conditions import Conditions
from latfarm.services.store.db import transaction
from latfarm.services.store.models import AuditEntry, Measurement, Source
from tests.api_support import MEDIAN_OFFSET_MS, add_device, add_measurements, arch


def test_filters_and_cursor_pagination(api, keys):
    add_device(api, "dev1")
    add_device(api, "dev2")
    add_measurements(api, "dev1", {i: 1.0 + i for i in range(7)})
    add_measurements(api, "dev1", {3: 9.0}, source=Source.imported, dataset="help-nb201")
    add_measurements(api, "dev2", {3: 5.0})

    seen, cursor, pages = [], None, 0
    while True:
        params = {"device": "dev1", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/measurements", params=params, headers=keys["client"]).json()
        seen += page["items"]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 8 and len({m["id"] for m in seen}) == 8
    assert all(m["device"] == "dev1" for m in seen)
    measured = sorted((m for m in seen if m["source"] == "measured"), key=lambda m: m["latency_ms"])
    assert [m["latency_ms"] for m in measured] == [1.0 + i for i in range(7)]
    assert [m["median_ms"] for m in measured] == [1.0 + i + MEDIAN_OFFSET_MS for i in range(7)]
    assert {m["statistic"] for m in measured} == {"min"}

    by_arch = api.get("/v1/measurements", params={"arch": arch(3)}, headers=keys["client"]).json()["items"]
    assert sorted((m["device"], m["source"], m["latency_ms"], m["median_ms"], m["statistic"]) for m in by_arch) == [
        ("dev1", "imported", 9.0, 9.0, None),
        ("dev1", "measured", 4.0, 4.5, "min"),
        ("dev2", "measured", 5.0, 5.5, "min"),
    ]
    by_index = api.get("/v1/measurements", params={"arch": "3", "device": "dev2"}, headers=keys["client"])
    assert [m["latency_ms"] for m in by_index.json()["items"]] == [5.0]
    imported = api.get("/v1/measurements", params={"source": "imported"}, headers=keys["client"]).json()
    assert [(m["nb201_index"], m["dataset"]) for m in imported["items"]] == [(3, "help-nb201")]
    assert imported["next"] is None


def test_items_show_conditions_and_cold_start(api, keys):
    """Every item says what it was measured under and, for agent rows, its cold-start figures; the conditions key
    filters."""
    add_device(api, "dev1")
    add_measurements(api, "dev1", {1: 2.0})
    add_measurements(api, "dev1", {1: 5.0}, conditions=Conditions(batch_size=4))
    with transaction(api.app.state.sessions) as session:
        session.execute(update(Measurement).values(session_create_ms=31.5, first_inference_ms=4.25))
    items = api.get("/v1/measurements", params={"device": "dev1"}, headers=keys["client"]).json()["items"]
    assert [i["conditions"] for i in items] == [
        {"key": Conditions().key, **Conditions().to_dict()},
        {"key": Conditions(batch_size=4).key, **Conditions(batch_size=4).to_dict()},
    ]
    assert {(i["session_create_ms"], i["first_inference_ms"]) for i in items} == {(31.5, 4.25)}
    params = {"device": "dev1", "conditions_key": "nb201/32px/10cls/b4/fp32/reference"}
    (only,) = api.get("/v1/measurements", params=params, headers=keys["client"]).json()["items"]
    assert (only["latency_ms"], only["conditions"]["batch_size"]) == (5.0, 4)


def test_bad_queries(api, keys):
    add_device(api, "dev1")
    cases = [
        ({"device": "nope"}, 404, "nope"),
        ({"arch": "|conv~0|"}, 422, "arch"),
        ({"arch": "15625"}, 422, "arch"),  # past NB201's reference set, as /v1/predict refuses it
        ({"arch": "5000", "space": "fbnet"}, 422, "arch"),
        ({"source": "guessed"}, 422, "source"),
        ({"limit": 0}, 422, "limit"),
        ({"limit": 5000}, 422, "limit"),
        ({"cursor": "garbage!"}, 422, "cursor"),
    ]
    for params, status, named in cases:
        response = api.get("/v1/measurements", params=params, headers=keys["client"])
        assert response.status_code == status, (params, response.text)
        assert named in response.json()["message"]
    assert api.get("/v1/measurements").status_code == 401


def test_admins_quarantine_release_and_delete_measurements_audited(api, keys):
    """#18 item 1: a bogus stored figure breaks a device's estimates until an admin quarantines it; quarantined rows
    stay listed but no prediction, ranking or export reads them; release brings it back; every action is audited."""
    add_device(api, "dev1")
    add_measurements(api, "dev1", {i: 2.0 + i / 10 for i in range(10, 16)})
    add_measurements(api, "dev1", {20: 1e308})  # stored before reports had limits
    bogus = api.get("/v1/measurements", params={"arch": 20}, headers=keys["client"]).json()["items"][0]
    assert bogus["quarantined"] is False
    body = {"device": "dev1", "archs": [20, 30]}

    def predicted() -> list:
        response = api.post("/v1/predict", json=body, headers=keys["client"])
        assert response.status_code == 200, response.text
        return [(i["latency_ms"], i["source"]) for i in response.json()["items"]]

    assert predicted()[0] == (1e308, "measured") and 0 < predicted()[1][0] < 100  # the fit leaves it out
    for scope in ("client", "owner"):
        refused = api.post(f"/v1/measurements/{bogus['id']}/quarantine", json={}, headers=keys[scope])
        assert refused.status_code == 403, refused.text
    response = api.post(
        f"/v1/measurements/{bogus['id']}/quarantine", json={"reason": "overflowed"}, headers=keys["admin"]
    )
    assert response.status_code == 200 and response.json()["quarantined"] is True, response.text
    (arch20, arch30) = predicted()
    assert arch20[1] == "predicted" and 0 < arch20[0] < 100 and 0 < arch30[0] < 100
    rank = api.post("/v1/rank", json={"device": "dev1", "archs": [20, 10]}, headers=keys["client"])
    assert rank.status_code == 200 and [i["source"] for i in rank.json()["items"]] == ["measured", "predicted"]
    export = api.get("/v1/devices/dev1/export", headers=keys["client"])
    assert export.status_code == 200 and "1e+308" not in export.text and len(export.text.splitlines()) == 7
    listed = api.get("/v1/measurements", params={"quarantined": True}, headers=keys["client"]).json()["items"]
    assert [m["id"] for m in listed] == [bogus["id"]]

    released = api.post(f"/v1/measurements/{bogus['id']}/release", json={}, headers=keys["admin"])
    assert released.json()["quarantined"] is False and predicted()[0] == (1e308, "measured")
    assert (
        api.delete(f"/v1/measurements/{bogus['id']}", params={"reason": "junk"}, headers=keys["admin"]).status_code
        == 204
    )
    assert api.delete(f"/v1/measurements/{bogus['id']}", headers=keys["admin"]).status_code == 404
    assert api.post("/v1/measurements/99999999/quarantine", json={}, headers=keys["admin"]).status_code == 404
    assert predicted()[0][1] == "predicted"
    with api.app.state.sessions() as session:
        audit = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(a.actor, a.action, a.target) for a in audit] == [
        ("bootstrap-admin", action, f"measurement {bogus['id']}") for action in ("quarantine", "release", "delete")
    ]
    assert audit[0].detail["reason"] == "overflowed" and audit[0].detail["latency_ms"] == 1e308
    assert audit[0].detail["device"] == "dev1" and audit[2].detail["reason"] == "junk"
