"""The agent-only install: ``pip install latfarm`` (base, no extras) has no torch, web or SQL stack, and its
``latfarm agent`` measures jobs from a real server."""

from __future__ import annotations

import subprocess
import venv

import pytest

from tests.integration.test_agent_e2e import QUICK, ROOT, Server, assert_each_measured_once

pytestmark = pytest.mark.slow
HEAVY = ("torch", "fastapi", "sqlalchemy", "uvicorn", "starlette", "alembic", "onnx.reference")


@pytest.fixture(scope="module")
def agent_env(tmp_path_factory):
    """A fresh virtual environment with only the base install of this checkout."""
    path = tmp_path_factory.mktemp("agent-venv")
    venv.create(path, with_pip=True)
    python = path / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(ROOT)], capture_output=True, text=True, timeout=900
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return path


def test_agent_install_has_no_server_stack(agent_env):
    probe = (
        "import importlib.util, latfarm.agents.main, latfarm.agents.loop, latfarm.proto.v1.agent_pb2_grpc; "
        f"print([m for m in {HEAVY!r} if importlib.util.find_spec(m.split('.')[0]) is not None])"
    )
    out = subprocess.run([str(agent_env / "bin" / "python"), "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"the agent install pulled in: {out.stdout}"


def test_agent_install_runs_the_agent(agent_env, tmp_path):
    server = Server(tmp_path)
    server.start()
    try:
        archs = [3, 4, 5]
        batch = server.submit("agent-only", archs)
        cmd = [str(agent_env / "bin" / "latfarm"), "agent", "--server", server.grpc, "--enroll"]
        cmd += [server.enroll("agent-only"), "--state-dir", str(tmp_path / "lean-state"), *QUICK, "--once"]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        assert server.wait_done(batch, len(archs))["done"] == len(archs)
        assert len(assert_each_measured_once(server, "agent-only", len(archs))) == 1
    finally:
        server.stop()
