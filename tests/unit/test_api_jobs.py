"""Measurement requests over REST: batches, progress, validation with nothing stored on bad input."""

from __future__ import annotations

from latfarm.services.client import Client
from latfarm.services.domain.conditions import Conditions
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Job, JobBatch, JobState
from tests.api_support import ADMIN, ADMIN_KEY, add_device, arch, bearer

SHUFFLED = [900, 3, 15000, 42]  # NB201 indices, in no sorted order


def _stored(api) -> tuple[int, int]:
    with api.app.state.sessions() as session:
        return session.query(JobBatch).count(), session.query(Job).count()


def test_submit_and_progress(api, keys):
    add_device(api, "dev1")
    body = {"device": "dev1", "space": "nb201", "format": "onnx", "archs": [arch(3), arch(5), 3, arch(9)]}
    response = api.post("/v1/jobs", json=body, headers=keys["client"])
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["jobs"] == 3 and created["device"] == "dev1"
    progress = api.get(f"/v1/jobs/{created['id']}", headers=keys["client"]).json()
    assert (progress["queued"], progress["running"], progress["done"], progress["failed"]) == (3, 0, 0, 0)
    with_items = api.get(f"/v1/jobs/{created['id']}", params={"items": True}, headers=keys["client"]).json()
    assert sorted(i["arch"] for i in with_items["items"]) == sorted({arch(3), arch(5), arch(9)})
    assert all(i["state"] == "queued" and i.get("latency_ms") is None for i in with_items["items"])
    assert api.get("/v1/jobs/nope", headers=keys["client"]).status_code == 404


def test_a_devices_runtime_sets_its_jobs_format(api, keys):
    """No format: the one the device's runtime runs (a LiteRT device's: tflite); the one given when it is that one;
    another is refused naming the field (409: the request is sound, the device's runtime refuses it), and nothing
    is stored."""
    add_device(api, "lite", runtime="litert")
    add_device(api, "dev1")
    for device, given, expected in [("lite", None, "tflite"), ("lite", "tflite", "tflite"), ("dev1", None, "onnx")]:
        body = {"device": device, "archs": [1]} | ({"format": given} if given else {})
        response = api.post("/v1/jobs", json=body, headers=keys["client"])
        assert response.status_code == 201, response.text
        progress = api.get(f"/v1/jobs/{response.json()['id']}", headers=keys["client"]).json()
        assert response.json()["format"] == progress["format"] == expected
    stored = _stored(api)
    refusals = {
        "lite": "format: litert devices are measured in tflite models, not onnx: omit the format, or measure onnx "
        "models on a device of runtime onnxruntime",
        "dev1": "format: onnxruntime devices are measured in onnx models, not tflite: omit the format, or measure "
        "tflite models on a device of runtime litert",
    }
    for device, given in [("lite", "onnx"), ("dev1", "tflite")]:
        response = api.post("/v1/jobs", json={"device": device, "archs": [1], "format": given}, headers=keys["client"])
        assert response.status_code == 409, response.text
        assert (response.json()["field"], response.json()["message"]) == ("format", refusals[device])
    assert _stored(api) == stored


def test_a_request_declares_its_archs_drawn_at_random(api, keys):
    """``drawn_at_random``: its jobs are marked so (their measurements calibrate adaptations) and its progress shows
    how many and which; a request that does not declare it is taken as chosen."""
    add_device(api, "dev1")
    flags, shown = {}, {}
    for body in ({"archs": [1, 2], "drawn_at_random": True}, {"archs": [3]}, {"archs": [4], "drawn_at_random": False}):
        response = api.post("/v1/jobs", json={"device": "dev1", **body}, headers=keys["client"])
        assert response.status_code == 201, response.text
        batch_id = response.json()["id"]
        with api.app.state.sessions() as session:
            jobs = session.query(Job).filter(Job.batch_id == batch_id)
            flags |= {job.arch.nb201_index: job.drawn_at_random for job in jobs}
        progress = api.get(f"/v1/jobs/{batch_id}", params={"items": True}, headers=keys["client"]).json()
        assert progress["drawn_at_random"] == sum(item["drawn_at_random"] for item in progress["items"])
        shown |= {item["nb201_index"]: item["drawn_at_random"] for item in progress["items"]}
    assert flags == shown == {1: True, 2: True, 3: False, 4: False}


