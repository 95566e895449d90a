"""#19: ``POST /v1/predict``'s fast lane (``api.lane``) answers the common request with the route's exact bytes, and
passes everything else to the route, which answers or refuses as it does without the lane."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from starlette.testclient import TestClient

from latfarm.services.core.security import new_secret
from tests.api_support import ADMIN, activate_adaptation, add_device, add_measurements, app_on, bearer, make_settings

PLAIN = {"device": "dev1", "archs": [7, 3, 15624, 7]}
JSON = {"content-type": "application/json"}
ROUTE_ONLY = {"content-type": "application/json; charset=utf-8"}  # valid for the route, never taken by the lane


class RecordingPool(ThreadPoolExecutor):
    """The prediction threads, recording what runs on them: the route runs ``_answer``; the lane, on
    PostgreSQL, ``current_table`` (on SQLite nothing)."""

    def __init__(self) -> None:
        super().__init__(2)
        self.calls: list[str] = []

    def submit(self, fn, /, *args, **kwargs):
        self.calls.append(fn.__name__)
        return super().submit(fn, *args, **kwargs)


@pytest.fixture
def pool(api):
    recording = RecordingPool()
    api.app.state.predict_pool = recording
    yield recording
    recording.shutdown()


def _post(api, body, headers=JSON, key=ADMIN):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return api.post("/v1/predict", content=content, headers=headers | key)


def _served(api) -> None:
    """dev1 adapted and measured, its table in memory and known by name (a first request through the route)."""
    add_device(api, "dev1")
    add_measurements(api, "dev1", {3: 2.5})
    activate_adaptation(api.app.state.sessions, "dev1", [1.0, 2.0, 3.0, 4.0])
    assert _post(api, PLAIN).status_code == 200


def _lane_took_it(api, pool: RecordingPool) -> bool:
    """Whether the lane answered the requests since ``pool.calls`` was cleared. On PostgreSQL only asserted as
    far as the table allows: one checked while other transactions were in flight (a shared server's) goes to the
    route again after ``RECHECK_S``."""
    return "_answer" not in pool.calls or api.app.state.engine.dialect.name != "sqlite"


def test_the_lane_answers_with_the_routes_bytes(api, pool):
    _served(api)
    for body in (PLAIN, {"device": "dev1", "space": "nb201", "archs": list(range(15625))}, {**PLAIN, "archs": [0]}):
        pool.calls.clear()
        lane = _post(api, body)
        assert _lane_took_it(api, pool), body
        pool.calls.clear()
        route = _post(api, body, headers=ROUTE_ONLY)
        assert pool.calls == ["_answer"]
        assert (lane.status_code, lane.content) == (route.status_code, route.content) == (200, lane.content)
        assert lane.headers.items() == route.headers.items()
    assert lane.json()["items"][0]["source"] == "predicted"


def test_a_change_falls_through_to_the_route_which_sees_it(api, pool):
    _served(api)
    add_measurements(api, "dev1", {7: 9.5})
    pool.calls.clear()
    answer = _post(api, PLAIN)
    assert pool.calls[-1] == "_answer" and answer.json()["items"][0]["latency_ms"] == 9.5
    pool.calls.clear()
    assert _post(api, PLAIN).json()["items"][0]["latency_ms"] == 9.5 and _lane_took_it(api, pool)


@pytest.mark.parametrize(
    ("body", "headers", "key", "status"),
    [
        (PLAIN, JSON, {}, 401),
        (PLAIN, JSON, bearer("lf_admin_wrong"), 401),
        (PLAIN, JSON, {"Authorization": "Basic abc"}, 401),
        ({**PLAIN, "device": "nope"}, JSON, ADMIN, 404),
        ({**PLAIN, "device": ""}, JSON, ADMIN, 422),
        ({**PLAIN, "archs": []}, JSON, ADMIN, 422),
        ({**PLAIN, "archs": [15625]}, JSON, ADMIN, 422),
        ({**PLAIN, "archs": [1, True]}, JSON, ADMIN, 422),
        ({**PLAIN, "space": "nope"}, JSON, ADMIN, 422),
        ({**PLAIN, "extra": 1}, JSON, ADMIN, 422),
        ({"archs": [1]}, JSON, ADMIN, 422),
        (b'{"device": "dev1", "archs": [1,', JSON, ADMIN, 400),
        (b"[1, 2]", JSON, ADMIN, 422),
        (PLAIN, {"content-type": "text/plain"}, ADMIN, 422),
    ],
)
def test_anything_else_is_the_routes_answer(api, body, headers, key, status):
    _served(api)
    answer = _post(api, body, headers, key)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] and answer.json()["message"]


def test_a_key_without_the_permission_is_refused_by_the_route(api, keys, pool):
    _served(api)
    assert _post(api, PLAIN, key=keys["client"]).status_code == 200  # now cached: the lane sees it
    answer = _post(api, PLAIN, key=keys["owner"])
    assert _post(api, PLAIN, key=keys["owner"]).status_code == answer.status_code == 403
    assert "lacks permission 'predict'" in answer.json()["message"]


def test_lane_answers_are_counted_under_the_route(api, pool):
    _served(api)
    metrics = api.app.state.metrics.registry
    labels = {"method": "POST", "route": "/v1/predict", "status": "200"}
    before = metrics.get_sample_value("latfarm_http_requests_total", labels)
    pool.calls.clear()
    for _ in range(3):
        _post(api, PLAIN)
    assert _lane_took_it(api, pool)
    assert metrics.get_sample_value("latfarm_http_requests_total", labels) == before + 3
    assert metrics.get_sample_value("latfarm_http_request_duration_seconds_count", {"route": "/v1/predict"}) >= 4


def test_a_throttled_client_gets_the_routes_answer_for_each_key(tmp_path, sqlite_url):
    """Over the failed-authentication limit a cached generated key is still answered (by the lane), a cached key of
    another shape and a wrong key get the route's 429."""
    settings = make_settings(tmp_path, sqlite_url, auth_failure_limit="3 per 60 seconds")
    with app_on(settings) as app, TestClient(app) as api:
        _served(api)
        created = api.post("/v1/keys", json={"name": "nas", "scopes": ["client"]}, headers=ADMIN).json()["key"]
        expected = _post(api, PLAIN, key=bearer(created)).content  # through the route: cached
        for i in range(3):
            assert _post(api, PLAIN, key=bearer(f"lf_admin_guess-{i}")).status_code == 401
        pool = app.state.predict_pool = RecordingPool()
        try:
            taken = _post(api, PLAIN, key=bearer(created))
            assert (taken.status_code, taken.content) == (200, expected) and _lane_took_it(api, pool)
        finally:
            pool.shutdown()
        refused = _post(api, PLAIN)  # ADMIN_KEY has no generated shape
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert _post(api, PLAIN, key=bearer(new_secret("lf_client"))).status_code == 429


def test_concurrent_requests_share_checks_and_each_sees_what_was_written_before_it(api, pool):
    """On PostgreSQL requests arriving together share table checks (``PredictLane._shared_check``); each is still
    answered from a check that started after it arrived."""
    _served(api)
    expected = _post(api, PLAIN, headers=ROUTE_ONLY).content
    with ThreadPoolExecutor(16) as clients:
        answers = list(clients.map(lambda _: _post(api, PLAIN), range(64)))
        assert {(a.status_code, a.content) for a in answers} == {(200, expected)}
        add_measurements(api, "dev1", {7: 9.5})
        answers = list(clients.map(lambda _: _post(api, PLAIN), range(64)))
    assert {a.json()["items"][0]["latency_ms"] for a in answers} == {9.5}
