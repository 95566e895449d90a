"""``latfarm.v1.AgentService``: each call authenticates the agent by its credential and runs in its own transaction.

Between calls the process keeps only who a credential is, for ``callers.AUTH_TTL_S`` (replicas share only the database
and Redis); a write re-reads the agent's row, so a removed agent's writes are refused at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, BinaryIO, Protocol, cast

import grpc
from google.protobuf import json_format
from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from latfarm.common.ranges import number, out_of_range, within
from latfarm.proto.v1 import agent_pb2, agent_pb2_grpc
from latfarm.proto.v1.limits import oversized, string_limit
from latfarm.proto.v1.names import ERROR_CLASSES
from latfarm.services.core.clock import as_utc, utcnow
from latfarm.services.core.config import Settings
from latfarm.services.core.errors import InvalidArgument, NotFound
from latfarm.services.core.security import bearer_secret, hash_secret, new_secret
from latfarm.services.domain import job_artifacts, liveness, queue, reports
from latfarm.services.domain.artifacts import SHA256
from latfarm.services.domain.conditions import Conditions
from latfarm.services.domain.network_export import FORMATS, INLINE_FORMATS
from latfarm.services.domain.results import FIRST_USE, SETUP, ReportedResult, attributes
from latfarm.services.infra.throttle import AuthGuard, grpc_client
from latfarm.services.infra.wakeups import LocalNotifier
from latfarm.services.rpc.callers import CALLERS, Caller
from latfarm.services.rpc.capacity import Backoff, Busy, Capacity, Kind, default_capacity
from latfarm.services.rpc.errors import end_call, translate_errors
from latfarm.services.store.db import transaction
from latfarm.services.store.models import Agent, Device, Enrollment, Job
from latfarm.services.workers.export_worker import Exporter, export_one

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
MAX_WAIT_S = 60.0  # longest long-poll a request may ask for
WAIT_BOUNDS = {"ge": 0, "lt": math.inf}  # a request's wait_seconds: a longer finite one waits MAX_WAIT_S
PREPARE_BUDGET_S = 10.0  # export at most about this long before leasing what is ready
AGENT_STATES = ("idle", "measuring")
REQUEUE_EVERY_S = 1.0  # a device's leases return its lapsed jobs to the queue at most this often (per process)
WAITERS_FULL_RETRY_MS = 1_000  # a long-poll refused for want of threads retries after this, more after many
# the kind of each call that is not a write (reports, releases, registrations): threads go to calls by kind
# (``pool.CallPool``), database slots to heartbeats first (``capacity.Capacity``)
CALL_KINDS = {"Heartbeat": Kind.HEARTBEAT, "LeaseJobs": Kind.LEASE}
ERROR_CLASS_NAMES = {value: name for name, value in ERROR_CLASSES.items()}
FETCH = ERROR_CLASS_NAMES[agent_pb2.ERROR_CLASS_FETCH]


def max_waiting(workers: int) -> int:
    """Leases that may wait at once, for a database slot or for work: each holds a gRPC thread, so a reserve stays
    free for reports and heartbeats (an agent over the limit is told RESOURCE_EXHAUSTED and retries after the
    hint)."""
    return max(1, workers - max(4, workers // 8))


class Artifacts(Exporter, Protocol):
    """What the servicer needs of ``domain.artifacts.ArtifactStore``."""

    def open(self, session: Session, sha256: str) -> BinaryIO | None:
        """A reader of artifact ``sha256``'s bytes, or None when there is no such artifact; a missing file outside
        ``INLINE_FORMATS`` raises ``ArtifactPending`` (UNAVAILABLE: the agent fetches again) while the export worker
        makes it."""
        ...

    def repair(self, session: Session, sha256: str) -> bool:
        """Re-export artifact ``sha256`` (outside ``INLINE_FORMATS``: request it from the export worker) if its
        stored file is missing or corrupt; whether it did."""
        ...


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    """The ``AgentService`` methods; agents authenticate with ``authorization: Bearer <credential>``.

    ``sessions`` write, ``read_sessions`` only read; ``notifier`` wakes the long-polls waiting for a device's jobs;
    ``guard`` refuses (RESOURCE_EXHAUSTED) the unknown tokens and credentials of a client that presented too many.
    """

    def __init__(
        self,
        settings: Settings,
        sessions: sessionmaker[Session],
        read_sessions: sessionmaker[Session],
        artifacts: Artifacts,
        notifier: LocalNotifier,
        guard: AuthGuard,
    ) -> None:
        self.settings = settings
        self.guard = guard
        self.sessions = sessions
        self.read_sessions = read_sessions
        self.waiting = threading.BoundedSemaphore(max_waiting(settings.grpc_workers))
        self.waiters_full = Backoff(WAITERS_FULL_RETRY_MS, max_waiting(settings.grpc_workers))
        self.capacity: Capacity = default_capacity(settings.grpc_db_calls, settings.grpc_workers)
        self.artifacts = artifacts
        self.notifier = notifier
        self._requeued: dict[int, float] = {}  # device id -> when one of its leases last requeued lapsed jobs

    @translate_errors
    def Register(self, request: agent_pb2.RegisterRequest, context: grpc.ServicerContext) -> agent_pb2.RegisterResponse:
        """Trade an enrollment token for an agent id and credential (UNAUTHENTICATED for an unknown token,
        PERMISSION_DENIED for a revoked or expired one)."""
        _check_sizes(request)
        token = request.enrollment_token.strip()
        if not token:
            raise InvalidArgument("enrollment_token is required", field="enrollment_token")
        if not request.HasField("descriptor"):
            raise InvalidArgument("descriptor is required", field="descriptor")
        _check_formats(request.descriptor.formats, "descriptor.formats")
        client = grpc_client(context.peer())
        self.guard.check("grpc", client, token)
        with self.read_sessions() as session:  # a guess costs a read, never a write turn or the write lock
            known = session.scalar(select(Enrollment.id).where(Enrollment.token_hash == hash_secret(token)))
        if known is None:
            self.guard.failed("grpc", client)
            end_call(context, grpc.StatusCode.UNAUTHENTICATED, "unknown enrollment token")
        credential = new_secret("lf_agent")
        with self._slot(Kind.WRITE, context), transaction(self.sessions) as session:
            enrollment = session.get(Enrollment, known)
            if enrollment is None:  # deleted since
                end_call(context, grpc.StatusCode.UNAUTHENTICATED, "unknown enrollment token")
            if enrollment.revoked:
                end_call(context, grpc.StatusCode.PERMISSION_DENIED, "enrollment token was revoked")
            expires = as_utc(enrollment.expires_at)
            now = utcnow()
            if expires is not None and expires <= now:
                end_call(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"enrollment token expired at {expires:%Y-%m-%d %H:%M} UTC",
                )
            descriptor = json_format.MessageToDict(request.descriptor, preserving_proto_field_name=True)
            agent = Agent(
                device_id=enrollment.device_id,
                name=(request.name or request.descriptor.hostname)[: string_limit("name")],
                owner=enrollment.created_by,
                credential_hash=hash_secret(credential),
                descriptor=descriptor,
                state="idle",
                registered_at=now,
                last_heartbeat=now,
            )
            claim = (
                update(Enrollment)
                .where(
                    Enrollment.id == enrollment.id,
                    or_(Enrollment.max_uses.is_(None), Enrollment.uses < Enrollment.max_uses),
                )
                .values(uses=Enrollment.uses + 1)
            )
            counted = cast(CursorResult, session.execute(claim))
            if counted.rowcount == 0:  # checked and counted in one statement: concurrent registrations cannot overrun
                end_call(
                    context,
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"enrollment token is used up ({enrollment.max_uses} registrations)",
                )
            session.add(agent)
            device_name = session.scalar(select(Device.name).where(Device.id == enrollment.device_id))
            session.flush()
            agent_id = agent.id
        log.info("agent %s registered for device %s", agent_id, device_name)
        return agent_pb2.RegisterResponse(
            agent_id=agent_id,
            credential=credential,
            device=device_name,
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            lease_seconds=self.settings.lease_seconds,
        )

    @translate_errors
    def Heartbeat(self, request: agent_pb2.HeartbeatRequest, context) -> agent_pb2.HeartbeatResponse:
        """Record the agent alive, renew its jobs' leases; answers the ids of jobs it no longer holds."""
        if request.state and request.state not in AGENT_STATES:
            raise InvalidArgument(f"state must be one of {', '.join(AGENT_STATES)}", field="state")
        _check_sizes(request)
        caller = self._authenticate(context)
        reported: dict[str, Any] = {"state": request.state} if request.state else {}
        if request.HasField("descriptor"):
            reported["descriptor"] = json_format.MessageToDict(request.descriptor, preserving_proto_field_name=True)
        with _known(caller), self._slot(Kind.HEARTBEAT, context), transaction(self.sessions) as session:
            lost = queue.heartbeat(
                session, _ref(caller), list(request.job_ids), self.settings.lease_seconds, **reported
            )
        return agent_pb2.HeartbeatResponse(heartbeat_interval_s=self.settings.heartbeat_interval_s, lost_job_ids=lost)

    @translate_errors
    def LeaseJobs(self, request: agent_pb2.LeaseRequest, context) -> agent_pb2.LeaseResponse:
        """Lease up to ``max_jobs`` jobs, long-polling up to ``wait_seconds`` (at most ``MAX_WAIT_S``) for work."""
        _check_sizes(request)
        if request.max_jobs < 0:
            raise InvalidArgument(f"max_jobs {out_of_range(request.max_jobs, {'ge': 0})}", field="max_jobs")
        if not within(request.wait_seconds, WAIT_BOUNDS):
            wait = out_of_range(number(request.wait_seconds), WAIT_BOUNDS)
            raise InvalidArgument(f"wait_seconds {wait}", field="wait_seconds")
        _check_formats(request.formats, "formats", allow_empty=True)
        limit = self.settings.max_jobs_per_lease
        max_jobs = min(request.max_jobs or limit, limit)
        wait_s = min(request.wait_seconds, MAX_WAIT_S)
        if (remaining := context.time_remaining()) is not None:
            wait_s = min(wait_s, max(remaining - 1.0, 0.0))  # answer before the caller's deadline
        if wait_s <= 0:
            return self._lease(request, context, max_jobs, 0.0)
        if not self.waiting.acquire(blocking=False):
            reason = f"{max_waiting(self.settings.grpc_workers)} agents wait for work already (LATFARM_GRPC_WORKERS)"
            raise Busy(Kind.LEASE, self.waiters_full.refused(), reason)
        try:
            return self._lease(request, context, max_jobs, wait_s)
        finally:
            self.waiting.release()

    def _lease(self, request: agent_pb2.LeaseRequest, context, max_jobs: int, wait_s: float) -> agent_pb2.LeaseResponse:
        """Lease up to ``max_jobs``, waiting up to ``wait_s`` for work to arrive."""
        deadline = time.monotonic() + wait_s
        caller = self._authenticate(context)
        device_id = caller.device_id
        formats = list(request.formats) or list(caller.formats) or list(FORMATS)
        ended = threading.Event()  # the call was cancelled, or the server is stopping: stop waiting for work

        def end() -> None:
            ended.set()
            self.notifier.wake(device_id)

        if not context.add_callback(end):
            ended.set()  # it ended already
        waited = False
        while True:
            seen = self.notifier.version(device_id)
            if not context.is_active():
                end_call(context, grpc.StatusCode.CANCELLED, "the caller went away")
            try:
                jobs = self._lease_ready(context, caller, formats, max_jobs)
            except Busy:
                if not waited:
                    raise
                # a long-poll that waited already answers empty, not refused: the agent asks again
                return agent_pb2.LeaseResponse(lease_seconds=self.settings.lease_seconds)
            if len(jobs) < max_jobs:  # the export worker may not have reached the next jobs: export them now
                try:
                    if self._prepare_artifacts(device_id, formats, max_jobs - len(jobs), context):
                        jobs += self._lease_ready(context, caller, formats, max_jobs - len(jobs))
                except Busy:
                    if not (jobs or waited):  # what is leased already goes out either way
                        raise
            if jobs and not context.is_active():  # nobody will receive them: hand them back at once
                with transaction(self.sessions) as session:
                    queue.release(session, _ref(caller), [job.job_id for job in jobs])
                self.notifier.notify(device_id)
                end_call(context, grpc.StatusCode.CANCELLED, "the caller went away")
            left = deadline - time.monotonic()
            if jobs or left <= 0:
                return agent_pb2.LeaseResponse(jobs=_job_messages(jobs), lease_seconds=self.settings.lease_seconds)
            self.notifier.wait(device_id, left, after=seen, until=ended.is_set)  # reads nothing until woken
            waited = True
            if ended.is_set():
                end_call(context, grpc.StatusCode.CANCELLED, "the call ended while waiting for work")

    def _lease_ready(self, context, caller: Caller, formats: list[str], max_jobs: int) -> list[queue.Leased]:
        """Lease up to ``max_jobs`` of the device's jobs whose artifact is recorded, in one transaction; the first
        lease of a device in ``REQUEUE_EVERY_S`` returns its lapsed jobs to the queue first (the lease sweeper covers
        devices nobody leases for)."""
        now = time.monotonic()
        requeue = now - self._requeued.get(caller.device_id, float("-inf")) >= REQUEUE_EVERY_S
        with _known(caller), self._slot(Kind.LEASE, context), transaction(self.sessions) as session:
            jobs = queue.lease(
                session,
                _ref(caller),
                max_jobs=max_jobs,
                formats=formats,
                lease_seconds=self.settings.lease_seconds,
                max_attempts=self.settings.max_attempts,
                requeue=requeue,
            )
        if requeue:
            self._requeued[caller.device_id] = now
        return jobs

    def _prepare_artifacts(self, device_id: int, formats: list[str], max_jobs: int, context) -> bool:
        """Export the models of the next ``max_jobs`` queued jobs in ``INLINE_FORMATS`` that the export worker has
        not made yet (a lease that found fewer ready jobs asks), outside any transaction; exporting stops after
        ``PREPARE_BUDGET_S``. A model whose export fails fails its jobs with the reason. Jobs in other formats wait
        for the export worker (its export wakes the lease). Returns whether there was any (lease again)."""
        formats = [fmt for fmt in formats if fmt in INLINE_FORMATS]
        if not formats:
            return False
        with self._slot(Kind.LEASE, context), self.read_sessions() as session:
            pending = job_artifacts.pending_artifacts(session, device_id, formats, max_jobs)
        started = time.monotonic()
        failed = False
        for done, model in enumerate(pending):
            if done and (time.monotonic() - started > PREPARE_BUDGET_S or not context.is_active()):
                return True
            failed |= not export_one(self.sessions, self.artifacts, model, self.notifier)
        if failed:
            with self._slot(Kind.WRITE, context), transaction(self.sessions) as session:
                job_artifacts.resolve_artifacts(session, device_id, formats, max_jobs, self.artifacts)
        return bool(pending)

    @translate_errors
    def FetchArtifact(self, request: agent_pb2.FetchArtifactRequest, context) -> Iterator[agent_pb2.ArtifactChunk]:
        """Stream an artifact's bytes from ``offset`` in ``CHUNK_BYTES`` chunks; NOT_FOUND when unknown."""
        sha256 = request.sha256.lower()
        if not SHA256.match(sha256):
            raise InvalidArgument("sha256 must be 64 hex digits", field="sha256")
        if request.offset < 0:
            raise InvalidArgument(f"offset {out_of_range(request.offset, {'ge': 0})}", field="offset")
        self._authenticate(context)
        with self.read_sessions() as session:
            stream = self.artifacts.open(session, sha256)
        if stream is None:
            raise NotFound(f"no artifact {sha256}")
        with stream:
            total = stream.seek(0, 2)
            if request.offset > total:
                end_call(
                    context, grpc.StatusCode.OUT_OF_RANGE, f"offset {request.offset} is past the end ({total} bytes)"
                )
            offset = stream.seek(request.offset)
            while data := stream.read(CHUNK_BYTES):
                yield agent_pb2.ArtifactChunk(data=data, offset=offset, total_size=total)
                offset += len(data)

    @translate_errors
    def ReportResults(self, request: agent_pb2.ReportRequest, context) -> agent_pb2.ReportResponse:
        """Store the agent's results; one ack per result says whether it was accepted or a duplicate."""
        _check_sizes(request)
        results = [reported_result(result) for result in request.results]
        provenance = json_format.MessageToDict(request.provenance, preserving_proto_field_name=True)
        caller = self._authenticate(context)
        repaired = self._repair_artifacts([r.job_id for r in results if r.error_class == FETCH])
        with _known(caller), self._slot(Kind.WRITE, context), transaction(self.sessions) as session:
            agent = _ref(caller)  # ``requeue_repaired`` and ``report`` check that it is registered
            device_id = agent.device_id
            requeued = {ack.job_id: ack for ack in queue.requeue_repaired(session, agent, repaired)}
            rest = [r for r in results if r.job_id not in requeued]
            reported = iter(reports.report(session, agent, rest, provenance, self.settings.max_attempts))
            acks = [requeued[r.job_id] if r.job_id in requeued else next(reported) for r in results]
        if any(not r.ok for r in results):
            self.notifier.notify(device_id)  # failed jobs may be back in the queue
        return agent_pb2.ReportResponse(
            acks=[
                agent_pb2.ResultAck(job_id=a.job_id, accepted=a.accepted, duplicate=a.duplicate, message=a.message)
                for a in acks
            ]
        )

    def _repair_artifacts(self, job_ids: list[str]) -> list[str]:
        """Check the artifacts of jobs whose agent could not fetch them; returns the jobs whose artifact was corrupt
        on this server and is rebuilt now (outside ``INLINE_FORMATS``: by the export worker, which the jobs' next
        fetch waits for)."""
        if not job_ids:
            return []
        with self.read_sessions() as session:
            shas = dict(session.execute(select(Job.id, Job.artifact_sha256).where(Job.id.in_(job_ids))).all())
        rebuilt = set()
        for sha in {sha for sha in shas.values() if sha}:
            try:
                with self.read_sessions() as session:
                    if self.artifacts.repair(session, sha):
                        rebuilt.add(sha)
                        log.warning("artifact %s was corrupt on this server and is rebuilt", sha[:12])
            except Exception:  # noqa: BLE001 - an artifact that cannot be rebuilt leaves its jobs to spend attempts
                log.exception("artifact %s could not be checked or rebuilt", sha[:12])
        return [job_id for job_id, sha in shas.items() if sha in rebuilt]

    @translate_errors
    def ReleaseJobs(self, request: agent_pb2.ReleaseRequest, context) -> agent_pb2.ReleaseResponse:
        """Hand the agent's running jobs (with ``all_held``: every one it holds) back to the queue unmeasured;
        answers how many were released."""
        _check_sizes(request)
        caller = self._authenticate(context)
        with _known(caller), self._slot(Kind.WRITE, context), transaction(self.sessions) as session:
            agent = liveness.registered(session, caller.agent_id)
            device_id = agent.device_id
            if request.all_held:
                released = queue.release_all(session, agent)
            else:
                released = queue.release(session, agent, list(request.job_ids))
        if released:
            self.notifier.notify(device_id)
        return agent_pb2.ReleaseResponse(released=released)

    def _slot(self, kind: Kind, context: grpc.ServicerContext):
        """A database slot for this call (``capacity``), refused (``Busy``) in time to answer before its deadline."""
        remaining = context.time_remaining()
        return self.capacity.slot(kind, None if remaining is None else max(remaining - 1.0, 0.0))

    def _authenticate(self, context: grpc.ServicerContext) -> Caller:
        """The calling agent, from ``authorization: Bearer <credential>``, cached for ``callers.AUTH_TTL_S``, else read
        on a read session; aborts UNAUTHENTICATED otherwise, ``Throttled`` instead when its client is over the
        failed-authentication limit (``infra.throttle``)."""
        credential = bearer_secret(dict(context.invocation_metadata()).get("authorization", ""))
        if not credential:
            end_call(
                context,
                grpc.StatusCode.UNAUTHENTICATED,
                "missing credential: send 'authorization: Bearer <credential>'",
            )
        client = grpc_client(context.peer())
        self.guard.check("grpc", client, credential)
        credential_hash = hash_secret(credential)
        if (caller := CALLERS.get(credential_hash)) is not None:
            return caller
        with self.read_sessions() as session:
            agent = session.scalars(select(Agent).where(Agent.credential_hash == credential_hash)).one_or_none()
            if agent is None:
                self.guard.failed("grpc", client)
                end_call(context, grpc.StatusCode.UNAUTHENTICATED, "unknown agent credential; register again")
            caller = Caller(agent.id, agent.device_id, tuple((agent.descriptor or {}).get("formats", [])))
        CALLERS.put(credential_hash, caller)
        return caller


