"""``POST /v1/predict``: measured latencies first, predictor estimates otherwise, cached in memory or Redis."""

from __future__ import annotations

import numpy as np
import torch
from fastapi.testclient import TestClient

from latfarm.predictor import nb201
from latfarm.predictor.model import Predictor
from latfarm.services.domain.conditions import Conditions
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Source
from tests.api_support import (
    ADMIN,
    MEDIAN_OFFSET_MS,
    activate_adaptation,
    add_device,
    add_measurements,
    app_on,
    arch,
    make_settings,
)

B1 = Conditions().key  # a default device's conditions: batch 1, fp32, reference graph


def test_measured_first_else_clear_message(api, keys):
    add_device(api, "dev1")
    add_measurements(api, "dev1", {10: 5.0, 11: 4.0}, source=Source.imported, dataset="help-nb201")
    add_measurements(api, "dev1", {10: 2.0}, std=0.1)
    add_measurements(api, "dev1", {10: 9.0, 12: 7.0}, unstable=True)  # flagged: used only when nothing else is
    body = {"device": "dev1", "space": "nb201", "archs": [arch(10), 11, arch(12), arch(13)]}
    response = api.post("/v1/predict", json=body, headers=keys["client"])
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert [i["arch"] for i in items] == [arch(10), arch(11), arch(12), arch(13)]
    assert items[0] | {"origin": None} == {
        "arch": arch(10),
        "index": 10,
        "nb201_index": 10,
        "latency_ms": 2.0,
        "std_ms": 0.1,
        "source": "measured",
        "origin": None,
        "statistic": "min",
    }
    assert items[0]["origin"] == "agent"
    assert (items[1]["latency_ms"], items[1]["source"], items[1]["origin"]) == (4.0, "measured", "help-nb201")
    assert (items[2]["latency_ms"], items[2]["source"], items[2]["unstable"]) == (7.0, "measured", True)
    assert "unstable" not in items[0] and "unstable" not in items[1]
    # 3 measured archs: too few for an on-the-fly model, and no adaptation
    assert items[3]["latency_ms"] is None and items[3]["source"] is None
    assert "needs 5" in items[3]["message"] and "adapt" in items[3]["message"]


def test_a_devices_agent_measurements_share_one_statistic(api, keys):
    """Measured with min, then with median: every agent figure of the device is then its median of round medians
    (the latest batch decides), so predictions never compare one arch's fastest run with another's median."""
    add_device(api, "dev1")
    add_measurements(api, "dev1", {10: 2.0, 11: 3.0})
    add_measurements(api, "dev1", {12: 4.0}, source=Source.imported, dataset="help-nb201")
    body = {"device": "dev1", "archs": [10, 11, 12]}
    items = api.post("/v1/predict", json=body, headers=keys["client"]).json()["items"]
    assert [(i["latency_ms"], i.get("statistic")) for i in items] == [(2.0, "min"), (3.0, "min"), (4.0, None)]
    add_measurements(api, "dev1", {13: 5.0}, statistic="median")
    items = api.post("/v1/predict", json=body | {"archs": [10, 11, 12, 13]}, headers=keys["client"]).json()["items"]
    offset = MEDIAN_OFFSET_MS
    assert [(i["latency_ms"], i.get("statistic")) for i in items] == [
        (2.0 + offset, "median"),
        (3.0 + offset, "median"),
        (4.0, None),  # imported figures stay the dataset's
        (5.0 + offset, "median"),
    ]


def test_bad_predict_requests(api, keys):
    add_device(api, "dev1")
    cases = [
        ({"device": "dev1", "archs": ["|nor_conv_3x3~0|"]}, 422, "archs[0]"),
        ({"device": "dev1", "archs": [-1]}, 422, "archs[0]: nb201: reference position -1 is outside 0..15624"),
        ({"device": "dev1", "archs": [arch(1)], "space": "darts"}, 422, "space"),
        ({"device": "dev1"}, 422, "archs"),
        ({"device": "nope", "archs": [arch(1)]}, 404, "nope"),
        ({"device": "dev1", "archs": list(range(nb201.NUM_ARCHS)) + [0]}, 413, "15625"),
    ]
    for body, status, named in cases:
        response = api.post("/v1/predict", json=body, headers=keys["client"])
        assert response.status_code == status, response.text
        assert named in response.json()["message"]
    assert api.post("/v1/predict", json={"device": "dev1", "archs": [1]}).status_code == 401
    assert api.post("/v1/predict", json={"device": "dev1", "archs": [1]}, headers=keys["owner"]).status_code == 403


