"""The fleet bench's CPU accounting (bench/cpu_split.py) on a made-up /proc tree."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import cpu_split  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _process(proc: Path, pid: int, ppid: int, comm: str, ticks: tuple[int, int], title: str) -> None:
    """A /proc/PID entry: stat with ``utime`` and ``stime`` in ticks, and a NUL-separated cmdline."""
    folder = proc / str(pid)
    folder.mkdir()
    rest = ["S", str(ppid)] + ["0"] * 9 + [str(ticks[0]), str(ticks[1])] + ["0"] * 30
    (folder / "stat").write_text(f"{pid} ({comm}) " + " ".join(rest) + "\n")
    (folder / "cmdline").write_bytes(title.replace(" ", "\0").encode() + b"\0")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    _process(tmp_path, 1, 0, "init", (5, 5), "/sbin/init")
    _process(tmp_path, 100, 1, "latfarm", (3 * TICK, TICK), "python latfarm serve")
    _process(tmp_path, 101, 100, "latfarm (grpc) x", (2 * TICK, 0), "python -c spawn")
    _process(tmp_path, 200, 1, "postgres", (TICK, 0), "/usr/lib/postgresql/15/bin/postgres -D main")
    _process(tmp_path, 201, 200, "postgres", (TICK, TICK), "postgres: 15/main: walwriter")
    _process(tmp_path, 202, 200, "postgres", (4 * TICK, 0), "postgres: 15/main: postgres fleet_bench_7 h(1) idle")
    _process(tmp_path, 203, 200, "postgres", (9 * TICK, 0), "postgres: 15/main: postgres test h(2) idle")
    _process(tmp_path, 204, 200, "postgres", (TICK, 0), "postgres: 15/main: autovacuum worker fleet_bench_7")
    _process(tmp_path, 205, 200, "postgres", (TICK, 0), "postgres: 15/main: autovacuum worker test")
    (tmp_path / "self").mkdir()  # not a pid: not read
    return tmp_path


def test_processes_parse_names_with_spaces_and_parentheses(proc: Path) -> None:
    procs = cpu_split.processes(proc)
    assert procs[101] == cpu_split.Proc(100, "latfarm (grpc) x", 2.0, "python -c spawn")
    assert procs[100].cpu_s == 4.0
    assert set(procs) == {1, 100, 101, 200, 201, 202, 203, 204, 205}


def test_server_tree_is_the_process_and_its_children(proc: Path) -> None:
    assert cpu_split.tree_cpu(cpu_split.processes(proc), 100) == {100: 4.0, 101: 2.0}


def test_postgres_counts_its_database_and_background_processes_only(proc: Path) -> None:
    picked = cpu_split.postgres_cpu(cpu_split.processes(proc), "fleet_bench_7")
    assert picked == {201: 2.0, 202: 4.0, 204: 1.0}


def test_delta_counts_a_process_started_between_reads_from_zero() -> None:
    assert cpu_split.delta({1: 2.0, 2: 5.0}, {1: 3.5, 3: 1.0}) == pytest.approx(2.5)


def test_machine_busy_leaves_out_idle_iowait_and_steal(tmp_path: Path) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    (tmp_path / "stat").write_text(f"cpu  {TICK} {TICK} {TICK} 50 50 {TICK} {TICK} 70 0 0\ncpu0 1 2 3\n")
    assert cpu_split.machine_busy_s(tmp_path) == 5.0