def _ref(caller: Caller) -> liveness.AgentRef:
    """The caller as the queue takes it."""
    return liveness.AgentRef(caller.agent_id, caller.device_id)


@contextmanager
def _known(caller: Caller) -> Iterator[None]:
    """Forget the caller's credential at once when its call finds the agent removed (``liveness.UnknownAgent``,
    answered UNAUTHENTICATED)."""
    try:
        yield
    except liveness.UnknownAgent:
        CALLERS.forget_agent(caller.agent_id)
        raise


def _check_formats(formats, field: str, allow_empty: bool = False) -> None:
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InvalidArgument(f"{field}: unknown format(s) {unknown}; known: {FORMATS}", field=field)
    if not formats and not allow_empty:
        raise InvalidArgument(f"{field} is empty: name the formats the agent can run", field=field)


def _check_sizes(request) -> None:
    """Refuse a request with a string, list or map over its limit (``proto.v1.limits``), naming the field."""
    if found := oversized(request):
        field, problem = found
        raise InvalidArgument(f"{field}: {problem}", field=field)


def _job_messages(jobs: list[queue.Leased]) -> list[agent_pb2.Job]:
    """The leased jobs as an agent sees them, with the conditions their artifact was exported under and their input
    shape (NCHW); each distinct batch's settings are built into messages once per call."""
    batches: dict[str, tuple[tuple[int, ...], agent_pb2.Conditions, agent_pb2.MeasureSettings]] = {}
    messages = []
    for job in jobs:
        if (batch := batches.get(job.batch_id)) is None:
            settings = agent_pb2.MeasureSettings(**job.batch.protocol)
            batch = batches[job.batch_id] = (*_conditions_message(job.batch.conditions), settings)
        input_shape, conditions, settings = batch
        messages.append(
            agent_pb2.Job(
                job_id=job.job_id,
                space=job.space,
                arch=job.arch,
                format=job.format,
                artifact_sha256=job.artifact_sha256,
                artifact_size=job.artifact_size,
                attempt=job.attempts,
                input_shape=input_shape,
                settings=settings,
                conditions=conditions,
            )
        )
    return messages


