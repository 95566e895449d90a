"""Dashboard figures: fleet state, queue, throughput and the data behind the plots (aggregated or sampled in SQL)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from latfarm.predictor import nb201
from latfarm.predictor.spaces import SPACES, ArchError, UnknownSpace, get_space
from latfarm.services.admin.views import ago, whole
from latfarm.services.core.clock import as_utc, iso_utc
from latfarm.services.core.errors import InvalidArgument, NotFound
from latfarm.services.domain.batches import queue_depth, waiting_for_agent
from latfarm.services.domain.conditions import space_of
from latfarm.services.domain.liveness import online_cutoff, online_window_s
from latfarm.services.domain.predictions import conditions_of
from latfarm.services.store.models import (
    Adaptation,
    AdaptState,
    Agent,
    ApiKey,
    Arch,
    Device,
    Job,
    JobState,
    Measurement,
)

MAX_DISTRIBUTION_ROWS = 2_000  # per device, for the per-device percentiles
MAX_HISTOGRAM_ROWS = 50_000
MAX_SCATTER_POINTS = 1_500
NO_PREDICTOR = "no predictor for this device yet"


def _sample_step(count: int, limit: int) -> int:
    return max(1, -(-count // limit))


def fleet(session: Session, heartbeat_interval_s: float, now: datetime | None = None) -> dict[str, Any]:
    """Agents with their last heartbeat, queue depth per state (``waiting_for_agent``: the queued jobs of devices
    with no agent online) and recent throughput."""
    now = now or datetime.now(timezone.utc)
    cutoff = online_cutoff(heartbeat_interval_s, now)
    rows = session.execute(
        select(Agent, Device.name)
        .join(Device, Agent.device_id == Device.id)
        .order_by(Agent.last_heartbeat.is_(None), Agent.last_heartbeat.desc())
        .limit(50)
    ).all()
    agents = []
    for agent, device_name in rows:
        beat = as_utc(agent.last_heartbeat)
        agents.append(
            {
                "id": agent.id,
                "name": agent.name or agent.id,
                "device": device_name,
                "state": agent.state,
                "online": beat is not None and beat >= cutoff,
                "last_heartbeat": iso_utc(beat),
                "last_heartbeat_ago": ago(beat, now),
            }
        )
    total_agents = session.scalar(select(func.count()).select_from(Agent)) or 0
    online = session.scalar(select(func.count()).select_from(Agent).where(Agent.last_heartbeat >= cutoff)) or 0
    queue = queue_depth(session)

    def done_since(hours: int) -> int:
        since = now - timedelta(hours=hours)
        done = select(func.count()).select_from(Job).where(Job.state == JobState.done, Job.finished_at >= since)
        return session.scalar(done) or 0

    failed_24h = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.state == JobState.failed, Job.finished_at >= now - timedelta(hours=24))
    )

    return {
        "agents": agents,
        "agents_total": total_agents,
        "agents_online": online,
        "agents_offline": total_agents - online,
        "online_window_s": online_window_s(heartbeat_interval_s),
        "queue": queue,
        "waiting_for_agent": waiting_for_agent(session, cutoff),
        "throughput": {
            "jobs_done_1h": done_since(1),
            "jobs_done_24h": done_since(24),
            "jobs_failed_24h": failed_24h,
        },
    }


def device_table(session: Session) -> list[dict[str, Any]]:
    """Every device with its measurement counts (from agents / imported from a dataset), what predicts for it and its
    latest adaptation attempt, apart: ``serving`` lists the spaces with an active adaptation (``nb201``; ``nb201
    (old conditions, unused)`` when it was fitted under conditions the device no longer has), ``latest`` is the
    newest attempt of any space (``fbnet cancelled``), which may have failed or been cancelled while an earlier one
    stays active (``GET /v1/devices/{name}``'s ``active`` and ``predictor``).

    Imported rows are the ones with a dataset, so one covering-index scan counts both kinds.
    """
    counts = {
        device_id: (total, imported)
        for device_id, total, imported in session.execute(
            select(Measurement.device_id, func.count(), func.count(Measurement.dataset)).group_by(Measurement.device_id)
        )
    }
    newest = (
        select(Adaptation.device_id, func.max(Adaptation.created_at).label("created_at"))
        .group_by(Adaptation.device_id)
        .subquery()
    )
    latest = {
        device_id: f"{space_of(key)} {state.value}"
        for device_id, key, state in session.execute(
            select(Adaptation.device_id, Adaptation.conditions_key, Adaptation.state).join(
                newest,
                (Adaptation.device_id == newest.c.device_id) & (Adaptation.created_at == newest.c.created_at),
            )
        )
    }
    active: dict[int, list[str]] = {}
    for device_id, key in session.execute(
        select(Adaptation.device_id, Adaptation.conditions_key)
        .where(Adaptation.state == AdaptState.active)
        .order_by(Adaptation.conditions_key)
    ):
        active.setdefault(device_id, []).append(key)
    devices = []
    for device in session.scalars(select(Device).order_by(Device.name)):
        total, imported = counts.get(device.id, (0, 0))
        serving = [
            space_of(key)
            + ("" if key == conditions_of(device).for_space(space_of(key)).key else " (old conditions, unused)")
            for key in active.get(device.id, [])
        ]
        devices.append(
            {
                "id": device.id,
                "name": device.name,
                "runtime": device.runtime,
                "measured": total - imported,
                "imported": imported,
                "total": total,
                "serving": ", ".join(serving) or None,
                "latest": latest.get(device.id),
            }
        )
    return devices


def _device_count(session: Session, device_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Measurement).where(Measurement.device_id == device_id)) or 0


def _device_latencies(session: Session, device_id: int, count: int, limit: int) -> np.ndarray:
    """Latencies of one device with ``count`` rows, an evenly spread sample of at most about ``limit``."""
    query = select(Measurement.latency_ms).where(Measurement.device_id == device_id)
    step = _sample_step(count, limit)
    if step > 1:
        query = query.where(Measurement.arch_id % step == 0)  # (device_id, arch_id) index: few row lookups
    return np.asarray(session.scalars(query).all(), dtype=float)


def distributions(session: Session) -> list[dict[str, Any]]:
    """Latency percentiles of every device with measurements (sampled), for a box-style overview."""
    out = []
    for device_id, name, count in session.execute(
        select(Device.id, Device.name, func.count(Measurement.id))
        .join(Measurement, Measurement.device_id == Device.id)
        .group_by(Device.id, Device.name)
        .order_by(Device.name)
    ):
        values = _device_latencies(session, device_id, count, MAX_DISTRIBUTION_ROWS)
        values = values[values > 0]
        if values.size == 0:
            continue
        p5, p25, p50, p75, p95 = np.percentile(values, [5, 25, 50, 75, 95])
        out.append(
            {
                "device_id": device_id,
                "device": name,
                "count": count,
                "p5": p5,
                "p25": p25,
                "median": p50,
                "p75": p75,
                "p95": p95,
            }
        )
    return out


def histogram(session: Session, device: Device, bins: int = 40) -> dict[str, Any]:
    """Log-binned latency histogram of one device; non-positive values (disconnected cells) are counted apart."""
    values = _device_latencies(session, device.id, _device_count(session, device.id), MAX_HISTOGRAM_ROWS)
    positive = values[values > 0]
    result: dict[str, Any] = {
        "device": device.name,
        "count": int(values.size),
        "non_positive": int(values.size - positive.size),
    }
    if positive.size == 0:
        return {**result, "edges": [], "counts": []}
    low, high = float(positive.min()), float(positive.max())
    edges = np.geomspace(low, high, bins + 1) if high > low else np.array([low * 0.99, high * 1.01])
    counts, edges = np.histogram(positive, bins=edges)
    return {
        **result,
        "edges": edges.tolist(),
        "counts": counts.tolist(),
        "median": float(np.median(positive)),
    }


def device_spaces(session: Session, device: Device) -> list[str]:
    """The registered spaces, in registration order, that the device has measurements or adaptations of (the first
    registered space when it has neither): one predictor panel each."""
    measured = session.scalars(
        select(Arch.space).join(Measurement, Measurement.arch_id == Arch.id).where(Measurement.device_id == device.id)
        .distinct()
    )  # fmt: skip
    adapted = session.scalars(select(Adaptation.conditions_key).where(Adaptation.device_id == device.id).distinct())
    present = set(measured) | {space_of(key) for key in adapted}
    return [name for name in SPACES if name in present] or [next(iter(SPACES))]


def measured_vs_predicted(
    session: Session, predictions: Any, device: Device, space: str | None = None
) -> dict[str, Any]:
    """Measured vs predicted latency of a device's measured archs of ``space`` (default: the first of its
    ``device_spaces``), with Spearman's rho over all of them; "measured" is what ``/v1/predict`` serves for an arch
    (``services.predictions.measured_latencies``). ``spaces`` lists the device's spaces (the panel's switch);
    ``InvalidArgument`` for an unknown space."""
    spaces = device_spaces(session, device)
    try:
        searched = get_space(space or spaces[0])
    except UnknownSpace as err:
        raise InvalidArgument(str(err), field="space") from err
    head = {"device": device.name, "space": searched.name, "spaces": spaces}
    model = predictions.for_device(session, device, searched.name) if predictions is not None else None
    if model is None:
        return {**head, "available": False, "reason": f"{NO_PREDICTOR} ({searched.name})"}
    table = predictions.measured(session, device, space=searched.name)
    keys = sorted(table)
    if not keys:
        return {**head, "available": False, "reason": f"no measurements of {searched.name} archs on this device"}
    measured = np.array([table[k].latency_ms for k in keys], dtype=float)
    try:
        predicted, _std = predictions.predict(session, device, keys, searched.name)
    except Exception as err:  # the dashboard reports a broken predictor rather than failing the page
        return {**head, "available": False, "reason": f"predictor failed: {err}"}
    from scipy.stats import spearmanr

    def position(key: int | str) -> int | None:  # keys are positions in an enumerated space, else strings
        return key if isinstance(key, int) else searched.index_of(key)

    predicted = np.asarray(predicted, dtype=float)
    rho = float(spearmanr(measured, predicted).statistic) if len(keys) > 1 else None
    shown = np.unique(np.linspace(0, len(keys) - 1, min(len(keys), MAX_SCATTER_POINTS)).astype(int))
    return {
        **head,
        "available": True,
        "count": len(keys),
        "spearman_rho": None if rho is None or np.isnan(rho) else rho,
        "points": [
            {"index": position(keys[i]), "measured": float(measured[i]), "predicted": float(predicted[i])}
            for i in shown.tolist()
        ],
    }


def resolve_arch(session: Session, query: str | None, space: str = nb201.SPACE) -> Arch | None:
    """An arch of ``space`` by reference position (NB201: official index) or arch string; without a query, the
    arch of the latest measurement."""
    query = (query or "").strip()
    if not query:
        arch_id = session.scalar(select(Measurement.arch_id).order_by(Measurement.id.desc()).limit(1))
        return session.get(Arch, arch_id) if arch_id is not None else None
    if query.isascii() and query.isdigit():
        if whole(query) is None:  # a position beyond any a column holds: no arch has it
            return None
        wanted = Arch.reference_index == int(query)
    else:  # a string of another form raises ArchError naming what is wrong
        wanted = Arch.arch == get_space(space).canonical(query)
    return session.scalars(select(Arch).where(Arch.space == space, wanted).limit(1)).first()


def arch_across_devices(session: Session, query: str | None, space: str | None = None) -> dict[str, Any]:
    """Mean measured latency of one arch on every device that has it, fastest first. The arch is of ``space``, or,
    when none is named, of the first registered space that parses it (FBNet strings need no space);
    ``InvalidArgument`` for a malformed arch or unknown space, ``NotFound`` when it (or, without a query, anything)
    has no measurements."""
    try:
        arch = resolve_arch(session, query, space or _space_of(query))
    except (ArchError, UnknownSpace) as err:
        raise InvalidArgument(str(err), field="space" if isinstance(err, UnknownSpace) else "arch") from err
    if arch is None:
        raise NotFound(f"no measurements of arch {query!r}" if query else "no measurements yet", field="arch")
    rows = session.execute(
        select(Device.id, Device.name, func.avg(Measurement.latency_ms), func.count())
        .join(Measurement, Measurement.device_id == Device.id)
        .where(Measurement.arch_id == arch.id)
        .group_by(Device.id, Device.name)
        .order_by(func.avg(Measurement.latency_ms))
    ).all()
    return {
        "arch": arch.arch,
        "space": arch.space,
        "index": arch.reference_index,
        "nb201_index": arch.reference_index if arch.space == nb201.SPACE else None,
        "devices": [{"device_id": i, "device": n, "mean_ms": float(m), "count": c} for i, n, m, c in rows],
    }


def _space_of(query: str | None) -> str:
    """The first registered space whose strings ``query`` parses as (default: the first space)."""
    for space in SPACES.values():
        try:
            space.parse((query or "").strip())
            return space.name
        except ArchError:
            continue
    return next(iter(SPACES))


# How the device page names an adaptation's metrics (services/domain/adaptation.py); a key ending in "rel_error" is a
# relative error, shown as a percentage; a list (of archs) is shown as its length and its archs.
METRIC_LABELS = {
    "measured": "samples measured (of its K)",
    "unstable": "samples measured unstably (a busy device)",
    "outliers": "outliers left out of the fit",
    "fit_mean_abs_rel_error": "fit error (mean |relative|, its samples)",
    "calibration_archs": "other archs its spread is calibrated on",
    "std_factor": "spread factor",
}


def metric_texts(metrics: dict[str, Any]) -> list[str]:
    """An adaptation's metrics as ``label: value`` lines, e.g. ``fit error (...): 10.4 %``, ``outliers left out of
    the fit: 2 (3, 17)``."""
    texts = []
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            shown = f"{value * 100:.1f} %" if key.endswith("rel_error") else f"{value:.3g}"
        elif isinstance(value, list):
            shown = f"{len(value)} ({', '.join(map(str, value))})" if value else "0"
        else:
            shown = str(value)
        texts.append(f"{METRIC_LABELS.get(key, key)}: {shown}")
    return texts


def samples_text(samples: int, calibration: int) -> str:
    """The archs an adaptation measured: its K samples and its R random calibrating ones, e.g. ``5 + 20 random``."""
    return f"{samples} + {calibration} random" if calibration else str(samples)


def owner_text(session: Session, device: Device) -> str:
    """Who owns the device: its owner key's name and id (``revoked`` when it is), or that only admins do."""
    key = session.get(ApiKey, device.owner_key_id) if device.owner_key_id is not None else None
    if key is None:
        return "admins only (no owner key)"
    return f"key {key.name!r} (id {key.id})" + (", revoked" if key.revoked else "")


