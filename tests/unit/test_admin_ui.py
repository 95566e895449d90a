"""Admin web UI at /admin: key login, read-only tables with filters, dashboard data."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import numpy as np
import pytest
from scipy.stats import spearmanr
from sqlalchemy import func, insert, select
from starlette.testclient import TestClient

from latfarm.predictor import nb201
from latfarm.services.admin import dashboard
from latfarm.services.core.config import Settings
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.core.security import hash_secret
from latfarm.services.domain.conditions import Conditions
from latfarm.services.rpc.callers import CALLERS, Caller
from latfarm.services.store.crud import ensure_archs
from latfarm.services.store.db import transaction
from latfarm.services.store.models import (
    Adaptation,
    AdaptState,
    Agent,
    ApiKey,
    AuditEntry,
    Device,
    Job,
    JobBatch,
    JobState,
    Measurement,
    Source,
)
from tests.api_support import app_on

ADMIN_KEY = "lf_admin_test-key"
N_ARCHS = 120
DEVICES = {"phone-a": 1.0, "gpu-b": 0.25}  # latency scale per device
B1 = Conditions()  # every seeded row's conditions: the devices' defaults
FEW = 2  # measurements of device "new-c": too few for any predictor


def latency(scale: float, index: int) -> float:
    return scale * (1.0 + (index * 7919 % 1000) / 100.0)


def seed(sessions) -> dict:
    """Two devices with N_ARCHS measurements each, agents on/offline, jobs in every state, extra API keys."""
    now = datetime.now(timezone.utc)
    archs = [nb201.to_string(ops) for ops in nb201.official_ops_table()[:N_ARCHS]]
    with transaction(sessions) as s:
        arch_ids = ensure_archs(s, archs)
        devices = {}
        for name, scale in DEVICES.items():
            device = Device(name=name, hardware=f"{name} board")
            s.add(device)
            s.flush()
            devices[name] = device.id
            s.execute(
                insert(Measurement),
                [
                    {
                        "device_id": device.id,
                        "arch_id": arch_ids[arch],
                        "source": Source.imported,
                        "dataset": "synthetic",
                        "latency_ms": latency(scale, i),
                        "median_ms": 2 * latency(scale, i),  # apart from latency_ms: views must use latency_ms
                        "conditions": B1.to_dict(),
                        "conditions_key": B1.key,
                    }
                    for i, arch in enumerate(archs)
                ],
            )
        newcomer = Device(name="new-c")
        s.add(newcomer)
        s.flush()
        devices["new-c"] = newcomer.id
        s.add_all(
            Measurement(
                device_id=newcomer.id,
                arch_id=arch_ids[archs[i]],
                source=Source.measured,
                latency_ms=3.0 + i,
                median_ms=3.5 + i,
                protocol={"statistic": "min"},
                conditions=B1.to_dict(),
                conditions_key=B1.key,
                session_create_ms=40.0 + i,
                first_inference_ms=9.5,
                unstable=i == 0,  # new-c's first row: round medians spread too far
            )
            for i in range(FEW)
        )
        s.add(
            Adaptation(
                device_id=devices["phone-a"],
                state=AdaptState.active,
                samples=8,
                metrics={"measured": 7, "unstable": 2, "outliers": [17], "fit_mean_abs_rel_error": 0.104},
                conditions_key=Conditions(batch_size=8).key,  # fitted under conditions the device no longer has
            )
        )
        online = Agent(device_id=devices["phone-a"], name="pixel-online", credential_hash="a" * 64, last_heartbeat=now)
        offline = Agent(
            device_id=devices["phone-a"],
            name="pixel-offline",
            credential_hash="b" * 64,
            last_heartbeat=now - timedelta(hours=1),
        )
        s.add_all([online, offline])
        batch = JobBatch(device_id=devices["gpu-b"])
        s.add(batch)
        s.flush()
        states = [JobState.queued] * 2 + [JobState.running] + [JobState.done] * 3 + [JobState.failed]
        jobs = [
            Job(
                batch_id=batch.id,
                device_id=devices["gpu-b"],
                arch_id=arch_ids[archs[i]],
                state=state,
                finished_at=now - timedelta(minutes=5) if state in (JobState.done, JobState.failed) else None,
            )
            for i, state in enumerate(states)
        ]
        s.add_all(jobs)
        s.add_all(
            [
                ApiKey(name="client", key_hash=hash_secret("client-key"), scopes=["client"]),
                ApiKey(name="old-admin", key_hash=hash_secret("revoked-key"), scopes=["admin"], revoked=True),
                ApiKey(name="second-admin", key_hash=hash_secret("second-admin-key"), scopes=["admin"]),
            ]
        )
        s.flush()
        return {
            "devices": devices,
            "archs": archs,
            "agents": {"online": online.id, "offline": offline.id},
            "jobs": [j.id for j in jobs],
        }


def test_dashboard_figures(sessions):
    ids = seed(sessions)
    with sessions() as s:
        fleet = dashboard.fleet(s, heartbeat_interval_s=10)
        assert (fleet["agents_online"], fleet["agents_offline"]) == (1, 1)
        assert [a["name"] for a in fleet["agents"]] == ["pixel-online", "pixel-offline"]
        assert fleet["queue"] == {"queued": 2, "running": 1, "done": 3, "failed": 1, "cancelled": 0}
        assert fleet["waiting_for_agent"] == 2  # queued on gpu-b, whose device has no agent at all
        assert fleet["throughput"] == {"jobs_done_1h": 3, "jobs_done_24h": 3, "jobs_failed_24h": 1}

        table = {d["name"]: d for d in dashboard.device_table(s)}
        assert table["phone-a"]["imported"] == N_ARCHS and table["phone-a"]["measured"] == 0
        assert table["new-c"]["imported"] == 0 and table["new-c"]["measured"] == FEW

        expected = {name: np.array([latency(scale, i) for i in range(N_ARCHS)]) for name, scale in DEVICES.items()}
        expected["new-c"] = 3.0 + np.arange(FEW)
        for row in dashboard.distributions(s):
            values = expected[row["device"]]
            assert row["median"] == pytest.approx(np.median(values))
            assert row["p5"] == pytest.approx(np.percentile(values, 5))

        device = s.get(Device, ids["devices"]["gpu-b"])
        hist = dashboard.histogram(s, device, bins=10)
        assert sum(hist["counts"]) == N_ARCHS and len(hist["edges"]) == 11
        assert hist["edges"][0] == pytest.approx(expected["gpu-b"].min())
        assert hist["edges"][-1] == pytest.approx(expected["gpu-b"].max())

        across = dashboard.arch_across_devices(s, "7")  # by NB201 index
        assert across["nb201_index"] == 7
        assert {d["device"]: d["mean_ms"] for d in across["devices"]} == pytest.approx(
            {name: latency(scale, 7) for name, scale in DEVICES.items()}
        )
        assert [d["device"] for d in across["devices"]] == ["gpu-b", "phone-a"]  # fastest first
        assert [(d["device"], d["mean_ms"], d["count"]) for d in dashboard.arch_across_devices(s, "0")["devices"]] == [
            ("gpu-b", latency(DEVICES["gpu-b"], 0), 1),
            ("phone-a", latency(DEVICES["phone-a"], 0), 1),
            ("new-c", 3.0, 1),
        ]
        assert dashboard.arch_across_devices(s, ids["archs"][7])["nb201_index"] == 7  # by arch string
        with pytest.raises(InvalidArgument, match="expected"):
            dashboard.arch_across_devices(s, "not-an-arch")

        scatter = dashboard.measured_vs_predicted(s, None, device)
        assert not scatter["available"] and scatter["reason"] == f"{dashboard.NO_PREDICTOR} (nb201)"


@pytest.fixture
def app_and_ids(tmp_path):
    settings = Settings(data_dir=tmp_path, admin_key=ADMIN_KEY, heartbeat_interval_s=10)
    with app_on(settings) as app:
        yield app, seed(app.state.sessions)


def _login(client: TestClient, key: str):
    return client.post("/admin/login", data={"key": key}, follow_redirects=False)


def csrf_header(client: TestClient) -> dict[str, str]:
    """The session's CSRF token, as the admin pages carry it, in the header the admin's scripts send."""
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', client.get("/admin/").text)
    assert match, "the admin page carries no CSRF token"
    return {"X-CSRF-Token": match.group(1)}


def test_login_required_and_key_checks(app_and_ids):
    app, _ = app_and_ids
    with TestClient(app) as client:
        for path in ("/admin/", "/admin/measurement/list", "/admin/api/fleet", "/admin/device-overview/1"):
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 302 and response.headers["location"].endswith("/admin/login"), path
        for bad in ("wrong", "client-key", "revoked-key", ""):
            assert _login(client, bad).status_code == 400, bad
        assert client.get("/admin/api/fleet", follow_redirects=False).status_code == 302

        assert client.get("/admin/api/fleet", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
        assert _login(client, "second-admin-key").status_code == 302  # an ApiKey row with the admin scope
        page = client.get("/admin/")
        assert page.status_code == 200 and "pixel-online" in page.text and "Dashboard" in page.text
        assert "0 queued" in page.text and "2 waiting for an agent" in page.text  # gpu-b has no agent online
        assert "second-admin-key" not in client.cookies.get("latfarm_admin", "")

        with transaction(app.state.sessions) as s:  # revoking the key ends its session at once
            s.scalars(select(ApiKey).where(ApiKey.name == "second-admin")).one().revoked = True
        assert client.get("/admin/", follow_redirects=False).status_code == 302

        assert _login(client, ADMIN_KEY).status_code == 302  # LATFARM_ADMIN_KEY itself
        assert client.get("/admin/").status_code == 200
        client.post("/admin/logout", headers=csrf_header(client))
        assert client.get("/admin/", follow_redirects=False).status_code == 302

        assert _login(client, ADMIN_KEY).status_code == 302
        with transaction(app.state.sessions) as s:  # revoked, LATFARM_ADMIN_KEY is refused as any key is
            s.scalars(select(ApiKey).where(ApiKey.key_hash == hash_secret(ADMIN_KEY))).one().revoked = True
        assert client.get("/admin/", follow_redirects=False).status_code == 302
        assert _login(client, ADMIN_KEY).status_code == 400
        bearer = {"Authorization": f"Bearer {ADMIN_KEY}"}
        assert client.get("/admin/api/fleet", headers=bearer, follow_redirects=False).status_code == 302


def test_tables_filters_read_only_and_deletes(app_and_ids):
    app, ids = app_and_ids
    phone = ids["devices"]["phone-a"]
    with TestClient(app) as client:
        assert _login(client, ADMIN_KEY).status_code == 302
        for identity in ("device", "agent", "arch", "job", "measurement", "artifact", "adaptation"):
            assert client.get(f"/admin/{identity}/list").status_code == 200, identity

        page = client.get(f"/admin/measurement/list?device_id={phone}&pageSize=200")
        assert f"of {N_ARCHS} items" in page.text and "gpu-b" not in page.text.split("Filters")[0]
        page = client.get(f"/admin/measurement/list?device_id={ids['devices']['new-c']}")  # conditions and cold start
        assert B1.key in page.text and "40" in page.text and "9.5" in page.text
        assert "session_create_ms" in page.text and "first_inference_ms" in page.text
        page = client.get("/admin/measurement/list?arch=7")  # arch filter by NB201 index: one row per device
        assert "of 2 items" in page.text
        page = client.get("/admin/job/list?state=queued")
        assert "of 2 items" in page.text
        page = client.get("/admin/agent/list?online=yes")
        assert "pixel-online" in page.text and "pixel-offline" not in page.text
        page = client.get("/admin/measurement/list?sortBy=latency_ms&sort=desc&search=synthetic")
        assert page.status_code == 200 and "median_ms" not in page.text.lower().replace(" ", "_")

        devices = client.get("/admin/device/list").text
        assert f"/admin/device-overview/{phone}" in devices and f"/admin/measurement/list?device_id={phone}" in devices
        overview = client.get(f"/admin/device-overview/{phone}")
        assert overview.status_code == 200 and dashboard.NO_PREDICTOR not in overview.text
        newcomer = client.get(f"/admin/device-overview/{ids['devices']['new-c']}")
        assert newcomer.status_code == 200 and dashboard.NO_PREDICTOR in newcomer.text
        assert client.get("/admin/device-overview/999999").status_code == 404
        assert "admins only" in overview.text  # no owner key
        with transaction(app.state.sessions) as s:
            owner = s.scalar(select(ApiKey).where(ApiKey.name == "client"))
            s.get(Device, phone).owner_key_id = owner.id
            owner_id = owner.id
        overview = client.get(f"/admin/device-overview/{phone}").text
        assert f"key &#39;client&#39; (id {owner_id})" in overview

        with app.state.sessions() as s:
            measurement_id = s.scalar(select(Measurement.id).limit(1))
        details = client.get(f"/admin/measurement/details/{measurement_id}").text.lower().replace(" ", "_")
        assert "latency_ms" in details and "median_ms" in details  # the list shows latency_ms, details both
        assert client.get(f"/admin/measurement/edit/{measurement_id}").status_code == 403
        assert client.get("/admin/measurement/create").status_code == 403
        csrf = csrf_header(client)
        assert client.delete(f"/admin/measurement/delete?pks={measurement_id}", headers=csrf).status_code == 403

        job_id, agent_id = ids["jobs"][0], ids["agents"]["offline"]
        for junk in ("junk", "999999"):  # a bulk delete is all or nothing: one bad id deletes no row
            response = client.delete(f"/admin/job/delete?pks={job_id},{junk}", headers=csrf)
            assert response.status_code == 404 and "nothing deleted" in response.text, response.text
        with app.state.sessions() as s:
            assert s.get(Job, job_id) is not None
        CALLERS.put("credential-of-the-offline-agent", Caller(agent_id, phone, ("onnx",)))
        assert client.delete(f"/admin/job/delete?pks={job_id}", headers=csrf).status_code == 200
        assert client.delete(f"/admin/agent/delete?pks={agent_id}", headers=csrf).status_code == 200
        assert CALLERS.get("credential-of-the-offline-agent") is None  # its gRPC calls fail at once
    with app.state.sessions() as s:
        assert s.get(Job, job_id) is None and s.get(Agent, agent_id) is None
        assert s.scalar(select(func.count()).select_from(Measurement)) == N_ARCHS * len(DEVICES) + FEW


def test_api_endpoints_answer_json(app_and_ids):
    app, ids = app_and_ids
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    gpu = ids["devices"]["gpu-b"]
    with TestClient(app) as client:
        assert client.get(f"/admin/api/histogram?device={gpu}", headers=auth).json()["count"] == N_ARCHS
        assert client.get("/admin/api/histogram?device=999999", headers=auth).status_code == 404
        assert len(client.get("/admin/api/distribution", headers=auth).json()) == len(DEVICES) + 1
        assert client.get("/admin/api/arch?arch=3", headers=auth).json()["nb201_index"] == 3
        bad = client.get("/admin/api/arch?arch=not-an-arch", headers=auth)  # errors are 4xx, never 200
        assert bad.status_code == 422 and "expected" in bad.json()["error"] and bad.json()["code"] == "invalid_argument"
        unknown = client.get(f"/admin/api/arch?arch={nb201.NUM_ARCHS - 1}", headers=auth)
        assert unknown.status_code == 404 and "no measurements of arch" in unknown.json()["error"]

        scatter = client.get(f"/admin/api/scatter?device={gpu}", headers=auth).json()  # the shipped predictor
        assert scatter["available"] and scatter["count"] == N_ARCHS == len(scatter["points"])
        points = scatter["points"]
        assert [p["measured"] for p in points] == pytest.approx([latency(DEVICES["gpu-b"], p["index"]) for p in points])
        rho = spearmanr([p["measured"] for p in points], [p["predicted"] for p in points]).statistic
        assert scatter["spearman_rho"] == pytest.approx(rho)
        assert (scatter["space"], scatter["spaces"]) == ("nb201", ["nb201"])
        newcomer = client.get(f"/admin/api/scatter?device={ids['devices']['new-c']}", headers=auth).json()
        assert newcomer == {
            "device": "new-c",
            "space": "nb201",
            "spaces": ["nb201"],
            "available": False,
            "reason": f"{dashboard.NO_PREDICTOR} (nb201)",
        }
        wrong = client.get(f"/admin/api/scatter?device={gpu}&space=ofa", headers=auth)
        assert wrong.status_code == 422 and "unknown search space" in wrong.json()["error"]


def test_predictor_panels_of_a_device_with_fbnet_data(app_and_ids):
    """A device with NB201 and FBNet rows gets a predictor panel per space, and the scatter a space switch."""
    from tests.fbnet_support import FBNET, truth_ms

    app, ids = app_and_ids
    gpu = ids["devices"]["gpu-b"]
    archs = [FBNET.to_string(a) for a in FBNET.reference_set()[:30]]
    conditions = Conditions(space="fbnet", classes=100)
    with transaction(app.state.sessions) as s:
        arch_ids = ensure_archs(s, archs, "fbnet")
        s.add_all(
            Measurement(
                device_id=gpu,
                arch_id=arch_ids[a],
                source=Source.imported,
                dataset="help-fbnet",
                latency_ms=float(ms),
                median_ms=float(ms),
                conditions=conditions.to_dict(),
                conditions_key=conditions.key,
            )
            for a, ms in zip(archs, truth_ms(archs), strict=True)
        )
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(app) as client:
        default = client.get(f"/admin/api/scatter?device={gpu}", headers=auth).json()
        assert (default["space"], default["spaces"], default["count"]) == ("nb201", ["nb201", "fbnet"], N_ARCHS)
        fbnet = client.get(f"/admin/api/scatter?device={gpu}&space=fbnet", headers=auth).json()
        assert fbnet["available"] and (fbnet["space"], fbnet["count"]) == ("fbnet", len(archs))
        assert sorted(p["index"] for p in fbnet["points"]) == list(range(len(archs)))  # HELP positions
        assert fbnet["spearman_rho"] > 0.8  # the FBNet predictor fitted on the fly to the device's rows
        _login(client, ADMIN_KEY)
        overview = client.get(f"/admin/device-overview/{gpu}").text
    assert 'id="predictor-status-nb201"' in overview and 'id="predictor-status-fbnet"' in overview
    with app.state.sessions() as s:
        panels = dashboard.predictor_status(s, app.state.predictions, s.get(Device, gpu))
    assert [(p["space"], p["available"]) for p in panels] == [("nb201", True), ("fbnet", True)]


def test_the_dashboard_shows_the_active_predictor_and_the_latest_attempt_apart(app_and_ids):
    """A device whose NB201 adaptation is active, with a later one cancelled: the Devices table says what predicts
    (nb201) and, apart, the latest attempt (nb201 cancelled); the device page names the active one and shows the
    cancellation's reason, not as an error. A failed attempt is marked an error."""
    from latfarm.services.domain.predictions import conditions_of

    app, ids = app_and_ids
    gpu = ids["devices"]["gpu-b"]
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with transaction(app.state.sessions) as s:
        key = conditions_of(s.get(Device, gpu)).for_space("nb201").key
        s.add_all(
            [
                Adaptation(
                    id="a" * 32,
                    device_id=gpu,
                    state=AdaptState.active,
                    samples=10,
                    conditions_key=key,
                    created_at=now - timedelta(hours=2),
                    activated_at=now - timedelta(hours=1),
                ),
                Adaptation(
                    id="c" * 32,
                    device_id=gpu,
                    state=AdaptState.cancelled,
                    samples=10,
                    conditions_key=key,
                    created_at=now - timedelta(minutes=30),
                    error="cancelled on request",
                ),
                Adaptation(
                    id="f" * 32,
                    device_id=ids["devices"]["new-c"],
                    state=AdaptState.failed,
                    samples=3,
                    conditions_key=key,
                    created_at=now,
                    error="too few samples measured",
                ),
            ]
        )
    with app.state.sessions() as s:
        table = {d["name"]: d for d in dashboard.device_table(s)}
    assert (table["gpu-b"]["serving"], table["gpu-b"]["latest"]) == ("nb201", "nb201 cancelled")
    assert (table["new-c"]["serving"], table["new-c"]["latest"]) == (None, "nb201 failed")
    phone = table["phone-a"]  # its active one was fitted under batch size 8, conditions it no longer has
    assert (phone["serving"], phone["latest"]) == ("nb201 (old conditions, unused)", "nb201 active")
    with TestClient(app) as client:
        _login(client, ADMIN_KEY)
        head = " ".join(_headers(client.get("/admin/").text.split('id="devices-table"', 1)[1]))
        assert "Active Latest attempt" in head
        overview = client.get(f"/admin/device-overview/{gpu}").text
        failed = client.get(f"/admin/device-overview/{ids['devices']['new-c']}").text
    assert "Active: adaptation <code>aaaaaaaa</code>, activated 1 h ago" in overview
    assert "(cancelled on request)" in overview and "(error)" not in overview
    assert "No active nb201 adaptation." in failed and 'title="too few samples measured">(error)' in failed


