"""Prometheus metrics: request counts and durations, plus gauges read from the store at scrape time."""

from __future__ import annotations

import logging
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from latfarm.services.domain import batches
from latfarm.services.domain.liveness import online_cutoff
from latfarm.services.store.models import Agent, Device, Measurement

log = logging.getLogger(__name__)
CONTENT_TYPE = CONTENT_TYPE_LATEST
ROUTE = "latfarm.route"  # scope key: the route template of a request answered before the router (its label)


class StoreCollector:
    """Queue depth, agents online and measurements stored, queried when Prometheus scrapes."""

    def __init__(self, sessions: sessionmaker[Session], heartbeat_interval_s: float) -> None:
        """Query through ``sessions``; agents count as online within two ``heartbeat_interval_s``."""
        self.sessions = sessions
        self.heartbeat_interval_s = heartbeat_interval_s

    def collect(self):
        """The three gauges, queried now; empty when the store query fails (logged)."""
        depth = GaugeMetricFamily("latfarm_queue_depth", "Jobs in the queue by state.", labels=["state"])
        online = GaugeMetricFamily("latfarm_agents_online", "Agents seen within 2 heartbeats.", labels=["device"])
        stored = GaugeMetricFamily("latfarm_measurements_stored", "Measurements in the store.", labels=["source"])
        try:
            with self.sessions() as session:
                for state, count in batches.queue_depth(session).items():
                    depth.add_metric([state], count)
                cutoff = online_cutoff(self.heartbeat_interval_s)
                rows = session.execute(
                    select(Device.name, func.count(Agent.id))
                    .outerjoin(Agent, (Agent.device_id == Device.id) & (Agent.last_heartbeat >= cutoff))
                    .group_by(Device.name)
                )
                for device, count in rows:
                    online.add_metric([device], count)
                counts = session.execute(select(Measurement.source, func.count()).group_by(Measurement.source))
                for source, count in counts:
                    stored.add_metric([source.value], count)
        except Exception:  # noqa: BLE001 - a scrape must not fail because the store hiccups
            log.exception("metrics: store query failed")
        yield from (depth, online, stored)


class Metrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self, sessions: sessionmaker[Session], heartbeat_interval_s: float) -> None:
        """A registry with the request counter and latency histogram, and a ``StoreCollector``."""
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "latfarm_http_requests", "HTTP requests.", ["method", "route", "status"], registry=self.registry
        )
        self.duration = Histogram(
            "latfarm_http_request_duration_seconds", "HTTP request duration.", ["route"], registry=self.registry
        )
        self.registry.register(StoreCollector(sessions, heartbeat_interval_s))
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def series(self, method: str, route: str, status: int) -> tuple[Counter, Histogram]:
        """The request counter and duration histogram of one method, route template and status (labelled once,
        then reused: ``labels`` costs about as much as the rest of the accounting)."""
        key = (method, route, status)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = (self.requests.labels(method, route, str(status)), self.duration.labels(route))
        return found

    def render(self) -> bytes:
        """The registry in Prometheus' text exposition format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts requests by route template (not raw path, so label cardinality stays bounded)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        """Wrap the ASGI ``app``, counting into ``metrics``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count it by method, route and status, and time it by route."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get(ROUTE) or getattr(scope.get("route"), "path", None) or "unmatched"
            counted, timed = self.metrics.series(scope["method"], route, status)
            counted.inc()
            timed.observe(time.perf_counter() - start)
