"""Operations: who reads /metrics, what /healthz says about Redis, one log line per Redis outage, agent backoff."""

from __future__ import annotations

import logging
import socket

import pytest
from fastapi.testclient import TestClient

from latfarm.agents.connection import BACKOFF_CAP_S, Backoff
from latfarm.services.api import create_app
from latfarm.services.api.schemas import HealthOut
from latfarm.services.infra.cache import RedisCache
from latfarm.services.infra.wakeups import RedisNotifier
from latfarm.services.runtime import Runtime
from tests.api_support import ADMIN, app_on, make_settings


def _closed_redis_url() -> str:
    """A Redis URL where nothing listens: Redis is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


@pytest.mark.parametrize(
    ("access", "anonymous", "with_key", "from_loopback"),
    [("key", 401, 200, 401), ("local", 403, 403, 200), ("open", 200, 200, 200)],
)
def test_metrics_access_is_a_setting(tmp_path, sqlite_url, access, anonymous, with_key, from_loopback):
    with app_on(make_settings(tmp_path, sqlite_url, metrics_access=access)) as app:
        remote, local = TestClient(app, client=("203.0.113.7", 5000)), TestClient(app, client=("127.0.0.1", 5000))
        with remote, local:
            assert remote.get("/metrics").status_code == anonymous
            answer = remote.get("/metrics", headers=ADMIN)
            assert answer.status_code == with_key
            if with_key == 200:
                assert "latfarm_queue_depth" in answer.text
            assert local.get("/metrics").status_code == from_loopback


def test_metrics_need_a_key_by_default(api):
    denied = api.get("/metrics")
    assert denied.status_code == 401 and denied.json()["code"] == "unauthenticated"
    assert api.get("/metrics", headers={"Authorization": "Bearer lf_wrong"}).status_code == 401


def test_healthz_reports_redis(tmp_path, sqlite_url, redis_url):
    cases = [(None, "ok", "not configured"), (redis_url, "ok", "ok"), (_closed_redis_url(), "degraded", None)]
    for url, status, redis in cases:
        with app_on(make_settings(tmp_path, sqlite_url, redis_url=url)) as app, TestClient(app) as client:
            answer = client.get("/healthz")
            assert answer.status_code == 200
            body = answer.json()
            assert (body["status"], body["database"]) == (status, "ok")
            assert body["redis"] == redis or (redis is None and body["redis"] == "unreachable: ConnectionError")


def test_healthz_and_the_admin_ui_answer_503_while_the_database_is_down(tmp_path):
    with socket.socket() as sock:  # a PostgreSQL address where nothing listens
        sock.bind(("127.0.0.1", 0))
        url = f"postgresql+psycopg://postgres@127.0.0.1:{sock.getsockname()[1]}/latfarm"
    with Runtime(make_settings(tmp_path, url)) as runtime, TestClient(create_app(runtime)) as client:
        answer = client.get("/healthz")
        documented = client.get("/openapi.json").json()["paths"]["/healthz"]["get"]["responses"]
        page = client.get("/admin/measurement/list", headers=ADMIN)  # its key check reads the database too
    assert (page.status_code, page.text) == (503, "the database is unavailable; retry later")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "error",
        "database": "unreachable: OperationalError",
        "redis": "not configured",
        "grpc_port": 50051,
        "grpc_tls": False,
    }
    HealthOut.model_validate(answer.json(), strict=True)
    for status in ("200", "503"):
        assert documented[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/HealthOut"}


def test_a_redis_outage_logs_one_warning_and_its_end_one_line(caplog, redis_url):
    cache = RedisCache(_closed_redis_url(), prefix="latfarm-test-outage:")
    with caplog.at_level(logging.INFO, logger="latfarm"):
        for _ in range(20):
            assert cache.get("k") is None
            cache.set("k", b"v", 5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "redis unavailable (cache get failed" in warnings[0].getMessage()
    cache.close()

    caplog.clear()
    live = RedisCache(redis_url, prefix="latfarm-test-outage:", outage=cache.outage)  # the same outage, Redis back
    with caplog.at_level(logging.INFO, logger="latfarm"):
        live.set("k", b"v", 5)
        assert live.get("k") == b"v"
    assert [r.getMessage() for r in caplog.records] == ["redis reachable again"]
    live.close()


def test_the_wakeup_listener_logs_one_warning_while_redis_is_down(caplog):
    with caplog.at_level(logging.WARNING, logger="latfarm"):
        notifier = RedisNotifier(_closed_redis_url())  # its listener retries every second
        try:
            notifier.notify(1)
            notifier.notify(2)
            notifier.wait(1, timeout=2.5)
        finally:
            notifier.close()
    assert len([r for r in caplog.records if "redis unavailable" in r.getMessage()]) == 1


def test_agent_backoff_is_short_and_jittered():
    backoff = Backoff()
    delays = [backoff.next_delay() for _ in range(2000)]  # an outage of hours, not one overflow
    assert 0.25 <= delays[0] <= 0.5
    assert max(delays) <= BACKOFF_CAP_S <= 10
    assert min(delays[10:]) >= BACKOFF_CAP_S / 2
    assert len({round(d, 6) for d in delays[10:]}) > 1000  # agents reconnecting together spread out