def _headers(html: str) -> list[str]:
    """The list table's column headers, in order."""
    head = html.split("<thead", 1)[1].split("</thead>", 1)[0]
    return [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(r"<th[^>]*>(.*?)</th>", head, re.S)]


def test_jobs_drawn_at_random_carry_a_badge_and_a_filter(app_and_ids):
    """A job whose arch was drawn at random shows a "random" badge in the list and on its page (no tick or cross on
    the others), and the filter selects either kind."""
    app, ids = app_and_ids
    phone = ids["devices"]["phone-a"]
    with transaction(app.state.sessions) as s:
        batch = JobBatch(device_id=phone)
        s.add(batch)
        s.flush()
        drawn = Job(batch_id=batch.id, device_id=phone, arch_id=1, state=JobState.queued, drawn_at_random=True)
        s.add(drawn)
        s.flush()
        drawn_id = drawn.id
    with TestClient(app) as client:
        assert _login(client, ADMIN_KEY).status_code == 302
        jobs = client.get("/admin/job/list").text
        assert "drawn at random" in _headers(jobs)
        rows = re.findall(r"<tr>(.*?)</tr>", jobs.split("<tbody", 1)[1], re.S)
        marked = [row for row in rows if ">random</span>" in row]
        assert len(marked) == 1 and drawn_id in marked[0]
        assert not any("fa-check" in row or "fa-times" in row for row in rows)
        assert drawn_id in client.get("/admin/job/list?drawn_at_random=true").text
        unmarked = client.get("/admin/job/list?drawn_at_random=false").text
        assert drawn_id not in unmarked and ids["jobs"][0] in unmarked
        assert ">random</span>" in client.get(f"/admin/job/details/{drawn_id}").text


