"""SQLAlchemy models: LatBench-style measurements plus the fleet and queue around them.

Units: milliseconds for latencies, UTC for times. Names follow the REST resources.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, synonym

from latfarm.agents.runtimes import ONNXRUNTIME
from latfarm.services.core.clock import utcnow
from latfarm.services.core.names import new_id
from latfarm.services.core.states import AdaptState, JobState


class Base(DeclarativeBase):
    """The declarative base: aware datetimes, dicts and lists stored as JSON."""

    type_annotation_map = {datetime: DateTime(timezone=True), dict: JSON, list: JSON}


class Source(str, enum.Enum):
    """Where a measurement comes from."""

    measured = "measured"  # reported by an agent
    imported = "imported"  # loaded from a dataset (HELP, LatBench, HW-NAS-Bench)


class Device(Base):
    """A device type a NAS client targets, e.g. ``pixel7-cpu-fp32``."""

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    hardware: Mapped[str] = mapped_column(Text, default="")
    runtime: Mapped[str] = mapped_column(String(64), default=ONNXRUNTIME)
    precision: Mapped[str] = mapped_column(String(16), default="fp32")
    batch_size: Mapped[int] = mapped_column(Integer, default=1)
    resolution: Mapped[int] = mapped_column(Integer, default=32)  # input variant of its networks: height = width, px
    classes: Mapped[int] = mapped_column(Integer, default=10)  # and their output logits
    # the API key that owns it (its creator, or set by an admin; keys are revoked, never deleted): NULL: admins only
    owner_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    agents: Mapped[list[Agent]] = relationship(back_populates="device", cascade="all, delete-orphan")

    def __str__(self) -> str:
        """The device's name."""
        return self.name


class Enrollment(Base):
    """A token a device owner gives to an agent so it can register for this device."""

    __tablename__ = "enrollments"
    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    max_uses: Mapped[int | None] = mapped_column(Integer)  # registrations it allows; NULL: any number until expiry


class Agent(Base):
    """A registered physical instance of a device."""

    __tablename__ = "agents"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128), default="")
    owner: Mapped[str | None] = mapped_column(String(64))
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    descriptor: Mapped[dict] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default="idle")
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat: Mapped[datetime | None] = mapped_column(index=True)

    device: Mapped[Device] = relationship(back_populates="agents")

    def __str__(self) -> str:
        """The agent's name, else its id."""
        return self.name or self.id


