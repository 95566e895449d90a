"""The agent's gRPC connection: channel, credential metadata, and retries with backoff while the server is away."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from latfarm.agents.errors import AgentError, Stopped, Unauthenticated
from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc

T = TypeVar("T")
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
CALL_TIMEOUT_S = 30.0


DEFAULT_GRPC_PORT = 50051  # the server's default LATFARM_GRPC_PORT
SERVER_FORM = f"expected HOST:PORT of the server's gRPC port (default {DEFAULT_GRPC_PORT}), no scheme"
HTTP1_HINT = f"that port speaks HTTP/1 (the REST API?); the agents' gRPC port is {DEFAULT_GRPC_PORT} by default"
WEB_SCHEMES = ("http://", "https://", "grpc://", "grpcs://")


def server_address(text: str) -> str:
    """``text`` checked as a gRPC target: ``HOST:PORT`` (``[v6]:PORT``, port 1-65535), or a gRPC ``unix:`` /
    ``dns:`` target as is. ``ValueError`` says the form (and the address without its scheme when it has one)."""
    if text.startswith(("unix:", "dns:")):
        return text
    for scheme in WEB_SCHEMES:
        if text.startswith(scheme):
            bare = text[len(scheme) :].rstrip("/")
            raise ValueError(f"{SERVER_FORM}: try --server {bare}" + (" --tls" if scheme.endswith("s://") else ""))
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in text:
        raise ValueError(f"{SERVER_FORM}; got {text!r}")
    return text


BACKOFF_CAP_S = 5.0  # the longest wait between retries: an agent is back within seconds of its server
RETRY_AFTER_KEY = "retry-after-ms"  # a busy server's hint (trailing metadata of RESOURCE_EXHAUSTED)


def retry_after_s(err: grpc.RpcError) -> float | None:
    """The wait a busy server asked for, in seconds, with jitter (100-150% of the hint, so agents refused together
    come back spread out); None when ``err`` carries no hint."""
    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    hint = dict(err.trailing_metadata() or ()).get(RETRY_AFTER_KEY)
    try:
        millis = float(hint) if hint is not None else None
    except ValueError:
        return None
    return None if millis is None or not 0 <= millis < float("inf") else millis / 1000 * random.uniform(1.0, 1.5)


class Backoff:
    """Exponential backoff with jitter: about 0.5 s, 1 s, 2 s ... up to ``cap_s``."""

    def __init__(self, base_s: float = 0.5, cap_s: float = BACKOFF_CAP_S):
        """Start at ``base_s``."""
        self.base_s, self.cap_s, self.failures = base_s, cap_s, 0

    def next_delay(self) -> float:
        """The next wait in seconds: doubling up to ``cap_s``, each a random 50-100% of that (agents that lost the
        same server spread their reconnects)."""
        delay = min(self.cap_s, self.base_s * 2 ** min(self.failures, 32))
        self.failures += 1
        return delay * random.uniform(0.5, 1.0)


class Connection:
    """The agent's calls to the server, each retried as its role needs; ``credential`` goes with every call after
    registration."""

    def __init__(
        self,
        address: str,
        stop: threading.Event,
        credential: str | None = None,
        log=print,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
    ):
        """Plaintext, or TLS when ``tls`` or ``root_certificates`` (PEM; default: the system's roots) are given."""
        self.address = address
        self.stop = stop
        self.credential = credential
        self.log = log
        options = [("grpc.keepalive_time_ms", 30_000), ("grpc.max_receive_message_length", 64 << 20)]
        if tls or root_certificates:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self.channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(address, options=options)
        self.stub = agent_pb2_grpc.AgentServiceStub(self.channel)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def _metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.credential}")] if self.credential else []

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        """Call until it succeeds, waiting with backoff while the server is unreachable; on shutdown, stop retrying
        (raise Stopped) but still make the first try, so finished results get reported. A success after logged
        failures is logged too (``server reachable again``)."""
        backoff, failures, since = Backoff(), 0, 0.0
        while True:
            try:
                answer = call()
                if failures:
                    waited = time.monotonic() - since
                    self.log(f"{what}: server reachable again after {failures} failed tries ({waited:.0f} s)")
                return answer
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.UNAUTHENTICATED:
                    raise Unauthenticated(f"{what}: {err.details()}") from err
                if "Failed parsing HTTP/2" in (err.details() or ""):  # an HTTP/1 server answered
                    raise AgentError(f"{self.address}: {HTTP1_HINT}") from err
                if code not in RETRYABLE:
                    raise
                if (delay := retry_after_s(err)) is None:  # a busy server's hint is flow control, not a failure
                    since = since if failures else time.monotonic()
                    delay, failures = backoff.next_delay(), failures + 1
                    self.log(f"{what}: server unavailable ({code.name}: {err.details()}); retrying in {delay:.1f} s")
                if self.stop.wait(delay):
                    raise Stopped(what) from err

    def register(self, token: str, descriptor: agent_pb2.DeviceDescriptor, name: str) -> agent_pb2.RegisterResponse:
        """Register with an enrollment token; retried while the server is unreachable."""
        request = agent_pb2.RegisterRequest(enrollment_token=token, descriptor=descriptor, name=name)
        return self._retrying("register", lambda: self.stub.Register(request, timeout=CALL_TIMEOUT_S))

    def heartbeat(self, job_ids: list[str], state: str) -> agent_pb2.HeartbeatResponse:
        """One heartbeat, no retry (the next one comes soon)."""
        request = agent_pb2.HeartbeatRequest(job_ids=job_ids, state=state)
        return self.stub.Heartbeat(request, metadata=self._metadata(), timeout=CALL_TIMEOUT_S)

    def lease(self, max_jobs: int, wait_s: float, formats: list[str]) -> agent_pb2.LeaseResponse:
        """Long-poll for jobs; a shutdown cancels the wait at once."""
        request = agent_pb2.LeaseRequest(max_jobs=max_jobs, wait_seconds=wait_s, formats=formats)

        def call() -> agent_pb2.LeaseResponse:
            future = self.stub.LeaseJobs.future(request, metadata=self._metadata(), timeout=wait_s + CALL_TIMEOUT_S)
            while not future.done():
                if self.stop.wait(0.2):
                    future.cancel()
                    raise Stopped("lease")
            return future.result()

        return self._retrying("lease", call)

    def fetch(self, sha256: str) -> Iterator[bytes]:
        """The artifact's bytes, chunk by chunk; a broken stream resumes from the last offset."""
        offset = 0
        backoff = Backoff()
        while True:
            request = agent_pb2.FetchArtifactRequest(sha256=sha256, offset=offset)
            try:
                for chunk in self.stub.FetchArtifact(request, metadata=self._metadata(), timeout=300):
                    if chunk.offset != offset:
                        raise ValueError(f"artifact {sha256}: chunk at offset {chunk.offset}, expected {offset}")
                    yield chunk.data
                    offset += len(chunk.data)
                return
            except grpc.RpcError as err:
                if err.code() not in RETRYABLE:
                    raise
                self.log(f"fetch {sha256[:12]}: {err.code().name} at offset {offset}; resuming")
                if self.stop.wait(backoff.next_delay()):
                    raise Stopped("fetch") from err

    def report(self, request: agent_pb2.ReportRequest) -> agent_pb2.ReportResponse:
        """Report results; retried until the server takes them (a repeated report is acknowledged once)."""
        return self._retrying(
            "report", lambda: self.stub.ReportResults(request, metadata=self._metadata(), timeout=CALL_TIMEOUT_S)
        )

    def report_once(self, request: agent_pb2.ReportRequest, timeout_s: float = 5.0) -> agent_pb2.ReportResponse:
        """Report with one try and a short deadline (from the watchdog, before the agent exits)."""
        return self.stub.ReportResults(request, metadata=self._metadata(), timeout=timeout_s)

    def release(self, job_ids: list[str], timeout_s: float = 5.0) -> int:
        """Hand jobs back (at shutdown: one try, short deadline)."""
        request = agent_pb2.ReleaseRequest(job_ids=job_ids)
        return self.stub.ReleaseJobs(request, metadata=self._metadata(), timeout=timeout_s).released

    def release_all(self) -> int:
        """Hand back every job this agent holds (at start: the leases of an earlier run); retried while the server
        is unreachable."""
        request = agent_pb2.ReleaseRequest(all_held=True)
        return self._retrying(
            "release", lambda: self.stub.ReleaseJobs(request, metadata=self._metadata(), timeout=CALL_TIMEOUT_S)
        ).released
