"""Admission to the database for agent calls: heartbeats first, then arrival order, the lease reserve, refusals with a
retry hint."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import pytest

from latfarm.services.rpc.capacity import (
    MAX_RETRY_MS,
    MIN_RETRY_MS,
    Backoff,
    Busy,
    Capacity,
    Kind,
    Limits,
    default_capacity,
)

OPEN = {kind: Limits(queued=100, wait_s=5.0) for kind in Kind}


def _enter_later(capacity: Capacity, kind: Kind, order: list[Kind], hold_s: float = 0.0) -> threading.Thread:
    def run() -> None:
        with capacity.slot(kind):
            order.append(kind)
            time.sleep(hold_s)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_queued(capacity: Capacity, n: int) -> None:
    deadline = time.monotonic() + 5
    while capacity.queued() < n:
        assert time.monotonic() < deadline, "callers did not queue"
        time.sleep(0.01)


def test_leases_leave_the_reserve_to_heartbeats_and_reports():
    capacity = Capacity(4, reserve=1, limits={**OPEN, Kind.LEASE: Limits(queued=0, wait_s=0.0)})
    with ExitStack() as held:
        for _ in range(3):
            held.enter_context(capacity.slot(Kind.LEASE))
        with pytest.raises(Busy) as refused:
            held.enter_context(capacity.slot(Kind.LEASE))
        assert refused.value.kind == Kind.LEASE and MIN_RETRY_MS <= refused.value.retry_after_ms <= MAX_RETRY_MS
        with capacity.slot(Kind.HEARTBEAT):  # the reserved slot
            assert capacity.in_use() == 4
    assert capacity.in_use() == 0


def test_a_freed_slot_goes_to_a_heartbeat_first_then_to_writes_and_leases_in_arrival_order():
    capacity = Capacity(1, reserve=0, limits=OPEN)
    order: list[Kind] = []
    with capacity.slot(Kind.WRITE):
        threads = []
        for n, kind in enumerate((Kind.LEASE, Kind.WRITE, Kind.LEASE, Kind.HEARTBEAT), start=1):
            threads.append(_enter_later(capacity, kind, order))
            _wait_queued(capacity, n)
    for thread in threads:
        thread.join(5)
    assert order == [Kind.HEARTBEAT, Kind.LEASE, Kind.WRITE, Kind.LEASE]


def test_while_leases_hold_their_share_a_write_goes_before_an_earlier_lease():
    capacity = Capacity(2, reserve=1, limits=OPEN)
    order: list[Kind] = []
    with ExitStack() as lease:
        lease.enter_context(capacity.slot(Kind.LEASE))  # the one slot leases may hold
        with capacity.slot(Kind.WRITE):
            threads = [_enter_later(capacity, Kind.LEASE, order)]
            _wait_queued(capacity, 1)
            threads.append(_enter_later(capacity, Kind.WRITE, order, hold_s=0.2))
            _wait_queued(capacity, 2)
        deadline = time.monotonic() + 5
        while not order and time.monotonic() < deadline:
            time.sleep(0.01)
        assert order == [Kind.WRITE] and capacity.queued() == 1  # the lease waits for a lease's slot
    for thread in threads:
        thread.join(5)
    assert order == [Kind.WRITE, Kind.LEASE] and capacity.in_use() == 0


def test_a_call_that_waits_past_its_limit_or_finds_the_queue_full_is_refused():
    limits = {**OPEN, Kind.LEASE: Limits(queued=1, wait_s=0.2)}
    capacity = Capacity(1, reserve=0, limits=limits)
    with capacity.slot(Kind.WRITE):
        started = time.monotonic()
        with pytest.raises(Busy), capacity.slot(Kind.LEASE):
            pass
        assert 0.15 < time.monotonic() - started < 2
        waiting = _enter_later(capacity, Kind.LEASE, [])
        _wait_queued(capacity, 1)
        started = time.monotonic()
        with pytest.raises(Busy, match="retry in"), capacity.slot(Kind.LEASE, timeout_s=5):
            pass  # the one queue place is taken: refused at once
        assert time.monotonic() - started < 0.1
    waiting.join(5)
    assert capacity.in_use() == 0


def test_the_default_reserves_a_quarter_and_bounds_queues_by_threads():
    capacity = default_capacity(8, threads=256)
    assert (capacity.slots, capacity.reserve, capacity.limits[Kind.LEASE].queued) == (8, 2, 256)
    assert default_capacity(1, threads=4).reserve == 0
    with pytest.raises(ValueError):
        Capacity(2, reserve=2, limits=OPEN)


def test_the_backoff_hint_grows_with_recent_refusals_and_decays():
    backoff = Backoff(1_000, room=100, window_s=0.5)
    assert backoff.refused() == 1_000  # a lone refusal: the base hint
    hints = [backoff.refused() for _ in range(199)]
    assert hints == sorted(hints) and 2_800 <= hints[-1] <= 3_000  # ~198 earlier refusals over room 100: ~3x
    crowded = Backoff(1_000, room=1)
    assert max(crowded.refused() for _ in range(20)) == MAX_RETRY_MS
    time.sleep(2.5)  # five time constants: the crowd is forgotten
    assert backoff.refused() <= 1_020