def test_a_batch_counts_its_jobs_drawn_at_random(api, keys):
    """An adaptation's batch mixes the archs its predictor chose and the random calibration ones: the count is of the
    latter, in every state."""
    add_device(api, "dev1")
    created = api.post("/v1/jobs", json={"device": "dev1", "archs": [5, 6, 7]}, headers=ADMIN).json()
    with transaction(api.app.state.sessions) as session:
        jobs = session.query(Job).filter(Job.batch_id == created["id"]).order_by(Job.position).all()
        jobs[0].drawn_at_random = jobs[1].drawn_at_random = True
        jobs[1].state = JobState.done
    progress = api.get(f"/v1/jobs/{created['id']}", params={"items": True}, headers=ADMIN).json()
    assert (progress["drawn_at_random"], progress["queued"], progress["done"]) == (2, 2, 1)
    assert [item["drawn_at_random"] for item in progress["items"]] == [True, True, False]


def test_items_are_listed_in_the_order_the_archs_were_given(api, keys):
    add_device(api, "dev1")
    earlier = api.post("/v1/jobs", json={"device": "dev1", "archs": [42, 15000]}, headers=ADMIN)
    assert earlier.status_code == 201  # two of the archs are stored already: the store gives them ids first
    given = [900, arch(3), 15000, 42, 3]  # an index or a string; 3 again keeps its first place
    created = api.post("/v1/jobs", json={"device": "dev1", "archs": given}, headers=ADMIN).json()
    items = api.get(f"/v1/jobs/{created['id']}", params={"items": True}, headers=ADMIN).json()["items"]
    assert [item["nb201_index"] for item in items] == SHUFFLED


def test_client_measure_returns_the_items_in_the_order_given(live_api, monkeypatch):
    url, server = live_api
    with Client(url, ADMIN_KEY) as client:
        client.create_device("dev1")
        real_submit = Client.submit

        def submit_and_fail(self, *args, **kwargs) -> str:  # what agents report for archs they cannot export
            batch_id = real_submit(self, *args, **kwargs)
            with transaction(server.state.sessions) as session:
                for job in session.query(Job).filter(Job.batch_id == batch_id):
                    job.state, job.error = JobState.failed, "export failed"
            return batch_id

        monkeypatch.setattr(Client, "submit", submit_and_fail)
        result = client.measure("dev1", [arch(i) for i in SHUFFLED], timeout=30, poll_s=0.05)
    assert [item["nb201_index"] for item in result["items"]] == SHUFFLED
    assert {item["state"] for item in result["items"]} == {"failed"}


def test_protocol_is_stored_and_shown(api, keys):
    add_device(api, "dev1")
    protocol = {
        "warmup_runs": 2,
        "runs_per_round": 20,
        "rounds": 3,
        "threads": 4,
        "timeout_s": 1.5,
        "statistic": "median",
    }
    plain = api.post("/v1/jobs", json={"device": "dev1", "archs": [1]}, headers=keys["client"]).json()
    partial = api.post(
        "/v1/jobs", json={"device": "dev1", "archs": [2], "protocol": {"rounds": 3}}, headers=keys["client"]
    ).json()
    full = api.post("/v1/jobs", json={"device": "dev1", "archs": [3], "protocol": protocol}, headers=keys["client"])
    assert full.status_code == 201, full.text
    shown = {
        b["id"]: api.get(f"/v1/jobs/{b['id']}", headers=keys["client"]).json()["protocol"] for b in (plain, partial)
    }
    assert shown == {plain["id"]: {}, partial["id"]: {"rounds": 3}}
    body = {"device": "dev1", "archs": [4], "protocol": {"warmup_runs": 0}}
    none = api.post("/v1/jobs", json=body, headers=keys["client"])
    assert none.status_code == 201, none.text  # 0 warm-up runs is a setting of its own, not "the agent's default"
    assert api.get(f"/v1/jobs/{none.json()['id']}", headers=keys["client"]).json()["protocol"] == {"warmup_runs": 0}
    assert api.get(f"/v1/jobs/{full.json()['id']}", headers=keys["client"]).json()["protocol"] == protocol
    with api.app.state.sessions() as session:
        assert session.get(JobBatch, full.json()["id"]).protocol == protocol