def test_tables_show_the_data_first(app_and_ids):
    app, ids = app_and_ids
    newcomer, phone = ids["devices"]["new-c"], ids["devices"]["phone-a"]
    with transaction(app.state.sessions) as s:  # a job queued after the seeded ones: the newest
        batch = JobBatch(device_id=phone)
        s.add(batch)
        s.flush()
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        s.add(Job(batch_id=batch.id, device_id=phone, arch_id=1, state=JobState.queued, created_at=later))
    with TestClient(app) as client:
        assert _login(client, ADMIN_KEY).status_code == 302

        page = client.get(f"/admin/measurement/list?device_id={newcomer}").text
        headers = [h for h in _headers(page) if h]
        assert headers[:4] == ["id", "device", "latency_ms (statistic)", "unstable"], headers
        rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody", 1)[1], re.S)
        assert "3 (min)" in rows[-1] or "3 (min)" in rows[0]
        unstable_rows = [row for row in rows if "⚠ unstable" in row]
        assert len(unstable_rows) == 1 and "fa-check" not in unstable_rows[0] and "text-success" not in unstable_rows[0]

        assert "Clear filter" not in client.get("/admin/measurement/list").text  # no filter set: none shown active
        filtered = client.get("/admin/measurement/list?dataset=synthetic").text
        assert filtered.count("Clear filter") == 1

        jobs = client.get("/admin/job/list").text
        assert [h for h in _headers(jobs) if h][0] == "state"
        first_row = re.findall(r"<tr>(.*?)</tr>", jobs.split("<tbody", 1)[1], re.S)[0]
        assert "phone-a" in first_row and "queued" in first_row  # the newest job first

        adaptations = client.get("/admin/adaptation/list").text
        assert "phone-a" in adaptations

        overview = client.get(f"/admin/device-overview/{phone}").text
        assert "fit error (mean |relative|, its samples): 10.4 %" in overview and "0.104" not in overview
        shown = re.findall(r"<td>([^<]*; [^<]*)</td>", overview)  # the adaptation's metrics, by their labels
        assert shown == [
            "samples measured (of its K): 7; samples measured unstably (a busy device): 2; "
            "outliers left out of the fit: 1 (17); fit error (mean |relative|, its samples): 10.4 %"
        ], shown
    metrics = {
        "measured": 8,
        "unstable": 3,
        "outliers": [17, 4021],
        "fit_mean_abs_rel_error": 0.0512,
        "calibration_archs": 23,
        "std_factor": 1.2345,
    }
    assert dashboard.metric_texts(metrics) == [
        "samples measured (of its K): 8",
        "samples measured unstably (a busy device): 3",
        "outliers left out of the fit: 2 (17, 4021)",
        "fit error (mean |relative|, its samples): 5.1 %",
        "other archs its spread is calibrated on: 23",
        "spread factor: 1.23",
    ]
    assert (dashboard.samples_text(5, 0), dashboard.samples_text(5, 20)) == ("5", "5 + 20 random")


