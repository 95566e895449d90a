"""Which process holds the established TCP connections of a listening port, read from Linux ``/proc``.

A connection is a line of ``/proc/net/tcp`` or ``tcp6`` in state ``01`` (ESTABLISHED) whose local port is the
port; its socket inode is matched with the ``socket:[INODE]`` links under ``/proc/PID/fd`` of the given pids.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")
ESTABLISHED = "01"


def established_inodes(port: int, proc: Path = PROC) -> set[str]:
    """Socket inodes of the established connections whose local port is ``port`` (IPv4 and IPv6)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def by_process(pids: list[int], port: int, proc: Path = PROC) -> dict[int, int]:
    """How many of ``port``'s established connections each of ``pids`` holds (0 for one that ended)."""
    inodes = established_inodes(port, proc)
    counts: dict[int, int] = {}
    for pid in pids:
        held = 0
        try:
            links = list((proc / str(pid) / "fd").iterdir())
        except OSError:
            links = []
        for link in links:
            try:
                target = str(link.readlink())
            except OSError:
                continue
            held += target.startswith("socket:[") and target[8:-1] in inodes
        counts[pid] = held
    return counts
