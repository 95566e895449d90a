"""The Python client against a real uvicorn server (in a thread), and its retries."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from latfarm.predictor import nb201
from latfarm.services.client import Client, LatfarmError
from latfarm.services.store.models import Source
from tests.api_support import ADMIN_KEY, add_measurements, arch
from tests.fbnet_support import add_fbnet_rows, fbnet_strings, truth_ms


class _App:
    """What add_measurements needs: ``.app.state.sessions``."""

    def __init__(self, app) -> None:
        self.app = app


def test_client_round_trip(live_api):
    url, app = live_api
    with Client(url, ADMIN_KEY) as client:
        assert client.create_device("dev1", hardware="x86")["name"] == "dev1"
        with pytest.raises(LatfarmError) as err:
            client.create_device("dev1")
        assert err.value.status == 409 and "dev1" in err.value.message
        assert (err.value.code, err.value.field) == ("already_exists", "name")  # the server's error code
        assert [d["name"] for d in client.devices()] == ["dev1"]
        assert client.enroll("dev1").startswith("lf_enroll_")
        assert client.agents("dev1") == []

        add_measurements(_App(app), "dev1", {i: 1.0 + i for i in range(5)}, source=Source.imported)
        assert client.device("dev1")["measurements"]["imported"] == 5
        items = client.predict("dev1", [arch(2), 4])
        assert [(i["latency_ms"], i["source"]) for i in items] == [(3.0, "measured"), (5.0, "measured")]
        assert [m["latency_ms"] for m in client.measurements("dev1", page_size=2)] == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert client.export("dev1").decode().count("\n") >= 5

        batch = client.measure("dev1", [arch(100), arch(101)], wait=False, protocol={"rounds": 3})
        assert (batch["queued"], batch["done"], batch["protocol"]) == (2, 0, {"rounds": 3})
        assert client.job(batch["id"])["queued"] == 2
        with pytest.raises(TimeoutError):  # no agent serves dev1
            client.measure("dev1", [arch(102)], timeout=0.5, poll_s=0.1)

        client_key = client.create_key("nas", ["client"])
    with Client(url, client_key) as nas:
        with pytest.raises(LatfarmError) as err:
            nas.create_device("dev2")
        assert err.value.status == 403
        with pytest.raises(LatfarmError) as err:
            nas.predict("nope", [arch(1)])
        assert err.value.status == 404 and "nope" in str(err.value)
        with pytest.raises(LatfarmError) as err:  # adapting is the device owner's or an admin's
            nas.adapt("dev1", samples=3, wait=False)
        assert err.value.status == 403 and "its owner's key (scope owner) or an admin key" in str(err.value)
    with pytest.raises(LatfarmError) as err:
        Client(url).devices()
    assert err.value.status == 401


def test_numpy_archs_and_measurements_of_a_space(live_api):
    """What NAS code holds: numpy draws as positions, numpy arrays as index lists; measurements of one space."""
    url, app = live_api
    with Client(url, ADMIN_KEY) as client:
        client.create_device("dev1")
        add_measurements(_App(app), "dev1", {3: 2.0, 7: 1.0})
        fbnet = fbnet_strings(2, seed=1)
        add_fbnet_rows(_App(app), "dev1", fbnet, truth_ms(fbnet))

        drawn = np.array([3, 7], dtype=np.int64)
        items = client.predict("dev1", [drawn[0], np.array(nb201.from_official_index(7))])
        assert [i["nb201_index"] for i in items] == [3, 7]
        assert [i["nb201_index"] for i in client.rank("dev1", list(drawn))] == [7, 3]  # 1.0 ms, then 2.0 ms
        batch = client.measure("dev1", [drawn[1], tuple(nb201.from_official_index(3))], wait=False)
        assert [i["nb201_index"] for i in client.job(batch["id"], items=True)["items"]] == [7, 3]

        assert sorted(m["arch"] for m in client.measurements("dev1", space="fbnet")) == sorted(fbnet)
        assert [m["nb201_index"] for m in client.measurements("dev1", space="nb201")] == [3, 7]
        assert [m["arch"] for m in client.measurements("dev1", arch=fbnet[0])] == [fbnet[0]]
        assert [m["nb201_index"] for m in client.measurements("dev1", arch=drawn[0])] == [3]


def test_connect_errors_are_retried_then_raised():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here
    start = time.monotonic()
    with pytest.raises(LatfarmError) as err:
        Client(f"http://127.0.0.1:{port}", "k", retries=2, backoff_s=0.1).devices()
    assert err.value.status == 0 and "Connect" in err.value.message
    assert time.monotonic() - start >= 0.3  # backoff 0.1 + 0.2 s


def test_5xx_retried_for_idempotent_requests():
    calls = []

    class Flaky(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            calls.append(self.path)
            status, body = (503, {"message": "busy"}) if len(calls) < 3 else (200, [{"name": "dev1"}])
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        assert Client(url, "k", retries=3, backoff_s=0.01).devices() == [{"name": "dev1"}]
        assert len(calls) == 3
        calls.clear()
        with pytest.raises(LatfarmError) as err:
            Client(url, "k", retries=1, backoff_s=0.01).devices()
        assert (err.value.status, err.value.message, len(calls)) == (503, "busy", 2)
    finally:
        httpd.shutdown()


@pytest.mark.parametrize("call", ["predict", "rank", "submit", "measure"])
def test_a_device_name_no_device_may_have_is_refused_before_any_request(call):
    """In a body as in a path, ``a/b`` is refused by the client itself: nothing listens at the URL, so an answer
    other than ``invalid_argument`` with status 0 would mean a request was tried."""
    with pytest.raises(LatfarmError) as err:
        getattr(Client("http://127.0.0.1:9", "k", retries=0), call)("a/b", [0])
    assert err.value.status == 0 and err.value.code == "invalid_argument"
    assert err.value.message.startswith("device name 'a/b' is not allowed")
