"""Two real ``latfarm serve`` processes on one PostgreSQL schema and one Redis: the server is stateless.

Agents register, lease and report through either replica; no job is ever leased twice, results reported to one
replica are visible on the other, a batch submitted on one wakes an agent long-polling the other, and an artifact
exported by one is served byte-identical by the other (which keeps its own data folder). The compose agent's
entrypoint enrolls itself against a replica with a real agent.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_S = 120
ARCHS = list(range(0, 15625, 1302))  # 13 NB201 cells spread over the space
AGENTS = 6
JOBS_PER_LEASE = 2
REST_LINE = re.compile(r"latfarm REST\s+http://([\d.]+):(\d+)")
GRPC_LINE = re.compile(r"latfarm gRPC\s+([\d.]+):(\d+)")


@dataclass
class Replica:
    name: str
    process: subprocess.Popen
    rest: str = ""
    grpc: str = ""
    log: str = ""

    def http(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.rest, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.grpc)


def _start(name: str, db: str, redis: str, data_dir: Path, admin_key: str) -> Replica:
    env = {**os.environ, "LATFARM_ADMIN_KEY": admin_key, "LATFARM_HTTP_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    env.pop("LATFARM_DB_URL", None)
    command = [str(BIN / "latfarm"), "serve", "--db", db, "--redis", redis, "--http-port", "0", "--grpc-port", "0"]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return Replica(name, process)


def _follow(replica: Replica) -> None:
    """Collect the replica's output; fill in its addresses from the lines ``serve`` prints."""
    for line in replica.process.stdout:
        replica.log += line
        if match := REST_LINE.search(line):
            replica.rest = f"http://{match[1]}:{match[2]}"
        if match := GRPC_LINE.search(line):
            replica.grpc = f"{match[1]}:{match[2]}"


