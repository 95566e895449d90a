"""One process at a time on a folder's state: an advisory ``fcntl.flock`` on a lock file, which the kernel releases
when its holder ends however it ends (SIGKILL included), so a killed holder leaves no stale lock. The file says who
holds it (``PID COMMAND``) for the refusal's line; the lock, not the file, decides. Dependency-free: the agent-only
install's ``latfarm agent`` imports it. ``latfarm up`` (``up.lock``), ``latfarm serve`` on SQLite (``<db>.lock``) and
``latfarm agent`` (``agent.lock`` in its state folder) hold one each."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import BinaryIO


class Held(Exception):
    """Another live process holds the lock: ``str(err)`` says ``<place> is in use by <command> (pid N)``."""

    def __init__(self, place: str, holder: str) -> None:
        super().__init__(f"{place} is in use by {holder}")


def _holder(handle: BinaryIO) -> str:
    """Who the lock file says holds it: ``latfarm up (pid 123)``; ``another process`` while it says nothing yet."""
    pid, _, command = handle.read(200).decode(errors="replace").strip().partition(" ")
    return f"{command} (pid {pid})" if pid.isdigit() and command else "another process"


def _locked(handle: BinaryIO, place: str) -> None:
    """Take ``handle``'s lock at once; ``Held`` naming its holder when another process has it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise Held(place, _holder(handle)) from None


def check(path: Path, place: str) -> None:
    """Raise ``Held`` when another process holds the lock ``path``; creates nothing (no file: nobody holds it)."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, releasing the lock taken to test it
    except FileNotFoundError:
        return
    with handle:
        _locked(handle, place)


def hold(path: Path, command: str, place: str) -> BinaryIO:
    """Take the lock ``path`` (its folder and file made when missing) for this process, as ``command``; the open
    file, which holds it until closed or the process ends: keep a reference. ``Held`` when another process has it.
    Not inherited by child processes (Python's descriptors are not)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+b")
    try:
        _locked(handle, place)
    except Held:
        handle.close()
        raise
    handle.truncate(0)
    handle.write(f"{os.getpid()} {command}\n".encode())
    handle.flush()
    return handle
