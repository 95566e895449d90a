"""``latfarm serve`` as a real process: REST, docs, gRPC health, bootstrap key, clean exit on SIGINT/SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc
from tests.conftest import ROOT

START_TIMEOUT_S = 90


class Served:
    """A running ``latfarm serve`` with the URLs and key it printed."""

    def __init__(self, args: list[str], **settings: str) -> None:
        """Serve with ``args`` and the LATFARM_* ``settings`` (none from this process's environment)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATFARM_")} | settings
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "latfarm.services.cli", "serve", "--http-port", "0", "--grpc-port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self.follow_output, daemon=True).start()
        self.rest = self.expect_line(r"latfarm REST\s+(http://\S+)")
        self.grpc = self.expect_line(r"latfarm gRPC\s+(\S+)")
        given = settings.get("LATFARM_ADMIN_KEY")
        self.key = given or self.expect_line(r"bootstrap admin key \(shown once, store it\): (\S+)")

    def follow_output(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def expect_line(self, pattern: str) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.proc.poll() is None, "server exited:\n" + "".join(self.output)
                continue
            if match := re.search(pattern, line):
                return match.group(1)
        raise AssertionError(f"no line matching {pattern!r}:\n" + "".join(self.output))

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _check_running(served: Served) -> None:
    health = httpx.get(f"{served.rest}/healthz", timeout=10).json()
    assert health["status"] == "ok"
    assert health["grpc_port"] == int(served.grpc.rsplit(":", 1)[1])  # the port bound for --grpc-port 0
    assert health["grpc_tls"] is False
    assert httpx.get(f"{served.rest}/docs", timeout=10).status_code == 200
    admin = {"Authorization": f"Bearer {served.key}"}
    created = httpx.post(f"{served.rest}/v1/devices", json={"name": "dev1"}, headers=admin, timeout=10)
    assert created.status_code == 201, created.text
    with grpc.insecure_channel(served.grpc) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "latfarm.v1.AgentService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.slow
def test_serve_sqlite_and_sigint(tmp_path):
    served = Served(["--data-dir", str(tmp_path / "data")])
    try:
        _check_running(served)
    finally:
        code = served.stop(signal.SIGINT)
    assert code == 0, "".join(served.output)
    assert "latfarm stopped" in "".join(served.output)
    assert '"GET /healthz HTTP/1.1" 200' not in "".join(served.output)  # no access log unless asked for
    assert (tmp_path / "data" / "latfarm.db").exists()


@pytest.mark.slow
def test_serve_postgres_redis_and_sigterm(tmp_path, pg_url, redis_url):
    args = ["--db", pg_url, "--redis", redis_url, "--data-dir", str(tmp_path / "data")]
    served = Served(args, LATFARM_HTTP_ACCESS_LOG="true")
    try:
        _check_running(served)
    finally:
        code = served.stop(signal.SIGTERM)
    assert code == 0, "".join(served.output)
    assert "latfarm stopped" in "".join(served.output)
    assert '"GET /healthz HTTP/1.1" 200' in "".join(served.output)  # the access log, asked for


@pytest.mark.slow
def test_a_revoked_admin_key_stays_revoked_after_a_restart(tmp_path):
    """The trial's repro: revoke the LATFARM_ADMIN_KEY key with a second admin key, restart: it stays revoked and
    the server says so in one warning line."""
    args, key = ["--data-dir", str(tmp_path / "data")], "lf_admin_serve-restart"
    served = Served(args, LATFARM_ADMIN_KEY=key)
    try:
        first = {"Authorization": f"Bearer {key}"}
        created = httpx.post(
            f"{served.rest}/v1/keys", json={"name": "second", "scopes": ["admin"]}, headers=first, timeout=10
        )
        assert created.status_code == 201, created.text
        second = {"Authorization": f"Bearer {created.json()['key']}"}
        assert httpx.delete(f"{served.rest}/v1/keys/1", headers=second, timeout=10).status_code == 204
    finally:
        assert served.stop(signal.SIGTERM) == 0, "".join(served.output)
    restarted = Served(args, LATFARM_ADMIN_KEY=key)
    try:
        warnings = [line for line in restarted.output if "WARNING" in line]  # logged before the REST line
        assert len(warnings) == 1 and "LATFARM_ADMIN_KEY is key 1 (bootstrap-admin), which was revoked" in warnings[0]
        assert "set LATFARM_ADMIN_KEY to a new secret" in warnings[0]
        assert httpx.get(f"{restarted.rest}/v1/keys", headers=first, timeout=10).status_code == 401
        assert httpx.get(f"{restarted.rest}/v1/keys", headers=second, timeout=10).status_code == 200
    finally:
        assert restarted.stop(signal.SIGTERM) == 0, "".join(restarted.output)


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[1] == str(pid):
                found.add(int(stat.parent.name))
        except OSError:
            continue
    return found


def _listening(pid: int, port: int) -> int:
    """How many sockets of process ``pid`` listen on TCP ``port`` (Linux ``/proc``)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(fields[9])
    links = (os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir())
    return sum(link.startswith("socket:[") and link[8:-1] in inodes for link in links)


@pytest.mark.slow
def test_grpc_processes_share_the_port_and_die_with_the_server(tmp_path, pg_url, redis_url):
    """Three child processes serve one gRPC port and the main process (REST) none of it: agents on separate
    connections reach every child (each logs the registrations it served under its pid); a SIGKILLed server takes
    its children with it."""
    args = ["--db", pg_url, "--redis", redis_url, "--data-dir", str(tmp_path / "data")]
    served = Served(args, LATFARM_GRPC_PROCESSES="3")
    try:
        assert "3 processes" in "".join(served.output)
        children = _children(served.proc.pid)
        assert len(children) == 3, children
        admin = {"Authorization": f"Bearer {served.key}"}
        assert httpx.post(f"{served.rest}/v1/devices", json={"name": "spread"}, headers=admin, timeout=10).is_success
        token = httpx.post(f"{served.rest}/v1/devices/spread/enrollments", headers=admin, timeout=10).json()["token"]
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(f"grpc-{child} " in "".join(served.output) for child in children):
            assert time.monotonic() < deadline, "a child served no registration:\n" + "".join(served.output)
            with grpc.insecure_channel(served.grpc) as channel:  # a new connection: the kernel picks a process
                stub = agent_pb2_grpc.AgentServiceStub(channel)
                descriptor = agent_pb2.DeviceDescriptor(hostname="spread", formats=["onnx"])
                reply = stub.Register(agent_pb2.RegisterRequest(enrollment_token=token, descriptor=descriptor))
                auth = [("authorization", f"Bearer {reply.credential}")]
                assert not stub.LeaseJobs(agent_pb2.LeaseRequest(wait_seconds=0), metadata=auth, timeout=30).jobs
            time.sleep(0.2)  # the child's log line travels through the pipe
        port = int(served.grpc.rsplit(":", 1)[1])
        assert all(_listening(child, port) >= 1 for child in children)
        assert _listening(served.proc.pid, port) == 0  # it holds the port without taking connections
    finally:
        served.proc.kill()
        served.proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{child}").exists() for child in children):
        assert time.monotonic() < deadline, "a gRPC child outlived its SIGKILLed server"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("which", "processes", "reuseport"),
    [("REST", "1", False), ("gRPC", "1", False), ("gRPC", "2", False), ("gRPC", "1", True), ("gRPC", "2", True)],
    ids=["rest", "grpc", "grpc-children", "grpc-of-a-server", "grpc-children-of-a-server"],
)
def test_a_port_in_use_exits_with_one_line(tmp_path, pg_url, redis_url, which, processes, reuseport):
    """A port another program listens on: one line naming it, exit 1, no traceback (one gRPC process binds the
    port itself; with children the main process reserves it first). Another server's gRPC port, bound with
    SO_REUSEPORT as gRPC binds it, is refused too, not shared."""
    with socket.socket() as taken:
        if reuseport:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        flag = "--http-port" if which == "REST" else "--grpc-port"
        other = "--grpc-port" if which == "REST" else "--http-port"
        args = ["--db", pg_url, "--redis", redis_url, "--data-dir", str(tmp_path / "data"), flag, port, other, "0"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LATFARM_")} | {
            "LATFARM_GRPC_PROCESSES": processes
        }
        done = subprocess.run(
            [sys.executable, "-m", "latfarm.services.cli", "serve", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    said = f"latfarm serve: cannot listen on the {which} port {port}: Address already in use"
    assert done.stderr.splitlines() == [said], done.stderr  # before the database: no migration's log lines
    assert not (tmp_path / "data").exists()


def _serve(*args: str) -> subprocess.CompletedProcess:
    """``latfarm serve ARGS`` to its end (it refuses to start), with no LATFARM_* setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATFARM_")}
    return subprocess.run(
        [sys.executable, "-m", "latfarm.services.cli", "serve", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )


def test_a_busy_port_is_refused_before_the_sqlite_database_is_created(tmp_path):
    """A refusal has no side effect: one line, exit 1, no data folder, no database, no migration's log lines."""
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = _serve("--http-port", port, "--grpc-port", "0", "--data-dir", str(tmp_path / "x"))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"latfarm serve: cannot listen on the REST port {port}: Address already in use"]
    assert done.stdout == ""
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_one_server_per_sqlite_database_and_a_killed_one_leaves_no_lock(tmp_path):
    """Port 0 cannot clash, the embedded database's lock refuses a second server on it (one line, exit 1, before
    its ports); the kernel releases the lock of a SIGKILLed server, so the next one starts."""
    data = tmp_path / "data"
    first = Served(["--data-dir", str(data)], LATFARM_ADMIN_KEY="lf_admin_one_server")
    try:
        second = _serve("--http-port", "0", "--grpc-port", "0", "--data-dir", str(data))
    finally:
        first.proc.kill()
        first.proc.wait()
    database = (data / "latfarm.db").resolve()
    said = f"latfarm serve: the SQLite database {database} is in use by latfarm serve (pid {first.proc.pid})"
    assert second.returncode == 1
    assert second.stderr.splitlines() == [f"{said}; one server per SQLite database (PostgreSQL: several)"]
    third = Served(["--data-dir", str(data)], LATFARM_ADMIN_KEY="lf_admin_one_server")
    _check_running(third)
    assert third.stop(signal.SIGTERM) == 0
