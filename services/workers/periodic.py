"""The one periodic-worker helper every background loop of the server is built on.

A worker is a daemon thread that runs ``tick`` every ``interval_s`` seconds until ``stop``. An exception in one tick
is logged and the loop goes on: the next tick retries. Subclasses implement ``run_once`` (one round of work, which
tests call directly) and may override ``tick`` to decide when the next round runs.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class PeriodicWorker:
    """Runs ``tick`` on a daemon thread named ``name`` every ``interval_s`` seconds, the first after one interval
    (or at once with ``tick_at_start``), until ``stop``."""

    def __init__(self, name: str, interval_s: float, *, tick_at_start: bool = False) -> None:
        """A worker not started yet; see the class for the arguments."""
        self.name = name
        self.interval_s = interval_s
        self.tick_at_start = tick_at_start
        self.stopping = threading.Event()  # set by ``stop``; long ticks check it to end early
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def run_once(self) -> object:
        """One round of work."""
        raise NotImplementedError

    def tick(self) -> bool:
        """One step of the loop; returns whether the next step runs at once (more work is waiting)."""
        self.run_once()
        return False

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the tick in progress (if any), waiting for it up to ``timeout_s``."""
        self.stopping.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=timeout_s)

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        return self._thread.is_alive()

    def _loop(self) -> None:
        if not self.tick_at_start and self.stopping.wait(self.interval_s):
            return
        while not self.stopping.is_set():
            try:
                again = self.tick()
            except Exception:  # noqa: BLE001 - keep the worker alive; the next tick retries
                log.exception("%s: tick failed", self.name)
                again = False
            if not again:
                self.stopping.wait(self.interval_s)
