"""The composition root: what a server process shares, built once from ``Settings``.

``latfarm serve`` builds one ``Runtime``, bootstraps it (schema upgrade, admin key), hands it to the REST app
(``api.app.create_app``) and to the agents' gRPC server (``rpc.server.build_grpc_server``), starts its background
workers, and closes it on exit. Nothing else builds engines, sessions, notifiers, caches or workers.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from latfarm.services.api.auth import ensure_admin_key
from latfarm.services.core.config import Settings
from latfarm.services.domain.artifacts import ArtifactStore
from latfarm.services.domain.predictions import PredictionService, load_default_predictor
from latfarm.services.infra.cache import make_cache
from latfarm.services.infra.health import HealthProbe
from latfarm.services.infra.outage import Outage
from latfarm.services.infra.prometheus import Metrics
from latfarm.services.infra.throttle import AuthGuard
from latfarm.services.infra.wakeups import make_notifier
from latfarm.services.store.db import make_engine, make_read_sessionmaker, make_sessionmaker
from latfarm.services.store.migrate import upgrade
from latfarm.services.workers.adapt_worker import AdaptWorker
from latfarm.services.workers.export_worker import ExportWorker, conversion_processes
from latfarm.services.workers.lease_sweeper import LeaseSweeper
from latfarm.services.workers.periodic import PeriodicWorker

# ``/v1/predict``'s own threads: a slow request (a table built after a restart) holds one while the others go on;
# not the loop's default executor, which other work shares.
PREDICT_THREADS = 8


class Runtime:
    """Engine, write and read sessions, notifier, cache, health probe, artifact store, prediction service and the
    threads its REST requests run on, metrics, the guard against failed authentication and the background workers
    of one server process. Use as a context manager, or call ``close``."""

    def __init__(self, settings: Settings) -> None:
        """Build every part from ``settings`` (creating ``data_dir``); nothing runs until ``start_workers``."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.sessions = make_sessionmaker(self.engine)
        self.read_sessions = make_read_sessionmaker(self.engine)
        redis_outage = Outage("redis", logging.getLogger("latfarm.services.infra"))  # one warning per outage
        self.notifier = make_notifier(settings.redis_url, redis_outage)
        self.cache = make_cache(settings.redis_url, outage=redis_outage)
        self.health = HealthProbe(self.engine, self.cache)
        self.artifacts = ArtifactStore(settings.artifacts_dir)
        self.predictions = PredictionService(self.engine, self.read_sessions, self.cache, load_default_predictor)
        self.predict_pool = ThreadPoolExecutor(PREDICT_THREADS, thread_name_prefix="predict")
        self.metrics = Metrics(self.read_sessions, settings.heartbeat_interval_s)
        self.auth_guard = AuthGuard(settings.auth_failure_limit, self.metrics.registry)
        self.workers: list[PeriodicWorker] = [
            LeaseSweeper(
                self.sessions,
                self.notifier,
                lease_seconds=settings.lease_seconds,
                max_attempts=settings.max_attempts,
            ),
            AdaptWorker(self.sessions, self.predictions.predictor_loader, on_active=self.predictions.prepare),
            ExportWorker(
                self.sessions,
                self.read_sessions,
                self.artifacts,
                self.notifier,
                settings.export_poll_s,
                processes=conversion_processes(settings.export_processes),
            ),
        ]

    def bootstrap(self) -> str | None:
        """Upgrade the database schema and make sure an admin can log in; returns the admin key generated now (to
        show once), else None."""
        upgrade(self.settings.database_url)
        return ensure_admin_key(self.sessions, self.settings.admin_key)

    def start_workers(self) -> None:
        """Start the background workers' threads."""
        for worker in self.workers:
            worker.start()

    def close(self) -> None:
        """Stop the workers, the prediction threads and the health probe, then release the notifier, the cache and
        the database connections."""
        for worker in self.workers:
            worker.stop()
        self.predict_pool.shutdown(cancel_futures=True)
        self.health.close()
        self.notifier.close()
        self.cache.close()
        self.engine.dispose()

    def __enter__(self) -> Runtime:
        """The runtime itself."""
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """``close`` the runtime."""
        self.close()