def test_conditions_are_the_devices_with_the_requests_overrides(api, keys):
    add_device(api, "gpu-b4", batch_size=4, precision="fp16")
    plain = api.post("/v1/jobs", json={"device": "gpu-b4", "archs": [1]}, headers=keys["client"])
    assert plain.status_code == 201, plain.text
    body = {"device": "gpu-b4", "archs": [2], "conditions": {"batch_size": 8, "graph": "pruned"}}
    override = api.post("/v1/jobs", json=body, headers=keys["client"])
    assert override.status_code == 201, override.text
    device_default = Conditions(batch_size=4, precision="fp16")
    expected = {
        plain.json()["id"]: device_default.to_dict(),
        override.json()["id"]: Conditions(batch_size=8, precision="fp16", graph="pruned").to_dict(),
    }
    for batch_id, conditions in expected.items():
        shown = api.get(f"/v1/jobs/{batch_id}", headers=keys["client"]).json()
        assert shown["conditions"] == {"key": Conditions.from_dict(conditions).key, **conditions}  # as predict's
        with api.app.state.sessions() as session:
            assert session.get(JobBatch, batch_id).conditions == conditions


def test_bad_requests_store_nothing(api, keys):
    add_device(api, "dev1")
    good = arch(1)
    cases = [
        ({"device": "dev1", "archs": [good, "|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|"]}, 422, "archs[1]"),
        (
            {"device": "dev1", "archs": [good, 15625]},
            422,
            "archs[1]: nb201: reference position 15625 is outside 0..15624",
        ),
        ({"device": "dev1", "archs": []}, 422, "archs"),
        ({"device": "dev1", "archs": [good], "format": "tensorrt"}, 422, "format"),
        ({"device": "dev1", "archs": [good], "space": "darts"}, 422, "space"),
        ({"device": "dev1", "archs": [good], "colour": "red"}, 422, "colour"),
        ({"archs": [good]}, 422, "device"),
        ({"device": "dev1", "archs": [good], "protocol": {"rounds": 0}}, 422, "protocol.rounds"),
        ({"device": "dev1", "archs": [good], "protocol": {"runs_per_round": 10001}}, 422, "protocol.runs_per_round"),
        ({"device": "dev1", "archs": [good], "protocol": {"warmup_runs": -1}}, 422, "protocol.warmup_runs"),
        ({"device": "dev1", "archs": [good], "protocol": {"threads": 257}}, 422, "protocol.threads"),
        ({"device": "dev1", "archs": [good], "protocol": {"timeout_s": 0}}, 422, "protocol.timeout_s"),
        ({"device": "dev1", "archs": [good], "protocol": {"statistic": "mean"}}, 422, "protocol.statistic"),
        ({"device": "dev1", "archs": [good], "protocol": {"rounds": "3x"}}, 422, "protocol.rounds"),
        ({"device": "dev1", "archs": [good], "protocol": {"affinity": [1]}}, 422, "protocol.affinity"),
        ({"device": "dev1", "archs": [good], "protocol": []}, 422, "protocol"),
        ({"device": "dev1", "archs": [good], "conditions": {"batch_size": 0}}, 422, "batch_size"),
        ({"device": "dev1", "archs": [good], "conditions": {"batch_size": 1025}}, 422, "batch_size"),
        ({"device": "dev1", "archs": [good], "conditions": {"batch_size": "four"}}, 422, "batch_size"),
        ({"device": "dev1", "archs": [good], "conditions": {"precision": "bf16"}}, 422, "precision"),
        ({"device": "dev1", "archs": [good], "conditions": {"graph": "fused"}}, 422, "graph"),
        ({"device": "dev1", "archs": [good], "conditions": {"resolution": 64}}, 422, "resolution"),
        ({"device": "dev1", "archs": [good], "conditions": []}, 422, "conditions"),
        ({"device": "dev1", "archs": [good], "drawn_at_random": "true"}, 422, "drawn_at_random"),
        ({"device": "dev1", "archs": [good], "drawn_at_random": 1}, 422, "drawn_at_random"),
        ({"device": "nope", "archs": [good]}, 404, "nope"),
        ({"device": "dev1", "archs": [good] * 15626}, 413, "15625"),
    ]
    for body, status, named in cases:
        response = api.post("/v1/jobs", json=body, headers=keys["client"])
        assert response.status_code == status, (body.keys(), response.text)
        assert named in response.json()["message"], response.json()
    assert _stored(api) == (0, 0)
    assert api.post("/v1/jobs", json={"device": "dev1", "archs": [good]}).status_code == 401
    assert api.post("/v1/jobs", json={"device": "dev1", "archs": [good]}, headers=keys["owner"]).status_code == 403
    assert _stored(api) == (0, 0)


