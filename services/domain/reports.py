"""An agent's report of its jobs' results (``report``): measurements stored and their jobs done, failed attempts
requeued or failed for good, each result acknowledged (``queue.Ack``). The reported jobs are locked as ``queue``'s
heartbeats lock theirs: in id order, only those the agent holds."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import JSON, bindparam, insert, select, update
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from latfarm.services.core.clock import utcnow
from latfarm.services.domain.liveness import UnknownAgent, registered
from latfarm.services.domain.queue import HELD_BY_CALLER, Ack, Holder, batch_settings, failed_values, requeued_values
from latfarm.services.domain.results import ReportedResult, measurement_row, validate
from latfarm.services.store.models import Agent, Job, JobState, Measurement

# what ``report`` reads of each job it is told of
REPORTED_JOB = (
    Job.id,
    Job.batch_id,
    Job.device_id,
    Job.arch_id,
    Job.artifact_sha256,
    Job.state,
    Job.lease_owner,
    Job.attempts,
)
# the statements ``report`` runs, built once: they lock the jobs the agent holds (in id order, as heartbeats lock them:
# no deadlock; others' jobs neither locked nor waited for, as in ``queue._NAMED``) and read the reporting agent's device
# (NULL: the agent was removed), read the other named jobs unlocked (for their acks), read who stored the done ones,
# mark the measured ones done and store their measurements
_LOCK_REPORTED = (
    select(
        *REPORTED_JOB,
        select(Agent.device_id).where(Agent.id == bindparam("agent_id")).scalar_subquery().label("agent_device"),
    )
    .where(Job.id.in_(bindparam("ids", expanding=True)), HELD_BY_CALLER)
    .order_by(Job.id)
    .with_for_update(of=Job)
)
_READ_REPORTED = select(*REPORTED_JOB).where(Job.id.in_(bindparam("ids", expanding=True)))
_STORED_BY = select(Measurement.job_id, Measurement.agent_id).where(
    Measurement.job_id.in_(bindparam("ids", expanding=True))
)
_MEASURED = (
    update(Job)
    .where(Job.id.in_(bindparam("ids", expanding=True)))
    .values(
        state=JobState.done,
        error=None,
        lease_expires_at=None,
        finished_at=bindparam("now", type_=Job.finished_at.type),
    )
)


class _EncodedJSON(TypeDecorator):
    """A JSON column's value encoded by the caller (``json.dumps``, as the column's own type encodes it): bound as
    that text, which PostgreSQL casts to JSON as it casts the column's own values."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect):
        return None


MEASUREMENT_JSON = ("protocol", "round_medians_ms", "conditions", "provenance")  # the JSON columns of a row
_STORE_MEASUREMENTS = insert(Measurement).values(
    {name: bindparam(name, type_=_EncodedJSON()) for name in MEASUREMENT_JSON}
)


def report(
    session: Session, agent: Holder, results: Sequence[ReportedResult], provenance: dict, max_attempts: int
) -> list[Ack]:
    """Store results of jobs this agent holds; a repeated ok report is acknowledged as a duplicate, stored once.

    The named jobs whose lease is the agent's are locked in one statement in id order (as heartbeats lock them: no
    deadlock) that also finds the agent's row: ``liveness.UnknownAgent`` when it was removed; the others are read
    without a lock, for their acks only (no agent waits for another's job). The measured ones are marked done in one
    ``UPDATE`` and their measurements inserted together, on the session's connection (no ORM objects). Raises
    ``results.ResultError`` for a malformed result before anything is written.
    """
    connection = session.connection()
    ids = sorted({result.job_id for result in results})
    locked = connection.execute(_LOCK_REPORTED, {"ids": ids, "agent_id": agent.id}).all() if ids else []
    if not locked:  # no job row to carry the agent's
        registered(session, agent.id)
    elif locked[0].agent_device is None:
        raise UnknownAgent(agent.id)
    for index, result in enumerate(results):
        validate(result, f"results[{index}]")
    if not results:
        return []
    now = utcnow()
    held = {job.id for job in locked if job.state == JobState.running}  # locked: the agent's lease, now and after
    jobs = {job.id: job for job in locked}
    others = [job_id for job_id in ids if job_id not in jobs]
    if others:
        jobs.update((job.id, job) for job in connection.execute(_READ_REPORTED, {"ids": others}))
    states = {job_id: job.state for job_id, job in jobs.items()}
    done = [job_id for job_id, state in states.items() if state == JobState.done]
    stored_by = dict(connection.execute(_STORED_BY, {"ids": done}).all()) if done else {}
    held_batches = {jobs[job_id].batch_id for job_id in held}
    conditions = {batch_id: batch.conditions for batch_id, batch in batch_settings(session, held_batches).items()}
    # the rows' JSON columns, encoded here (``_STORE_MEASUREMENTS``): what rows share, once per report
    shared_provenance = json.dumps(provenance)
    shared_conditions = {batch_id: json.dumps(parsed.to_dict()) for batch_id, parsed in conditions.items()}
    acks, rows, changes = [], [], []
    for result in results:
        job = jobs.get(result.job_id)
        state = states.get(result.job_id)
        if job is None:
            acks.append(Ack(result.job_id, False, message="unknown job"))
        elif state == JobState.done:
            if result.ok and stored_by.get(job.id) == agent.id:
                acks.append(Ack(job.id, True, duplicate=True, message="already stored"))
            else:
                acks.append(Ack(job.id, False, message="job already done"))
        elif state == JobState.cancelled:
            acks.append(Ack(job.id, False, message="job was cancelled"))
        elif job.id not in held or state != JobState.running:
            acks.append(Ack(job.id, False, message="job is not leased by this agent (lease expired or re-leased)"))
        elif result.ok:
            row = measurement_row(job, agent.id, result, provenance, conditions[job.batch_id])
            row.update(
                protocol=json.dumps(row["protocol"]),
                round_medians_ms=json.dumps(row["round_medians_ms"]),
                conditions=shared_conditions[job.batch_id],
                provenance=shared_provenance,
            )
            rows.append(row)
            stored_by[job.id] = agent.id
            states[job.id] = JobState.done  # a repeat within this report is a duplicate
            acks.append(Ack(job.id, True, message="unstable: stored flagged" if result.unstable else ""))
        else:
            reason = f"{result.error_class or 'error'}: {result.error_message or 'no message'}"[:2000]
            if job.attempts >= max_attempts:
                change = failed_values(f"failed after {job.attempts} attempts; last: {reason}", now)
            else:
                change = requeued_values(reason)
            states[job.id] = change["state"]
            changes.append((job.id, change))
            acks.append(Ack(job.id, True, message=f"job {change['state'].value}"))
    for job_id, change in changes:
        connection.execute(update(Job).where(Job.id == job_id).values(**change))
    if rows:
        connection.execute(_MEASURED, {"ids": [row["job_id"] for row in rows], "now": now})
        connection.execute(_STORE_MEASUREMENTS, rows)
    if changes or rows:
        session.expire_all()  # written past the session: objects it holds are reloaded when next read
    return acks
