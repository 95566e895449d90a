"""``common.lock`` with real processes: a lock another process holds is refused naming it, a SIGKILLed holder leaves
none behind, checking creates nothing; ``latfarm agent`` refuses a state folder another agent uses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from latfarm.common.lock import Held, check, hold

HOLDER = """
import sys, time
from pathlib import Path
from latfarm.common.lock import hold
held = hold(Path(sys.argv[1]), "latfarm agent", "there")
print("held", flush=True)
time.sleep(600)
"""


def _holder(path: Path) -> subprocess.Popen:
    """A process holding the lock ``path`` as ``latfarm agent``, once it said so."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_a_lock_another_process_holds_is_refused_naming_it_and_a_killed_holder_leaves_none(tmp_path):
    path = tmp_path / "state" / "agent.lock"
    proc = _holder(path)
    try:
        with pytest.raises(Held) as refused:
            hold(path, "latfarm up", "here")
        assert str(refused.value) == f"here is in use by latfarm agent (pid {proc.pid})"
        with pytest.raises(Held):
            check(path, "here")
    finally:
        proc.send_signal(signal.SIGKILL)  # no clean-up runs: the kernel releases the lock
        proc.wait()
    check(path, "here")
    with hold(path, "latfarm up", "here") as held:
        assert path.read_text() == f"{os.getpid()} latfarm up\n"
        proc = subprocess.run([sys.executable, "-c", HOLDER, str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and proc.stderr.strip().endswith(
            f"Held: there is in use by latfarm up (pid {os.getpid()})"
        )
        assert not held.closed


def test_checking_a_lock_creates_nothing(tmp_path):
    check(tmp_path / "missing" / "up.lock", "missing")
    assert not list(tmp_path.iterdir())


def test_an_agent_refuses_a_state_folder_another_agent_uses(tmp_path):
    """Two agents resuming one credential would lease as one agent: the second exits 1 with one line, before it
    connects (the server address here answers nothing) or registers."""
    state = tmp_path / "agent"
    proc = _holder(state / "agent.lock")
    env = {**os.environ, "LATFARM_AGENT_ENROLL": "lf_enroll_unused"}
    try:
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "latfarm.services.cli",
                "agent",
                "--server",
                "127.0.0.1:9",
                "--state-dir",
                str(state),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        proc.kill()
        proc.wait()
    assert second.returncode == 1, second.stderr
    assert second.stderr.strip().splitlines() == [
        f"latfarm agent: {state} is in use by latfarm agent (pid {proc.pid}): one agent per state folder (--state-dir)"
    ]
    assert sorted(p.name for p in state.iterdir()) == ["agent.lock"]  # no state saved, no cache made
