"""FBNet through the Python client and ``latfarm predict`` / ``latfarm adapt --space fbnet`` against a real server."""

from __future__ import annotations

from scipy.stats import spearmanr
from typer.testing import CliRunner

from latfarm.services.cli import app
from latfarm.services.client import Client
from tests.api_support import ADMIN_KEY
from tests.fbnet_support import FBNET, add_fbnet_rows, fbnet_strings, truth_ms


class _App:
    """What add_fbnet_rows needs: ``.app.state.sessions``."""

    def __init__(self, app) -> None:
        self.app = app


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_fbnet_predict_rank_and_adapt_through_client_and_cli(live_api, monkeypatch):
    url, server_app = live_api
    monkeypatch.delenv("LATFARM_API_KEY", raising=False)
    measured = fbnet_strings(12, seed=7)
    with Client(url, ADMIN_KEY) as client:
        client.create_device("pixel7")
        add_fbnet_rows(_App(server_app), "pixel7", measured, truth_ms(measured))
        archs = fbnet_strings(40, seed=8)
        items = client.predict("pixel7", [FBNET.parse(a) for a in archs], space="fbnet")  # index lists
        assert [i["arch"] for i in items] == archs and all(i["std_ms"] > 0 for i in items)
        ranked = client.rank("pixel7", archs, space="fbnet")
        assert sorted(i["arch"] for i in ranked) == sorted(archs)
        assert spearmanr(range(len(archs)), truth_ms([i["arch"] for i in ranked]))[0] > 0.8

    server = ["--server", url, "--key", ADMIN_KEY]
    ok = cli("predict", "pixel7", "--space", "fbnet", measured[0], archs[0], *server)
    assert ok.exit_code == 0, ok.output
    lines = ok.output.splitlines()
    assert lines[0].endswith(f"measured   {measured[0]}") and lines[1].endswith(f"predicted  {archs[0]}")

    short = "-".join(archs[0].split("-")[:21])
    bad = cli("predict", "pixel7", "--space", "fbnet", archs[0], short, *server)
    shown = " ".join(bad.output.replace("│", "").split())
    assert bad.exit_code == 2, bad.output  # checked before any request: a usage error
    assert "Invalid value for 'ARCHS...': archs[1]: fbnet:" in shown
    assert "has 21 blocks joined by '-', expected 22" in shown

    started = cli("adapt", "pixel7", "--space", "fbnet", "--samples", "4", "--no-wait", *server)
    assert started.exit_code == 0, started.output
    with Client(url, ADMIN_KEY) as client:
        state = client._json("GET", "/v1/devices/pixel7/adapt", params={"space": "fbnet"})
        assert (state["space"], state["state"], state["progress"]["total"]) == ("fbnet", "measuring", 4)
        assert client._json("GET", "/v1/devices/pixel7/adapt", params={"space": "nb201"}) == {"state": "none"}