def test_fbnet_archs_are_found_by_string_and_filtered_by_space(sessions):
    import asyncio

    from latfarm.predictor.spaces import get_space
    from latfarm.services.admin.views import ArchFilter, SpaceFilter
    from latfarm.services.datasets.rows import add_rows, ensure_device

    fbnet = get_space("fbnet")
    archs = [fbnet.to_string(a) for a in fbnet.sample(2, seed=4)]
    with sessions() as s, s.begin():
        device = ensure_device(s, "phone-f", "test")
        ids = ensure_archs(s, archs, "fbnet")
        add_rows(s, device, "test", {ids[archs[0]]: 5.0}, Conditions(space="fbnet", classes=100))
        nb_ids = ensure_archs(s, [nb201.to_string(nb201.from_official_index(3))])
        add_rows(s, device, "test-nb", {next(iter(nb_ids.values())): 1.0}, B1)
    with sessions() as s:
        across = dashboard.arch_across_devices(s, archs[0].replace("-", " - "))  # FBNet strings need no space
        assert (across["space"], across["index"], across["nb201_index"]) == ("fbnet", None, None)
        assert [(d["device"], d["mean_ms"]) for d in across["devices"]] == [("phone-f", 5.0)]
        with pytest.raises(InvalidArgument, match="unknown block 'k9_e9' at position 0"):
            dashboard.arch_across_devices(s, "-".join(["k9_e9", *archs[0].split("-")[1:]]), "fbnet")
        with pytest.raises(InvalidArgument, match="unknown search space"):
            dashboard.arch_across_devices(s, archs[0], "ofa")

        def rows(flt, value) -> list[float]:
            query = asyncio.run(flt.get_filtered_query(select(Measurement), value, Measurement))
            return sorted(m.latency_ms for m in s.scalars(query))

        assert rows(SpaceFilter(), "fbnet") == [5.0] and rows(SpaceFilter(), "nb201") == [1.0]
        assert rows(SpaceFilter(), "__all") == [1.0, 5.0]
        assert rows(ArchFilter(), archs[0]) == [5.0] and rows(ArchFilter(), "3") == [1.0]


