"""The adapt worker: advances adaptations waiting on measurements (``domain.adaptation.advance_all``)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from latfarm.services.domain.adaptation import advance_all
from latfarm.services.workers.periodic import PeriodicWorker


class AdaptWorker(PeriodicWorker):
    """Advances adaptations every ``interval_s`` seconds, each with its space's predictor from
    ``predictor_loader(space)``, and calls ``on_active`` after a pass that activated any (the prediction service
    builds their tables then, before the first request asks)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        predictor_loader: Callable[[str], object],
        interval_s: float = 1.0,
        on_active: Callable[[], object] | None = None,
    ) -> None:
        """Advance through ``sessions`` every ``interval_s`` seconds."""
        super().__init__("adapt-worker", interval_s)
        self.sessions, self.predictor_loader, self.on_active = sessions, predictor_loader, on_active

    def run_once(self) -> int:
        """One pass over the waiting adaptations; returns how many became active."""
        activated = advance_all(self.sessions, self.predictor_loader)
        if activated and self.on_active is not None:
            self.on_active()
        return activated
