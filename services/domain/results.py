"""The measurement result an agent reports: its one schema, its validation, and its mapping to a stored row.

Each boundary maps it with one function: the gRPC servicer decodes the wire message into a ``ReportedResult``
(``rpc.servicer.reported_result``), ``measurement_row`` turns it into a ``Measurement`` row, the REST route shows
that row (``api.routes.measurements.measurement_out``) and the dataset export writes it
(``datasets.writers.device_rows``). The names they share are declared here once: ``FIGURES`` and ``SETUP``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from latfarm.common.ranges import out_of_range, within
from latfarm.predictor.latencies import BOUNDS as LATENCY_BOUNDS
from latfarm.predictor.latencies import MAX_LATENCY_MS
from latfarm.proto.v1 import agent_pb2
from latfarm.proto.v1.names import STATISTICS
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.domain.conditions import Conditions
from latfarm.services.store.models import Source

# The figures a measurement stores as its agent reported them, in the order every view lists them after the
# headline (latency_ms and its statistic).
FIGURES = ("median_ms", "mean_ms", "std_ms", "min_ms", "p90_ms", "runs", "unstable")
# What a measurement was taken with, stored as reported.
SETUP = ("runtime", "runtime_version", "provider", "threads")
# The timings of the model's first use, stored as reported.
FIRST_USE = ("session_create_ms", "first_inference_ms")


class ResultError(InvalidArgument):
    """A malformed result; the message is safe to show the agent."""


@dataclass
class ReportedResult:
    """One agent result (times in ms)."""

    job_id: str
    ok: bool
    median_ms: float = 0.0
    latency_ms: float = 0.0  # the headline figure; 0 when the agent sent none: median_ms stands in
    statistic: str = ""  # how latency_ms was computed, one of STATISTICS; "" with latency_ms 0
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    p90_ms: float | None = None
    runs: int | None = None
    round_medians_ms: list[float] = field(default_factory=list)
    session_create_ms: float | None = None
    first_inference_ms: float | None = None
    error_class: str = ""
    error_message: str = ""
    unstable: bool = False
    artifact_sha256: str | None = None
    runtime: str | None = None
    runtime_version: str | None = None
    provider: str | None = None
    threads: int | None = None
    affinity: list[int] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    round_spread: float | None = None


# Plausibility: every latency an agent reports lies in [MIN_LATENCY_MS, MAX_LATENCY_MS], the importers' bounds too
# (0 = not sent, where the wire allows it); other times lie in [0, MAX_LATENCY_MS].
LATENCIES = ("latency_ms", "median_ms", "mean_ms", "min_ms", "p90_ms")
DURATIONS = ("std_ms", "round_spread", "session_create_ms", "first_inference_ms")
DURATION_BOUNDS = {"ge": 0, "le": MAX_LATENCY_MS}
ORDER = (("min_ms", "median_ms"), ("median_ms", "p90_ms"), ("min_ms", "latency_ms"))  # lower <= upper when both sent
STATS_FIELDS = frozenset(agent_pb2.Stats.DESCRIPTOR.fields_by_name)


def wire_field(name: str) -> str:
    """The path of ``ReportedResult`` field ``name`` within the wire's ``Result``."""
    return f"stats.{name}" if name in STATS_FIELDS else name


