"""/healthz under load answers from the health probe's last ping, and still tells a dead database within 2 s."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from latfarm.services.api import create_app
from latfarm.services.infra.health import EVERY_S, NO_ANSWER, STALE_S
from latfarm.services.runtime import Runtime
from tests.api_support import make_settings
from tests.net_support import CuttableLink


def _until(client: TestClient, status_code: int, within_s: float) -> tuple[float, dict]:
    """Ask /healthz every 50 ms until it answers ``status_code``; the seconds it took and the body."""
    started = time.monotonic()
    while True:
        answer = client.get("/healthz")
        waited = time.monotonic() - started
        if answer.status_code == status_code:
            return waited, answer.json()
        assert waited < within_s, (answer.status_code, answer.json())
        time.sleep(0.05)


def test_healthz_turns_503_within_2_s_of_the_database_going_away_and_200_when_it_is_back(tmp_path, pg_url):
    """PostgreSQL behind a relay: a dead link (pings hang) shows within ``STALE_S`` (plus the test's own requests),
    refused connections sooner; the probe reconnects when the database answers again."""
    link = CuttableLink(make_url(pg_url).port or 5432)
    relayed = make_url(pg_url).set(host="127.0.0.1", port=int(link.address.rsplit(":", 1)[1]))
    settings = make_settings(tmp_path, relayed.render_as_string(hide_password=False))
    try:
        with Runtime(settings) as runtime, TestClient(create_app(runtime)) as client:
            assert _until(client, 200, 5)[1] == {
                "status": "ok", "database": "ok", "redis": "not configured", "grpc_port": settings.grpc_port,
                "grpc_tls": False,
            }  # fmt: skip
            link.cut()  # the pings hang
            waited, body = _until(client, 503, STALE_S + 2)
            assert body == {
                "status": "error", "database": NO_ANSWER, "redis": "not configured", "grpc_port": settings.grpc_port,
                "grpc_tls": False,
            }  # fmt: skip
            assert waited <= STALE_S + 1  # the test's own requests take time on a busy machine
            link.mend()  # the hung ping's connection is reset; the next one connects again
            assert _until(client, 200, 5)[1]["database"] == "ok"
            link.close()  # nothing listens: connections are refused
            waited, body = _until(client, 503, STALE_S + 2)
            assert body["database"] == "unreachable: OperationalError" and waited <= STALE_S
    finally:
        link.close()


def test_healthz_answers_from_memory_between_pings(tmp_path, sqlite_url):
    """Requests share the probe's last ping, which it renews every ``EVERY_S`` while asked: 1.2 s of requests see
    2-4 pings, however many requests."""
    with Runtime(make_settings(tmp_path, sqlite_url)) as runtime, TestClient(create_app(runtime)) as client:
        pings, requests, started = set(), 0, time.monotonic()
        while time.monotonic() - started < 1.2:
            assert client.get("/healthz").status_code == 200
            requests += 1
            health = runtime.health.latest()
            assert health is not None and health.database == "ok"
            pings.add(health.at)
        assert 2 <= len(pings) <= 2 + 1.2 / EVERY_S < requests


def test_a_request_that_gave_up_waiting_leaves_the_probe_pinging(tmp_path, sqlite_url):
    """A request's wait for the next ping may time out (its future cancelled); the thread pings on for the next."""
    with Runtime(make_settings(tmp_path, sqlite_url)) as runtime:
        assert runtime.health.next().cancel()
        time.sleep(EVERY_S)
        assert runtime.health.next().result(timeout=STALE_S).database == "ok"
