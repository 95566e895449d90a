"""#18 item 4 over gRPC: unknown enrollment tokens and agent credentials are throttled per client address with
RESOURCE_EXHAUSTED; a registered agent on another address keeps working, the attacker's after the window."""

from __future__ import annotations

import signal
import socket
import time

import grpc
import httpx
import pytest

from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc
from latfarm.services.infra.wakeups import make_notifier
from tests.integration.test_rpc import DESCRIPTOR, register, start_farm, stop_farm
from tests.integration.test_serve import Served
from tests.queue_support import TinyArtifactStore


@pytest.fixture
def farm(sessions, tmp_path):
    farm = start_farm(sessions, TinyArtifactStore(tmp_path), make_notifier(None), auth_failure_limit="4 per 2 seconds")
    yield farm
    stop_farm(farm)


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


def test_guessed_tokens_and_credentials_are_throttled(farm):
    _, good = register(farm)  # over 127.0.0.1
    attacker = farm.stub  # same address as the good agent: the window blocks both, then frees both
    guesses = [
        lambda i=i: attacker.Register(
            agent_pb2.RegisterRequest(enrollment_token=f"lf_enroll_guess{i}", descriptor=DESCRIPTOR), timeout=10
        )
        for i in range(2)
    ] + [
        lambda i=i: attacker.Heartbeat(
            agent_pb2.HeartbeatRequest(), metadata=[("authorization", f"Bearer lf_agent_guess{i}")], timeout=10
        )
        for i in range(2)
    ]
    assert [_code(g) for g in guesses] == [grpc.StatusCode.UNAUTHENTICATED] * 4
    throttled = _code(lambda: attacker.Heartbeat(agent_pb2.HeartbeatRequest(), metadata=good, timeout=10))
    assert throttled == grpc.StatusCode.RESOURCE_EXHAUSTED
    time.sleep(2.1)
    attacker.Heartbeat(agent_pb2.HeartbeatRequest(), metadata=good, timeout=10)  # the window passed


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback: no second client address on this machine")
def test_other_addresses_are_not_throttled(farm):
    _, good = register(farm)
    port = farm.address.rsplit(":", 1)[1]
    for i in range(6):
        code = _code(
            lambda i=i: farm.stub.Heartbeat(
                agent_pb2.HeartbeatRequest(), metadata=[("authorization", f"Bearer lf_agent_guess{i}")], timeout=10
            )
        )
        assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED)
    with grpc.insecure_channel(f"[::1]:{port}") as v6:  # another client address of the same machine
        agent_pb2_grpc.AgentServiceStub(v6).Heartbeat(agent_pb2.HeartbeatRequest(), metadata=good, timeout=10)


def test_grpc_guesses_show_in_metrics_and_count_with_rest(tmp_path):
    """In ``latfarm serve`` gRPC and REST share one count per client, and /metrics shows gRPC's failures."""
    served = Served(
        ["--data-dir", str(tmp_path / "data")],
        LATFARM_AUTH_FAILURE_LIMIT="3 per 60 seconds",
        LATFARM_METRICS_ACCESS="local",  # read without a key: this client's keys are refused while it is throttled
    )
    try:
        with grpc.insecure_channel(served.grpc) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            codes = [
                _code(
                    lambda i=i: stub.Heartbeat(
                        agent_pb2.HeartbeatRequest(), metadata=[("authorization", f"Bearer lf_agent_x{i}")], timeout=10
                    )
                )
                for i in range(4)
            ]
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]
        admin = {"Authorization": f"Bearer {served.key}"}
        assert httpx.get(f"{served.rest}/v1/devices", headers=admin, timeout=10).status_code == 429
        metrics = httpx.get(f"{served.rest}/metrics", timeout=10).text
        assert 'latfarm_auth_failures_total{surface="grpc"} 3.0' in metrics, metrics
        assert 'latfarm_auth_throttled_total{surface="grpc"} 1.0' in metrics
        assert 'latfarm_auth_throttled_total{surface="rest"} 1.0' in metrics
    finally:
        served.stop(signal.SIGINT)
