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
    blank = " " * 8  # a measurement has no predicted spread
    assert ok.output.splitlines() == [
        f"4.5000 ms {blank}  measured   {arch(123)}",
        f"2.0000 ms {blank}  measured   {arch(7)}",
    ]

    wrong_key = one_line_failure(predict("pixel3", "1", "--server", url, "--key", "lf_nope"))
    assert wrong_key.startswith("latfarm predict: ") and "in LATFARM_API_KEY (or --key)" in wrong_key
    unknown = one_line_failure(predict("pixel9", "1", "--server", url, "--key", ADMIN_KEY))
    assert "unknown device 'pixel9'" in unknown and unknown.endswith("known devices: pixel3")
    down = one_line_failure(predict("pixel3", "1", "--server", "http://127.0.0.1:9", "--key", ADMIN_KEY))
    assert down.endswith("is the server running at http://127.0.0.1:9? (--server / LATFARM_SERVER)")


@pytest.mark.parametrize("bad", [True, 1.5, None, [True, 0, 0, 0, 0, 0]])  # 1.0 is JSON Schema's integer 1
def test_json_true_or_float_is_not_an_arch_index(live_api, bad):
    """Every route taking archs (predict, rank, jobs) refuses a bool, float or null as an index (or as an
    entry of an index list) naming ``archs[0]``."""
    import httpx

    url, _ = live_api
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    for route, extra in (("predict", {}), ("rank", {}), ("jobs", {"format": "onnx"})):
        response = httpx.post(f"{url}/v1/{route}", json={"device": "x", "archs": [bad], **extra}, headers=headers)
        assert response.status_code == 422, (route, response.text)
        assert response.json()["errors"][0]["field"].startswith("archs[0]"), (route, response.text)


CLIENT_COMMANDS = {  # every CLI command that talks to the REST API, by its name (and a flag that matters)
    "predict": ["predict", "pixel3", "1"],
    "measure": ["measure", "pixel3", "1"],
    "adapt": ["adapt", "pixel3", "--samples", "5"],
    "adapt --cancel": ["adapt", "pixel3", "--cancel"],
    "cancel": ["cancel", "0123abcd" * 4],  # a well-formed batch id (32 hex digits), of no batch
    "results": ["results", "0123abcd" * 4],
    "device add": ["device", "add", "pixel9"],
    "device enroll": ["device", "enroll", "pixel3"],
    "device list": ["device", "list"],
    "key create": ["key", "create", "nas", "--scope", "client"],
    "key list": ["key", "list"],
    "key revoke": ["key", "revoke", "7"],
}


@pytest.fixture(scope="module")
def not_latfarm(tmp_path_factory):
    """The URL of a web server that is not latfarm (Python's file server on an empty folder: HTML error pages)."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(tmp_path_factory.mktemp("empty")))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("command", CLIENT_COMMANDS)
def test_every_client_command_explains_a_wrong_key_and_a_missing_or_foreign_server_in_one_line(
    live_api, not_latfarm, monkeypatch, command
):
    """#14 case 5, for each client command: a wrong key, no server listening, and a web server that is not latfarm
    (an HTML answer) each end in one line saying what to do, exit 1."""
    url, _ = live_api
    monkeypatch.delenv("LATFARM_API_KEY", raising=False)
    args = CLIENT_COMMANDS[command]
    name = f"latfarm {command.split(' --')[0]}: "

    def run(server: str, key: str) -> str:
        return one_line_failure(CliRunner().invoke(app, [*args, "--server", server, "--key", key]))

    wrong_key = run(url, "lf_nope")
    assert wrong_key.startswith(name) and wrong_key.endswith("in LATFARM_API_KEY (or --key)"), wrong_key
    down = run("http://127.0.0.1:9", ADMIN_KEY)
    assert down.startswith(name) and "Connection refused" in down, down
    assert down.endswith("is the server running at http://127.0.0.1:9? (--server / LATFARM_SERVER)")
    foreign = run(not_latfarm, ADMIN_KEY)
    assert foreign.startswith(name) and "not a latfarm answer" in foreign and "<" not in foreign, foreign
    assert foreign.endswith(f"is the server running at {not_latfarm}? (--server / LATFARM_SERVER)")


@pytest.fixture(scope="module")
def grpc_port():
    """The URL of a gRPC port (HTTP/2 only, as the agents' port of a latfarm server)."""
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.parametrize("command", CLIENT_COMMANDS)
def test_every_client_command_pointed_at_a_grpc_port_says_it_takes_the_rest_url(grpc_port, command):
    """The agents' port given as ``--server`` (``device enroll`` prints it for agents): one line naming the mix-up,
    not "is the server running"."""
    args = CLIENT_COMMANDS[command]
    line = one_line_failure(CliRunner().invoke(app, [*args, "--server", grpc_port, "--key", ADMIN_KEY]))
    assert line.startswith(f"latfarm {command.split(' --')[0]}: ") and line.endswith(
        f"{grpc_port} does not answer HTTP/1.1 (the agents' gRPC port?): --server / LATFARM_SERVER is the server's "
        "REST base URL, http://HOST:PORT"
    ), line


@pytest.mark.parametrize("command", CLIENT_COMMANDS)
def test_every_client_command_explains_no_key_and_a_server_url_with_a_path_in_one_line(live_api, monkeypatch, command):
    """No key at all is refused before any request, saying where ``latfarm up`` keeps its admin key; a ``--server``
    with a path (``.../v1``: no route there) says that it takes the REST base URL."""
    url, _ = live_api
    monkeypatch.delenv("LATFARM_API_KEY", raising=False)
    args = CLIENT_COMMANDS[command]
    no_key = one_line_failure(CliRunner().invoke(app, [*args, "--server", "http://127.0.0.1:9"]))
    assert no_key == (
        f"latfarm {command.split(' --')[0]}: no API key: set LATFARM_API_KEY (or pass --key); "
        "latfarm up keeps its admin key in <data-dir>/admin.key (latfarm-data/admin.key by default)"
    )
    with_path = one_line_failure(CliRunner().invoke(app, [*args, "--server", f"{url}/v1", "--key", ADMIN_KEY]))
    assert with_path == (
        f"latfarm {command.split(' --')[0]}: Not Found at {url}/v1: --server / LATFARM_SERVER is the server's REST "
        "base URL, http://HOST:PORT with no path"
    )