def _wait_ready(replica: Replica) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            pytest.fail(f"replica {replica.name} exited with {replica.process.returncode}:\n{replica.log[-4000:]}")
        if replica.rest and replica.grpc:
            try:
                if httpx.get(f"{replica.rest}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    pytest.fail(f"replica {replica.name} not ready after {STARTUP_S} s:\n{replica.log[-4000:]}")


@pytest.fixture
def admin_key() -> str:
    return f"lf_admin_{secrets.token_hex(16)}"


@pytest.fixture
def replicas(pg_url, redis_url, tmp_path, admin_key):
    """Replicas A and B, each with its own data folder, started on an empty schema together with ``latfarm migrate``
    (as ``kubectl apply`` of the Job and the Deployment at once would): every one of them upgrades the schema."""
    migrate = subprocess.Popen([str(BIN / "latfarm"), "migrate", "--db", pg_url], cwd=ROOT, stdout=subprocess.PIPE)
    started = [_start(name, pg_url, redis_url, tmp_path / name, admin_key) for name in ("a", "b")]
    for replica in started:
        threading.Thread(target=_follow, args=(replica,), daemon=True).start()
    try:
        assert migrate.wait(timeout=STARTUP_S) == 0 and migrate.stdout.read().strip() == b"schema up to date"
        for replica in started:
            _wait_ready(replica)
        yield started
    finally:
        for replica in started:
            replica.process.terminate()
        for replica in started:
            try:
                replica.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()


def _auth(credential: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {credential}")]


def _register(stub, token: str, name: str) -> str:
    descriptor = agent_pb2.DeviceDescriptor(hostname=name, cpu_cores=1, formats=["onnx"], os="Linux")
    response = stub.Register(agent_pb2.RegisterRequest(enrollment_token=token, descriptor=descriptor, name=name))
    return response.credential


def _result(job: agent_pb2.Job, latency_ms: float) -> agent_pb2.Result:
    """A result whose headline figure is its fastest run, ``latency_ms``; the median is 0.5 ms above it."""
    median_ms = latency_ms + 0.5
    stats = agent_pb2.Stats(
        latency_ms=latency_ms,
        statistic="min",
        median_ms=median_ms,
        mean_ms=median_ms,
        min_ms=latency_ms,
        p90_ms=median_ms,
        runs=3,
        round_medians_ms=[median_ms],
    )
    return agent_pb2.Result(
        job_id=job.job_id, ok=True, stats=stats, artifact_sha256=job.artifact_sha256, runtime="onnxruntime", threads=1
    )


def _fetch(stub, credential: str, sha256: str) -> bytes:
    chunks = stub.FetchArtifact(agent_pb2.FetchArtifactRequest(sha256=sha256), metadata=_auth(credential), timeout=120)
    return b"".join(chunk.data for chunk in chunks)


def test_replicas_share_agents_and_never_lease_a_job_twice(replicas, admin_key):
    a, b = replicas
    device = f"replica-{uuid.uuid4().hex[:8]}"
    with a.http(admin_key) as rest_a, b.http(admin_key) as rest_b, a.channel() as grpc_a, b.channel() as grpc_b:
        stubs = (agent_pb2_grpc.AgentServiceStub(grpc_a), agent_pb2_grpc.AgentServiceStub(grpc_b))
        assert rest_a.post("/v1/devices", json={"name": device}).status_code == 201
        token = rest_b.post(f"/v1/devices/{device}/enrollments").json()["token"]

        credentials = [_register(stubs[i % 2], token, f"agent-{i}") for i in range(AGENTS)]
        agents_on_a = rest_a.get(f"/v1/devices/{device}/agents").json()
        assert sorted(agent["name"] for agent in agents_on_a) == sorted(f"agent-{i}" for i in range(AGENTS))

        batch = rest_a.post("/v1/jobs", json={"device": device, "archs": ARCHS})
        assert batch.status_code == 201, batch.text
        batch_id = batch.json()["id"]

        leased: list[agent_pb2.Job] = []
        latencies: dict[str, float] = {}
        lock = threading.Lock()
        start = threading.Barrier(AGENTS)
        give_up = time.monotonic() + 120  # then the assertions below say what was left

        def work(i: int) -> None:
            """Lease alternately from A and B (starting at a different one per agent), report everything to B."""
            credential, calls = credentials[i], 0
            start.wait()
            while True:
                stub = stubs[(i + calls) % 2]
                calls += 1
                request = agent_pb2.LeaseRequest(max_jobs=JOBS_PER_LEASE, wait_seconds=0, formats=["onnx"])
                jobs = list(stub.LeaseJobs(request, metadata=_auth(credential), timeout=120).jobs)
                if not jobs:  # none ready now; a job another replica is exporting is locked, not gone
                    with lock:
                        progress = rest_a.get(f"/v1/jobs/{batch_id}").json()
                    if progress["queued"] == 0 or time.monotonic() > give_up:
                        return
                    time.sleep(0.1)
                    continue
                with lock:
                    leased.extend(jobs)
                    for job in jobs:
                        latencies[job.arch] = 1.0 + len(latencies) / 8
                    results = [_result(job, latencies[job.arch]) for job in jobs]
                report = agent_pb2.ReportRequest(results=results)
                acks = stubs[1].ReportResults(report, metadata=_auth(credential), timeout=60).acks
                assert all(ack.accepted and not ack.duplicate for ack in acks), acks

        with ThreadPoolExecutor(AGENTS) as pool:
            list(pool.map(work, range(AGENTS)))

        counts = Counter(job.job_id for job in leased)
        assert [job_id for job_id, n in counts.items() if n > 1] == [], "a job was leased twice"
        assert len(counts) == len(ARCHS) and all(job.attempt == 1 for job in leased)

        progress = rest_a.get(f"/v1/jobs/{batch_id}", params={"items": True}).json()
        assert (progress["done"], progress["queued"], progress["running"]) == (len(ARCHS), 0, 0)
        assert {item["arch"]: item["latency_ms"] for item in progress["items"]} == latencies

        # An artifact is the same bytes from either replica, though each exports into its own data folder.
        job = leased[0]
        for stub in stubs:
            data = _fetch(stub, credentials[0], job.artifact_sha256)
            assert len(data) == job.artifact_size and hashlib.sha256(data).hexdigest() == job.artifact_sha256

        # A batch submitted on A wakes an agent long-polling B through Redis. Without the wake-up B would answer
        # when the 30 s long-poll ends (a waiting long-poll does not re-check the queue).
        def long_poll() -> list[agent_pb2.Job]:
            request = agent_pb2.LeaseRequest(max_jobs=1, wait_seconds=30, formats=["onnx"])
            return list(stubs[1].LeaseJobs(request, metadata=_auth(credentials[1]), timeout=60).jobs)

        with ThreadPoolExecutor(1) as pool:
            poll_started = time.monotonic()
            waiting = pool.submit(long_poll)
            time.sleep(0.5)
            assert not waiting.done(), "B answered before anything was queued"
            again = rest_a.post("/v1/jobs", json={"device": device, "archs": [job.arch]})
            assert again.status_code == 201, again.text
            woken = waiting.result(timeout=60)
            answered = time.monotonic()
        assert [j.arch for j in woken] == [job.arch]
        assert answered - poll_started < 15, "B answered when its long-poll ended, not on the Redis wake-up"


def test_compose_agent_entrypoint_enrolls_itself_once(replicas, admin_key, tmp_path):
    a, b = replicas
    device = f"compose-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "LATFARM_SERVER": a.rest,
        "LATFARM_API_KEY": admin_key,
        "AGENT_GRPC": b.grpc,
        "AGENT_DEVICE": device,
        "AGENT_NAME": "compose-agent",
        "AGENT_ARGS": "--once",
    }

    def entrypoint(state_dir: Path) -> None:
        run = subprocess.run(
            ["sh", str(ROOT / "deploy" / "agent-entrypoint.sh")],
            env={**env, "AGENT_STATE_DIR": str(state_dir)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stderr[-4000:]

    def agents() -> list[dict]:
        with b.http(admin_key) as rest:
            return rest.get(f"/v1/devices/{device}/agents").json()

    entrypoint(tmp_path / "state1")  # creates the device, takes a token, registers
    assert (tmp_path / "state1" / "state.json").exists()
    first = agents()
    assert [agent["name"] for agent in first] == ["compose-agent"]
    entrypoint(tmp_path / "state1")  # a restart reuses the saved credential
    assert [agent["id"] for agent in agents()] == [agent["id"] for agent in first]
    entrypoint(tmp_path / "state2")  # a second agent: the device exists already (409), still gets a token
    assert len(agents()) == 2
