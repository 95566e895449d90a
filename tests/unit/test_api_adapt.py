"""The adapt loop over REST: choose K archs → jobs → agent results → fit → active predictor; and ``/v1/rank``."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from latfarm.predictor.calibration import MIN_CALIBRATION_ARCHS
from latfarm.predictor.help_data import load_help
from latfarm.services.core.names import new_id
from latfarm.services.core.security import hash_secret
from latfarm.services.domain import adaptation as adapt
from latfarm.services.domain import batches, job_artifacts, queue, reports
from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.predictions import model_from_state
from latfarm.services.domain.results import ReportedResult
from latfarm.services.store import crud
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Adaptation, Agent, Job, Source
from tests.api_support import ADMIN, add_device, add_measurements, arch, bearer

SAMPLES = 6
B1 = Conditions().key  # a default device's conditions


def _agent_measures(api, tmp_path, device: str, truth: np.ndarray, unstable: bool = False) -> int:
    """A registered agent leases the device's jobs through the real queue and reports the true latencies (as the
    fastest run: ``latency_ms``, with the median of round medians 1 ms above), flagged ``unstable`` if so."""
    sessions = api.app.state.sessions
    store = ArtifactStore(tmp_path / "artifacts")
    with transaction(sessions) as session:
        agent = Agent(device_id=device_by_name(session, device).id, credential_hash=hash_secret(new_id()))
        session.add(agent)
        session.flush()
        job_artifacts.resolve_artifacts(session, agent.device_id, ["onnx"], 50, store)
        leased = queue.lease(session, agent, max_jobs=50, formats=["onnx"], lease_seconds=60)
        jobs = [session.get_one(Job, job.job_id) for job in leased]
        latencies = [float(truth[job.arch.nb201_index]) for job in jobs]
        results = [
            ReportedResult(
                job_id=job.id, ok=True, latency_ms=ms, statistic="min", median_ms=ms + 1.0, runs=10, unstable=unstable
            )
            for job, ms in zip(jobs, latencies, strict=True)
        ]
        acks = reports.report(session, agent, results, provenance={}, max_attempts=3)
    assert all(a.accepted for a in acks)
    return len(jobs)


def test_adapt_measures_fits_and_activates(api, keys, tmp_path, help_dir):
    truth = load_help(help_dir, ["gold_6240"])["gold_6240"]
    add_device(api, "cpu1")
    response = api.post("/v1/devices/cpu1/adapt", json={"samples": SAMPLES}, headers=keys["admin"])
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["state"] == "measuring" and started["progress"]["total"] == SAMPLES

    again = api.post("/v1/devices/cpu1/adapt", json={"samples": SAMPLES}, headers=keys["admin"])
    assert again.status_code == 409 and "already has" in again.json()["message"]

    assert _agent_measures(api, tmp_path, "cpu1", truth) == SAMPLES
    loader = api.app.state.predictions.predictor_loader
    assert adapt.advance_all(api.app.state.sessions, loader) == 1

    state = api.get("/v1/devices/cpu1", headers=ADMIN).json()["predictor"]
    assert state["state"] == "active" and state["id"] == started["id"]
    # fitted under the device's conditions, recorded when it started; its measurements carry them too
    assert (started["conditions_key"], state["conditions_key"], state["current"]) == (B1, B1, True)
    assert state["metrics"]["measured"] == SAMPLES
    assert state["metrics"]["calibration_archs"] == 0  # no other archs measured: the leave-one-out factor stays
    assert api.get("/v1/devices/cpu1/adapt", headers=ADMIN).json()["id"] == started["id"]
    rows = api.get("/v1/measurements", params={"device": "cpu1"}, headers=ADMIN).json()["items"]
    samples = [m["nb201_index"] for m in rows]
    assert {m["conditions"]["key"] for m in rows} == {B1}
    items = api.post("/v1/predict", json={"device": "cpu1", "archs": samples}, headers=ADMIN).json()["items"]
    assert [(i["source"], i["latency_ms"]) for i in items] == [("measured", pytest.approx(truth[i])) for i in samples]

    rng = np.random.default_rng(0)
    others = rng.choice(np.arange(15625), 300, replace=False)
    items = api.post("/v1/predict", json={"device": "cpu1", "archs": others.tolist()}, headers=ADMIN).json()["items"]
    measured = {i["nb201_index"] for i in items if i["source"] == "measured"}
    predicted = [i for i in items if i["source"] == "predicted"]
    assert len(predicted) == len(others) - len(measured)
    rho = spearmanr([i["latency_ms"] for i in predicted], truth[[i["nb201_index"] for i in predicted]])[0]
    assert rho > 0.8, rho  # an unseen-for-this-device fit from 6 samples still ranks well

    ranked = api.post("/v1/rank", json={"device": "cpu1", "archs": others[:50].tolist()}, headers=ADMIN)
    assert ranked.status_code == 200, ranked.text
    order = [i["nb201_index"] for i in ranked.json()["items"]]
    assert sorted(order) == sorted(others[:50].tolist())
    assert [i["rank"] for i in ranked.json()["items"]] == list(range(1, 51))
    assert spearmanr(np.arange(50), truth[order])[0] > 0.8


def test_adapt_rejects_bad_requests(api, keys):
    add_device(api, "dev1")
    for body, status, named in [
        ({"samples": 2}, 422, "samples"),
        ({"samples": 10, "format": "pt"}, 422, "format"),
        ({"samples": "many"}, 422, "samples"),
        ({"calibration": 300}, 422, "calibration"),
        ({"calibration": 5}, 422, "calibration"),  # too few to calibrate on: 0 or 10-200
    ]:
        response = api.post("/v1/devices/dev1/adapt", json=body, headers=keys["admin"])
        assert response.status_code == status, response.text
        assert named in response.json()["message"] and response.json()["field"] == named
    for samples in (2, 201):  # the whole range, as the CLI's --samples says it
        message = api.post("/v1/devices/dev1/adapt", json={"samples": samples}, headers=keys["admin"]).json()["message"]
        assert message == f"samples: must be between 3 and 200, got {samples}"
    assert api.post("/v1/devices/nope/adapt", json={}, headers=keys["admin"]).status_code == 404
    assert api.post("/v1/devices/dev1/adapt", json={}, headers=keys["owner"]).status_code == 403
    assert api.get("/v1/devices/dev1/adapt", headers=ADMIN).json() == {"state": "none"}
    with api.app.state.sessions() as session:
        assert batches.queue_depth(session).get("queued", 0) == 0


def test_a_litert_devices_adaptation_measures_tflite_models(api, keys):
    """Its jobs are in the format its runtime runs; another format is refused and starts nothing."""
    add_device(api, "lite", runtime="litert")
    refused = api.post("/v1/devices/lite/adapt", json={"samples": 3, "format": "onnx"}, headers=keys["admin"])
    assert refused.status_code == 409 and refused.json()["field"] == "format", refused.text
    assert api.get("/v1/devices/lite/adapt", headers=ADMIN).json() == {"state": "none"}
    started = api.post("/v1/devices/lite/adapt", json={"samples": 3}, headers=keys["admin"])
    assert started.status_code == 202, started.text
    assert started.json()["progress"]["format"] == "tflite"


def test_rank_without_estimate_is_a_clear_conflict(api, keys):
    add_device(api, "dev1")
    response = api.post("/v1/rank", json={"device": "dev1", "archs": [arch(1), arch(2)]}, headers=keys["client"])
    assert response.status_code == 409 and "adapt" in response.json()["message"]


class _BrokenAfterFit:
    """A predictor whose fit succeeds but whose fitted model fails when asked for its predictions."""

    def __init__(self, real) -> None:
        self.real = real

    def adapt(self, indices, values):
        self.real.adapt(indices, values)  # the real fit runs and succeeds

        class Broken:
            def predict(self, _indices):
                raise RuntimeError("model is broken")

        return Broken()


def test_a_failure_after_the_claim_fails_the_adaptation_instead_of_stranding_it(api, keys, tmp_path):
    """Whatever fails once an adaptation left ``measuring`` ends it ``failed`` with the reason; the device can
    then be adapted again (a stranded ``training`` row would refuse every new adaptation)."""
    add_device(api, "cpu2")
    assert api.post("/v1/devices/cpu2/adapt", json={"samples": SAMPLES}, headers=keys["admin"]).status_code == 202
    _agent_measures(api, tmp_path, "cpu2", np.linspace(1.0, 5.0, 15625))
    loader = api.app.state.predictions.predictor_loader
    assert adapt.advance_all(api.app.state.sessions, lambda space: _BrokenAfterFit(loader(space))) == 0
    state = api.get("/v1/devices/cpu2", headers=ADMIN).json()["predictor"]
    assert state["state"] == "failed" and "model is broken" in state["error"]
    assert api.post("/v1/devices/cpu2/adapt", json={"samples": SAMPLES}, headers=keys["admin"]).status_code == 202


def test_a_cancelled_batch_cancels_the_adaptation_and_the_active_one_stays(api, keys, tmp_path):
    """An adaptation whose batch is cancelled ends ``cancelled`` even though older measurements of the same archs
    are there to fit; the active adaptation stays in use and a new one may start."""
    add_device(api, "cpu3")
    assert api.post("/v1/devices/cpu3/adapt", json={"samples": SAMPLES}, headers=keys["admin"]).status_code == 202
    _agent_measures(api, tmp_path, "cpu3", np.linspace(1.0, 5.0, 15625))
    loader = api.app.state.predictions.predictor_loader
    assert adapt.advance_all(api.app.state.sessions, loader) == 1
    first = api.get("/v1/devices/cpu3/adapt", headers=ADMIN).json()

    second = api.post("/v1/devices/cpu3/adapt", json={"samples": SAMPLES}, headers=keys["admin"]).json()
    batch = second["progress"]["id"]
    assert api.post(f"/v1/jobs/{batch}/cancel", headers=keys["admin"]).json()["cancelled_now"] == SAMPLES
    assert adapt.advance_all(api.app.state.sessions, loader) == 0
    state = api.get("/v1/devices/cpu3/adapt", headers=ADMIN).json()
    assert (state["id"], state["state"], state["metrics"]) == (second["id"], "cancelled", {})
    assert "cancelled" in state["error"]
    with api.app.state.sessions() as session:
        device = device_by_name(session, "cpu3")
        assert crud.active_adaptation(session, device, B1).id == first["id"]
    assert api.post("/v1/devices/cpu3/adapt", json={"samples": SAMPLES}, headers=keys["admin"]).status_code == 202


def test_cancel_an_adaptation_over_rest(api, keys):
    """``POST .../adapt/cancel`` cancels a measuring adaptation and its jobs at once; with none measuring it is a
    409 naming the latest state; a device's other keys may not."""
    add_device(api, "cpu4")
    assert api.post("/v1/devices/cpu4/adapt/cancel", headers=keys["admin"]).status_code == 409
    started = api.post("/v1/devices/cpu4/adapt", json={"samples": SAMPLES}, headers=keys["admin"]).json()
    refused = api.post("/v1/devices/cpu4/adapt", json={"samples": SAMPLES}, headers=keys["admin"]).json()
    assert "latfarm adapt cpu4 --cancel" in refused["message"]
    assert api.post("/v1/devices/cpu4/adapt/cancel", headers=keys["owner"]).status_code == 403

    response = api.post("/v1/devices/cpu4/adapt/cancel", headers=keys["admin"])
    assert response.status_code == 200, response.text
    cancelled = response.json()
    assert (cancelled["id"], cancelled["state"]) == (started["id"], "cancelled")
    assert cancelled["progress"]["cancelled"] == SAMPLES and cancelled["progress"]["queued"] == 0
    again = api.post("/v1/devices/cpu4/adapt/cancel", headers=keys["admin"])
    assert again.status_code == 409 and "latest: cancelled" in again.json()["message"]
    assert api.post("/v1/devices/cpu4/adapt/cancel", params={"space": "fbnet"}, headers=ADMIN).status_code == 409
    assert api.post("/v1/devices/cpu4/adapt", json={"samples": SAMPLES}, headers=keys["admin"]).status_code == 202


