"""The export worker: exports the models of queued jobs in the background, so agents rarely wait for them.

Every server replica may run one: exports are deterministic and content-addressed, and recording an artifact that
another replica recorded meanwhile returns that row. A model is one arch in one format under one batch's
conditions; once exported, its artifact is recorded on the queued jobs waiting for it
(``job_artifacts.assign_artifact``), which marks them done for the worker. ``LeaseJobs`` still exports what the worker
has not reached in ``INLINE_FORMATS``; a model in another (slow) format is exported only here, and when its export
fails the worker fails its waiting jobs with the reason (for inline formats the lease does that). So is a missing
file of a slow format that an agent's call requested (``ArtifactStore.requested``: the call answers "fetch again").

Slow-format conversions run in child processes, ``conversion_processes`` at once (``conversions.ConversionPool``:
litert-torch holds the GIL, and a crashed conversion fails only its own jobs); inline ones on the worker's thread.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from latfarm.services.core.clock import as_utc, utcnow
from latfarm.services.domain import job_artifacts
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.network_export import INLINE_FORMATS
from latfarm.services.infra.wakeups import LocalNotifier
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Arch, Artifact, JobBatch
from latfarm.services.workers.conversions import ConversionPool, ConversionStopped
from latfarm.services.workers.periodic import PeriodicWorker

log = logging.getLogger(__name__)

CHUNK = 32  # queued jobs read per query
RETRY_FAILED_S = 60.0  # a failed export is tried again by the worker after this long
FULL_SWEEP_S = 60.0  # an idle worker sweeps the queue at least this often, new batches or not
BATCH_SLACK_S = 60.0  # a batch this much older than the last sweep may have been committed after it started
MAX_CONVERSION_PROCESSES = 4  # the default's cap: each litert-torch conversion process holds its own torch in memory


def conversion_processes(configured: int, cpus: int | None = None) -> int:
    """How many slow-format conversions the export worker runs at once: ``configured`` (``export_processes``), or
    when 0 half the CPUs (``cpus``, default the machine's), at least 1 and at most ``MAX_CONVERSION_PROCESSES``."""
    if configured > 0:
        return configured
    return max(1, min(MAX_CONVERSION_PROCESSES, (cpus or os.cpu_count() or 1) // 2))


class Exporter(job_artifacts.ArtifactSource, Protocol):
    """What exporting needs of ``domain.artifacts.ArtifactStore`` (picklable: slow formats export in child
    processes)."""

    def export_file(self, arch: str, fmt: str, conditions: Conditions) -> tuple[str, Path]:
        """Export ``arch`` in ``fmt`` under ``conditions`` to the store; returns (sha256, path)."""

    def requested(self) -> list[str]:
        """The artifacts whose missing file an agent's call left to the worker, oldest first."""

    def restore_file(self, sha256: str, arch: str, fmt: str, settings: dict) -> None:
        """Export recorded artifact ``sha256`` again from its row's fields, checking its content address."""

    def restored(self, sha256: str, error: Exception | None) -> None:
        """Close the request for ``sha256``: made, or failed with ``error``."""


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` on this thread (how inline formats export)."""
    return fn(*args)


def export_one(
    sessions: sessionmaker[Session],
    artifacts: Exporter,
    pending: job_artifacts.PendingExport,
    notifier: LocalNotifier,
    run: Callable[..., Any] = _call,
) -> bool:
    """Export one model outside any transaction (through ``run``: ``ConversionPool.run`` for a slow format), then
    record it and mark its waiting jobs in a short one, and wake the agents of the devices those jobs belong to (they
    were not leasable before). A failure is logged, not raised: a failed export of an ``INLINE_FORMATS`` model is
    tried again by the lease, which fails its jobs with the reason; one of another format (its conversion process
    crashed included) fails its waiting jobs here (``job_artifacts.fail_export``); one the worker's stop cut short
    fails nothing. Returns whether the model is exported and recorded."""
    try:
        run(artifacts.export_file, pending.arch, pending.fmt, pending.conditions)
    except ConversionStopped:
        return False
    except Exception as err:  # noqa: BLE001
        log.warning("export of %s (%s, %s) failed: %s", pending.arch, pending.fmt, pending.conditions.key, err)
        if pending.fmt not in INLINE_FORMATS:
            _fail_jobs(sessions, pending, err)
        return False
    try:
        with transaction(sessions) as session:
            arch = session.get_one(Arch, pending.arch_id)
            artifact = artifacts.ensure(session, arch, pending.fmt, pending.conditions)
            devices = job_artifacts.assign_artifact(session, pending, artifact.sha256)
    except Exception as err:  # noqa: BLE001
        log.warning("recording %s (%s, %s) failed: %s", pending.arch, pending.fmt, pending.conditions.key, err)
        return False
    for device_id in devices:
        notifier.notify(device_id)
    return True


def _fail_jobs(sessions: sessionmaker[Session], pending: job_artifacts.PendingExport, err: Exception) -> None:
    """Fail the jobs waiting for ``pending``, whose export raised ``err``; a failure to do so is logged (the worker
    exports the model again after ``RETRY_FAILED_S``)."""
    try:
        with transaction(sessions) as session:
            failed = job_artifacts.fail_export(session, pending, err)
    except Exception as db_err:  # noqa: BLE001
        log.warning("failing the jobs of %s (%s) failed: %s", pending.arch, pending.fmt, db_err)
        return
    if failed:
        log.info("failed %d jobs of %s (%s): %s", failed, pending.arch, pending.fmt, job_artifacts.export_failure(err))


class ExportWorker(PeriodicWorker):
    """Exports, oldest job first, the models of queued jobs (all devices) that have none yet, and the missing files
    agents' calls requested.

    A sweep pages through the whole queue; slow-format models go to ``processes`` conversion processes while the
    sweep goes on, and it ends when they are done. After a sweep that exported nothing the worker polls every
    ``poll_s`` seconds (the notifier's wake-ups are per device: it cannot wait for "any device got jobs") with a cheap
    query, and sweeps again when a batch was submitted since, a file was requested, or ``FULL_SWEEP_S`` after the
    last sweep.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        read_sessions: sessionmaker[Session],
        artifacts: Exporter,
        notifier: LocalNotifier,
        poll_s: float = 2.0,
        chunk: int = CHUNK,
        processes: int = 1,
    ) -> None:
        """Look for work every ``poll_s`` seconds through ``read_sessions``, ``chunk`` jobs per query; record
        exports through ``sessions`` and wake the agents of the devices they unblock through ``notifier``; convert
        slow formats in up to ``processes`` child processes (started on first use)."""
        super().__init__("export-worker", poll_s, tick_at_start=True)
        self._sessions, self._read_sessions, self._artifacts = sessions, read_sessions, artifacts
        self._chunk, self._notifier = chunk, notifier
        self._pool = ConversionPool(processes)
        self._threads = ThreadPoolExecutor(self._pool.size, thread_name_prefix="export-conversion")
        self._retry_at: dict[tuple[int, str, str], float] = {}  # (arch id, format, conditions key) that failed -> when
        self._swept_at: tuple[datetime, float] | None = None  # when the last sweep started: UTC, monotonic
        self._converted_all = True  # the last sweep left no slow-format model for the next one

    def run_once(self) -> int:
        """One sweep: the requested files, then the queue a chunk of jobs at a time, slow-format models one per
        conversion process (the next sweep takes the next ones: a file requested meanwhile waits one round of
        conversions at most); returns how many files it made (models exported and recorded, requested files
        restored)."""
        now = time.monotonic()
        self._swept_at = (utcnow(), now)
        self._retry_at = {key: at for key, at in self._retry_at.items() if at > now}
        converting: dict[tuple[int, str, str], Future[bool]] = {}
        self._converted_all = True
        restoring = [self._threads.submit(self._restore, sha) for sha in self._artifacts.requested()]
        after, exported = None, 0
        while not self.stopping.is_set():
            with self._read_sessions() as session:
                todo, after = job_artifacts.unexported_jobs(session, self._chunk, after=after)
            if after is None:
                break
            for pending in todo:
                if self.stopping.is_set():
                    break
                key = (pending.arch_id, pending.fmt, pending.conditions.key)
                if key in self._retry_at or key in converting:
                    continue
                if pending.fmt not in INLINE_FORMATS and len(converting) == self._pool.size:
                    self._converted_all = False  # the next sweep, at once, takes the next ones
                elif pending.fmt not in INLINE_FORMATS:
                    args = (self._sessions, self._artifacts, pending, self._notifier, self._pool.run)
                    converting[key] = self._threads.submit(export_one, *args)
                elif export_one(self._sessions, self._artifacts, pending, self._notifier):
                    exported += 1
                else:
                    self._retry_at[key] = time.monotonic() + RETRY_FAILED_S
        for key, future in converting.items():
            if _made(future):
                exported += 1
            elif not self.stopping.is_set():
                self._retry_at[key] = time.monotonic() + RETRY_FAILED_S
        return exported + sum(_made(future) for future in restoring)

    def _restore(self, sha256: str) -> bool:
        """Make the requested missing file of artifact ``sha256`` in a conversion process and close the request;
        returns whether it was made (a request for an artifact no longer recorded is dropped)."""
        with self._read_sessions() as session:
            row = session.get(Artifact, sha256)
            fields = None if row is None else (row.arch.arch, row.format, row.settings)
        if fields is None:
            self._artifacts.restored(sha256, None)
            return False
        try:
            self._pool.run(self._artifacts.restore_file, sha256, *fields)
        except ConversionStopped:
            return False
        except Exception as err:  # noqa: BLE001 - the request is answered with the reason
            log.warning("restoring artifact %s (%s, %s) failed: %s", sha256[:12], fields[1], fields[0], err)
            self._artifacts.restored(sha256, err)
            return False
        self._artifacts.restored(sha256, None)
        return True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the sweep and end the conversion processes (a conversion in progress is abandoned: its jobs stay
        queued for the next start)."""
        self.stopping.set()
        self._pool.close()
        self._threads.shutdown(wait=False, cancel_futures=True)
        super().stop(timeout_s)

    def due(self) -> bool:
        """Whether a sweep may find work: none yet, a file requested, a batch submitted since the last, or
        ``FULL_SWEEP_S`` passed."""
        if self._swept_at is None or time.monotonic() - self._swept_at[1] >= FULL_SWEEP_S:
            return True
        if self._artifacts.requested():
            return True
        with self._read_sessions() as session:
            newest = as_utc(session.scalar(select(func.max(JobBatch.created_at))))
        return newest is not None and newest > self._swept_at[0] - timedelta(seconds=BATCH_SLACK_S)

    def tick(self) -> bool:
        """Sweep when due; the next tick runs at once after a sweep that exported something (which on PostgreSQL
        refreshes the jobs' statistics, ``refresh_statistics``) or left slow-format models for the next."""
        exported = self.run_once() if self.due() else 0
        if exported:
            log.info("exported %d models of queued jobs", exported)
            refresh_statistics(self._sessions)
        return exported > 0 or not self._converted_all


def _made(future: Future[bool]) -> bool:
    """A conversion's outcome: False when the worker's stop cancelled it before it began."""
    try:
        return future.result()
    except CancelledError:
        return False


def refresh_statistics(sessions: sessionmaker[Session]) -> None:
    """``ANALYZE jobs`` on PostgreSQL (nothing on SQLite, whose planner keeps lease order without statistics).

    A sweep marks many queued jobs exported at once, faster than autovacuum re-reads them: with statistics from
    before it (no job exported) or none (a new database), the planner expects about one job ready to lease and
    reads and sorts every queued job of the device per lease instead of reading 16 in lease order (docs/fleet.md,
    "Where a lease's time goes"). A sample of at most 30,000 rows: tens of ms, once per sweep that exported."""
    with transaction(sessions) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("ANALYZE jobs"))