@lru_cache(maxsize=256)
def _conditions_message(conditions: Conditions) -> tuple[tuple[int, ...], agent_pb2.Conditions]:
    """(input shape, ``Conditions`` message) of ``conditions``, built once per process: read only (a message
    field's value is copied into the message)."""
    return conditions.input_shape, agent_pb2.Conditions(**conditions.to_dict())


STATS = tuple(agent_pb2.Stats.DESCRIPTOR.fields_by_name)
JSON_FLOATS = {math.inf: "Infinity", -math.inf: "-Infinity"}  # how json_format writes floats JSON has no number for


def reported_result(result: agent_pb2.Result) -> ReportedResult:
    """The wire result as the queue takes it (the one proto -> ``ReportedResult`` mapping): every ``Stats`` field
    by its name; what the agent measured with as sent, or None where it sent none ("" / 0); its settings as
    ``json_format.MessageToDict`` gives them (the fields set, by name; NaN and infinities as strings) at a fraction
    of its cost."""
    stats = attributes(result.stats, STATS)
    stats["round_medians_ms"] = list(result.stats.round_medians_ms)
    setup: dict[str, Any] = {
        name: value or None for name, value in attributes(result, ("artifact_sha256", *SETUP)).items()
    }
    return ReportedResult(
        job_id=result.job_id,
        ok=result.ok,
        error_class=_error_class(result.error_class),
        error_message=result.error_message,
        unstable=result.unstable,
        affinity=list(result.affinity),
        settings={field.name: _json_value(value) for field, value in result.settings.ListFields()},
        **stats,
        **attributes(result, FIRST_USE),
        **setup,
    )


def _json_value(value: Any) -> Any:
    """A scalar field's value as ``json_format`` writes it (``MeasureSettings`` has no 64-bit integers or enums)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else JSON_FLOATS[value]
    return value


def _error_class(value: int) -> str:
    """``ERROR_CLASS_RUN`` -> ``"run"`` (the agent's names); unspecified -> ``""``; a number this server does not
    know -> ``"error_class_<number>"``."""
    if value == agent_pb2.ERROR_CLASS_UNSPECIFIED:
        return ""
    return ERROR_CLASS_NAMES.get(value, f"error_class_{value}")
