"""The agent loop over a connection: heartbeat in the background; lease, fetch, measure, report in the foreground."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import grpc

from latfarm.agents.backends import Backend
from latfarm.agents.cache import ArtifactCache, ArtifactError
from latfarm.agents.conditions import JobConditions
from latfarm.agents.connection import Connection, retry_after_s
from latfarm.agents.descriptor import ClockState
from latfarm.agents.errors import Stopped, Unauthenticated
from latfarm.agents.measurement import (
    FETCH,
    LOAD,
    RUN,
    TIMEOUT,
    BatchMeasurer,
    Interrupted,
    MeasureSettings,
    ModelResult,
    ModelTask,
    unsteady_share,
)
from latfarm.agents.options import AgentOptions
from latfarm.agents.report import MeasuredWith, provenance_message, result_message
from latfarm.proto.v1 import agent_pb2
from latfarm.proto.v1.names import STATISTICS

LEASE_WAIT_S = 30.0  # long-poll: the server answers when work comes for the device (idle, it reads nothing)
# Results measured are held back until this long after the last report (or the group's end): a fast device sends a
# report per leased group, a slow one a report every few seconds, so a batch's progress moves as it is measured.
REPORT_EVERY_S = 1.5
# The seconds of rounds a part of a group takes (``BatchMeasurer.part_s``): each part re-measures its unsteady models
# after a pause of its own, so smaller parts would show progress sooner at the cost of more pauses on a busy machine.
PART_S = 2.0
HANG_EXIT_CODE = 3
NOISY_SHARE, NOISY_MIN_MODELS = 0.5, 4  # warn when at least half of a batch of 4+ models is unsteady


class HeldJobs:
    """Job ids the agent holds (their leases are extended by heartbeats), and those the server says it lost."""

    def __init__(self):
        """Nothing held, nothing lost."""
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._lost: set[str] = set()

    def add(self, ids: list[str]) -> None:
        """Hold newly leased jobs."""
        with self._lock:
            self._held.update(ids)
            self._lost.difference_update(ids)  # a lost job can be leased to us again (next attempt)

    def drop(self, ids: list[str]) -> None:
        """Stop holding jobs (reported or handed back)."""
        with self._lock:
            self._held.difference_update(ids)

    def lose(self, ids: list[str]) -> None:
        """Jobs the server took back: no longer held, and their results are not reported."""
        with self._lock:
            self._held.difference_update(ids)
            self._lost.update(ids)

    def is_lost(self, job_id: str) -> bool:
        """Whether the server took this job back."""
        with self._lock:
            return job_id in self._lost

    def snapshot(self) -> list[str]:
        """The held job ids, sorted."""
        with self._lock:
            return sorted(self._held)


class Heartbeat:
    """Background heartbeats at the server's interval; extends held leases, learns of lost ones."""

    def __init__(self, conn: Connection, held: HeldJobs, interval_s: float, log: Callable[[str], None]):
        """Beat every ``interval_s`` seconds (at least 0.2 s) until the server tells another interval."""
        self.conn, self.held, self.interval_s, self.log = conn, held, max(0.2, interval_s), log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latfarm-heartbeat", daemon=True)

    def start(self) -> None:
        """Start beating in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (waits up to 5 s for a beat in flight)."""
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:  # the first beat goes at once: it tells the interval, and renews leases after a restart
            self._beat()
            if self._stop.wait(self.interval_s):
                return

    def _beat(self) -> None:
        """One heartbeat; a busy server's refusal is retried after its hint, until the next beat is due."""
        due = time.monotonic() + self.interval_s
        while True:
            held = self.held.snapshot()
            try:
                response = self.conn.heartbeat(held, "measuring" if held else "idle")
                break
            except grpc.RpcError as err:
                delay = retry_after_s(err)
                if delay is None:
                    self.log(f"heartbeat failed: {err.code().name}")
                    return
                if time.monotonic() + delay >= due or self._stop.wait(delay):
                    return
        if response.lost_job_ids:
            count = len(response.lost_job_ids)
            self.log(f"{count} job(s) no longer held (cancelled, or the lease lapsed): dropping them")
            self.held.lose(list(response.lost_job_ids))
        if response.heartbeat_interval_s > 0:
            self.interval_s = response.heartbeat_interval_s


def job_settings(
    agent: MeasureSettings, requested: agent_pb2.MeasureSettings, log: Callable[[str], None]
) -> MeasureSettings:
    """The agent's measurement settings with a job's own applied (each result reports what was used); settings the
    agent cannot use are logged and ignored."""
    statistic = requested.statistic
    if statistic and statistic not in STATISTICS:
        log(f"ignoring the job's unknown statistic {statistic!r}: using {agent.statistic!r}")
        statistic = ""
    try:
        applied = agent.override(
            runs_per_round=requested.runs_per_round,
            rounds=requested.rounds,
            threads=requested.threads,
            timeout_s=requested.timeout_s,
            statistic=statistic,
        )
        return replace(applied, warmup_runs=requested.warmup_runs) if requested.HasField("warmup_runs") else applied
    except ValueError as err:
        log(f"ignoring the job's measurement settings ({err}): using the agent's own")
        return agent


