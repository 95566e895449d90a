"""#18 item 4: failed authentication is throttled per client (REST, admin login), counted in /metrics, valid
credentials go through, and the last admin key cannot be revoked."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from latfarm.services.api.auth import create_key, revoke
from latfarm.services.core.errors import FailedPrecondition
from latfarm.services.core.security import generated_shape, new_secret
from latfarm.services.infra.throttle import AuthGuard, grpc_client
from latfarm.services.store.db import transaction
from latfarm.services.store.models import ApiKey
from tests.api_support import ADMIN, ADMIN_KEY, app_on, bearer, make_settings

LIMIT = "5 per 2 seconds"
ATTACKER, OTHER = ("203.0.113.9", 40000), ("198.51.100.7", 40000)


@pytest.fixture
def app(tmp_path, sqlite_url):
    with app_on(make_settings(tmp_path, sqlite_url, auth_failure_limit=LIMIT, metrics_access="key")) as app:
        yield app


def _metric(app, name: str, surface: str) -> float:
    value = app.state.metrics.registry.get_sample_value(f"{name}_total", {"surface": surface})
    return value or 0.0


def _key(api: TestClient, scopes: list[str]) -> str:
    """A new generated API key with ``scopes``."""
    created = api.post("/v1/keys", json={"name": f"key-{'-'.join(scopes)}", "scopes": scopes}, headers=ADMIN)
    return created.json()["key"]


def test_wrong_bearer_keys_are_throttled_per_client_and_counted_valid_ones_go_through(app):
    """The trial's repro: a script with wrong keys behind one address (a NAT) must not lock out the valid keys
    sent from it; its further wrong keys get 429."""
    with TestClient(app, client=ATTACKER) as attacker, TestClient(app, client=OTHER) as other:
        client_key, admin_key = _key(other, ["client"]), _key(other, ["admin"])
        guesses = [attacker.get("/v1/devices", headers=bearer(new_secret("lf_admin"))) for _ in range(8)]
        assert [g.status_code for g in guesses] == [401] * 5 + [429] * 3  # verified, and refused over the limit
        refused = guesses[-1]
        assert int(refused.headers["retry-after"]) >= 1 and refused.json()["code"] == "resource_exhausted"
        assert "too many failed authentications" in refused.json()["message"]
        assert attacker.get("/v1/devices", headers=bearer(client_key)).status_code == 200  # valid keys go through,
        assert attacker.get("/v1/keys", headers=bearer(client_key)).status_code == 403  # under their own scopes
        assert attacker.get("/v1/keys", headers=bearer(admin_key)).status_code == 200
        # a key not shaped like a generated one may be guessable: refused unverified, the right one too
        assert attacker.get("/v1/devices", headers=bearer("lf_admin_guess")).status_code == 429
        assert attacker.get("/v1/devices", headers=ADMIN).status_code == 429
        assert attacker.get("/v1/devices").status_code == 401  # no key at all is no guess and is not throttled...
        assert other.get("/v1/devices", headers=ADMIN).status_code == 200  # ...and other clients are unaffected
        metrics = other.get("/metrics", headers=ADMIN).text
        assert 'latfarm_auth_failures_total{surface="rest"} 5.0' in metrics
        assert 'latfarm_auth_throttled_total{surface="rest"} 5.0' in metrics
        time.sleep(2.1)  # the window has passed: the attacker's address may try again
        assert attacker.get("/v1/devices", headers=ADMIN).status_code == 200


def test_admin_login_guesses_are_throttled_valid_keys_log_in(app):
    with TestClient(app, client=ATTACKER) as attacker, TestClient(app, client=OTHER) as other:
        admin_key = _key(other, ["admin"])
        logins = [attacker.post("/admin/login", data={"key": new_secret("lf_admin")}).status_code for _ in range(7)]
        assert logins == [400] * 5 + [429] * 2
        refused = attacker.post("/admin/login", data={"key": ADMIN_KEY}, follow_redirects=False)  # not generated
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert attacker.post("/admin/login", data={"key": admin_key}, follow_redirects=False).status_code == 302
        assert attacker.get("/admin/", headers=bearer(admin_key)).status_code == 200  # a script's bearer too
        assert attacker.get("/admin/", headers=bearer(new_secret("lf_admin"))).status_code == 429
        assert other.post("/admin/login", data={"key": ADMIN_KEY}, follow_redirects=False).status_code == 302
        assert _metric(app, "latfarm_auth_failures", "admin") == 5
        assert _metric(app, "latfarm_auth_throttled", "admin") == 4
        # REST and the admin UI share one count per client: the address's wrong keys stay refused on the API too
        assert attacker.get("/v1/devices", headers=bearer(new_secret("lf_client"))).status_code == 429
        time.sleep(2.1)
        assert attacker.post("/admin/login", data={"key": ADMIN_KEY}, follow_redirects=False).status_code == 302


def test_revoking_the_last_admin_key_is_refused(app):
    with TestClient(app) as api:
        only = next(k for k in api.get("/v1/keys", headers=ADMIN).json() if "admin" in k["scopes"])
        refused = api.delete(f"/v1/keys/{only['id']}", headers=ADMIN)
        assert refused.status_code == 409 and "last admin key" in refused.json()["message"]
        assert api.get("/v1/keys", headers=ADMIN).status_code == 200  # still revoked nowhere
        second = api.post("/v1/keys", json={"name": "ops", "scopes": ["admin"]}, headers=ADMIN).json()
        assert api.delete(f"/v1/keys/{only['id']}", headers=ADMIN).status_code == 204  # another admin remains
        assert api.delete(f"/v1/keys/{second['id']}", headers=bearer(second["key"])).status_code == 409


def test_two_admins_revoking_each_others_keys_at_once_leave_one(sessions):
    """The last-admin rule holds under concurrency: the second revocation waits for the first and is refused."""
    with transaction(sessions) as session:
        first, _ = create_key(session, "alice", ["admin"])
        second, _ = create_key(session, "bob", ["admin"])
    outcome: list[str] = []

    def revoke_second() -> None:
        with sessions() as session:
            try:
                revoke(session, second.id)
                session.commit()
                outcome.append("revoked")
            except FailedPrecondition as err:
                outcome.append(err.message)

    with sessions() as session:
        revoke(session, first.id)  # not committed yet: the other revocation must wait for it
        racer = threading.Thread(target=revoke_second)
        racer.start()
        racer.join(0.5)
        assert racer.is_alive() and not outcome
        session.commit()
    racer.join(10)
    assert outcome == [f"key {second.id} is the last admin key: create another admin key before revoking it"]
    with sessions() as session:
        assert {k.name: k.revoked for k in session.scalars(select(ApiKey))} == {"alice": True, "bob": False}


def test_bad_limit_setting_grpc_peer_addresses_and_generated_shapes():
    with pytest.raises(ValueError, match="LATFARM_AUTH_FAILURE_LIMIT"):
        AuthGuard("lots")
    for kind in ("lf_admin", "lf_client", "lf_owner", "lf_agent", "lf_enroll"):
        assert all(generated_shape(new_secret(kind)) for _ in range(200))
    for custom in ("hunter2", ADMIN_KEY, new_secret("lf_admin")[:-1], new_secret("lf_admin") + "x", "lf__" + "a" * 32):
        assert not generated_shape(custom)
    assert grpc_client("ipv4:10.0.0.5:53412") == "10.0.0.5"
    assert grpc_client("ipv6:[::1]:53412") == "::1"
