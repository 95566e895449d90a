"""``latfarm predict`` against a real server (uvicorn in a thread): indices like ``measure``, and one line with
what to do for a wrong key, an unknown device and a server that is down (#14 case 5)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from latfarm.services.cli import app
from latfarm.services.client import Client
from latfarm.services.store.models import Source
from tests.api_support import ADMIN_KEY, add_measurements, arch


class _App:
    """What add_measurements needs: ``.app.state.sessions``."""

    def __init__(self, app) -> None:
        self.app = app


def predict(*args: str):
    return CliRunner().invoke(app, ["predict", *args])


def one_line_failure(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    return lines[0]


def test_predict_takes_indices_and_explains_client_errors(live_api, monkeypatch):
    url, server_app = live_api
    monkeypatch.delenv("LATFARM_API_KEY", raising=False)
    with Client(url, ADMIN_KEY) as client:
        client.create_device("pixel3")
    add_measurements(_App(server_app), "pixel3", {123: 4.5, 7: 2.0}, source=Source.imported)

    ok = predict("pixel3", "123", arch(7), "--server", url, "--key", ADMIN_KEY)
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines() == [f"4.5000 ms  measured   {arch(123)}", f"2.0000 ms  measured   {arch(7)}"]

    wrong_key = one_line_failure(predict("pixel3", "1", "--server", url, "--key", "lf_nope"))
    assert wrong_key.startswith("latfarm predict: ") and "--key or LATFARM_API_KEY" in wrong_key
    unknown = one_line_failure(predict("pixel9", "1", "--server", url, "--key", ADMIN_KEY))
    assert "unknown device 'pixel9'" in unknown and unknown.endswith("known devices: pixel3")
    down = one_line_failure(predict("pixel3", "1", "--server", "http://127.0.0.1:9", "--key", ADMIN_KEY))
    assert down.endswith("is the server running at http://127.0.0.1:9? (--server / LATFARM_SERVER)")


@pytest.mark.parametrize("bad", [True, 1.5, None])  # 1.0 is JSON Schema's integer 1, as the OpenAPI document says
def test_json_true_or_float_is_not_an_arch_index(live_api, bad):
    import httpx

    url, _ = live_api
    response = httpx.post(
        f"{url}/v1/predict", json={"device": "x", "archs": [bad]}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert response.status_code == 422