def test_only_the_devices_owner_or_an_admin_may_start_or_cancel_its_adaptation(api, keys):
    """Adaptation changes what a device serves: a client key (jobs on any device) may not start or cancel it; an
    owner key may on its own device."""
    owned = api.post("/v1/devices", json={"name": "mine"}, headers=keys["owner"])
    assert owned.status_code == 201, owned.text
    for path, body in [("/v1/devices/mine/adapt", {"samples": SAMPLES}), ("/v1/devices/mine/adapt/cancel", None)]:
        refused = api.post(path, json=body, headers=keys["client"])
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["message"] == "this key lacks permission 'devices'; it needs scope admin or owner"
    assert api.get("/v1/devices/mine/adapt", headers=keys["client"]).json() == {"state": "none"}

    started = api.post("/v1/devices/mine/adapt", json={"samples": SAMPLES}, headers=keys["owner"])
    assert started.status_code == 202, started.text
    cancelled = api.post("/v1/devices/mine/adapt/cancel", headers=keys["owner"])
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"


def test_an_adaptation_counts_its_unstable_samples(api, keys, tmp_path, help_dir, capsys):
    """Samples measured unstable (a busy device) still fit, and the metrics say how many were: ``latfarm up``'s
    summary names them next to the fit error."""
    from latfarm.services.cli.up import _summary

    truth = load_help(help_dir, ["gold_6240"])["gold_6240"]
    add_device(api, "busy1")
    assert api.post("/v1/devices/busy1/adapt", json={"samples": SAMPLES}, headers=keys["admin"]).status_code == 202
    assert _agent_measures(api, tmp_path, "busy1", truth, unstable=True) == SAMPLES
    assert adapt.advance_all(api.app.state.sessions, api.app.state.predictions.predictor_loader) == 1
    state = api.get("/v1/devices/busy1/adapt", headers=ADMIN).json()
    assert state["state"] == "active" and state["metrics"]["unstable"] == SAMPLES
    _summary("http://127.0.0.1:8000", "lf_admin_k", "busy1", state)
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        f"predictor {SAMPLES} measured archs ({SAMPLES} unstable: this machine was busy, its round medians over 5% "
        "apart even after a retry), fit error"
    ) in shown


