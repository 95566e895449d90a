"""The gRPC server's thread pool: calls get a thread by kind (heartbeats first), in order within a kind."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import grpc
import pytest

from latfarm.proto.v1 import agent_pb2
from latfarm.services.rpc.capacity import Kind
from latfarm.services.rpc.pool import CallPool, call_kind
from latfarm.services.rpc.servicer import CALL_KINDS


def _blocked_pool(workers: int = 1) -> tuple[CallPool, threading.Event]:
    """A pool whose threads all wait for the returned event, by kind of the submission's first argument."""
    pool = CallPool(workers, lambda args: args[0])
    release = threading.Event()
    started = threading.Barrier(workers + 1)

    def hold(_kind: Kind) -> None:
        started.wait()
        release.wait()

    for _ in range(workers):
        pool.submit(hold, Kind.WRITE)
    started.wait(5)
    return pool, release


def test_a_free_thread_goes_to_the_oldest_call_of_the_highest_kind():
    pool, release = _blocked_pool()
    order: list[tuple[Kind, int]] = []
    queued = [(Kind.LEASE, 0), (Kind.WRITE, 0), (Kind.LEASE, 1), (Kind.HEARTBEAT, 0), (Kind.WRITE, 1)]
    futures = [pool.submit(lambda kind, n: order.append((kind, n)), kind, n) for kind, n in queued]
    assert pool.queued() == len(queued)
    release.set()
    for future in futures:
        future.result(timeout=5)
    assert order == [(Kind.HEARTBEAT, 0), (Kind.WRITE, 0), (Kind.WRITE, 1), (Kind.LEASE, 0), (Kind.LEASE, 1)]
    pool.shutdown()


def test_results_and_errors_reach_the_future_and_threads_stay_within_the_limit():
    pool = CallPool(3, lambda _args: Kind.WRITE, prefix="pool-test")
    assert [f.result(5) for f in [pool.submit(pow, 2, n) for n in range(20)]] == [2**n for n in range(20)]
    with pytest.raises(ZeroDivisionError):
        pool.submit(divmod, 1, 0).result(5)
    assert len([t for t in threading.enumerate() if t.name.startswith("pool-test_")]) <= 3
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(pow, 2, 2)


def test_shutdown_cancels_what_is_queued_when_asked():
    pool, release = _blocked_pool()
    queued = pool.submit(pow, Kind.LEASE, 2)
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    with pytest.raises(CancelledError):
        queued.result(5)


def test_call_kinds_name_agent_service_methods():
    methods = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].methods_by_name
    assert set(CALL_KINDS) <= set(methods)


class _Service:
    """A two-method gRPC service on raw bytes: ``Hold`` takes its thread until ``release`` lets one call go."""

    def __init__(self) -> None:
        self.release = threading.Semaphore(0)
        self.started: list[str] = []

    def Hold(self, _request: bytes, _context) -> bytes:  # noqa: N802 - gRPC method names
        self.started.append("hold")
        self.release.acquire(timeout=20)
        return b"held"

    def Ping(self, _request: bytes, _context) -> bytes:  # noqa: N802
        self.started.append("ping")
        return b"pong"


def test_a_grpc_server_gives_a_freed_thread_to_the_higher_kind():
    """grpc hands the pool the servicer's bound method, so ``call_kind`` tells calls apart: with the one thread held,
    a later high-kind call overtakes a queued low-kind one (a FIFO pool would give the thread to the ``Hold``)."""
    service = _Service()
    pool = CallPool(1, call_kind(service, {"Hold": Kind.LEASE, "Ping": Kind.HEARTBEAT}))
    server = grpc.server(pool)
    handlers = {name: grpc.unary_unary_rpc_method_handler(getattr(service, name)) for name in ("Hold", "Ping")}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Service", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    hold, ping = (channel.unary_unary(f"/test.Service/{name}") for name in ("Hold", "Ping"))
    try:
        first = hold.future(b"", timeout=30)
        _until(lambda: service.started == ["hold"])
        second = hold.future(b"", timeout=30)
        _until(lambda: pool.queued() == 1)
        pinged = ping.future(b"", timeout=30)
        _until(lambda: pool.queued() == 2)
        service.release.release()
        assert first.result(timeout=10) == b"held"
        assert pinged.result(timeout=10) == b"pong"
        service.release.release()
        assert second.result(timeout=10) == b"held"
        assert service.started == ["hold", "ping", "hold"]
    finally:
        channel.close()
        server.stop(None)
        pool.shutdown(wait=False, cancel_futures=True)


def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