def test_plain_positions_and_other_entries_alike(api, keys):
    """A list of plain positions skips the per-entry checks (``schemas.SpaceArchs``): it answers as the same list
    with a whole float among it, and an entry no arch form takes among positions is refused by name."""
    add_device(api, "dev1")
    plain = api.post("/v1/predict", json={"device": "dev1", "archs": [3, 7]}, headers=keys["client"])
    mixed = api.post("/v1/predict", json={"device": "dev1", "archs": [3, 7.0]}, headers=keys["client"])
    assert plain.status_code == mixed.status_code == 200 and plain.json() == mixed.json()
    for bad in (True, 7.5, None, {}):
        response = api.post("/v1/predict", json={"device": "dev1", "archs": [3, bad]}, headers=keys["client"])
        assert response.status_code == 422 and "archs[1]" in response.json()["message"], (bad, response.text)


def _help_latencies(help_dir, device: str, count: int, seed: int = 0) -> dict[int, float]:
    values = torch.load(help_dir / "latency" / f"{device}.pt")
    chosen = np.random.default_rng(seed).choice(nb201.NUM_ARCHS, count, replace=False)
    return {int(i): float(values[int(i)]) for i in chosen}


def _predict_all(client: TestClient) -> list[dict]:
    response = client.post("/v1/predict", json={"device": "dev1", "archs": list(range(nb201.NUM_ARCHS))}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def test_predicts_every_arch_from_measurements(api, help_dir):
    add_device(api, "dev1")
    measured = _help_latencies(help_dir, "titanx_256", 20)
    add_measurements(api, "dev1", measured, source=Source.imported, dataset="help-nb201")
    items = _predict_all(api)
    assert len(items) == nb201.NUM_ARCHS
    assert {i["nb201_index"] for i in items if i["source"] == "measured"} == set(measured)
    predicted = [i for i in items if i["source"] == "predicted"]
    assert len(predicted) == nb201.NUM_ARCHS - len(measured)
    assert all(i["latency_ms"] > 0 and i["std_ms"] >= 0 for i in predicted)
    # the estimates rank archs like the device does (a real, not a constant, prediction)
    truth = torch.load(help_dir / "latency" / "titanx_256.pt")
    mean = np.array([i["latency_ms"] for i in predicted])
    true = np.array([truth[i["nb201_index"]] for i in predicted])
    assert np.corrcoef(np.argsort(np.argsort(mean)), np.argsort(np.argsort(true)))[0, 1] > 0.8
    with api.app.state.sessions() as session:
        model = api.app.state.predictions.for_device(session, device_by_name(session, "dev1"))
    assert np.allclose(model.predict(np.array([i["nb201_index"] for i in predicted]))[0], mean, rtol=1e-5)


def test_active_adaptation_is_used_only_under_its_conditions(api, keys):
    """An adaptation fitted under the device's conditions serves its predictions; once the device's batch size
    changes, it is no longer used (and the device says so) until a new one is fitted."""
    add_device(api, "dev1")
    model = activate_adaptation(api.app.state.sessions, "dev1", [1.0, 2.0, 3.0, 4.0])
    block = api.get("/v1/devices/dev1", headers=keys["client"]).json()["predictor"]
    assert (block["state"], block["conditions_key"], block["current"]) == ("active", B1, True)
    body = {"device": "dev1", "archs": [10, 20]}
    response = api.post("/v1/predict", json=body, headers=keys["client"]).json()
    assert response["conditions"]["key"] == B1
    items = response["items"]
    mean, std = model.predict(np.array([10, 20]))
    assert [i["source"] for i in items] == ["predicted", "predicted"]
    assert np.allclose([i["latency_ms"] for i in items], mean, rtol=1e-5)
    assert np.allclose([i["std_ms"] for i in items], std, rtol=1e-5)

    with transaction(api.app.state.sessions) as session:
        device_by_name(session, "dev1").batch_size = 8
    assert api.get("/v1/devices/dev1", headers=keys["client"]).json()["predictor"]["current"] is False
    response = api.post("/v1/predict", json=body, headers=keys["client"]).json()
    assert response["conditions"]["batch_size"] == 8
    assert [i["source"] for i in response["items"]] == [None, None]
    assert "b8" in response["items"][0]["message"] and "adapt" in response["items"][0]["message"]


def test_imported_batch32_figures_survive_a_batch1_measurement(api, keys):
    """HELP's titanx_32 was measured at batch 32: an agent's batch-1 figure of the same arch is not a measurement
    for the device's conditions, so /v1/predict keeps answering 9.78 ms, and says for which conditions."""
    add_device(api, "titanx_32", batch_size=32)
    add_measurements(api, "titanx_32", {42: 9.78}, source=Source.imported, dataset="help-nb201")
    add_measurements(api, "titanx_32", {42: 4.24}, conditions=Conditions(batch_size=1, graph="pruned"))
    response = api.post("/v1/predict", json={"device": "titanx_32", "archs": [42]}, headers=keys["client"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["conditions"] == {"key": "nb201/32px/10cls/b32/fp32/reference", **Conditions(batch_size=32).to_dict()}
    (item,) = body["items"]
    assert (item["latency_ms"], item["source"], item["origin"]) == (9.78, "measured", "help-nb201")
    ranked = api.post("/v1/rank", json={"device": "titanx_32", "archs": [42]}, headers=keys["client"]).json()
    assert ranked["conditions"]["batch_size"] == 32 and ranked["items"][0]["latency_ms"] == 9.78
    # the batch-1 row is still stored and listed, with its own conditions
    rows = api.get("/v1/measurements", params={"device": "titanx_32"}, headers=keys["client"]).json()["items"]
    assert sorted(r["conditions"]["key"] for r in rows) == [
        "nb201/32px/10cls/b1/fp32/pruned",
        "nb201/32px/10cls/b32/fp32/reference",
    ]


def test_redis_cache_shared_by_replicas(tmp_path, sqlite_url, redis_url, help_dir, monkeypatch):
    settings = make_settings(tmp_path, sqlite_url, redis_url=redis_url)
    with app_on(settings) as app, TestClient(app) as first:
        add_device(first, "dev1")
        add_measurements(first, "dev1", _help_latencies(help_dir, "pixel3", 12), source=Source.imported)
        expected = _predict_all(first)
    assert sum(i["source"] == "predicted" for i in expected) == nb201.NUM_ARCHS - 12
    fits = []
    adapt = Predictor.adapt
    monkeypatch.setattr(Predictor, "adapt", lambda self, *args, **kw: fits.append(args) or adapt(self, *args, **kw))
    with app_on(settings) as app, TestClient(app) as second:  # a second replica: the estimates come from Redis
        assert _predict_all(second) == expected
    assert fits == []  # nothing fitted in this replica


def test_predict_and_rank_answer_while_a_writer_holds_sqlite(api, keys):
    """Both only read: on SQLite they neither take nor wait for the one writer lock (an import, a report)."""
    engine = api.app.state.sessions.kw["bind"]
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL readers never wait for writers anyway
    add_device(api, "dev1")
    add_measurements(api, "dev1", {10: 2.0, 11: 3.0})
    body = {"device": "dev1", "archs": [10, 11]}
    with engine.connect() as writer, writer.begin():  # BEGIN IMMEDIATE: the writer lock, held
        writer.exec_driver_sql("UPDATE devices SET name = name")
        predicted = api.post("/v1/predict", json=body, headers=keys["client"])
        ranked = api.post("/v1/rank", json=body, headers=keys["client"])
    assert predicted.status_code == 200, predicted.text
    assert [i["latency_ms"] for i in predicted.json()["items"]] == [2.0, 3.0]
    assert ranked.status_code == 200, ranked.text