def test_admins_quarantine_and_release_measurements_audited(app_and_ids):
    """#18 item 1: the measurement list's actions quarantine and release rows, each audited under the key's name."""
    app, _ids = app_and_ids
    with app.state.sessions() as s:
        first, second = s.scalars(select(Measurement.id).order_by(Measurement.id).limit(2))
    with TestClient(app) as client:
        assert (
            client.post(f"/admin/measurement/action/quarantine?pks={first}", follow_redirects=False).status_code == 302
        )
        assert _login(client, ADMIN_KEY).status_code == 302
        csrf = csrf_header(client)
        response = client.post(
            f"/admin/measurement/action/quarantine?pks={first},{second}", headers=csrf, follow_redirects=False
        )
        assert response.status_code == 302 and response.headers["location"].endswith("/admin/measurement/list")
        assert "of 2 items" in client.get("/admin/measurement/list?quarantined=true").text
        client.post(f"/admin/measurement/action/release?pks={second}", headers=csrf)
        assert client.get("/admin/audit-entry/list").status_code == 200
    with app.state.sessions() as s:
        assert [m for m in s.scalars(select(Measurement.id).where(Measurement.quarantined))] == [first]
        audit = [(a.actor, a.action, a.target) for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert audit == [
        ("LATFARM_ADMIN_KEY", "quarantine", f"measurement {first}"),
        ("LATFARM_ADMIN_KEY", "quarantine", f"measurement {second}"),
        ("LATFARM_ADMIN_KEY", "release", f"measurement {second}"),
    ]


def test_state_changing_admin_requests_need_post_and_the_csrf_token(app_and_ids):
    """#18 item 4: actions and logout answer POST only, and a session's POST or DELETE without its token is 403
    and changes nothing; a script authenticated by bearer key carries no forgeable cookie and is not checked."""
    app, ids = app_and_ids
    with app.state.sessions() as s:
        first = s.scalar(select(Measurement.id).order_by(Measurement.id).limit(1))
    quarantine = f"/admin/measurement/action/quarantine?pks={first}"
    with TestClient(app) as client:
        assert _login(client, ADMIN_KEY).status_code == 302
        page = client.get("/admin/measurement/list").text
        assert 'name="csrf-token"' in page and "csrf.js" in page
        assert client.get("/admin/assets/csrf.js").status_code == 200
        assert client.get(quarantine).status_code == 405  # a link or an <img> cannot change data
        assert client.get("/admin/logout").status_code == 405
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            assert client.post(quarantine, headers=headers, follow_redirects=False).status_code == 403
            assert client.delete(f"/admin/job/delete?pks={ids['jobs'][0]}", headers=headers).status_code == 403
            assert client.post("/admin/logout", headers=headers, follow_redirects=False).status_code == 403
        token = csrf_header(client)["X-CSRF-Token"]
        form = client.post(quarantine, data={"csrf_token": token}, follow_redirects=False)  # the form field works too
        assert form.status_code == 302
        assert client.post("/admin/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 302
        assert client.get("/admin/", follow_redirects=False).status_code == 302  # logged out
    with app.state.sessions() as s:
        assert s.get(Job, ids["jobs"][0]) is not None
        assert list(s.scalars(select(Measurement.id).where(Measurement.quarantined))) == [first]
    with TestClient(app) as script:
        release = f"/admin/measurement/action/release?pks={first}"
        answer = script.post(release, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, follow_redirects=False)
        assert answer.status_code == 302
    with app.state.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Measurement).where(Measurement.quarantined)) == 0


