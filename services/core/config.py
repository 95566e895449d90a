"""Server settings: the one place that reads the environment (``LATFARM_*``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"LATFARM_{name}")
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("latfarm-data")
    db_url: str | None = None  # default: SQLite file in data_dir
    redis_url: str | None = None  # optional: wakes waiting agents, caches predictions
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    grpc_port: int = 50051
    grpc_workers: int = 256  # gRPC threads; agents' long-polls may hold all but a reserve (see services/rpc)
    grpc_tls_cert: Path | None = None  # PEM certificate (chain) for the agents' gRPC port; with grpc_tls_key: TLS
    grpc_tls_key: Path | None = None  # its PEM private key; both unset: plaintext
    admin_key: str | None = None  # bootstrap admin API key; generated and printed once when unset
    lease_seconds: int = 60  # a lease lapses this long after the agent's last heartbeat
    heartbeat_interval_s: int = 10
    max_attempts: int = 3  # a job fails for good after this many failed attempts
    max_jobs_per_lease: int = 16
    export_poll_s: float = 2.0  # the export worker looks for queued jobs without a model this often when idle
    datasets_dir: Path | None = None  # HELP-layout folder imported by `latfarm up` when present
    artifact_settings: dict = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'latfarm.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        """Settings from ``LATFARM_*`` variables; non-None keyword overrides win (CLI flags)."""
        base = cls(
            data_dir=Path(_env("DATA_DIR", "latfarm-data")),
            db_url=_env("DB_URL"),
            redis_url=_env("REDIS_URL"),
            http_host=_env("HTTP_HOST", "0.0.0.0"),
            http_port=int(_env("HTTP_PORT", "8000")),
            grpc_port=int(_env("GRPC_PORT", "50051")),
            grpc_workers=int(_env("GRPC_WORKERS", "256")),
            grpc_tls_cert=Path(c) if (c := _env("GRPC_TLS_CERT")) else None,
            grpc_tls_key=Path(k) if (k := _env("GRPC_TLS_KEY")) else None,
            admin_key=_env("ADMIN_KEY"),
            lease_seconds=int(_env("LEASE_SECONDS", "60")),
            heartbeat_interval_s=int(_env("HEARTBEAT_INTERVAL_S", "10")),
            max_attempts=int(_env("MAX_ATTEMPTS", "3")),
            export_poll_s=float(_env("EXPORT_POLL_S", "2")),
            datasets_dir=Path(d) if (d := _env("DATASETS_DIR")) else None,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})