def validate(result: ReportedResult, where: str = "result") -> None:
    """Raise ``ResultError`` naming ``where`` (e.g. ``results[2]``) and the field unless ``result`` names its job
    and, when ok, carries plausible figures (finite, within bounds, min <= median <= p90, runs > 0)."""
    if not result.job_id:
        raise ResultError(f"{where}: result without job_id", field=f"{where}.job_id")
    if not result.ok:
        return

    def refuse(name: str, problem: str) -> ResultError:
        path = f"{where}.{wire_field(name)}"
        return ResultError(f"{path} (job {result.job_id}): {problem}", field=path)

    if not result.median_ms > 0:
        raise refuse("median_ms", f"an ok result's median_ms {out_of_range(result.median_ms, {'gt': 0})}")
    for name in LATENCIES:
        value = getattr(result, name)
        if value and not within(value, LATENCY_BOUNDS):  # NaN is never within
            raise refuse(name, out_of_range(value, LATENCY_BOUNDS, "ms"))
    for name in DURATIONS:
        value = getattr(result, name)
        if value is not None and not within(value, DURATION_BOUNDS):
            raise refuse(name, out_of_range(value, DURATION_BOUNDS))
    for lower, upper in ORDER:
        low, high = getattr(result, lower), getattr(result, upper)
        if low and high and low > high:
            raise refuse(lower, f"{lower} {low} exceeds {upper} {high}")
    if (result.runs or 0) < 0:
        raise refuse("runs", f"{out_of_range(result.runs, {'ge': 0})} (0: not sent)")
    for value in result.round_medians_ms:
        if not within(value, LATENCY_BOUNDS):
            raise refuse("round_medians_ms", out_of_range(value, LATENCY_BOUNDS, "ms"))
    if (result.threads or 0) < 0:
        raise refuse("threads", f"{out_of_range(result.threads, {'ge': 0})} (0: not sent)")
    if any(cpu < 0 for cpu in result.affinity):
        raise refuse("affinity", f"CPU numbers {out_of_range(min(result.affinity), {'ge': 0})}")
    if result.latency_ms > 0 and result.statistic not in STATISTICS:
        raise refuse("statistic", f"latency_ms needs a statistic in {STATISTICS}, got {result.statistic!r}")


def headline(result: ReportedResult) -> tuple[float, str]:
    """(latency_ms, statistic) to store: the agent's headline, or its median when it sent none."""
    if result.latency_ms > 0:
        return result.latency_ms, result.statistic
    return result.median_ms, "median"


def statistic_of(protocol: dict | None) -> str | None:
    """How a stored row's ``latency_ms`` was computed (``min`` or ``median``, kept in its ``protocol``); None for
    imported rows, which carry the dataset's figure."""
    return (protocol or {}).get("statistic")


def attributes(source: object, names: Iterable[str]) -> dict[str, Any]:
    """``source``'s attributes ``names``, by name."""
    return {name: getattr(source, name) for name in names}


class MeasuredJob(Protocol):
    """What a measurement row takes of its job: a ``Job``, or a row of these columns."""

    @property
    def id(self) -> str:
        """The job's id."""
        ...

    @property
    def device_id(self) -> int:
        """Its device."""
        ...

    @property
    def arch_id(self) -> int:
        """Its arch."""
        ...

    @property
    def artifact_sha256(self) -> str | None:
        """The artifact it was leased with."""
        ...


@lru_cache(maxsize=256)
def _stored_conditions(conditions: Conditions) -> tuple[dict[str, Any], str]:
    return conditions.to_dict(), conditions.key


def measurement_row(
    job: MeasuredJob, agent_id: str, result: ReportedResult, provenance: dict, conditions: Conditions
) -> dict[str, Any]:
    """The ``Measurement`` row (column -> value) of an ok result of ``job``, measured by agent ``agent_id`` under
    its batch's ``conditions``."""
    stored, key = _stored_conditions(conditions)
    protocol = dict(result.settings)
    protocol["affinity"] = list(result.affinity)
    if result.round_spread is not None:
        protocol["round_spread"] = result.round_spread
    latency_ms, protocol["statistic"] = headline(result)  # the statistic computed, over the one asked in settings
    return dict(
        device_id=job.device_id,
        arch_id=job.arch_id,
        source=Source.measured,
        agent_id=agent_id,
        job_id=job.id,
        artifact_sha256=result.artifact_sha256 or job.artifact_sha256,
        protocol=protocol,
        conditions=dict(stored),
        conditions_key=key,
        latency_ms=latency_ms,
        round_medians_ms=list(result.round_medians_ms),
        provenance=dict(provenance),
        **attributes(result, FIGURES + SETUP + FIRST_USE),
    )
