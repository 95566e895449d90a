"""The agent's local state file: its id and credential, so a restart does not register a new agent."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

STATE_FILE = "state.json"
STATE_LOCK = "agent.lock"  # beside it, held by the agent that uses it (``common.lock``): one agent per state folder


@dataclass(frozen=True)
class AgentState:
    """Who the server knows this agent as: its id, its credential (a secret) and its device's name."""

    agent_id: str
    credential: str
    device: str


def ensure_writable(folder: Path) -> None:
    """Create ``folder`` when missing and check that files can be written in it; ``OSError`` otherwise."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".probe-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def load_state(state_dir: Path) -> AgentState | None:
    """The saved state, or None when the agent has not registered yet."""
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
        return AgentState(**{f.name: saved[f.name] for f in fields(AgentState)})  # other keys are ignored
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"agent state file {path} is corrupt ({err}); delete it and enroll again") from err


def save_state(state_dir: Path, state: AgentState) -> Path:
    """Write the state atomically, readable by the owner only (it holds a secret)."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(state), handle)
    os.replace(tmp, path)
    return path
