"""The agent's options, declared once: the ``latfarm agent`` command builds an ``AgentOptions`` and its help texts
read their defaults from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from latfarm.agents.measurement import MeasureSettings


@dataclass(frozen=True)
class AgentOptions:
    """How one agent runs: where its server and state are, how it connects, what it leases and how it measures.

    ``measure`` holds the agent's own measurement settings; a job's settings override them job by job."""

    server: str  # gRPC address of the server, HOST:PORT
    enroll: str | None = None  # enrollment token; needed only while the state folder holds no credential
    state_dir: Path = Path("latfarm-agent")  # credential file and artifact cache
    name: str | None = None  # the agent's name on the server; None: the hostname
    tls: bool = False  # TLS, trusting the system's root certificates
    ca_cert: Path | None = None  # a PEM CA or self-signed certificate to trust instead (implies TLS)
    affinity: str | None = None  # CPUs to pin to, e.g. '0', '0,2' or '2-3'; None: not pinned
    cache_mb: int = 512  # bound of the artifact cache, MiB
    cooldown_s: float = 0.0  # rest between batches, seconds
    once: bool = False  # exit when the queue is empty
    provider: str | None = None  # onnxruntime execution provider; None: CPU
    max_jobs: int = 0  # jobs per lease; 0: the server's limit
    measure: MeasureSettings = field(default_factory=MeasureSettings)