JUNK = ["abc", "-1", "1.5", "²", "99999999999999999999999", "9223372036854775808", "nul\x00byte", "%", "__all"]


def test_junk_filter_and_query_values_on_every_list_page_are_never_a_server_error(tmp_path, db_url):
    """Every list page's filters (and operators), paging, sorting and search given values no column holds: a 4xx
    or the value ignored, never a 500."""
    from latfarm.services.admin.views import model_views
    from tests.api_support import ADMIN_KEY as API_ADMIN_KEY
    from tests.api_support import make_settings

    with app_on(make_settings(tmp_path, db_url, heartbeat_interval_s=10)) as app:
        seed(app.state.sessions)
        with TestClient(app, raise_server_exceptions=False) as client:
            assert _login(client, API_ADMIN_KEY).status_code == 302
            failures = []
            for view in model_views(10):
                page = f"/admin/{view.identity}/list"
                paging = ("page", "pageSize", "sortBy", "sort", "search")
                queries = [{param: value} for param in paging for value in JUNK]
                for filter_ in view.column_filters:
                    name = filter_.parameter_name
                    queries += [{name: value} for value in JUNK]
                    if getattr(filter_, "has_operator", False):
                        operations = ("equals", "greater_than", "less_than", "contains", "junk")
                        queries += [{name: value, f"{name}_op": op} for op in operations for value in JUNK]
                for query in queries:
                    response = client.get(page, params=query)
                    if response.status_code >= 500:
                        failures.append((page, query))
            assert not failures, "\n".join(map(str, failures))
            for view in model_views(10):  # paging is bounded on every list: the sizes offered, pages from 1
                page = f"/admin/{view.identity}/list"
                for bad in ("-1", "0", "abc"):
                    refused = client.get(page, params={"page": bad})
                    assert refused.status_code == 400 and f"page: &#39;{bad}&#39; is not a page number" in refused.text
                for bad in ("100000", "0", "7", "abc"):
                    refused = client.get(page, params={"pageSize": bad})
                    assert refused.status_code == 400, (page, bad)
                    assert "is not one of the page sizes (25, 50, 100, 200)" in refused.text
                assert client.get(page, params={"pageSize": "200", "page": "99999"}).status_code == 200  # the last
            refused = client.get("/admin/measurement/list", params={"device_id": "abc"})  # the reported case
            assert refused.status_code == 400
            assert "filter device_id: &#39;abc&#39; is not a whole number" in refused.text
            maybe = client.get("/admin/measurement/list", params={"quarantined": "maybe"})
            assert (
                maybe.status_code == 400
                and "filter quarantined: &#39;maybe&#39; is not true, false or all" in maybe.text
            )
            for value in ("true", "false", "all"):
                assert client.get("/admin/measurement/list", params={"quarantined": value}).status_code == 200
            for position in ("15625", "-1"):  # in no space's reference set: REST's 422, here a 400 naming the filter
                outside = client.get("/admin/measurement/list", params={"arch": position})
                sets = "(nb201: 0..15624, fbnet: 0..4999)"
                assert outside.status_code == 400 and f"filter arch: reference position {position} is outside" in (
                    outside.text
                )
                assert f"every space&#39;s reference set {sets}" in outside.text
            sideways = client.get("/admin/measurement/list", params={"sortBy": "latency_ms", "sort": "sideways"})
            assert sideways.status_code == 400 and "sort: &#39;sideways&#39; is not asc or desc" in sideways.text
            bogus = client.get("/admin/device/list", params={"sortBy": "bogus"})
            assert (
                bogus.status_code == 400 and "sortBy: &#39;bogus&#39; is not a sortable column (id, name" in bogus.text
            )
            for order in ("asc", "desc"):
                assert client.get("/admin/device/list", params={"sortBy": "name", "sort": order}).status_code == 200
            ignored = client.get("/admin/arch/list", params={"reference_index": "7", "reference_index_op": "contains"})
            assert ignored.status_code == 200 and f"of {N_ARCHS} items" in ignored.text


