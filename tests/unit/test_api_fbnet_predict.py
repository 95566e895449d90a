"""FBNet through the service: predictions and rankings for any FBNet arch, the adapt loop for FBNet, bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sqlalchemy import func, select

from latfarm.services import datasets
from latfarm.services.core.security import hash_secret
from latfarm.services.domain import adaptation as adapt
from latfarm.services.domain import job_artifacts, queue, reports
from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.domain.results import ReportedResult
from latfarm.services.store.crud import device_by_name
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Adaptation, AdaptState, Agent, Arch, Job, Source, utcnow
from tests.api_support import ADMIN, ADMIN_KEY, add_device, add_measurements
from tests.fbnet_support import FBNET, add_fbnet_rows, fbnet_strings, truth_ms

SAMPLES = 6


def _counts(api) -> tuple[int, int, int]:
    with api.app.state.sessions() as session:
        return tuple(session.scalar(select(func.count()).select_from(t)) for t in (Arch, Job, Adaptation))


def test_predicts_1000_random_fbnet_archs_from_imported_rows(api, keys):
    add_device(api, "dev1")
    measured = [FBNET.to_string(a) for a in FBNET.reference_set()[100:120]]  # HELP's archs 100..119
    add_fbnet_rows(api, "dev1", measured, truth_ms(measured))
    archs = fbnet_strings(1000, seed=2)
    response = api.post(
        "/v1/predict", json={"device": "dev1", "space": "fbnet", "archs": archs}, headers=keys["client"]
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["space"] == "fbnet" and body["conditions"]["space"] == "fbnet"
    assert body["conditions"]["key"] == "fbnet/32px/100cls/b1/fp32/reference"  # FBNet's CIFAR-100 variant
    items = body["items"]
    assert [i["arch"] for i in items] == archs
    assert all(i["source"] == "predicted" and i["std_ms"] > 0 and i["latency_ms"] > 0 for i in items)
    assert all(i["index"] is None and "nb201_index" not in i for i in items)
    rho = spearmanr([i["latency_ms"] for i in items], truth_ms(archs))[0]
    assert rho > 0.8, rho  # fitted on the fly from the device's 20 rows, not a constant

    # the device's own rows come back measured, with their reference position; an index list, a position and a
    # string name the same archs
    lists = [list(FBNET.parse(measured[0])), 101, measured[2]]
    again = api.post("/v1/predict", json={"device": "dev1", "space": "fbnet", "archs": lists}, headers=ADMIN).json()
    assert [(i["arch"], i["index"], i["source"], i["origin"]) for i in again["items"]] == [
        (a, 100 + n, "measured", "help-fbnet") for n, a in enumerate(measured[:3])
    ]
    assert [i["latency_ms"] for i in again["items"]] == list(truth_ms(measured[:3]))

    ranked = api.post("/v1/rank", json={"device": "dev1", "space": "fbnet", "archs": archs[:60]}, headers=ADMIN)
    assert ranked.status_code == 200, ranked.text
    order = [i["arch"] for i in ranked.json()["items"]]
    assert sorted(order) == sorted(archs[:60]) and ranked.json()["space"] == "fbnet"
    assert spearmanr(np.arange(60), truth_ms(order))[0] > 0.8


def test_fbnet_and_nb201_predictions_do_not_mix(api, keys):
    """A device with NB201 measurements only has no FBNet estimate (and the message says which space), and its
    FBNet rows are not NB201 ones."""
    add_device(api, "dev1")
    add_measurements(api, "dev1", {i: 1.0 + i / 10 for i in range(10)}, source=Source.imported, dataset="help-nb201")
    archs = fbnet_strings(3, seed=3)
    body = api.post("/v1/predict", json={"device": "dev1", "space": "fbnet", "archs": archs}, headers=ADMIN).json()
    assert all(i["latency_ms"] is None and "0 measured fbnet arch" in i["message"] for i in body["items"])
    nb201 = api.post("/v1/predict", json={"device": "dev1", "archs": [0, 11]}, headers=ADMIN).json()["items"]
    assert [(i["source"], i["index"]) for i in nb201] == [("measured", 0), ("predicted", 11)]


def test_bad_fbnet_input_is_refused_naming_field_and_position(api, keys):
    add_device(api, "dev1")
    good = fbnet_strings(2, seed=4)
    short = "-".join(good[0].split("-")[:21])
    cases = [
        ({"archs": [good[0], short]}, "archs[1]", "22"),  # wrong length
        ({"archs": ["-".join(["k7_e9", *good[0].split("-")[1:]])]}, "archs[0]", "k7_e9"),  # unknown block name
        ({"archs": [good[0], [0] * 21 + [9]]}, "archs[1]", "9"),  # index out of range
        ({"archs": [good[0], [0] * 23]}, "archs[1]", "22"),  # index list of the wrong length
        ({"archs": [7, 5000]}, "archs[1]", "fbnet: reference position 5000 is outside 0..4999"),
        ({"archs": ["|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"]}, "archs[0]", ""),
        ({"archs": good, "space": "ofa"}, "space", "ofa"),  # not a registered space
    ]  # fmt: skip
    before = _counts(api)
    for extra, field, detail in cases:
        for route in ("/v1/predict", "/v1/rank"):
            response = api.post(route, json={"device": "dev1", "space": "fbnet"} | extra, headers=keys["client"])
            assert response.status_code == 422, (extra, response.text)
            message = response.json()["message"]
            assert field in message and detail in message, message
    for body, field in [({"space": "ofa"}, "space"), ({"space": "fbnet", "samples": 2}, "samples")]:
        response = api.post("/v1/devices/dev1/adapt", json=body, headers=keys["admin"])
        assert response.status_code == 422 and field in response.json()["message"], response.text
    assert api.get("/v1/devices/dev1/adapt", params={"space": "ofa"}, headers=ADMIN).status_code == 422
    assert _counts(api) == before  # nothing stored


def _agent_measures_fbnet(api, tmp_path, device: str) -> list[str]:
    """A registered agent leases the device's jobs through the real queue (FBNet networks exported to ONNX) and
    reports ``truth_ms`` of each arch."""
    store = ArtifactStore(tmp_path / "artifacts")
    with transaction(api.app.state.sessions) as session:
        agent = Agent(device_id=device_by_name(session, device).id, credential_hash=hash_secret("secret"))
        session.add(agent)
        session.flush()
        job_artifacts.resolve_artifacts(session, agent.device_id, ["onnx"], 50, store)
        leased = queue.lease(session, agent, max_jobs=50, formats=["onnx"], lease_seconds=60)
        jobs = [session.get_one(Job, job.job_id) for job in leased]
        archs = [job.arch.arch for job in jobs]
        assert {job.arch.space for job in jobs} == {"fbnet"}
        results = [
            ReportedResult(job_id=job.id, ok=True, latency_ms=float(ms), statistic="min", median_ms=ms + 0.2, runs=10)
            for job, ms in zip(jobs, truth_ms(archs), strict=True)
        ]
        acks = reports.report(session, agent, results, provenance={}, max_attempts=3)
    assert all(a.accepted for a in acks)
    return archs


def _active_nb201_adaptation(api, device: str) -> str:
    """An active NB201 adaptation of ``device`` (its predictor state as the NB201 adapt loop stores it)."""
    loader = api.app.state.predictions.predictor_loader
    state = loader().adapt([1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0]).to_state()
    with transaction(api.app.state.sessions) as session:
        target = device_by_name(session, device)
        row = Adaptation(
            device_id=target.id, samples=4, sample_archs=[1, 2, 3, 4], params=state, state=AdaptState.active,
            conditions_key=conditions_of(target).key, activated_at=utcnow(),
        )  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def test_fbnet_adaptation_end_to_end(api, keys, tmp_path):
    add_device(api, "cpu1")
    nb201_id = _active_nb201_adaptation(api, "cpu1")
    response = api.post("/v1/devices/cpu1/adapt", json={"space": "fbnet", "samples": SAMPLES}, headers=keys["admin"])
    assert response.status_code == 202, response.text
    started = response.json()
    assert (started["space"], started["state"], started["progress"]["total"]) == ("fbnet", "measuring", SAMPLES)
    assert started["conditions_key"].startswith("fbnet/") and started["current"]
    again = api.post("/v1/devices/cpu1/adapt", json={"space": "fbnet", "samples": SAMPLES}, headers=keys["admin"])
    assert again.status_code == 409 and "fbnet" in again.json()["message"]

    sampled = _agent_measures_fbnet(api, tmp_path, "cpu1")
    assert len(set(sampled)) == SAMPLES
    loader = api.app.state.predictions.predictor_loader
    assert adapt.advance_all(api.app.state.sessions, loader) == 1

    detail = api.get("/v1/devices/cpu1", headers=ADMIN).json()
    assert detail["predictor"]["id"] == started["id"] and detail["predictor"]["space"] == "fbnet"
    fbnet, nb201 = detail["predictors"]["fbnet"], detail["predictors"]["nb201"]
    assert (fbnet["state"], fbnet["metrics"]["measured"], fbnet["metrics"]["outliers"]) == ("active", SAMPLES, [])
    assert (nb201["id"], nb201["state"]) == (nb201_id, "active")  # another space's adaptation is not superseded
    status = api.get("/v1/devices/cpu1/adapt", params={"space": "fbnet"}, headers=ADMIN).json()
    assert status["id"] == started["id"]
    assert api.get("/v1/devices/cpu1/adapt", params={"space": "nb201"}, headers=ADMIN).json()["id"] == nb201_id
    with api.app.state.sessions() as session:
        row = session.get_one(Adaptation, started["id"])
        assert sorted(row.sample_archs) == sorted(sampled)  # canonical strings
        assert len(json.dumps(row.params)) < 20_000  # samples only, not the 203x203 posterior

    archs = fbnet_strings(300, seed=5)
    items = api.post("/v1/predict", json={"device": "cpu1", "space": "fbnet", "archs": archs}, headers=ADMIN).json()
    predicted = items["items"]
    assert all(i["source"] == "predicted" and i["std_ms"] > 0 for i in predicted)
    rho = spearmanr([i["latency_ms"] for i in predicted], truth_ms(archs))[0]
    assert rho > 0.8, rho
    measured = api.post(
        "/v1/predict", json={"device": "cpu1", "space": "fbnet", "archs": sampled}, headers=ADMIN
    ).json()["items"]
    assert [(i["source"], i["statistic"]) for i in measured] == [("measured", "min")] * SAMPLES

    # the stored state rebuilds the same model in a fresh process (no in-memory model)
    api.app.state.predictions._models.clear()
    rebuilt = api.post("/v1/predict", json={"device": "cpu1", "space": "fbnet", "archs": archs}, headers=ADMIN).json()
    assert [i["latency_ms"] for i in rebuilt["items"]] == [i["latency_ms"] for i in predicted]


def test_imported_help_fbnet_device_is_predicted_by_the_service(api, tmp_path):
    """pixel3 of the shared HELP FBNet data, imported: its archs come back measured at their dataset positions, and
    the model the service fits on the fly from its rows ranks all 5,000 like the device."""
    folder = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "help-fbnet"
    if not (folder / "metainfo.pt").exists():
        pytest.skip(f"shared HELP FBNet data not found at {folder}")
    with transaction(api.app.state.sessions) as session:
        datasets.import_help(session, folder, progress=False, space="fbnet", devices=["pixel3"])
    reference = [FBNET.to_string(a) for a in FBNET.read_reference(folder)]
    truth = np.asarray(torch.load(folder / "latency" / "pixel3.pt"), dtype=np.float64)
    body = {"device": "pixel3", "space": "fbnet", "archs": [reference[7], *fbnet_strings(999, seed=6)]}
    items = api.post("/v1/predict", json=body, headers=ADMIN).json()["items"]
    assert (items[0]["index"], items[0]["source"], items[0]["latency_ms"]) == (7, "measured", truth[7])
    assert all(i["source"] == "predicted" and i["std_ms"] > 0 and i["index"] is None for i in items[1:])
    with api.app.state.sessions() as session:
        model = api.app.state.predictions.for_device(session, device_by_name(session, "pixel3"), "fbnet")
    mean, _ = model.predict(np.asarray(FBNET.read_reference(folder)))
    assert spearmanr(mean, truth)[0] > 0.9


def test_the_client_exports_a_devices_data_of_either_space(live_api):
    from types import SimpleNamespace

    from latfarm.services.client import Client

    url, server = live_api
    with Client(url, ADMIN_KEY) as client:
        client.create_device("dev1")
        add_fbnet_rows(SimpleNamespace(app=server), "dev1", fbnet_strings(3, seed=1), np.array([1.0, 2.0, 3.0]))
        header, *rows = client.export("dev1", space="fbnet").decode().splitlines()
        assert header.startswith("arch,fbnet_index,") and len(rows) == 3
        latbench = pickle.loads(client.export("dev1", "latbench", space="fbnet"))
        assert sorted(latbench.values()) == pytest.approx([1e-3, 2e-3, 3e-3])  # seconds
