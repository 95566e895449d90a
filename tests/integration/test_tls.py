"""TLS on the agents' gRPC port, with a self-signed certificate made by ``openssl`` at test time."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from latfarm.agents.connection import Connection
from latfarm.agents.errors import AgentError, Stopped
from latfarm.agents.main import run_agent
from latfarm.agents.options import AgentOptions
from latfarm.services.core.config import Settings
from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.infra.wakeups import make_notifier
from latfarm.services.rpc.server import build_grpc_server, server_credentials
from latfarm.services.store.db import make_engine, make_read_sessionmaker, make_sessionmaker
from latfarm.services.store.models import Base
from tests.integration.test_agent_e2e import Agent, Server
from tests.integration.test_rpc import DESCRIPTOR, enroll


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> SimpleNamespace:
    """A self-signed certificate for localhost / 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command line is not installed (needed to make a test certificate)")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    names = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *names, "-keyout", key, "-out", cert)
    return SimpleNamespace(cert=cert, key=key, folder=folder)


@pytest.fixture
def farm(sqlite_url, tmp_path, certs):
    """A started TLS gRPC server on a free port (SQLite), and an enrollment token."""
    engine = make_engine(sqlite_url)
    Base.metadata.create_all(engine)
    sessions = make_sessionmaker(engine)
    notifier = make_notifier(None)
    credentials = server_credentials(Settings(grpc_tls_cert=certs.cert, grpc_tls_key=certs.key))
    store = ArtifactStore(tmp_path / "artifacts")
    read_sessions = make_read_sessionmaker(engine)
    server, port = build_grpc_server(
        Settings(), sessions, read_sessions, store, notifier, credentials=credentials, port=0
    )
    server.start()
    yield SimpleNamespace(address=f"127.0.0.1:{port}", token=enroll(sessions)[1])
    server.stop(None)
    notifier.close()
    engine.dispose()


def test_agent_with_the_ca_certificate_registers_over_tls(farm, certs):
    conn = Connection(farm.address, threading.Event(), root_certificates=certs.cert.read_bytes())
    try:
        reply = conn.register(farm.token, DESCRIPTOR, "tls-agent")
        assert reply.agent_id and reply.credential
        conn.credential = reply.credential
        assert conn.heartbeat([], "idle") is not None  # an authenticated call over the same TLS channel
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("tls", "reason"),
    [({}, ""), ({"tls": True}, "CERTIFICATE_VERIFY_FAILED")],
    ids=["plaintext", "tls-without-the-ca"],
)
def test_plaintext_or_untrusted_connections_fail(farm, tls, reason):
    logged: list[str] = []
    stop = threading.Event()
    stop.set()  # one try, then stop instead of retrying
    conn = Connection(farm.address, stop, log=logged.append, **tls)
    try:
        with pytest.raises(Stopped):
            conn.register(farm.token, DESCRIPTOR, "x")
    finally:
        conn.close()
    assert len(logged) == 1 and "server unavailable (UNAVAILABLE: " in logged[0] and reason in logged[0], logged


def test_server_refuses_to_start_on_a_bad_tls_setting(tmp_path, certs):
    other_key = certs.folder / "other-key.pem"
    openssl("genrsa", "-out", other_key, "2048")
    cases = [
        ({"grpc_tls_cert": certs.cert}, "grpc_tls_cert .* is set but grpc_tls_key .* is not"),
        ({"grpc_tls_key": certs.key}, "grpc_tls_key .* is set but grpc_tls_cert .* is not"),
        ({"grpc_tls_cert": certs.cert, "grpc_tls_key": tmp_path / "missing.pem"}, "grpc_tls_key .*missing.pem"),
        ({"grpc_tls_cert": certs.cert, "grpc_tls_key": other_key}, "not a PEM certificate and its"),
    ]
    for tls, message in cases:
        with pytest.raises(ValueError, match=message):
            server_credentials(Settings(**tls))


def test_agent_exits_on_an_unreadable_ca_certificate(tmp_path):
    missing = tmp_path / "ca.pem"
    with pytest.raises(AgentError, match=f"cannot read --ca-cert {missing}"):
        run_agent(AgentOptions("127.0.0.1:1", "lf_enroll_x", tmp_path / "agent", ca_cert=missing))


@pytest.mark.slow
def test_latfarm_agent_registers_with_a_tls_latfarm_serve(certs, tmp_path, monkeypatch):
    """The real processes: ``latfarm serve`` with LATFARM_GRPC_TLS_*, ``latfarm agent --once --ca-cert``."""
    monkeypatch.setenv("LATFARM_GRPC_TLS_CERT", str(certs.cert))
    monkeypatch.setenv("LATFARM_GRPC_TLS_KEY", str(certs.key))
    server = Server(tmp_path)
    server.start()
    try:
        server.request("POST", "/v1/devices", {"name": "tls-e2e"})
        agent = Agent(server, tmp_path, "tls-agent", server.enroll("tls-e2e"), ["--once", "--ca-cert", str(certs.cert)])
        assert agent.proc.wait(timeout=60) == 0, agent.log()
        assert "registered as agent" in agent.log()
        assert f"{server.grpc_port}  TLS" in (tmp_path / "server.log").read_text()
        assert server.request("GET", "/healthz")["grpc_tls"] is True  # agent hints then carry --tls
    finally:
        server.stop()


def test_serve_exits_with_a_clear_message_on_a_lone_certificate(certs, tmp_path):
    from latfarm.services.cli.serve import serve

    with pytest.raises(SystemExit, match="latfarm serve: grpc_tls_cert .* is set but grpc_tls_key"):
        serve(Settings(data_dir=tmp_path, grpc_tls_cert=certs.cert))
    assert not (tmp_path / "latfarm.db").exists()  # failed before touching the database
