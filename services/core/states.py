"""The state names of jobs and adaptations: the database's values and the REST API's words, which the Python
client reads too (dependency-free: the client install has no SQLAlchemy)."""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    """A job's place in the queue."""

    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"  # never leased again; ``batches.cancel_batch``


class AdaptState(str, enum.Enum):
    """The stages of a device adaptation."""

    measuring = "measuring"  # waiting for the K sample measurements
    training = "training"
    active = "active"
    failed = "failed"
    cancelled = "cancelled"  # its measurement batch was cancelled: never fitted, the active one stays
    superseded = "superseded"