def predictor_status(session: Session, predictions: Any, device: Device) -> list[dict[str, Any]]:
    """Per space of the device (``device_spaces``): whether it can be predicted, the active adaptation that serves
    (``serving``: its id, when it became active and whether predictions use it; None without one), and its
    adaptations of that space, newest first (the latest may be cancelled or failed while the active one serves)."""
    panels = []
    for space in device_spaces(session, device):
        active = session.scalars(
            select(Adaptation).where(
                Adaptation.device_id == device.id,
                Adaptation.conditions_key.startswith(f"{space}/"),
                Adaptation.state == AdaptState.active,
            )
        ).first()
        serving = None
        if active is not None:
            serving = {
                "id": active.id,
                "activated": ago(as_utc(active.activated_at)) if active.activated_at else None,
                "current": active.conditions_key == conditions_of(device).for_space(space).key,
            }
        adaptations = session.scalars(
            select(Adaptation)
            .where(Adaptation.device_id == device.id, Adaptation.conditions_key.startswith(f"{space}/"))
            .order_by(Adaptation.created_at.desc())
            .limit(10)
        ).all()
        try:
            available = predictions is not None and predictions.for_device(session, device, space) is not None
            problem = None
        except Exception as err:  # shown on the page instead of a 500
            available, problem = False, str(err)
        panels.append(
            {
                "space": space,
                "available": available,
                "message": problem or (None if available else NO_PREDICTOR),
                "serving": serving,
                "adaptations": [
                    {
                        "id": a.id,
                        "state": a.state.value,
                        "samples": samples_text(a.samples, a.calibration),
                        "strategy": a.strategy,
                        "metrics": metric_texts(a.metrics or {}),
                        "error": a.error,
                        "created": ago(as_utc(a.created_at)),
                        "activated": ago(as_utc(a.activated_at)) if a.activated_at else None,
                    }
                    for a in adaptations
                ],
            }
        )
    return panels
