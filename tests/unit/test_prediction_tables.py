"""Per-device prediction tables behind ``/v1/predict`` and ``/v1/rank``: the same answers as the device's model and
measurements, rebuilt when those change (and only then), built ahead of the first request, once."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
from fastapi.testclient import TestClient

from latfarm.predictor import nb201
from latfarm.services.api.schemas import PredictResponse, RankResponse
from latfarm.services.domain import review
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.prediction_tables import RECHECK_S, Head, Marks, Table, merged
from latfarm.services.domain.predictions import Measured, PredictionService
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Adaptation, Measurement, Source
from latfarm.services.workers.adapt_worker import AdaptWorker
from tests.api_support import ADMIN, activate_adaptation, add_device, add_measurements, app_on, arch, make_settings

B1 = Conditions().key
MEASURED = {7: 3.25, 4242: 9.5, 15000: 1.75}


def _items(api, path: str, archs) -> list[dict]:
    response = api.post(path, json={"device": "dev1", "archs": list(archs)}, headers=ADMIN)
    assert response.status_code == 200, response.text
    (PredictResponse if path == "/v1/predict" else RankResponse).model_validate(response.json())
    return response.json()["items"]


def _table(api):
    service = api.app.state.predictions
    with api.app.state.read_sessions() as session:
        return service.table(session, device_by_name(session, "dev1"))


def test_table_answers_are_the_models_and_measured_rows_win(api):
    add_device(api, "dev1")
    add_measurements(api, "dev1", MEASURED, source=Source.imported, dataset="help-nb201", std=0.25)
    model = activate_adaptation(api.app.state.sessions, "dev1", [1.0, 2.0, 3.0, 4.0])
    sample = [*MEASURED, *np.random.default_rng(1).choice(nb201.NUM_ARCHS, 60, replace=False).tolist()]
    items = _items(api, "/v1/predict", sample)
    predicted = [i for i in items if i["source"] == "predicted"]
    mean, std = model.predict(np.array([i["index"] for i in predicted]))
    assert np.allclose([i["latency_ms"] for i in predicted], mean, rtol=1e-6)  # float32 tables
    assert np.allclose([i["std_ms"] for i in predicted], std, rtol=1e-6)
    assert [(i["latency_ms"], i["std_ms"], i["origin"]) for i in items[: len(MEASURED)]] == [
        (ms, 0.25, "help-nb201") for ms in MEASURED.values()
    ]
    assert items[0] == {
        "arch": arch(7),
        "index": 7,
        "nb201_index": 7,
        "latency_ms": 3.25,
        "std_ms": 0.25,
        "source": "measured",
        "origin": "help-nb201",
    }
    every = _items(api, "/v1/predict", range(nb201.NUM_ARCHS))  # the encoded-once path of every arch
    assert [every[k] for k in sample] == items
    assert _items(api, "/v1/predict", range(nb201.NUM_ARCHS)) == every

    ranked = _items(api, "/v1/rank", sample)
    assert sorted(i["index"] for i in ranked) == sorted(sample) and [i["rank"] for i in ranked] == list(range(1, 64))
    estimated = [i["index"] for i in ranked if i["source"] == "predicted"]
    assert estimated == model.rank([k for k in sample if k not in MEASURED])  # the model orders estimates
    latencies = [i["latency_ms"] for i in ranked]
    assert latencies == sorted(latencies)
    assert {i["index"]: i["latency_ms"] for i in ranked} == {i["index"]: i["latency_ms"] for i in items}


def test_a_table_is_rebuilt_when_its_rows_or_adaptation_change_and_only_then(api):
    add_device(api, "dev1")
    add_device(api, "dev2")
    activate_adaptation(api.app.state.sessions, "dev1", [1.0, 2.0, 3.0, 4.0])
    first = _items(api, "/v1/predict", [10, 20])
    table = _table(api)
    assert [i["source"] for i in first] == ["predicted", "predicted"]

    add_measurements(api, "dev2", {10: 5.0})  # another device's row: this table is still current
    assert _items(api, "/v1/predict", [10, 20]) == first and _table(api) is table

    add_measurements(api, "dev1", {10: 2.5})
    items = _items(api, "/v1/predict", [10, 20])
    assert (items[0]["source"], items[0]["latency_ms"], items[1]) == ("measured", 2.5, first[1])

    with api.app.state.read_sessions() as session:
        row = session.query(Measurement).filter_by(latency_ms=2.5).one()
    with transaction(api.app.state.sessions) as session:
        review.set_quarantined(session, row.id, True, "tester", "outlier")
    assert _items(api, "/v1/predict", [10, 20]) == first

    model = activate_adaptation(api.app.state.sessions, "dev1", [2.0, 4.0, 6.0, 8.0])
    items = _items(api, "/v1/predict", [10, 20])
    assert np.allclose([i["latency_ms"] for i in items], model.predict(np.array([10, 20]))[0], rtol=1e-6)
    assert items != first


def test_start_up_builds_tables_once_before_the_first_request(tmp_path, sqlite_url, monkeypatch):
    settings = make_settings(tmp_path, sqlite_url)
    with app_on(settings) as app, TestClient(app) as api:
        add_device(api, "dev1")
        activate_adaptation(app.state.sessions, "dev1", [1.0, 2.0, 3.0, 4.0])
        expected = _items(api, "/v1/predict", range(nb201.NUM_ARCHS))

    builds = []
    build = PredictionService._new_table
    monkeypatch.setattr(PredictionService, "_new_table", lambda *a: builds.append(a[2].name) or build(*a))
    with app_on(settings) as app, TestClient(app) as api:  # a restart: warmed up as ``latfarm serve`` does
        app.state.predictions.warm()
        assert builds == ["dev1"]
        assert _items(api, "/v1/predict", range(nb201.NUM_ARCHS)) == expected
        assert builds == ["dev1"]

    builds.clear()
    with app_on(settings) as app, TestClient(app) as api:  # requests that come before any warm-up: one build
        tables = []
        threads = [threading.Thread(target=lambda: tables.append(_table(api))) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert builds == ["dev1"] and len({id(t) for t in tables}) == 1


def test_warm_up_calls_loaded_whether_or_not_the_predictor_loads(tmp_path, sqlite_url):
    with app_on(make_settings(tmp_path, sqlite_url)) as app:
        service: PredictionService = app.state.predictions
        calls: list[str] = []
        service.warm(loaded=lambda: calls.append("loaded"))
        broken = PredictionService(service.engine, service.sessions, service.cache, lambda *a: 1 / 0)
        broken.warm(loaded=lambda: calls.append("loaded without a predictor"))
    assert calls == ["loaded", "loaded without a predictor"]


def test_the_adapt_worker_builds_the_table_of_an_activated_adaptation(tmp_path, sqlite_url):
    with app_on(make_settings(tmp_path, sqlite_url)) as app, TestClient(app) as api:
        add_device(api, "dev1")
        add_measurements(api, "dev1", {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0})  # its sample archs, measured
        with transaction(app.state.sessions) as session:
            device_id = device_by_name(session, "dev1").id
            session.add(Adaptation(device_id=device_id, samples=4, sample_archs=[1, 2, 3, 4], conditions_key=B1))
        service = app.state.predictions
        worker = AdaptWorker(app.state.sessions, service.predictor_loader, on_active=service.prepare)
        assert service._tables == {}
        assert worker.run_once() == 1
        (table,) = service._tables.values()
        assert table.predicted is not None and table.adaptation is not None and _table(api) is table


def test_a_row_committed_below_a_seen_id_is_found_on_postgresql(pg_url, tmp_path):
    """PostgreSQL hands out ids before commit: a row of the device whose transaction commits after one with a
    higher id was read is still found (the table stays unsettled until that transaction is done)."""
    with app_on(make_settings(tmp_path, pg_url)) as app, TestClient(app) as api:
        add_device(api, "dev1")
        add_device(api, "dev2")
        activate_adaptation(app.state.sessions, "dev1", [1.0, 2.0, 3.0, 4.0])
        add_measurements(api, "dev1", {5: 1.0})  # arch 10's row exists
        with app.state.sessions() as late:
            late.begin()
            target = device_by_name(late, "dev1")
            arch_id = late.query(Measurement.arch_id).filter_by(device_id=target.id).scalar()
            late.add(
                Measurement(
                    device_id=target.id,
                    arch_id=arch_id,
                    source=Source.measured,
                    latency_ms=0.5,
                    median_ms=0.5,
                    conditions=Conditions().to_dict(),
                    conditions_key=B1,
                )
            )
            late.flush()  # its id is taken, its row not committed
            add_measurements(api, "dev2", {11: 3.0})  # a higher id, committed first
            assert _items(api, "/v1/predict", [5])[0]["latency_ms"] == 1.0
            late.commit()
        time.sleep(RECHECK_S)  # other databases' transactions on the server may hold the snapshot's oldest back
        assert _items(api, "/v1/predict", [5])[0]["latency_ms"] == 0.5


def test_an_unsettled_table_rechecks_once_the_writers_in_flight_are_done():
    head = Head(1, 0, "nb201", B1, "v1")
    marks = Marks(5, 0, None, 90, 95)
    table = Table(head, None, (B1, 0, None, None), {}, None, "none", None, np.zeros(1), np.zeros(1), marks, 95)
    assert table.current(head, Marks(5, 0, None, 94, 96))  # the writers seen in flight may still run: no news
    assert not table.current(head, Marks(5, 0, None, 95, 96))  # they are done: their rows may be in
    assert table.needs_row_stamp(Marks(6, 0, None, 95, 96))
    table.checked(Marks(6, 0, None, 96, 96), full=True)
    assert table.settle_after is None and table.current(head, Marks(6, 0, None, 97, 97))
    assert not table.current(head, Marks(6, 1, None, 97, 97)) and table.needs_row_stamp(Marks(6, 1, None, 97, 97))
    assert not table.needs_row_stamp(Marks(7, 0, None, 97, 99))  # a new id alone: only ids above 6 are read
    table.checked(Marks(7, 0, None, 97, 99), full=False)
    assert table.settle_after == 99


def test_while_the_predictor_cannot_be_loaded_measured_figures_are_still_served(api):
    add_device(api, "dev1")
    add_measurements(api, "dev1", {10: 2.0})
    activate_adaptation(api.app.state.sessions, "dev1", [1.0, 2.0, 3.0, 4.0])
    service = api.app.state.predictions
    loader = service.predictor_loader

    def missing(space: str = nb201.SPACE):
        raise FileNotFoundError(f"no {space} checkpoint")

    service.predictor_loader = missing
    items = _items(api, "/v1/predict", [10, 20])
    assert (items[0]["source"], items[0]["latency_ms"], items[1]["source"]) == ("measured", 2.0, None)
    assert "predictor is unavailable: no nb201 checkpoint" in items[1]["message"]
    service.predictor_loader = loader  # loadable again: the next request builds a table with estimates
    assert [i["source"] for i in _items(api, "/v1/predict", [10, 20])] == ["measured", "predicted"]


def test_predict_by_name_follows_a_rename_a_change_of_conditions_and_a_delete_at_once(api):
    add_device(api, "dev1")
    add_measurements(api, "dev1", MEASURED, source=Source.imported, dataset="help-nb201", std=0.25)
    activate_adaptation(api.app.state.sessions, "dev1", [1.0, 2.0, 3.0, 4.0])
    assert _items(api, "/v1/predict", [7])[0]["latency_ms"] == 3.25  # the device object is now reused by name
    sessions = api.app.state.sessions
    with transaction(sessions) as session:
        device_by_name(session, "dev1").batch_size = 8  # other conditions: the imported rows no longer apply
    response = api.post("/v1/predict", json={"device": "dev1", "archs": [7]}, headers=ADMIN)
    assert response.json()["conditions"]["batch_size"] == 8
    assert response.json()["items"][0]["source"] != "measured"
    with transaction(sessions) as session:
        device = device_by_name(session, "dev1")
        device.batch_size, device.name = 1, "dev2"
    assert api.post("/v1/predict", json={"device": "dev1", "archs": [7]}, headers=ADMIN).status_code == 404
    response = api.post("/v1/predict", json={"device": "dev2", "archs": [7]}, headers=ADMIN)
    assert (response.json()["device"], response.json()["items"][0]["latency_ms"]) == ("dev2", 3.25)
    add_device(api, "dev1")  # a new device under the old name: its own (empty) answers
    assert _items(api, "/v1/predict", [7])[0]["source"] is None
    with transaction(sessions) as session:
        session.delete(device_by_name(session, "dev2"))
    assert api.post("/v1/predict", json={"device": "dev2", "archs": [7]}, headers=ADMIN).status_code == 404


def _reference_items(table: Table, keys: list[int]) -> bytes:
    """Each item's dict encoded by ``json.dumps`` (as the route's dict-built answer is): what a table's encoding
    must equal byte for byte."""
    items = []
    for key in keys:
        item = {"arch": arch(key), "index": key, "nb201_index": key}
        if (hit := table.measured.get(key)) is not None:
            item |= hit.item_fields()
        elif table.predicted is None:
            item |= {"latency_ms": None, "std_ms": None, "source": None, "message": table.reason}
        else:
            mean, std = (float(v) if np.isfinite(v) else None for v in (table.latency_ms[key], table.std_ms[key]))
            item |= {"latency_ms": mean, "std_ms": std, "source": "predicted"}
        items.append(item)
    return json.dumps(items, separators=(",", ":")).encode()


def test_encoded_items_are_the_bytes_of_each_items_dict():
    size = nb201.NUM_ARCHS
    measured = {
        3: Measured(1.5, None, "help-nb201"),
        9: Measured(2.0, 0.125, "agent", unstable=True, statistic="min"),
        11: Measured(0.1 + 0.2, float("nan"), "agent", statistic="median"),
    }
    rng = np.random.default_rng(0)
    predicted = np.stack([rng.random(size) * 30, rng.random(size)]).astype(np.float32)
    predicted[1, 5] = np.nan  # an estimate without a spread
    head, marks = Head(1, 0, "nb201", B1, "v1"), Marks(0, 0, None)
    keys = [9, 5, 3, 4, 4, 11, 15624, 0]  # measured, predicted, repeated, in request order
    for model, reason in ((predicted, None), (None, 'no model: "adapt" it first')):
        latency, std = merged(size, measured, model)
        table = Table(head, None, (B1, 3, 11, 23), measured, model, reason, None, latency, std, marks, None)
        assert table.items_json(keys) == _reference_items(table, keys)
        assert table.items_json(list(range(size))) == table.every_json() == _reference_items(table, list(range(size)))


def test_predict_answer_bytes(api):
    add_device(api, "dev1")
    add_measurements(api, "dev1", {7: 3.25}, source=Source.imported, dataset="help-nb201", std=0.25)
    activate_adaptation(api.app.state.sessions, "dev1", [1.0, 2.0, 3.0, 4.0])
    response = api.post("/v1/predict", json={"device": "dev1", "archs": [7, 8]}, headers=ADMIN)
    table = _table(api)
    conditions = response.json()["conditions"]
    head = json.dumps({"device": "dev1", "space": "nb201", "conditions": conditions})[:-1].encode()
    assert response.content == head + b',"items":' + _reference_items(table, [7, 8]) + b"}"
    assert response.headers["content-type"] == "application/json"


def test_a_current_table_is_answered_without_a_session_and_a_change_takes_the_session_path(api, monkeypatch):
    add_device(api, "dev1")
    activate_adaptation(api.app.state.sessions, "dev1", [1.0, 2.0, 3.0, 4.0])
    first = _items(api, "/v1/predict", [10, 20])  # the session path: device and table now in memory
    sessions = api.app.state.read_sessions
    opened: list[int] = []
    monkeypatch.setattr(api.app.state, "read_sessions", lambda: opened.append(1) or sessions())
    assert _answered_from_memory(api, opened, [10, 20]) == first
    add_measurements(api, "dev1", {10: 2.5})
    opened.clear()
    assert _items(api, "/v1/predict", [10, 20])[0]["latency_ms"] == 2.5 and opened
    assert _answered_from_memory(api, opened, [10, 20])[0]["latency_ms"] == 2.5  # current again


def _answered_from_memory(api, opened: list[int], archs, tries: int = 50) -> list[dict]:
    """Items of a predict answered without opening a read session. On PostgreSQL a table checked while any
    transaction of the cluster is in flight (another test worker's) stays unsettled and takes the session path
    until that transaction ends (``prediction_tables``): ask again, a little later, until it is settled."""
    for _ in range(tries):
        opened.clear()
        items = _items(api, "/v1/predict", archs)
        if not opened:
            return items
        time.sleep(RECHECK_S / 5)
    raise AssertionError(f"every one of {tries} requests opened a read session")