def test_an_adaptations_batch_is_cancelled_only_by_the_devices_owner_or_an_admin(api, keys):
    """Cancelling the batch cancels the adaptation: a client key named like the key that started it may not (a
    revoked key's name is free again)."""
    add_device(api, "cpu5")
    starter = api.post("/v1/keys", json={"name": "starter", "scopes": ["admin"]}, headers=ADMIN).json()
    started = api.post("/v1/devices/cpu5/adapt", json={"samples": SAMPLES}, headers=bearer(starter["key"])).json()
    batch = api.get("/v1/devices/cpu5/adapt", headers=ADMIN).json()
    with api.app.state.sessions() as session:
        batch_id = session.get_one(Adaptation, started["id"]).batch_id
    assert api.delete(f"/v1/keys/{starter['id']}", headers=ADMIN).status_code == 204
    namesake = api.post("/v1/keys", json={"name": "starter", "scopes": ["client"]}, headers=ADMIN).json()
    refused = api.post(f"/v1/jobs/{batch_id}/cancel", headers=bearer(namesake["key"]))
    assert refused.status_code == 403, refused.text
    assert api.get("/v1/devices/cpu5/adapt", headers=ADMIN).json()["state"] == batch["state"] == "measuring"
    assert api.post(f"/v1/jobs/{batch_id}/cancel", headers=keys["admin"]).json()["cancelled_now"] == SAMPLES