def test_junk_ids_and_values_on_every_admin_page_are_never_a_server_error(tmp_path, db_url):
    """Every admin route besides the list pages (details, edit, create, delete, export, actions, ajax lookup, file
    download and preview, the device page, the plots' JSON) given ids and query values no row or column holds: a
    4xx or the value ignored, never a 500."""
    from latfarm.services.admin.views import model_views
    from tests.api_support import ADMIN_KEY as API_ADMIN_KEY
    from tests.api_support import make_settings

    with app_on(make_settings(tmp_path, db_url, heartbeat_interval_s=10)) as app:
        seed(app.state.sessions)
        with TestClient(app, raise_server_exceptions=False) as client:
            assert _login(client, API_ADMIN_KEY).status_code == 302
            csrf = csrf_header(client)
            junk_ids = [*JUNK, "999999", "1/2", "", " "]
            requests: list[tuple[str, str, dict]] = []
            for view in model_views(10):
                base = f"/admin/{view.identity}"
                for raw in junk_ids:
                    pk = quote(raw, safe="/")
                    for page in ("details", "edit"):
                        requests.append(("GET", f"{base}/{page}/{pk}", {}))
                    requests.append(("GET", f"{base}/{pk}/name/download/", {}))
                    requests.append(("GET", f"{base}/{pk}/name/preview/", {}))
                    requests.append(("DELETE", f"{base}/delete", {"pks": raw}))
                    requests.append(("DELETE", f"{base}/delete", {"pks": f"1,{raw}"}))
                    for action in ("quarantine", "release", "junk"):
                        requests.append(("POST", f"{base}/action/{action}", {"pks": raw}))
                for value in JUNK:
                    for export in ("csv", "json", quote(value, safe="")):
                        requests.append(("GET", f"{base}/export/{export}", {"search": value, "sortBy": value}))
                    requests.append(("GET", f"{base}/create", {"x": value}))
                    requests.append(("GET", f"{base}/ajax/lookup", {"name": value, "term": value}))
            for value in JUNK:
                requests.append(("GET", f"/admin/device-overview/{quote(value, safe='')}", {}))
                requests.append(("GET", "/admin/", {"x": value}))
                for name in ("fleet", "distribution", "histogram", "scatter", "arch"):
                    for param in ("device", "space", "arch"):
                        requests.append(("GET", f"/admin/api/{name}", {param: value, "device": "1"}))
                        requests.append(("GET", f"/admin/api/{name}", {param: value}))
            requests.append(("GET", "/admin/junk-identity/list", {}))
            failures = []
            for method, path, params in requests:
                response = client.request(method, path, params=params, headers=csrf)
                if response.status_code >= 500:
                    failures.append((method, path, params, response.status_code))
            assert not failures, "\n".join(map(str, failures))
            for path in ("/admin/measurement/details/abc", "/admin/job/details/999999", "/admin/device-overview/-1"):
                assert client.get(path).status_code == 404, path  # the reported cases
            assert client.get("/admin/arch/details/9223372036854775808").status_code == 404  # beyond BIGINT
            scatter = client.get("/admin/api/scatter", params={"device": "1", "space": "junk"})
            assert scatter.status_code == 422 and scatter.json()["code"] == "invalid_argument"
            quarantine = client.post("/admin/measurement/action/quarantine", params={"pks": "1,²"}, headers=csrf)
            assert quarantine.status_code == 400 and "&#39;²&#39; is not a measurement id" in quarantine.text
            assert (
                client.post("/admin/measurement/action/quarantine", params={"pks": "999999"}, headers=csrf).status_code
                == 404
            )


