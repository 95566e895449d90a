"""The gRPC server's thread pool: calls get a thread by kind (heartbeats first), in order within a kind."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest

from latfarm.services.rpc.capacity import MAX_RETRY_MS, MIN_RETRY_MS, Busy, Kind, Limits
from latfarm.services.rpc.pool import CallPool


def _blocked_pool(workers: int = 1) -> tuple[CallPool, threading.Event]:
    """A pool whose threads all wait for the returned event, by kind of the submission's first argument."""
    pool = CallPool(workers)
    release = threading.Event()
    started = threading.Barrier(workers + 1)

    def hold(_kind: Kind) -> None:
        started.wait()
        release.wait()

    for _ in range(workers):
        pool.submit_as(Kind.WRITE, hold, Kind.WRITE)
    started.wait(5)
    return pool, release


def test_a_free_thread_goes_to_the_oldest_call_of_the_highest_kind():
    pool, release = _blocked_pool()
    order: list[tuple[Kind, int]] = []
    queued = [(Kind.LEASE, 0), (Kind.WRITE, 0), (Kind.LEASE, 1), (Kind.HEARTBEAT, 0), (Kind.WRITE, 1)]
    futures = [pool.submit_as(kind, lambda kind, n: order.append((kind, n)), kind, n) for kind, n in queued]
    assert pool.queued() == len(queued)
    release.set()
    for future in futures:
        future.result(timeout=5)
    assert order == [(Kind.HEARTBEAT, 0), (Kind.WRITE, 0), (Kind.WRITE, 1), (Kind.LEASE, 0), (Kind.LEASE, 1)]
    pool.shutdown()


def test_results_and_errors_reach_the_future_and_threads_stay_within_the_limit():
    pool = CallPool(3, prefix="pool-test")
    assert [f.result(5) for f in [pool.submit(pow, 2, n) for n in range(20)]] == [2**n for n in range(20)]
    with pytest.raises(ZeroDivisionError):
        pool.submit(divmod, 1, 0).result(5)
    assert len([t for t in threading.enumerate() if t.name.startswith("pool-test_")]) <= 3
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(pow, 2, 2)


def test_shutdown_cancels_what_is_queued_when_asked():
    pool, release = _blocked_pool()
    queued = pool.submit_as(Kind.LEASE, pow, 2, 2)
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    with pytest.raises(CancelledError):
        queued.result(5)


def test_a_full_queue_refuses_its_kind_with_a_retry_hint():
    pool, release = _blocked_pool()
    pool.limits = {kind: Limits(queued=1, wait_s=5.0) for kind in Kind}
    queued = pool.submit_as(Kind.LEASE, pow, 2, 3)
    with pytest.raises(Busy) as refused:
        pool.submit_as(Kind.LEASE, pow, 2, 4)
    assert refused.value.kind == Kind.LEASE and MIN_RETRY_MS <= refused.value.retry_after_ms <= MAX_RETRY_MS
    heartbeat = pool.submit_as(Kind.HEARTBEAT, pow, 2, 1)  # another kind's queue has room
    assert pool.busy(Kind.LEASE).retry_after_ms >= MIN_RETRY_MS
    release.set()
    assert (heartbeat.result(5), queued.result(5)) == (2, 8)
    pool.shutdown()