def test_an_adaptation_calibrates_its_spread_on_the_devices_other_random_archs(api, keys, tmp_path, help_dir):
    """Archs measured besides the samples under the device's conditions that no one chose (imported, or of jobs drawn
    at random; unstable ones too, as the samples) are fitted with them and set the spread factor
    (``predictor.calibration``); the stored model keeps it when reloaded or re-adapted for another predictor version,
    and the predictions served carry it."""
    truth = load_help(help_dir, ["gold_6240"])["gold_6240"]
    add_device(api, "cal1")
    others = np.random.default_rng(1).choice(len(truth), 150, replace=False).tolist()
    add_measurements(api, "cal1", {i: float(truth[i]) for i in others[:120]}, source=Source.imported, dataset="help")
    busy = {i: float(truth[i]) for i in others[120:]}  # a busy device's
    add_measurements(api, "cal1", busy, unstable=True, drawn_at_random=True)
    started = api.post("/v1/devices/cal1/adapt", json={"samples": SAMPLES}, headers=keys["admin"]).json()
    assert _agent_measures(api, tmp_path, "cal1", truth) == SAMPLES
    loader = api.app.state.predictions.predictor_loader
    assert adapt.advance_all(api.app.state.sessions, loader) == 1

    metrics = api.get("/v1/devices/cal1/adapt", headers=ADMIN).json()["metrics"]
    with api.app.state.sessions() as session:
        row = session.get_one(Adaptation, started["id"])
        samples, params = list(row.sample_archs), dict(row.params)
    calibration = sorted(set(others) - set(samples))
    assert metrics["measured"] == SAMPLES and metrics["calibration_archs"] == len(calibration) >= MIN_CALIBRATION_ARCHS
    assert params["indices"] == sorted(samples) + calibration
    assert params["calibrating"] == [False] * SAMPLES + [True] * len(calibration)

    model = model_from_state(loader("nb201"), params)
    assert model.posterior.std_factor == pytest.approx(metrics["std_factor"])
    readapted = model_from_state(loader("nb201"), {**params, "predictor_version": "an older one"})
    assert readapted.posterior.std_factor == pytest.approx(metrics["std_factor"], rel=1e-6)
    rest = np.setdiff1d(np.arange(len(truth)), others + samples)
    unmeasured = np.random.default_rng(2).choice(rest, 2000, replace=False).tolist()  # random, as calibrated for
    mean, std = model.predict(unmeasured)
    assert 0.6 < np.mean(np.abs(mean - truth[unmeasured]) <= std) < 0.9
    items = api.post("/v1/predict", json={"device": "cal1", "archs": unmeasured}, headers=ADMIN).json()["items"]
    assert [i["std_ms"] for i in items] == pytest.approx(std.tolist(), rel=1e-5)


