"""A job's measurement conditions as the agent sees them: what the artifact is (batch size, precision, graph
variant, input), read from ``Job.conditions``. The agent measures the artifact as it is or fails ``unsupported``;
it never substitutes other conditions.

The agent installs without the server, so this mirrors the wire message rather than the server's ``Conditions``;
``key`` is written as the server writes it, so a human can match a report to its rows."""

from __future__ import annotations

from dataclasses import dataclass

from latfarm.proto.v1 import agent_pb2

FULL_PRECISION = "fp32"  # any other precision is reduced: a runtime without kernels for it fails "unsupported"


@dataclass(frozen=True)
class JobConditions:
    """What a job's network is: space, input (resolution px, classes), batch size, precision, graph variant."""

    space: str
    resolution: int
    classes: int
    batch_size: int
    precision: str
    graph: str

    @classmethod
    def of(cls, job: agent_pb2.Job) -> JobConditions | None:
        """The job's conditions; None when the server sent none (an older server: the agent measures as before)."""
        if not job.HasField("conditions"):
            return None
        c = job.conditions
        return cls(c.space, c.resolution, c.classes, c.batch_size, c.precision, c.graph)

    @property
    def reduced_precision(self) -> bool:
        """Whether the precision is below fp32 (fp16, int8): a missing kernel is then about the conditions."""
        return self.precision != FULL_PRECISION

    @property
    def key(self) -> str:
        """Canonical string, as the server writes it, e.g. ``nb201/32px/10cls/b4/fp16/reference``."""
        return f"{self.space}/{self.resolution}px/{self.classes}cls/b{self.batch_size}/{self.precision}/{self.graph}"
