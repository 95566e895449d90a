"""The periodic-worker helper under every background loop: timing, a failing tick, a prompt stop."""

from __future__ import annotations

import logging
import time

from latfarm.services.workers.periodic import PeriodicWorker


class Counting(PeriodicWorker):
    """Counts its ticks; the first one fails."""

    def __init__(self, interval_s: float, **kwargs) -> None:
        super().__init__("counting", interval_s, **kwargs)
        self.ticks = 0

    def run_once(self) -> None:
        self.ticks += 1
        if self.ticks == 1:
            raise RuntimeError("boom")


def _wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_failing_tick_is_logged_and_the_loop_goes_on(caplog):
    worker = Counting(0.01)
    with caplog.at_level(logging.ERROR, logger="latfarm.services.workers.periodic"):
        worker.start()
        _wait_for(lambda: worker.ticks >= 3)
        worker.stop()
    assert not worker.running
    assert [r.getMessage() for r in caplog.records] == ["counting: tick failed"]


def test_first_tick_after_one_interval_unless_asked_at_start():
    waiting, eager = Counting(60), Counting(60, tick_at_start=True)
    for worker in (waiting, eager):
        worker.start()
    _wait_for(lambda: eager.ticks == 1)
    started = time.monotonic()
    for worker in (waiting, eager):
        worker.stop()  # no waiting out the minute-long interval
    assert time.monotonic() - started < 1.0
    assert (waiting.ticks, eager.ticks) == (0, 1)


def test_stop_before_start_is_harmless():
    worker = Counting(1)
    worker.stop()
    assert not worker.running