def test_deleting_jobs_and_agents_in_the_admin_ui_is_audited(app_and_ids):
    """A job or agent deleted in the admin UI leaves an audit entry naming the admin's key, the row and what it
    held; a delete refused for want of the CSRF token records nothing."""
    app, ids = app_and_ids
    job_id, agent_id = ids["jobs"][0], ids["agents"]["offline"]
    with app.state.sessions() as s:
        job, agent = s.get_one(Job, job_id), s.get_one(Agent, agent_id)
        job_held = {
            "state": job.state.value,
            "batch_id": job.batch_id,
            "arch": job.arch.arch,
            "device": job.device.name,
        }
        agent_held = {"name": agent.name, "owner": agent.owner, "state": agent.state, "device": agent.device.name}
    with TestClient(app) as client:
        assert _login(client, ADMIN_KEY).status_code == 302
        assert client.delete(f"/admin/job/delete?pks={job_id}").status_code == 403  # no CSRF token
        csrf = csrf_header(client)
        assert client.delete(f"/admin/job/delete?pks={job_id}", headers=csrf).status_code == 200
        assert client.delete(f"/admin/agent/delete?pks={agent_id}", headers=csrf).status_code == 200
        assert f"job {job_id}" in client.get("/admin/audit-entry/list").text
    with app.state.sessions() as s:
        assert s.get(Job, job_id) is None and s.get(Agent, agent_id) is None
        audit = list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [(a.actor, a.action, a.target) for a in audit] == [
        ("LATFARM_ADMIN_KEY", "delete", f"job {job_id}"),
        ("LATFARM_ADMIN_KEY", "delete", f"agent {agent_id}"),
    ]
    assert audit[0].detail.items() >= {**job_held, "reason": "admin UI"}.items()
    assert audit[1].detail.items() >= {**agent_held, "reason": "admin UI"}.items()
