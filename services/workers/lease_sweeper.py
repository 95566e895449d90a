"""The lease sweeper: requeues (or fails) jobs whose lease lapsed, on every device.

Leasing also requeues lapsed jobs of the leasing agent's device; the sweeper covers devices whose agents all went
away, so their batches still finish (failed, with the reason). Safe to run on every replica.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from latfarm.services.core.clock import utcnow
from latfarm.services.domain import queue
from latfarm.services.infra.wakeups import LocalNotifier
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Job, JobState
from latfarm.services.workers.periodic import PeriodicWorker

log = logging.getLogger(__name__)


class LeaseSweeper(PeriodicWorker):
    """Sweeps lapsed leases every ``lease_seconds / 2`` (at least every second)."""

    def __init__(
        self, sessions: sessionmaker[Session], notifier: LocalNotifier, *, lease_seconds: float, max_attempts: int
    ) -> None:
        """Requeue or fail (after ``max_attempts``) lapsed leases, waking the devices' agents via ``notifier``."""
        super().__init__("latfarm-lease-sweeper", max(lease_seconds / 2, 1))
        self.sessions, self.notifier, self.max_attempts = sessions, notifier, max_attempts

    def run_once(self) -> int:
        """Requeue (or fail) every lapsed lease and wake the agents of the devices concerned; returns how many."""
        now = utcnow()
        with self.sessions() as session:
            devices = session.scalars(
                select(Job.device_id).where(Job.state == JobState.running, Job.lease_expires_at < now).distinct()
            ).all()
        swept = 0
        for device_id in devices:
            with transaction(self.sessions) as session:
                swept += queue.requeue_expired(session, max_attempts=self.max_attempts, now=now, device_id=device_id)
            self.notifier.notify(device_id)
        if swept:
            log.info("requeued or failed %d lapsed job leases", swept)
        return swept