class Arch(Base):
    """An arch of a search space, by canonical arch string; ``reference_index`` is its position in the space's
    reference set (NB201: the official index), null when the space has none or the arch is not in it."""

    __tablename__ = "archs"
    __table_args__ = (UniqueConstraint("space", "arch"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    space: Mapped[str] = mapped_column(String(32), default="nb201")
    arch: Mapped[str] = mapped_column(String(256))
    reference_index: Mapped[int | None] = mapped_column(Integer, index=True)
    nb201_index = synonym("reference_index")  # NB201's official index: rows queried under NB201 conditions only

    def __str__(self) -> str:
        """The arch string after its space, e.g. ``fbnet: k3_e1-...``."""
        return f"{self.space}: {self.arch}"


class Artifact(Base):
    """An exported model file, content-addressed by sha256 (bytes live in the artifact store on disk)."""

    __tablename__ = "artifacts"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    arch_id: Mapped[int] = mapped_column(ForeignKey("archs.id"), index=True)
    format: Mapped[str] = mapped_column(String(16))
    settings: Mapped[dict] = mapped_column(default=dict)  # resolution, channels, classes, opset ...
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    arch: Mapped[Arch] = relationship()


# ``uq_api_keys_active_name``'s condition: no two unrevoked keys share a name (the audit log names actors by key
# name); a revoked key's name is free again.
ACTIVE_KEY = text("NOT revoked")


class ApiKey(Base):
    """A REST API key; only its sha256 is stored. Scopes: ``client``, ``owner``, ``admin``."""

    __tablename__ = "api_keys"
    __table_args__ = (
        Index("uq_api_keys_active_name", "name", unique=True, postgresql_where=ACTIVE_KEY, sqlite_where=ACTIVE_KEY),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class JobBatch(Base):
    """One ``POST /v1/jobs`` request: a set of archs to measure on one device."""

    __tablename__ = "job_batches"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    space: Mapped[str] = mapped_column(String(32), default="nb201")
    format: Mapped[str] = mapped_column(String(16), default="onnx")
    requested_by: Mapped[str | None] = mapped_column(String(128))  # the submitting key's name, for people
    requested_by_key_id: Mapped[int | None] = mapped_column()  # the submitting key's id (who may cancel it)
    protocol: Mapped[dict] = mapped_column(default=dict)  # agent settings for its jobs (``MeasureSettings`` fields)
    conditions: Mapped[dict] = mapped_column(default=dict)  # ``Conditions.to_dict()`` its jobs are measured under
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# A job a lease may take: queued and its model exported. Spelt out (no bound values) so that every plan of a lease
# may use ``ix_jobs_ready`` (a bound state would not match the index's condition in a generic plan).
READY = text("state = 'queued' AND artifact_sha256 IS NOT NULL")
# A job on lease (running: every other state clears ``lease_expires_at``), spelt out as ``READY`` is: the condition
# of ``queue.release_all``'s read, which ``ix_jobs_holder`` serves. Not a condition on the state, which a state index
# could serve.
LEASED = text("lease_expires_at IS NOT NULL")
# A job an agent held (finished jobs keep their last holder): the condition of ``ix_jobs_holder``. PostgreSQL's own
# ``lease_owner = $1`` (the ON DELETE SET NULL of an agent's delete) implies it, so that action uses the index too.
HELD = text("lease_owner IS NOT NULL")
MEASURED_BY_AGENT = text("agent_id IS NOT NULL")  # ``ix_measurements_agent``'s condition: imported rows have none


class Job(Base):
    """Measure one arch on one device; leased by one agent at a time."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_lease", "device_id", "state", "lease_expires_at"),
        Index("ix_jobs_queue", "device_id", "state", "created_at", "id"),  # a device's jobs by state, oldest first
        # lease: a device's oldest jobs ready to lease (queued, model exported), ``READY`` as the lease states it
        Index("ix_jobs_ready", "device_id", "created_at", "id", postgresql_where=READY, sqlite_where=READY),
        Index("ix_jobs_expiry", "state", "lease_expires_at"),  # requeue of lapsed leases across devices
        # the jobs by holder: an agent's jobs on lease (``queue.release_all``, then ``lease_expires_at``) and every job
        # it held, which deleting the agent clears
        Index("ix_jobs_holder", "lease_owner", "lease_expires_at", postgresql_where=HELD, sqlite_where=HELD),
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    batch_id: Mapped[str] = mapped_column(ForeignKey("job_batches.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    arch_id: Mapped[int] = mapped_column(ForeignKey("archs.id"))
    format: Mapped[str] = mapped_column(String(16), default="onnx")
    artifact_sha256: Mapped[str | None] = mapped_column(ForeignKey("artifacts.sha256"))
    state: Mapped[JobState] = mapped_column(Enum(JobState, native_enum=False, length=16), default=JobState.queued)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    lease_expires_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    position: Mapped[int | None]  # its arch's place among its request's distinct archs: the order its batch lists
    # its arch was drawn uniformly at random (``measure --random``, an adaptation's calibrating archs), not chosen:
    # only such archs (and imported ones) calibrate an adaptation's spread
    drawn_at_random: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    arch: Mapped[Arch] = relationship()
    batch: Mapped[JobBatch] = relationship()
    device: Mapped[Device] = relationship()


class Measurement(Base):
    """One latency figure of one arch on one device, measured by an agent or imported from a dataset."""

    __tablename__ = "measurements"
    __table_args__ = (
        Index("ix_measurements_device_arch", "device_id", "arch_id"),
        # an agent's measurements, which deleting the agent clears (ON DELETE SET NULL)
        Index("ix_measurements_agent", "agent_id", postgresql_where=MEASURED_BY_AGENT, sqlite_where=MEASURED_BY_AGENT),
        # backs up imports' rule (``datasets.rows.add_rows``: one row per device, arch and conditions) for a dataset
        # imported again; measured rows have dataset NULL
        UniqueConstraint("device_id", "arch_id", "dataset", "conditions_key", name="uq_measurements_dataset"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    arch_id: Mapped[int] = mapped_column(ForeignKey("archs.id"), index=True)
    source: Mapped[Source] = mapped_column(Enum(Source, native_enum=False, length=16), default=Source.measured)
    dataset: Mapped[str | None] = mapped_column(String(64))  # e.g. "help-nb201" for imported rows
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), unique=True)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64))
    runtime: Mapped[str | None] = mapped_column(String(32))
    runtime_version: Mapped[str | None] = mapped_column(String(32))
    provider: Mapped[str | None] = mapped_column(String(64))
    threads: Mapped[int | None] = mapped_column(Integer)
    protocol: Mapped[dict] = mapped_column(default=dict)  # warm-up, runs per round, rounds, affinity ...
    # the headline figure: what predictions, rankings and exports use; `protocol['statistic']` says how it was computed
    latency_ms: Mapped[float] = mapped_column(Float)
    median_ms: Mapped[float] = mapped_column(Float)  # median of the round medians
    mean_ms: Mapped[float | None] = mapped_column(Float)
    std_ms: Mapped[float | None] = mapped_column(Float)
    min_ms: Mapped[float | None] = mapped_column(Float)
    p90_ms: Mapped[float | None] = mapped_column(Float)
    runs: Mapped[int | None] = mapped_column(Integer)
    round_medians_ms: Mapped[list] = mapped_column(default=list)
    session_create_ms: Mapped[float | None] = mapped_column(Float)
    first_inference_ms: Mapped[float | None] = mapped_column(Float)
    unstable: Mapped[bool] = mapped_column(Boolean, default=False)
    # set by an admin: kept for review, but read by no prediction, ranking, adaptation or export (``usable``)
    quarantined: Mapped[bool] = mapped_column(Boolean, default=False)
    provenance: Mapped[dict] = mapped_column(default=dict)
    conditions: Mapped[dict] = mapped_column(default=dict)  # ``Conditions.to_dict()``: what was measured
    conditions_key: Mapped[str] = mapped_column(String(96), default="", index=True)  # ``Conditions.key``
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    arch: Mapped[Arch] = relationship()
    device: Mapped[Device] = relationship()


class ImportedFile(Base):
    """A single-device file (LatBench, CSV) imported as one device: the record by which an import of the same content
    as another device is refused (``datasets.rows.claim_file``); written with the import's rows, also where it added
    none. One per content and device (a ``--copy`` adds another); deleting the device deletes its records."""

    __tablename__ = "imported_files"
    # (sha256, device_id) also serves the look-up by content alone
    __table_args__ = (UniqueConstraint("sha256", "device_id", name="uq_imported_files_sha256_device"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))  # of the file's bytes
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    format: Mapped[str] = mapped_column(String(16))  # the import format: "latbench", "csv"
    space: Mapped[str] = mapped_column(String(32))
    file: Mapped[str] = mapped_column(Text)  # its name when first imported as the device
    imported_at: Mapped[datetime] = mapped_column(default=utcnow)  # first imported as the device


def usable():
    """The SQL condition selecting the measurements estimates are made from: those not quarantined whose latency
    follows the latency rule (``predictor.latencies``: positive, finite). Rows against the rule (stored before
    importers checked it) stay listed, but no prediction, ranking, adaptation or export reads them, so they cannot
    stop a device from predicting. PostgreSQL orders NaN above infinity, so ``< inf`` leaves NaN out too."""
    return and_(Measurement.quarantined.is_(False), Measurement.latency_ms > 0, Measurement.latency_ms < float("inf"))


class AuditEntry(Base):
    """One admin action that changed data: who did what to which row, when."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))  # the API key's or admin login's name
    action: Mapped[str] = mapped_column(String(32))  # e.g. "quarantine", "release", "delete"
    target: Mapped[str] = mapped_column(String(128))  # e.g. "measurement 42"
    detail: Mapped[dict] = mapped_column(default=dict)  # what the row was (device, arch, latency ...) and why


class Adaptation(Base):
    """Few-shot transfer of the predictor to one device: samples chosen, measured, fine-tuned, activated."""

    __tablename__ = "adaptations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    state: Mapped[AdaptState] = mapped_column(
        Enum(AdaptState, native_enum=False, length=16), default=AdaptState.measuring
    )
    samples: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(32), default="")
    sample_archs: Mapped[list] = mapped_column(default=list)  # chosen: NB201 indices, other spaces' arch strings
    calibration: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # R random archs measured too
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("job_batches.id", ondelete="SET NULL"))
    checkpoint: Mapped[str | None] = mapped_column(String(64))  # base checkpoint version it adapted
    params: Mapped[dict] = mapped_column(default=dict)  # adapted per-device parameters (small)
    conditions_key: Mapped[str] = mapped_column(String(96), default="")  # the conditions it was fitted under
    metrics: Mapped[dict] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    device: Mapped[Device] = relationship()  # for showing its name (the admin UI); no column of its own
    activated_at: Mapped[datetime | None]
