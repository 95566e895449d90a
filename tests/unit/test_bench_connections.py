"""The fleet bench's split of a port's connections between processes (bench/connections.py) on a made-up /proc."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import connections  # noqa: E402

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def _line(local_port: int, state: str, inode: int) -> str:
    return f"   0: 0100007F:{local_port:04X} 0100007F:D431 {state} 00000000:00000000 00:00000000 00000000 0 0 {inode}\n"


def test_connections_are_counted_by_the_process_holding_their_socket(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(
        HEADER
        + _line(50051, "0A", 10)  # the listening socket: not a connection
        + _line(50051, "01", 11)
        + _line(50051, "01", 12)
        + _line(8000, "01", 13)  # another port
    )
    (tmp_path / "net" / "tcp6").write_text(HEADER + _line(50051, "01", 14))
    for pid, inodes in ((100, (10, 11, 13)), (101, (12, 14))):
        (tmp_path / str(pid) / "fd").mkdir(parents=True)
        for fd, inode in enumerate(inodes):
            (tmp_path / str(pid) / "fd" / str(fd)).symlink_to(f"socket:[{inode}]")
    (tmp_path / "100" / "fd" / "9").symlink_to("/dev/null")

    assert connections.established_inodes(50051, tmp_path) == {"11", "12", "14"}
    assert connections.by_process([100, 101, 102], 50051, tmp_path) == {100: 1, 101: 2, 102: 0}