def test_invalid_json_and_oversized_body(api, keys):
    response = api.post("/v1/jobs", content=b"{not json", headers={**ADMIN, "content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["message"]
    huge = b'{"device": "dev1", "archs": ["' + b"x" * (5 * 1024 * 1024) + b'"]}'
    response = api.post("/v1/jobs", content=huge, headers={**ADMIN, "content-type": "application/json"})
    assert response.status_code == 413 and "MB" in response.json()["message"]
    assert _stored(api) == (0, 0)


def test_cancel_stops_queued_and_leased_jobs_and_refuses_other_keys(api, keys):
    add_device(api, "dev1")
    created = api.post("/v1/jobs", json={"device": "dev1", "archs": [1, 2, 3]}, headers=keys["client"]).json()
    other = api.post("/v1/keys", json={"name": "someone-else", "scopes": ["client"]}, headers=ADMIN).json()["key"]
    # a batch belongs to its submitter's key, not its name: a revoked key's name is free for another key
    gone = api.post("/v1/keys", json={"name": "gone", "scopes": ["client"]}, headers=ADMIN).json()
    orphan = api.post("/v1/jobs", json={"device": "dev1", "archs": [4]}, headers=bearer(gone["key"])).json()
    assert api.delete(f"/v1/keys/{gone['id']}", headers=ADMIN).status_code == 204
    namesake = api.post("/v1/keys", json={"name": "gone", "scopes": ["client"]}, headers=ADMIN).json()["key"]
    for name, key, batch in (("someone-else", other, created), ("gone", namesake, orphan)):
        refused = api.post(f"/v1/jobs/{batch['id']}/cancel", headers=bearer(key))
        assert refused.status_code == 403 and "submitted" in refused.json()["message"], name
    assert api.post("/v1/jobs/nope/cancel", headers=keys["client"]).status_code == 404
    with api.app.state.sessions() as session:  # one job leased, one done: cancel ends the first, keeps the second
        running, done = session.query(Job).filter_by(batch_id=created["id"]).order_by(Job.id).limit(2).all()
        running.state, done.state = JobState.running, JobState.done
        session.commit()
    response = api.post(f"/v1/jobs/{created['id']}/cancel", headers=keys["client"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["cancelled_now"] == 2
    assert (body["progress"]["queued"], body["progress"]["running"], body["progress"]["cancelled"]) == (0, 0, 2)
    assert body["progress"]["done"] == 1
    not_its_owner = api.post(f"/v1/jobs/{created['id']}/cancel", headers=keys["owner"])  # dev1 is the admin's
    assert not_its_owner.status_code == 403 and "owner" in not_its_owner.json()["message"]
    again = api.post(f"/v1/jobs/{created['id']}/cancel", headers=ADMIN)
    assert again.status_code == 200 and again.json()["cancelled_now"] == 0
