"""The agent's side of the result schema: what the measurement procedure found, mapped onto the wire's messages.

Every result the agent reports (measured, failed to fetch, unsupported format, hung) goes through
``result_message``; a batch's machine state goes through ``provenance_message``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from latfarm.agents.backends import Backend
from latfarm.agents.conditions import JobConditions
from latfarm.agents.descriptor import ClockState, governor
from latfarm.agents.measurement import MeasureSettings, ModelResult
from latfarm.proto.v1 import agent_pb2
from latfarm.proto.v1.limits import string_limit
from latfarm.proto.v1.names import ERROR_CLASSES


@dataclass(frozen=True)
class MeasuredWith:
    """What a batch was measured with: the runtime, the measurement settings in force, the pinned CPUs (empty:
    not pinned)."""

    backend: Backend
    settings: MeasureSettings
    affinity: list[int] = field(default_factory=list)


def settings_message(settings: MeasureSettings) -> agent_pb2.MeasureSettings:
    """The measurement settings as reported with each result (the wire's fields only)."""
    return agent_pb2.MeasureSettings(
        warmup_runs=settings.warmup_runs,
        runs_per_round=settings.runs_per_round,
        rounds=settings.rounds,
        threads=settings.threads,
        timeout_s=settings.timeout_s,
        statistic=settings.statistic,
    )


def result_message(
    result: ModelResult, artifact_sha256: str = "", measured: MeasuredWith | None = None
) -> agent_pb2.Result:
    """One job's result on the wire. ``measured`` is None for a job that never reached a runtime (its format is
    unsupported, or it hung): the message then carries the outcome only. An unstable result is reported with
    ``ERROR_CLASS_UNSTABLE`` and the spread that exceeded the threshold (``measured`` is required for it)."""
    error_class = ERROR_CLASSES.get(result.error_class or "", agent_pb2.ERROR_CLASS_UNSPECIFIED)
    message = result.error_message
    if result.unstable and measured is not None and result.stats is not None:
        error_class = agent_pb2.ERROR_CLASS_UNSTABLE
        message = f"round medians spread {result.stats.round_spread:.1%} > {measured.settings.spread_threshold:.0%}"
    fields: dict[str, Any] = {  # the keyword arguments of agent_pb2.Result
        "job_id": result.key,
        "ok": result.ok,
        "stats": agent_pb2.Stats(**asdict(result.stats)) if result.stats else None,
        "session_create_ms": result.session_create_ms,
        "first_inference_ms": result.first_inference_ms,
        "error_class": error_class,
        "error_message": message[: string_limit("error_message")],
        "unstable": result.unstable,
        "provider": result.provider,
    }
    if measured is not None:
        fields.update(
            artifact_sha256=artifact_sha256,
            runtime=measured.backend.runtime,
            runtime_version=measured.backend.version,
            threads=measured.settings.threads,
            affinity=measured.affinity,
            settings=settings_message(measured.settings),
        )
    return agent_pb2.Result(**fields)


def provenance_message(
    backend: Backend, before: ClockState, after: ClockState, unsteady: float, conditions: JobConditions | None = None
) -> agent_pb2.Provenance:
    """A batch's provenance: runtime build, CPU governor, clock (MHz) and temperature (°C) before and after, the
    share of its models that failed the repeatability check (0..1: how busy the machine was), and the conditions
    the agent was asked to measure (``extra["conditions"]``, their key; absent for jobs without conditions)."""
    extra = {
        "runtime": backend.runtime,
        "runtime_version": backend.version,
        "device": backend.device,
        "unsteady_share": f"{unsteady:.2f}",
    }
    if conditions is not None:
        extra["conditions"] = conditions.key
    return agent_pb2.Provenance(
        runtime_build=backend.build,
        governor=governor(),
        freq_mhz_before=before.freq_mhz,
        freq_mhz_after=after.freq_mhz,
        temp_c_before=before.temp_c,
        temp_c_after=after.temp_c,
        extra=extra,
    )
