"""``latfarm agent --server``: HOST:PORT of the gRPC port, said once (exit 2) for a URL or a missing port, and once
(exit 1) when the port answers HTTP/1; the REST commands take ``--server HOST:PORT`` as ``http://``."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from latfarm.agents.connection import Connection, server_address
from latfarm.agents.errors import AgentError
from latfarm.proto.v1 import agent_pb2
from latfarm.services.cli import app


@pytest.mark.parametrize("good", ["127.0.0.1:50051", "[::1]:50051", "lab.example.org:443", "unix:/tmp/sock"])
def test_host_port_and_grpc_targets_are_taken_as_given(good):
    assert server_address(good) == good


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        ("http://127.0.0.1:50051", "no scheme: try --server 127.0.0.1:50051"),
        ("https://lab.example.org:443/", "no scheme: try --server lab.example.org:443 --tls"),
        ("127.0.0.1", "got '127.0.0.1'"),
        ("127.0.0.1:70000", "got '127.0.0.1:70000'"),
    ],
)
def test_a_url_or_a_missing_port_is_a_usage_error(tmp_path, bad, said):
    result = CliRunner().invoke(
        app, ["agent", "--server", bad, "--state-dir", str(tmp_path / "s")], env={"COLUMNS": "400"}
    )
    output = " ".join(result.output.replace("│", "").split())
    assert result.exit_code == 2
    assert "expected HOST:PORT of the server's gRPC port (default 50051)" in output and said in output
    assert not (tmp_path / "s").exists()


class _Http1(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *_args) -> None:
        pass


def test_an_http1_port_is_said_once_not_retried():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Http1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    logged: list[str] = []
    conn = Connection(address, threading.Event(), log=logged.append)
    try:
        with pytest.raises(AgentError) as raised:
            conn.register("token", agent_pb2.DeviceDescriptor(), "a")
    finally:
        conn.close()
        server.shutdown()
        server.server_close()
    assert str(raised.value) == (
        f"{address}: that port speaks HTTP/1 (the REST API?); the agents' gRPC port is 50051 by default"
    )
    assert logged == []


def test_the_rest_commands_take_host_port_as_http(tmp_path):
    result = CliRunner().invoke(app, ["predict", "gpu", "0", "--server", "127.0.0.1:1", "--key", "k"])
    assert result.exit_code == 1
    assert "is the server running at http://127.0.0.1:1?" in result.output
