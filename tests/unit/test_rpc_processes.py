"""How many processes serve gRPC: the setting, the default per backend, SQLite's limit of one; the main process's
hold on the port its children serve."""

from __future__ import annotations

import socket
from concurrent import futures

import grpc
import pytest

from latfarm.services.core.config import Settings
from latfarm.services.core.errors import InvalidArgument
from latfarm.services.rpc.processes import AUTO_MAX, grpc_processes, reserve_port

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"


def test_the_default_is_one_per_cpu_up_to_a_few_on_postgresql_with_redis(tmp_path):
    settings = Settings(data_dir=tmp_path, db_url=PG, redis_url=REDIS)
    assert [grpc_processes(settings, cpus) for cpus in (1, 2, AUTO_MAX, 64)] == [1, 2, AUTO_MAX, AUTO_MAX]


def test_the_default_is_one_without_redis_or_on_sqlite(tmp_path):
    assert grpc_processes(Settings(data_dir=tmp_path, db_url=PG), 8) == 1
    assert grpc_processes(Settings(data_dir=tmp_path, redis_url=REDIS), 8) == 1


def test_a_set_count_is_kept_but_sqlite_refuses_more_than_one(tmp_path):
    assert grpc_processes(Settings(data_dir=tmp_path, db_url=PG, grpc_processes=6), 2) == 6
    assert grpc_processes(Settings(data_dir=tmp_path, grpc_processes=1), 8) == 1
    with pytest.raises(InvalidArgument, match="LATFARM_GRPC_PROCESSES=2 needs PostgreSQL"):
        grpc_processes(Settings(data_dir=tmp_path, grpc_processes=2))


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_a_reserved_port_takes_no_connection_and_keeps_other_programs_off(host):
    """The main process's socket: a gRPC server binds beside it and gets every connection; before that a connection
    is refused (nothing listens); a program binding without SO_REUSEPORT is refused; a taken port raises OSError."""
    with reserve_port(host, 0) as reserved:
        port = reserved.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        with socket.socket() as other, pytest.raises(OSError):
            other.bind((host, port))
        server = grpc.server(futures.ThreadPoolExecutor(1))
        assert server.add_insecure_port(f"{'[::]' if host == '0.0.0.0' else host}:{port}") == port
        server.start()
        try:
            for _ in range(20):  # a connection routed to the reserved socket would be refused
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
        finally:
            server.stop(None)
    with socket.socket() as taken:
        taken.bind((host, 0))
        taken.listen()
        with pytest.raises(OSError):
            reserve_port(host, taken.getsockname()[1])