def test_an_adaptation_measures_random_calibration_archs_with_its_samples(api, keys, tmp_path, help_dir):
    """``calibration`` R: R random other archs are measured in the adaptation's batch, fitted with the samples, and
    its spread is calibrated on them."""
    truth = load_help(help_dir, ["gold_6240"])["gold_6240"]
    add_device(api, "cal2")
    body = {"samples": SAMPLES, "calibration": 12}
    started = api.post("/v1/devices/cal2/adapt", json=body, headers=keys["admin"]).json()
    assert (started["samples"], started["calibration"], started["progress"]["total"]) == (SAMPLES, 12, SAMPLES + 12)
    assert started["progress"]["drawn_at_random"] == 12  # the calibration archs, not the predictor's samples
    assert _agent_measures(api, tmp_path, "cal2", truth) == SAMPLES + 12
    assert adapt.advance_all(api.app.state.sessions, api.app.state.predictions.predictor_loader) == 1
    state = api.get("/v1/devices/cal2/adapt", headers=ADMIN).json()
    assert state["state"] == "active" and state["metrics"]["measured"] == SAMPLES
    assert state["metrics"]["calibration_archs"] == 12
    with api.app.state.sessions() as session:
        row = session.get_one(Adaptation, started["id"])
        assert row.params["calibrating"] == [False] * SAMPLES + [True] * 12
        assert row.params["indices"][:SAMPLES] == sorted(row.sample_archs)
        first = set(row.params["indices"][SAMPLES:])

    # another calibrated adaptation measures R archs the device has no measurement of: the calibration set grows
    again = api.post("/v1/devices/cal2/adapt", json=body, headers=keys["admin"]).json()
    with api.app.state.sessions() as session:
        batch = session.get_one(Adaptation, again["id"]).batch_id
        queued = {job.arch.nb201_index for job in session.query(Job).filter(Job.batch_id == batch)}
    random = queued - set(row.sample_archs)  # the same seed chooses the same K samples
    assert len(random) == 12 and not random & first


def _measured_then_adapted(api, keys, tmp_path, truth, device: str, others: list[int], **request) -> dict:
    """POST /v1/jobs of ``others`` (with ``request``'s fields) and an adaptation of the device (seeded by how many it
    had), each measured by an agent; the adaptation's metrics."""
    body = {"device": device, "archs": others, **request}
    assert api.post("/v1/jobs", json=body, headers=keys["client"]).status_code == 201
    assert _agent_measures(api, tmp_path, device, truth) == len(others)
    with api.app.state.sessions() as session:
        seed = session.query(Adaptation).count()
    response = api.post(f"/v1/devices/{device}/adapt", json={"samples": SAMPLES, "seed": seed}, headers=keys["admin"])
    assert response.status_code == 202, response.text
    assert _agent_measures(api, tmp_path, device, truth) == SAMPLES
    assert adapt.advance_all(api.app.state.sessions, api.app.state.predictions.predictor_loader) == 1
    return api.get(f"/v1/devices/{device}/adapt", headers=ADMIN).json()["metrics"]


def test_only_archs_drawn_at_random_calibrate(api, keys, tmp_path, help_dir):
    """Archs someone chose (an explicit measure request, an earlier adaptation's samples) do not calibrate, however
    many: split conformal needs calibrating archs exchangeable with the unmeasured ones; a request that declares its
    archs ``drawn_at_random`` does."""
    truth = load_help(help_dir, ["gold_6240"])["gold_6240"]
    add_device(api, "cal3")
    others = np.random.default_rng(3).choice(len(truth), 2 * MIN_CALIBRATION_ARCHS, replace=False).tolist()
    chosen, drawn = others[:MIN_CALIBRATION_ARCHS], others[MIN_CALIBRATION_ARCHS:]
    assert _measured_then_adapted(api, keys, tmp_path, truth, "cal3", chosen)["calibration_archs"] == 0
    metrics = _measured_then_adapted(api, keys, tmp_path, truth, "cal3", drawn, drawn_at_random=True)
    with api.app.state.sessions() as session:
        first, second = (set(row.sample_archs) for row in session.query(Adaptation).order_by(Adaptation.created_at))
    assert first != second  # the first one's samples are measured, chosen archs
    assert metrics["calibration_archs"] == len(set(drawn) - second) >= MIN_CALIBRATION_ARCHS