class AgentLoop:
    """Leases batches of jobs, measures them and reports, while a heartbeat keeps the leases alive."""

    def __init__(
        self,
        conn: Connection,
        backends: dict[str, Backend],
        cache: ArtifactCache,
        options: AgentOptions,
        stop: threading.Event,
        heartbeat_interval_s: float,
        affinity: list[int] | None = None,
        log: Callable[[str], None] = print,
    ):
        """``backends`` by format; ``affinity``: the CPUs the process is pinned to (empty: not pinned)."""
        self.conn, self.backends, self.cache, self.options, self.stop = conn, backends, cache, options, stop
        self.affinity = affinity or []
        self.log = log
        self.held = HeldJobs()
        self.heartbeat = Heartbeat(conn, self.held, heartbeat_interval_s, log)
        self.processed = 0

    def run(self) -> None:
        """Lease and measure until stopped (or, with ``once``, until the queue is empty)."""
        once = self.options.once
        try:
            earlier = self.conn.release_all()  # this process holds nothing yet: any lease is an earlier run's
        except Stopped:
            return
        if earlier:
            self.log(f"handed back {earlier} job(s) leased by an earlier run of this agent")
        self.heartbeat.start()
        try:
            while not self.stop.is_set():
                try:
                    response = self.conn.lease(
                        self.options.max_jobs, 1.0 if once else LEASE_WAIT_S, sorted(self.backends)
                    )
                except Stopped:
                    break
                if not response.jobs:
                    if once:
                        break
                    continue
                self.held.add([job.job_id for job in response.jobs])
                self.log(f"leased {len(response.jobs)} job(s)")
                try:
                    self.process(list(response.jobs))
                except (Interrupted, Stopped):
                    break
                except grpc.RpcError as err:  # the server failed on a call: hand the batch back and go on
                    self.log(f"server error {err.code().name}: {err.details()}; handing the batch back")
                    self.stop.wait(1.0)
                finally:
                    self.release_held()
                if self.options.cooldown_s:
                    self.stop.wait(self.options.cooldown_s)
        finally:
            self.heartbeat.stop()

    def release_held(self) -> None:
        """Hand back whatever is still held (shutdown mid-batch); best effort."""
        held = self.held.snapshot()
        if not held:
            return
        try:
            released = self.conn.release(held)
            self.log(f"handed back {released} job(s)")
        except (grpc.RpcError, Unauthenticated) as err:
            self.log(f"could not hand back {len(held)} job(s) ({err}); their leases will lapse")
        self.held.drop(held)

    def process(self, jobs: list[agent_pb2.Job]) -> None:
        """Measure leased jobs, grouped by format, settings and conditions (one provenance each), and report each
        group's results as they are measured (``measure_group``)."""
        groups: dict[tuple, list[agent_pb2.Job]] = {}
        for job in jobs:
            settings = job.settings.SerializeToString(deterministic=True)
            groups.setdefault((job.format, settings, JobConditions.of(job)), []).append(job)
        for group in groups.values():
            if group[0].format in self.backends:
                self.measure_group(group)
            else:
                self.send(self.unsupported(group), [job.job_id for job in group])

    def send(self, request: agent_pb2.ReportRequest, job_ids: list[str]) -> None:
        """Report results (``report``) and stop holding ``job_ids``, theirs and those of results not reported (jobs
        no longer held)."""
        for ack in self.report(request):
            if not ack.accepted:
                self.log(f"job {ack.job_id} not accepted: {ack.message}")
        self.held.drop(job_ids)
        self.processed += len(job_ids)

    def report(self, request: agent_pb2.ReportRequest) -> list[agent_pb2.ResultAck]:
        """Report a group's results; their acks. A report the server refuses as invalid is sent again result by
        result, and a result it still refuses goes as a run failure carrying its reason: the attempt counts, so the
        job ends failed instead of going back to the queue for ever. Other errors raise ``grpc.RpcError``."""
        try:
            return list(self.conn.report(request).acks)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.INVALID_ARGUMENT or len(request.results) == 0:
                raise
            self.log(f"the server refused the report ({err.details()}); reporting result by result")
        acks: list[agent_pb2.ResultAck] = []
        for result in request.results:
            try:
                single = agent_pb2.ReportRequest(results=[result], provenance=request.provenance)
                acks.extend(self.conn.report(single).acks)
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                self.log(f"job {result.job_id}: the server refused its result ({err.details()}); reporting a failure")
                refused = ModelResult(result.job_id, error_class=RUN, error_message=f"result refused: {err.details()}")
                acks.extend(self.conn.report(agent_pb2.ReportRequest(results=[result_message(refused)])).acks)
        return acks

    def measure_group(self, jobs: list[agent_pb2.Job]) -> None:
        """Fetch, measure and report jobs of one format, one set of settings and one set of conditions: results go
        out ``REPORT_EVERY_S`` after the last report as the measurer finishes parts of the group, the rest at its
        end (each report's provenance names the conditions and covers its own time); a shutdown mid-group reports
        what was measured before it hands the rest back."""
        backend = self.backends[jobs[0].format]
        conditions = JobConditions.of(jobs[0])
        settings = job_settings(self.options.measure, jobs[0].settings, self.log)
        protect = {job.artifact_sha256 for job in jobs}
        tasks, failed = [], []
        for job in jobs:
            try:
                path = self.artifact(job.artifact_sha256, protect)
                tasks.append(ModelTask(job.job_id, path, list(job.input_shape), conditions))
            except (ArtifactError, grpc.RpcError, ValueError, OSError) as err:  # the attempt counts: no hand-back
                message = err.details() if isinstance(err, grpc.RpcError) else str(err)
                failed.append(ModelResult(job.job_id, error_class=FETCH, error_message=f"fetch failed: {message}"))
        self.log(f"measuring {len(tasks)} model(s) with {backend.runtime}")
        measured = MeasuredWith(backend, settings, self.affinity)
        artifacts = {job.job_id: job.artifact_sha256 for job in jobs}
        pending: list[ModelResult] = list(failed)
        clocks, reported_at = ClockState.now(self.affinity), time.monotonic()  # at the last report

        def flush() -> None:
            nonlocal clocks, reported_at
            kept = [r for r in pending if not self.held.is_lost(r.key)]
            if len(kept) < len(pending):
                self.log(f"not reporting {len(pending) - len(kept)} result(s) of jobs no longer held")
            after = ClockState.now(self.affinity)
            request = agent_pb2.ReportRequest(
                results=[result_message(r, artifacts[r.key], measured) for r in kept],
                provenance=provenance_message(backend, clocks, after, unsteady_share(kept), conditions),
            )
            self.send(request, [r.key for r in pending])
            pending.clear()
            clocks, reported_at = after, time.monotonic()

        def measured_part(results: list[ModelResult]) -> None:
            pending.extend(results)
            if time.monotonic() - reported_at >= REPORT_EVERY_S:
                flush()

        measurer = BatchMeasurer(
            backend, settings, self.stop, on_hang=lambda job_id: self._hung(job_id, settings), part_s=PART_S
        )
        try:
            results = measurer.measure(tasks, on_part=measured_part) + failed
        except Interrupted:
            if pending:
                flush()
            raise
        if pending:
            flush()
        unsteady = unsteady_share(results)
        if unsteady >= NOISY_SHARE and len(tasks) >= NOISY_MIN_MODELS:
            self.log(
                f"{unsteady:.0%} of the batch failed the repeatability check (round medians spread > "
                f"{settings.spread_threshold:.0%}): this machine is busy or throttling; those results are flagged "
                "unstable (a quieter machine, --affinity or --cooldown may help)"
            )

    def unsupported(self, jobs: list[agent_pb2.Job]) -> agent_pb2.ReportRequest:
        """The report for jobs of a format no backend here runs: each a load failure."""
        message = f"no runtime for format {jobs[0].format!r} on this agent (has: {', '.join(sorted(self.backends))})"
        return agent_pb2.ReportRequest(
            results=[result_message(ModelResult(j.job_id, error_class=LOAD, error_message=message)) for j in jobs]
        )

    def artifact(self, sha256: str, protect: set[str]) -> Path:
        """The artifact's file, from the cache or fetched into it (``protect``: digests the batch still needs)."""
        return self.cache.get(sha256) or self.cache.put(sha256, self.conn.fetch(sha256), protect=protect)

    def _hung(self, job_id: str, settings: MeasureSettings) -> None:
        """A model hangs past its limit in a runtime that cannot cancel: report its job as a timeout, hand the
        other jobs back, and exit the process (a supervisor restarts the agent)."""
        self.log(f"job {job_id}: the model hangs beyond {settings.timeout_s:g} s and cannot be cancelled: exiting")
        message = f"hung beyond the per-model limit of {settings.timeout_s:g} s (not cancellable)"
        result = result_message(ModelResult(job_id, error_class=TIMEOUT, error_message=message))
        try:
            self.conn.report_once(agent_pb2.ReportRequest(results=[result]))
            self.held.drop([job_id])
            self.release_held()
        except grpc.RpcError as err:
            self.log(f"could not report the hang ({err.code().name})")
        finally:
            os._exit(HANG_EXIT_CODE)
