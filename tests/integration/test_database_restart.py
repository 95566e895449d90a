"""#18 item 5: a PostgreSQL stopped and started under a reporting agent loses no finished measurement.

A private cluster (``initdb`` + ``pg_ctl`` on another port; the shared one on 5432 is never touched) serves a real
``latfarm serve``; a real ``latfarm agent`` measures a batch. The database is stopped while the agent measures and
started again once the agent's report has met UNAVAILABLE: the agent retries the report (results are idempotent per
job) instead of handing its batch back, so every job ends done on its first lease and every arch measured once."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.integration.test_agent_e2e import BATCH, Agent, Server
from tests.net_support import PortTaken, on_a_free_port

pytestmark = pytest.mark.slow
ARCHS = BATCH[:12]
# About 200 runs per model: a group of 4 takes seconds, long enough to stop the database while it is measured.
OPTIONS = ["--rounds", "5", "--runs", "40", "--warmup", "1", "--max-jobs", "4"]


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in a temp folder, trust auth, on 127.0.0.1:``port`` (known once started)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir, self.port = bindir, 0
        self.root = Path(tempfile.mkdtemp(prefix="latfarm-pg-"))
        self.data = self.root / "data"
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: the cluster belongs to the postgres user
            shutil.chown(self.root, "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        else:
            self.prefix = []
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self.prefix, str(self.bindir / tool), *args], capture_output=True, text=True)
        assert done.returncode == 0, f"{tool}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        """Start the cluster: the first time on a free port (``on_a_free_port``), again on the same one."""
        if self.port:
            self._start(self.port)
        else:
            self.port = on_a_free_port(self._start)

    def _start(self, port: int) -> int:
        """Start on ``port``; ``PortTaken`` when the server could not bind it."""
        log = self.root / "log"
        before = log.stat().st_size if log.exists() else 0
        options = f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        start = [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(log)]
        done = subprocess.run([*start, "-w", "start"], capture_output=True, text=True)
        said = log.read_bytes()[before:].decode(errors="replace") if log.exists() else ""
        if done.returncode != 0 and "could not bind" in said:
            raise PortTaken(port)
        assert done.returncode == 0, f"pg_ctl: {done.stdout}{done.stderr}{said[-2000:]}"
        return port

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run([*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start PostgreSQL as its own user")
    cluster = PrivatePostgres(Path(bins[-1]).parent)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


def test_database_restart_under_a_reporting_agent_loses_nothing(postgres, tmp_path):
    from latfarm.predictor import nb201
    from latfarm.services.domain.artifacts import ArtifactStore
    from latfarm.services.domain.conditions import Conditions

    server = Server(tmp_path / "server", LATFARM_DB_URL=postgres.url, LATFARM_LEASE_SECONDS="120")
    server.data_dir.mkdir()
    store = ArtifactStore(server.data_dir / "artifacts")  # exported up front, as the server would on first lease
    for index in ARCHS:
        store.export_file(nb201.to_string(nb201.from_official_index(index)), "onnx", Conditions())
    server.start()
    agent = None
    try:
        batch = server.submit("pg-restart", ARCHS)
        agent = Agent(server, tmp_path, "reporter", server.enroll("pg-restart"), OPTIONS)
        deadline = time.monotonic() + 180
        while agent.log().count("measuring 4 model(s)") < 2:  # the second group is fetched, its measuring begun
            assert time.monotonic() < deadline and agent.proc.poll() is None, agent.log()
            time.sleep(0.1)
        postgres.stop()
        agent.wait_log("report: server unavailable (UNAVAILABLE", timeout_s=150)
        time.sleep(3)  # a few more retries of the report against the stopped database
        postgres.start()
        progress = server.wait_done(batch, len(ARCHS))
        assert progress["done"] == len(ARCHS), progress
        log = agent.log()
        assert "handing the batch back" not in log and "not accepted" not in log, log
        assert "report: server reachable again after " in log, log  # the owner sees the outage end
        engine = create_engine(postgres.url)
        try:
            with engine.connect() as db:
                counts = db.execute(text("select m.arch_id, count(*) from measurements m group by m.arch_id")).all()
                attempts = db.execute(text("select state, attempts from jobs")).all()
        finally:
            engine.dispose()
        assert len(counts) == len(ARCHS) and all(n == 1 for _, n in counts), counts
        assert sorted(attempts) == [("done", 1)] * len(ARCHS), attempts  # no job was leased twice: none re-measured
    finally:
        if agent is not None:
            assert agent.terminate() == 0, agent.log()
        server.stop()
