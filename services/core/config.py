"""Settings: each ``LATFARM_*`` variable declared once, with its default and meaning, and read only by these classes.

A setting's environment variable is ``LATFARM_`` + its field name in capitals; an empty variable counts as unset.
Constructing ``Settings()`` reads the environment; keyword values win over it. docs/operations.md's settings table is
checked against these declarations by tests/unit/test_config.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from typing_extensions import Self

from latfarm.services.client import WAIT_RETRY_S

ENV_PREFIX = "LATFARM_"


def env_name(setting: str) -> str:
    """The environment variable of a setting: ``http_port`` -> ``LATFARM_HTTP_PORT``."""
    return f"{ENV_PREFIX}{setting.upper()}"


class _FromEnvironment(BaseSettings):
    """``LATFARM_*`` variables over the declared defaults; keyword values over both."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True)

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """The environment, with the overrides that are not None on top (a CLI flag not given is None)."""
        return cls(**{name: value for name, value in overrides.items() if value is not None})

    @classmethod
    def bounds(cls, name: str) -> dict[str, float]:
        """The bounds setting ``name`` declares, by pydantic's names (``{"ge": 0, "le": 65535}``; ``{}``: none)."""
        names = ("ge", "gt", "le", "lt")
        return {
            n: getattr(m, n) for m in cls.model_fields[name].metadata for n in names if getattr(m, n, None) is not None
        }

    def to_env(self) -> dict[str, str]:
        """Every setting as its variable, for a child process's environment: the child reads back exactly these
        settings (an unset one as an empty variable, which counts as unset)."""
        return {env_name(name): "" if value is None else str(value) for name, value in self.model_dump().items()}


class Settings(_FromEnvironment):
    """The server's settings (``latfarm serve``, ``migrate``, ``up``, ``import``, ``export data``)."""

    data_dir: Path = Field(Path("latfarm-data"), description="folder for the SQLite file, artifacts, keys and logs")
    db_url: str | None = Field(None, description="SQLAlchemy database URL; unset: a SQLite file in the data folder")
    redis_url: str | None = Field(None, description="Redis URL (optional): wakes waiting agents, caches predictions")
    http_host: str = Field("0.0.0.0", description="address the REST port listens on")
    http_port: int = Field(8000, ge=0, le=65535, description="REST port (0: any free port)")
    http_access_log: bool = Field(False, description="log each REST request on stdout (uvicorn's access log)")
    grpc_host: str | None = Field(
        None, description="address the gRPC port listens on (0.0.0.0: every interface); unset: LATFARM_HTTP_HOST"
    )
    grpc_port: int = Field(50051, ge=0, le=65535, description="gRPC port for the agents (0: any free port)")
    grpc_workers: int = Field(
        256, description="gRPC threads per server; agents waiting for work may hold all but an eighth of them"
    )
    grpc_processes: int = Field(
        0,
        ge=0,
        description="processes serving the gRPC port (each its own GIL; they share it through SO_REUSEPORT; more than"
        " 1: child processes, REST alone in the main one); 0: one per CPU up to 4 on PostgreSQL with Redis, else 1;"
        " SQLite allows only 1",
    )
    grpc_max_connection_age_s: float = Field(
        300.0,
        ge=0,
        description="seconds (give or take 10%) after which the gRPC port asks an agent's connection to close"
        " (HTTP/2 GOAWAY; its calls in flight finish): the agent reconnects and the kernel spreads connections over"
        " the gRPC processes again; 0: never",
    )
    grpc_tls_cert: Path | None = Field(
        None,
        description="PEM certificate (chain) for the gRPC port: TLS with LATFARM_GRPC_TLS_KEY; both unset: plaintext",
    )
    grpc_tls_key: Path | None = Field(None, description="the PEM private key of LATFARM_GRPC_TLS_CERT")
    admin_key: str | None = Field(
        None,
        description="bootstrap admin API key (once revoked it stays revoked: set a new one); unset: `serve` "
        "generates one and prints it once",
    )
    lease_seconds: int = Field(60, description="seconds after the agent's last heartbeat when its lease lapses")
    heartbeat_interval_s: int = Field(
        10,
        description="seconds between an agent's heartbeats; it is online while its last one is at most twice this old",
    )
    enrollment_ttl_h: float = Field(
        24.0, gt=0, description="hours an enrollment token lives when its request sets no `expires_in_s`"
    )
    max_attempts: int = Field(3, description="a job fails for good after this many failed attempts")
    max_jobs_per_lease: int = Field(
        16,
        ge=1,
        le=256,
        description="the most jobs one lease hands an agent, 1-256 (the report of as many results stays under 4 MiB)",
    )
    export_poll_s: float = Field(
        2.0, description="seconds between an idle server's looks for queued jobs whose model is not exported yet"
    )
    export_processes: int = Field(
        0,
        ge=0,
        description="slow-format (TFLite) conversions the export worker runs at once, each in its own process (kept"
        " between conversions: torch and litert-torch load once); 0: half the CPUs, 1-4",
    )
    metrics_access: Literal["key", "local", "open"] = Field(
        "key",
        description="who may read /metrics: `key` (any valid API key as Bearer token), `local` (connections from"
        " this machine, a local reverse proxy's included), `open`",
    )
    datasets_dir: Path | None = Field(None, description="HELP-layout folder that `latfarm up` imports when set")
    auth_failure_limit: str = Field(
        "20/minute",
        description="failed authentications one client address may make (moving window, e.g. `20/minute`) before"
        " its further wrong credentials get 429 / RESOURCE_EXHAUSTED until the window has room again; valid ones"
        " keep working",
    )
    grpc_db_calls: int = Field(
        8,
        ge=1,
        description="agent calls doing database work at once per gRPC process (heartbeats first, then the others in"
        " arrival order; a quarter kept from leases for heartbeats and reports); more are queued briefly, then refused"
        " with a retry hint",
    )

    @property
    def database_url(self) -> str:
        """``db_url``, else the SQLite file in the data folder."""
        return self.db_url or f"sqlite:///{(self.data_dir / 'latfarm.db').resolve()}"

    @property
    def grpc_listen_host(self) -> str:
        """The address the gRPC port listens on: ``grpc_host``, else ``http_host``."""
        return self.grpc_host or self.http_host

    @property
    def grpc_tls(self) -> bool:
        """Whether the gRPC port serves TLS: a certificate is set (``rpc.server.server_credentials`` refuses to
        start with one of the two PEM files alone)."""
        return self.grpc_tls_cert is not None

    @property
    def artifacts_dir(self) -> Path:
        """The content-addressed store of exported models."""
        return self.data_dir / "artifacts"


class ClientSettings(_FromEnvironment):
    """The REST client commands' settings (``latfarm predict``, ``measure``, ``adapt``)."""

    server: str = Field(
        "http://127.0.0.1:8000", description="the server's REST base URL for `predict`, `measure`, `adapt` (`--server`)"
    )
    api_key: str | None = Field(None, description="their API key, sent as Bearer token (`--key`)")
    wait_retry_s: float = Field(
        WAIT_RETRY_S,
        ge=0,
        description="seconds `measure`, `results` and `adapt` keep retrying while they wait and the server does not"
        " answer (a restart, a busy proxy); then they exit 1 saying how to pick up the jobs, which go on",
    )
