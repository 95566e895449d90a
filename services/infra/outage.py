"""One warning per outage of an optional dependency (Redis), however often it is tried while down."""

from __future__ import annotations

import logging
import threading


class Outage:
    """Tracks whether a dependency is down: its first failure logs a warning, later ones nothing until a success
    logs that it is back."""

    def __init__(self, name: str, log: logging.Logger) -> None:
        """Name the dependency ``name`` in the lines written to ``log``."""
        self.name, self.log = name, log
        self.down = False
        self._lock = threading.Lock()

    def failed(self, what: str, err: Exception) -> None:
        """``what`` failed with ``err``: a warning when the dependency was up until now."""
        with self._lock:
            first, self.down = not self.down, True
        if first:
            self.log.warning("%s unavailable (%s failed: %s); %s", self.name, what, err, "quiet until it is back")

    def succeeded(self) -> None:
        """A call worked: an info line when the dependency was down."""
        if not self.down:
            return
        with self._lock:
            back, self.down = self.down, False
        if back:
            self.log.info("%s reachable again", self.name)
