"""Where a bench run's CPU goes: CPU seconds of processes by role, read from Linux ``/proc``, and the machine's.

A process's CPU is its ``utime + stime`` (``/proc/PID/stat``, clock ticks); a process that ends between two reads is
missed (its time goes to its parent's ``cutime``, not counted here). Roles: the server (a pid and its children),
PostgreSQL (the postmaster's children whose title names a database, or none: background writers, WAL), Redis
(``INFO cpu``, the whole server), the bench itself (``time.process_time``). The machine's busy CPU (``/proc/stat``)
minus all of them is what else ran: other users of the machine, processes that ended, the kernel's own threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
BUSY_FIELDS = (0, 1, 2, 5, 6)  # user, nice, system, irq, softirq in /proc/stat's "cpu" line (after the label)
PG_BACKGROUND = ("checkpointer", "background writer", "walwriter", "autovacuum launcher", "archiver")


@dataclass(frozen=True)
class Proc:
    """One process: parent pid, short name, CPU seconds so far (user + system), command line (a title for
    PostgreSQL's processes)."""

    ppid: int
    comm: str
    cpu_s: float
    cmdline: str


def processes(proc: Path = PROC) -> dict[int, Proc]:
    """Every readable process under ``proc`` by pid; one that ended meanwhile or is unreadable is skipped."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, Proc] = {}
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()  # fields[0] is the state (stat's 3rd field)
        found[int(stat.parent.name)] = Proc(int(fields[1]), comm, (int(fields[11]) + int(fields[12])) / tick, cmdline)
    return found


def tree_cpu(procs: dict[int, Proc], root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and its direct children, by pid (a server and its gRPC processes)."""
    return {pid: p.cpu_s for pid, p in procs.items() if pid == root or p.ppid == root}


def postgres_cpu(procs: dict[int, Proc], database: str) -> dict[int, float]:
    """CPU seconds of PostgreSQL's processes that serve ``database`` (a word of their title: its backends and
    autovacuum workers) or every database (``PG_BACKGROUND``), by pid, among the children of a ``postgres`` process
    whose parent is not one. Other databases' backends (other users of the server) are left out."""
    postmasters = {pid for pid, p in procs.items() if p.comm == "postgres" and procs.get(p.ppid, p).comm != "postgres"}
    picked: dict[int, float] = {}
    for pid, p in procs.items():
        if p.ppid not in postmasters:
            continue
        if database in p.cmdline.split() or any(name in p.cmdline for name in PG_BACKGROUND):
            picked[pid] = p.cpu_s
    return picked


def delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two reads by the processes of ``after`` (one started meanwhile from 0)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def machine_busy_s(proc: Path = PROC) -> float:
    """CPU seconds all CPUs spent busy since boot (``/proc/stat``: not idle, iowait, or stolen by the hypervisor;
    guests are already in user)."""
    ticks = [int(n) for n in (proc / "stat").read_text().splitlines()[0].split()[1:]]
    busy = sum(ticks[i] for i in BUSY_FIELDS)
    return busy / os.sysconf("SC_CLK_TCK")


def redis_cpu_s(url: str) -> float | None:
    """CPU seconds the Redis server of ``url`` used since it started (``INFO cpu``: user + system, all its
    clients); None when it cannot be asked."""
    import redis

    try:
        client = redis.Redis.from_url(url)
        info = client.info("cpu")
        client.close()
    except redis.RedisError:
        return None
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
